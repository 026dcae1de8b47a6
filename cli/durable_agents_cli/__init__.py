"""The `durable-agents` command: the top layer, over the operator, the runtime and the API layer."""
