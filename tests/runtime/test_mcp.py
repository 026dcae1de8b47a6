"""MCP servers in a declarative manifest become durable toolsets: each MCP call is a Temporal activity.

A real MCP server (`mcp_server.py`, from the `mcp` package) runs in its own process over streamable HTTP
and over SSE; the worker reads a header value from its environment and sends it to both. pydantic-ai's
`test` model calls every tool it is shown, so the tool filter and prefix decide exactly which calls reach
the servers.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_server import GREETING, McpServerProcess, read_log, start_mcp_server
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import WORKFLOW_NAME, RunInput, RunOutput

pytestmark = [pytest.mark.runtime, pytest.mark.anyio]

AGENT_NAME = "mcp_agent"
TOKEN = "calc-token-0d5e7a"
TOKEN_ENV = "CALC_TOKEN"


@pytest.fixture
def streamable(tmp_path: Path) -> Iterator[McpServerProcess]:
    with start_mcp_server(tmp_path, transport="streamable-http") as server:
        yield server


@pytest.fixture
def sse(tmp_path: Path) -> Iterator[McpServerProcess]:
    with start_mcp_server(tmp_path, transport="sse") as server:
        yield server


def mcp_config(temporal: Any, streamable: McpServerProcess, sse: McpServerProcess) -> RuntimeConfig:
    headers = {streamable.header: TOKEN_ENV}
    return RuntimeConfig.model_validate(
        {
            "agent": {
                "name": AGENT_NAME,
                "model": "test",
                "mcpServers": [
                    {
                        "id": "calc",
                        "url": streamable.url,
                        "headersFromEnv": headers,
                        "toolPrefix": "calc",
                        "toolFilter": {"exclude": ["wipe_disk"]},
                    },
                    {
                        "id": "calc_sse",
                        "url": sse.url,
                        "transport": "sse",
                        "headersFromEnv": headers,
                        "toolPrefix": "sse",
                        "toolFilter": {"include": ["greet"]},
                    },
                ],
            },
            "temporal": {
                "address": temporal.address,
                "namespace": temporal.namespace,
                "taskQueue": f"mcp-{uuid.uuid4().hex[:8]}",
            },
            "activities": {"toolsets": {"calc": {"startToCloseTimeout": "20s"}}},
        }
    )


async def test_mcp_tools_run_as_durable_activities_with_headers_filter_and_prefix(
    temporal_dev_server: Any,
    temporal_client: Client,
    start_worker: Any,
    streamable: McpServerProcess,
    sse: McpServerProcess,
) -> None:
    config = mcp_config(temporal_dev_server, streamable, sse)
    start_worker(config, **{TOKEN_ENV: TOKEN})

    handle = await temporal_client.start_workflow(
        WORKFLOW_NAME,
        RunInput(prompt="Use every tool."),
        id=f"mcp-{uuid.uuid4()}",
        task_queue=config.temporal.task_queue,
        result_type=RunOutput,
    )
    result = await handle.result()

    # The model saw the prefixed, filtered tools and got the servers' results back.
    assert sorted(c.tool_name for c in result.tool_calls) == ["calc_add", "calc_greet", "sse_greet"]
    assert result.output_text.count(GREETING) == 2

    # Each server ran exactly the calls the filter let through, and saw the header from the environment.
    streamable_log, sse_log = read_log(streamable.log), read_log(sse.log)
    assert Counter(e["tool"] for e in streamable_log if "tool" in e) == {"greet": 1, "add": 1}
    assert Counter(e["tool"] for e in sse_log if "tool" in e) == {"greet": 1}
    for log in (streamable_log, sse_log):
        headers = [e["header"] for e in log if "header" in e]
        assert headers and set(headers) == {TOKEN}

    # MCP calls are activities named after the agent and the server id (pydantic-ai 2.68's naming).
    activities = Counter(
        [
            event.activity_task_scheduled_event_attributes.activity_type.name
            async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
    )
    prefix = f"agent__{AGENT_NAME}__mcp_server__"
    assert activities[f"{prefix}calc__call_tool"] == 2
    assert activities[f"{prefix}calc_sse__call_tool"] == 1
    assert activities[f"{prefix}calc__get_tools"] >= 1
    assert activities[f"{prefix}calc_sse__get_tools"] >= 1
    # Nobody watched the run, so its model requests were plain ones (only watched runs stream).
    assert activities[f"agent__{AGENT_NAME}__model_request"] == 2
    assert activities[f"agent__{AGENT_NAME}__model_request_stream"] == 0
