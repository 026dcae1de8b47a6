"""The API (`durable-agents.dev/v1alpha1`): one pydantic model per resource, the source of the CRDs."""

from .agentrun import AgentRun, AgentRunSpec, AgentRunStatus, RunPhase, RunUsage, workflow_id_for_run
from .common import (
    API_GROUP,
    API_VERSION,
    VERSION,
    Condition,
    LocalObjectReference,
    ObjectMeta,
    SecretKeySelector,
)
from .durableagent import (
    AutoscalingSpec,
    Backlog,
    DurableAgent,
    DurableAgentSpec,
    DurableAgentStatus,
    DurableAgentTemporalSpec,
    EnvFromSecret,
    LastFailure,
    ModelProviderSpec,
    PodTemplateSpec,
    RunCounts,
    default_task_queue,
)
from .temporalconnection import (
    TemporalConnection,
    TemporalConnectionSpec,
    TemporalConnectionStatus,
    TemporalConnectionTLS,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "VERSION",
    "AgentRun",
    "AgentRunSpec",
    "AgentRunStatus",
    "AutoscalingSpec",
    "Backlog",
    "Condition",
    "DurableAgent",
    "DurableAgentSpec",
    "DurableAgentStatus",
    "DurableAgentTemporalSpec",
    "EnvFromSecret",
    "LastFailure",
    "LocalObjectReference",
    "ModelProviderSpec",
    "ObjectMeta",
    "PodTemplateSpec",
    "RunCounts",
    "RunPhase",
    "RunUsage",
    "SecretKeySelector",
    "TemporalConnection",
    "TemporalConnectionSpec",
    "TemporalConnectionStatus",
    "TemporalConnectionTLS",
    "default_task_queue",
    "workflow_id_for_run",
]
