"""One root span per workflow run, and the agent's attributes on it and on every activity span.

pydantic-ai's spans (`invoke_agent`, `chat`, `execute_tool`) and Temporal's (`StartActivity:`,
`RunActivity:`) say little about where a run belongs. `RunSpans`, a worker interceptor added only when
spans leave the process (`interceptors`), opens a `<workflow type> <agent>` span (`DurableAgentRun hello`)
around each workflow run, so a run's spans share one root, and tags it and each `RunActivity:` span with
the agent, the Temporal namespace, task queue, workflow and run ids, and the Kubernetes namespace and pod
when the worker runs in one (`POD_NAMESPACE`, `POD_NAME`, set by the operator).

The workflow span is started through the global tracer provider, which the Logfire plugin makes
replay-safe: a replayed run reuses the span's id and start time and does not end it twice. The
interceptor sits inside Temporal's tracing interceptor (client interceptors come first), so the workflow
span is a child of a starting client's span when there is one, and `RunActivity:` is the current span
when an activity starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import AttributeValue
from temporalio import activity, workflow
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from durable_agents_api.config import RuntimeConfig
from durable_agents_runtime.observability import spans_have_a_destination

__all__ = ["AGENT_ATTRIBUTE", "RunSpans", "interceptors", "run_span_name", "worker_attributes"]

TRACER_NAME = "durable_agents"
AGENT_ATTRIBUTE = "durable_agents.agent"
"""The agent's name, on the run span and every `RunActivity:` span."""
_KUBERNETES_ENV = {"k8s.namespace.name": "POD_NAMESPACE", "k8s.pod.name": "POD_NAME"}

Attributes = Mapping[str, AttributeValue]


def run_span_name(workflow_type: str, agent: str) -> str:
    """`DurableAgentRun hello`: the root span of one run of `agent`'s workflow of that type."""
    return f"{workflow_type} {agent}"


def interceptors(config: RuntimeConfig, environ: Mapping[str, str] = os.environ) -> Sequence[Interceptor]:
    """The worker interceptors for `config`'s agent: `RunSpans` when spans leave the process, else none."""
    if not spans_have_a_destination(config, environ):
        return []
    return [RunSpans(worker_attributes(config, environ))]


def worker_attributes(config: RuntimeConfig, environ: Mapping[str, str]) -> dict[str, AttributeValue]:
    """What every run and activity span of this worker carries: agent, Temporal namespace, Kubernetes."""
    attributes: dict[str, AttributeValue] = {
        AGENT_ATTRIBUTE: config.agent.name,
        "temporal.namespace": config.temporal.namespace,
    }
    attributes.update({key: environ[env] for key, env in _KUBERNETES_ENV.items() if environ.get(env)})
    return attributes


class RunSpans(Interceptor):
    """Worker interceptor: a root span per workflow run, and the agent's attributes on activity spans."""

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = dict(attributes)
        self._workflow_class = _workflow_interceptor(self.attributes)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TaggedActivity(next, self.attributes)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return self._workflow_class


class _TaggedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, attributes: Attributes) -> None:
        super().__init__(next)
        self._attributes = attributes

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        trace.get_current_span().set_attributes(
            {
                **self._attributes,
                "temporal.task_queue": info.task_queue,
                "temporal.workflow_id": info.workflow_id or "",
                "temporal.run_id": info.workflow_run_id or "",
                "temporal.activity_type": info.activity_type,
                "temporal.attempt": info.attempt,
            }
        )
        return await super().execute_activity(input)


def _workflow_interceptor(attributes: Attributes) -> type[WorkflowInboundInterceptor]:
    """A workflow interceptor class bound to this worker's attributes (the worker instantiates it)."""

    class _RunSpan(WorkflowInboundInterceptor):
        async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
            info = workflow.info()
            run_attributes: dict[str, AttributeValue] = {
                **attributes,
                "temporal.task_queue": info.task_queue,
                "temporal.workflow_type": info.workflow_type,
                "temporal.workflow_id": info.workflow_id,
                "temporal.run_id": info.run_id,
            }
            name = run_span_name(info.workflow_type, str(attributes[AGENT_ATTRIBUTE]))
            tracer = trace.get_tracer(TRACER_NAME)
            # Marked failed by hand: continue-as-new raises too, and is no failure.
            with tracer.start_as_current_span(
                name, attributes=run_attributes, record_exception=False, set_status_on_exception=False
            ) as span:
                try:
                    return await super().execute_workflow(input)
                except Exception as error:
                    span.record_exception(error)
                    span.set_status(StatusCode.ERROR, type(error).__name__)
                    raise

    return _RunSpan
