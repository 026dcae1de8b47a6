"""Kubernetes operator for DurableAgent, AgentRun and TemporalConnection resources."""
