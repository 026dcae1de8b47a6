"""A run's spans reach a real trace backend over OTLP, linked under one root, without content by default.

The backend is Arize Phoenix (`trace_backend.py`), a third-party OTLP receiver and span store; workers
export to it the way a pod exports to a collector (`observability.otlpEndpoint`, the standard
`OTEL_EXPORTER_OTLP_*` variables, or Logfire's exporter when a token is set), and the tests read the spans
back from Phoenix's REST API. The `test` model calls every tool it is shown: the demo toolset's two Python
tools and the MCP server's `greet`, so one run has model requests, tool calls and MCP calls. One Phoenix
serves the module (about 15 CPU-s to start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_server import GREETING, McpServerProcess, start_mcp_server
from slow_tools import agent_config, start_run_into_the_slow_tool, worker_env
from temporalio.client import Client

from durable_agents_api.config import ObservabilitySpec, RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput
from durable_agents_runtime.devserver import ENV_STATE_DIR
from durable_agents_runtime.run_spans import AGENT_ATTRIBUTE, run_span_name
from trace_backend import Span, TraceBackend

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"
AGENT = "traced"
PROMPT = "prompt-canary-5f1e: what is the weather in Paris?"
INSTRUCTIONS = "instructions-canary-9b2c: answer briefly."
API_KEY = "sk-canary-api-key-77d0"
MCP_TOKEN = "mcp-canary-token-3a41"
SECRETS = (API_KEY, MCP_TOKEN)
LOGFIRE_TOKEN = "pylf_v1_us_canarytoken0123456789abcdef0123456789abcdef"
CONTENT = ("prompt-canary-5f1e", "instructions-canary-9b2c", GREETING)
# Export every half second instead of every five, so the spans arrive while the test waits.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "500"}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraceBackend]:
    """Phoenix, spawned once for the module; tests `wait_ready()` after starting their worker (overlap)."""
    with TraceBackend(tmp_path_factory.mktemp("phoenix")) as started:
        yield started


@pytest.fixture(scope="module")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServerProcess]:
    with start_mcp_server(tmp_path_factory.mktemp("mcp")) as server:
        yield server


def traced_config(temporal: Any, mcp: McpServerProcess, **observability: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate(
        {
            "agent": {
                "name": AGENT,
                "model": "test",
                "instructions": INSTRUCTIONS,
                "toolsets": [{"id": "demo", "entrypoint": "durable_agents_runtime.demo:toolset"}],
                "mcpServers": [
                    {
                        "id": "calc",
                        "url": mcp.url,
                        "headersFromEnv": {mcp.header: "CALC_TOKEN"},
                        "toolPrefix": "calc",
                        "toolFilter": {"include": ["greet"]},
                    }
                ],
            },
            "temporal": {
                "address": temporal.address,
                "namespace": temporal.namespace,
                "taskQueue": f"traces-{uuid.uuid4().hex[:8]}",
            },
            "observability": observability,
        }
    )


async def traced_run(
    client: Client, start_worker: Any, backend: TraceBackend, config: RuntimeConfig, **env: str
) -> tuple[str, list[Span], Any]:
    """Serve `config`, run the agent once; the workflow id, the spans of its trace and the worker."""
    secrets = {"OPENAI_API_KEY": API_KEY, "CALC_TOKEN": MCP_TOKEN}
    pod = {"POD_NAMESPACE": "team-a", "POD_NAME": "traced-0"}
    worker = start_worker(config, **secrets, **pod, **FAST_EXPORT, **env)
    backend.wait_ready()
    workflow_id = f"traces-{uuid.uuid4()}"
    result = await client.execute_workflow(
        WORKFLOW_NAME,
        RunInput(prompt=PROMPT),
        id=workflow_id,
        task_queue=config.temporal.task_queue,
        result_type=RunOutput,
    )
    tools = sorted(call.tool_name for call in result.tool_calls)
    assert tools == ["calc_greet", "get_local_time", "get_weather"]

    def trace_of(spans: list[Span]) -> list[Span]:
        # Logfire also sends a placeholder for each span when it starts; only the finished spans count.
        spans = [s for s in spans if s["attributes"].get("logfire.span_type") != "pending_span"]
        root = next((s for s in spans if is_root_of(s, workflow_id)), None)
        return (
            []
            if root is None
            else [s for s in spans if s["context"]["trace_id"] == root["context"]["trace_id"]]
        )

    def complete(spans: list[Span]) -> bool:
        names = {s["name"] for s in trace_of(spans)}
        return {f"invoke_agent {AGENT}", "tools/call greet", "chat test"} <= names

    return workflow_id, trace_of(backend.wait_for_spans(complete, timeout=60)), worker


def is_root_of(span: Span, workflow_id: str) -> bool:
    return not span["parent_id"] and span["attributes"].get("temporal.workflow_id") == workflow_id


def parent_of(spans: list[Span], span: Span) -> Span:
    return next(s for s in spans if s["context"]["span_id"] == span["parent_id"])


def named(spans: list[Span], name: str) -> list[Span]:
    found = [s for s in spans if s["name"] == name]
    assert found, f"no span named {name!r} in {sorted({s['name'] for s in spans})}"
    return found


def ancestors(spans: list[Span], span: Span) -> list[str]:
    names: list[str] = []
    while span["parent_id"]:
        span = parent_of(spans, span)
        names.append(span["name"])
    return names


async def test_a_runs_spans_reach_the_backend_under_one_root_with_agent_attributes_and_no_content(
    temporal_dev_server: Any,
    temporal_client: Client,
    start_worker: Any,
    backend: TraceBackend,
    mcp: McpServerProcess,
) -> None:
    config = traced_config(temporal_dev_server, mcp, otlpEndpoint=backend.otlp_endpoint)
    workflow_id, spans, _ = await traced_run(temporal_client, start_worker, backend, config)

    # One root per run, carrying where the run belongs; every other span of the trace hangs under it.
    root_name = run_span_name(WORKFLOW_NAME, AGENT)
    [root] = [s for s in spans if not s["parent_id"]]
    assert root["name"] == root_name == "DurableAgentRun traced"
    assert {
        AGENT_ATTRIBUTE: AGENT,
        "temporal.namespace": temporal_dev_server.namespace,
        "temporal.task_queue": config.temporal.task_queue,
        "temporal.workflow_type": WORKFLOW_NAME,
        "temporal.workflow_id": workflow_id,
        "k8s.namespace.name": "team-a",
        "k8s.pod.name": "traced-0",
    }.items() <= root["attributes"].items()
    assert root["attributes"]["temporal.run_id"]
    assert all(ancestors(spans, s)[-1] == root_name for s in spans if s is not root)

    # The agent run, its model requests, tool calls and MCP calls, each through its Temporal activity.
    [agent_run] = named(spans, f"invoke_agent {AGENT}")
    assert parent_of(spans, agent_run) is root
    model_requests = named(spans, f"RunActivity:agent__{AGENT}__model_request")
    assert len(model_requests) == 2
    for request in model_requests:
        assert ancestors(spans, request)[:3] == [
            f"StartActivity:agent__{AGENT}__model_request",
            "chat test",
            f"invoke_agent {AGENT}",
        ]
    for tool in ("get_weather", "get_local_time"):
        [call] = named(spans, f"execute_tool {tool}")
        assert parent_of(spans, call) is agent_run
    assert len(named(spans, f"RunActivity:agent__{AGENT}__toolset__demo__call_tool")) == 2
    [mcp_call] = named(spans, "tools/call greet")
    assert ancestors(spans, mcp_call)[:3] == [
        f"RunActivity:agent__{AGENT}__mcp_server__calc__call_tool",
        f"StartActivity:agent__{AGENT}__mcp_server__calc__call_tool",
        "execute_tool calc_greet",
    ]

    # Activity spans say which agent and run they served.
    for span in (s for s in spans if s["name"].startswith("RunActivity:")):
        assert span["attributes"][AGENT_ATTRIBUTE] == AGENT
        assert span["attributes"]["temporal.workflow_id"] == workflow_id
        assert span["attributes"]["k8s.namespace.name"] == "team-a"

    # Without includeContent: no prompt, instructions, tool arguments or results, and never a secret.
    text = json.dumps(spans)
    for forbidden in (*CONTENT, *SECRETS):
        assert forbidden not in text, forbidden
    assert not any("gen_ai.tool.call.arguments" in s["attributes"] for s in spans)
    # Token counts still arrive.
    assert all(s["attributes"].get("gen_ai.usage.input_tokens") for s in named(spans, "chat test"))


async def test_include_content_puts_prompts_and_tool_data_in_spans_but_never_secrets(
    temporal_dev_server: Any,
    temporal_client: Client,
    start_worker: Any,
    backend: TraceBackend,
    mcp: McpServerProcess,
) -> None:
    config = traced_config(temporal_dev_server, mcp, otlpEndpoint=backend.otlp_endpoint, includeContent=True)
    _, spans, _ = await traced_run(temporal_client, start_worker, backend, config)

    text = json.dumps(spans)
    for wanted in CONTENT:
        assert wanted in text, wanted
    assert any(
        "gen_ai.tool.call.arguments" in s["attributes"] for s in named(spans, "execute_tool get_weather")
    )
    for secret in SECRETS:
        assert secret not in text, secret


async def test_logfire_mode_with_a_token_exports_the_same_trace_through_logfire_without_the_token(
    temporal_dev_server: Any,
    temporal_client: Client,
    start_worker: Any,
    backend: TraceBackend,
    mcp: McpServerProcess,
) -> None:
    # No otlpEndpoint: spans leave only because Logfire has a token, as in production. LOGFIRE_BASE_URL,
    # Logfire's own setting for where its API is, points its exporter (and its token check) at the
    # local backend, so nothing leaves the machine. (The token check then reads Phoenix's web page where
    # Logfire's API would answer JSON and logs a traceback; the export does not depend on it.)
    config = traced_config(temporal_dev_server, mcp, logfire={"environment": "test"})
    env = {"LOGFIRE_TOKEN": LOGFIRE_TOKEN, "LOGFIRE_BASE_URL": backend.url}
    workflow_id, spans, worker = await traced_run(temporal_client, start_worker, backend, config, **env)

    [root] = [s for s in spans if is_root_of(s, workflow_id)]
    assert root["name"] == run_span_name(WORKFLOW_NAME, AGENT)
    assert len(named(spans, f"RunActivity:agent__{AGENT}__model_request")) == 2
    text = json.dumps(spans)
    for forbidden in (*CONTENT, *SECRETS, LOGFIRE_TOKEN):
        assert forbidden not in text, forbidden
    assert LOGFIRE_TOKEN not in worker.output.read_text(errors="replace")


async def test_a_run_replayed_on_a_new_worker_after_a_kill_keeps_one_root_and_one_trace(
    temporal_dev_server: Any,
    temporal_client: Client,
    start_worker: Any,
    backend: TraceBackend,
    tmp_path: Path,
) -> None:
    config = agent_config(temporal_dev_server, "crash_traced")
    config = config.model_copy(
        update={"observability": ObservabilitySpec(otlp_endpoint=backend.otlp_endpoint)}
    )
    log = tmp_path / "tools.log"
    first = start_worker(config, **worker_env(log, 3), **FAST_EXPORT)
    backend.wait_ready()
    handle = await start_run_into_the_slow_tool(
        temporal_client, config, log, worker_pid=first.pid, id_prefix="traces-crash"
    )
    await anyio.sleep(1.5)  # The first model request's spans are exported (every 0.5 s) before the kill.
    first.kill()
    start_worker(config, **worker_env(log, 3), **FAST_EXPORT)
    with anyio.fail_after(90):
        await handle.result()

    def settled(spans: list[Span]) -> bool:
        # The slow tool's second attempt, on the new worker, and the root it ended after the run.
        retried = [s for s in spans if s["attributes"].get("temporal.attempt") == 2]
        return bool(retried) and any(is_root_of(s, handle.id) for s in spans)

    spans = backend.wait_for_spans(settled, timeout=60)
    [root] = [s for s in spans if is_root_of(s, handle.id)]
    trace = [s for s in spans if s["context"]["trace_id"] == root["context"]["trace_id"]]
    # The new worker replayed the run and ended the root and agent spans the first one had opened, under
    # the same ids: the first worker's finished spans (the first model request) and the new worker's
    # (the retried tool, the last model request) are one trace under one root, with no orphan.
    assert len(named(trace, "invoke_agent crash_traced")) == 1
    assert all(ancestors(trace, s)[-1] == root["name"] for s in trace if s is not root)
    activities = [
        s for s in spans if s["attributes"].get("temporal.workflow_id") == handle.id and s is not root
    ]
    assert {s["context"]["trace_id"] for s in activities} == {root["context"]["trace_id"]}
    requests = named(trace, "RunActivity:agent__crash_traced__model_request")
    assert len(requests) == 2
    [retried] = [s for s in trace if s["attributes"].get("temporal.attempt") == 2]
    assert retried["name"] == "RunActivity:agent__crash_traced__toolset__slow__call_tool"


def test_dev_traces_its_client_and_the_run_into_one_trace_with_the_endpoint_from_the_environment(
    backend: TraceBackend, tmp_path: Path
) -> None:
    # The standard OpenTelemetry variable instead of the manifest field; `dev` exits after the run, so
    # this also proves the spans are flushed on the way out.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOGFIRE_", "OTEL_"))},
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{backend.url}/v1/traces",
        ENV_STATE_DIR: str(tmp_path / "state"),
    }
    backend.wait_ready()
    done = subprocess.run(
        [sys.executable, "-m", "durable_agents_cli", "dev", str(HELLO), "--prompt", "Weather in Paris?"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    root_name = run_span_name(WORKFLOW_NAME, "hello")
    spans = backend.wait_for_spans(lambda spans: any(s["name"] == root_name for s in spans), timeout=60)
    [root] = named(spans, root_name)
    trace = [s for s in spans if s["context"]["trace_id"] == root["context"]["trace_id"]]
    # The client's span (`dev` traces its own client) is the parent of the run's root.
    assert ancestors(trace, root) == [f"StartWorkflow:{WORKFLOW_NAME}"]
    assert all(root_name in ancestors(trace, s) for s in named(trace, "invoke_agent hello"))
