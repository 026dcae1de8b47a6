"""Toolsets of declarative agents: Python toolsets by entrypoint, MCP servers, and per-tool settings."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from pydantic_ai.capabilities import AbstractCapability, SetToolMetadata
from pydantic_ai.toolsets import AbstractToolset
from temporalio.workflow import ActivityConfig

from durable_agents_api.config import ApprovalRuleSpec, McpServerSpec, RuntimeConfig, ToolsetSpec
from durable_agents_runtime.approvals import requiring_approval
from durable_agents_runtime.entrypoints import import_object
from durable_agents_runtime.errors import AgentLoadError

__all__ = ["mcp_toolset", "python_toolset", "tool_metadata_capabilities"]


def python_toolset(spec: ToolsetSpec) -> AbstractToolset[Any]:
    toolset = import_object(spec.entrypoint, what=f"toolset {spec.id!r}")
    if not isinstance(toolset, AbstractToolset):
        raise AgentLoadError(
            f"toolset {spec.id!r}: {spec.entrypoint!r} is a {type(toolset).__name__}, not a pydantic-ai "
            "toolset (e.g. a FunctionToolset)"
        )
    toolset = cast(AbstractToolset[Any], toolset)
    if toolset.id != spec.id:
        raise AgentLoadError(
            f"toolset {spec.id!r}: {spec.entrypoint!r} has id {toolset.id!r}; the id is part of activity "
            f"names, so it must match: construct it with id={spec.id!r} or set `id: {toolset.id}` in the "
            "manifest"
        )
    return toolset


def mcp_toolset(
    spec: McpServerSpec, *, approval_rules: Sequence[ApprovalRuleSpec] = ()
) -> AbstractToolset[Any]:
    from fastmcp.mcp_config import infer_transport_type_from_url
    from pydantic_ai.mcp import MCPToolset

    headers: dict[str, str] = {}
    for header, env in spec.headers_from_env.items():
        value = os.environ.get(env)
        if value is None:
            raise AgentLoadError(
                f"mcpServers[{spec.id}]: header {header!r} is read from environment variable {env}, which is "
                "not set; set it (in a cluster, from a Secret)"
            )
        headers[header] = value
    timeout = spec.timeout.total_seconds() if spec.timeout is not None else None
    options: dict[str, Any] = {"id": spec.id}
    if timeout is not None:
        options.update(init_timeout=timeout, read_timeout=timeout)
    if infer_transport_type_from_url(spec.url) == spec.transport:
        toolset: AbstractToolset[Any] = MCPToolset(spec.url, headers=headers or None, **options)
    else:
        # The URL alone would pick the other transport: build the one the manifest asks for.
        from fastmcp import Client
        from fastmcp.client.transports import SSETransport, StreamableHttpTransport

        transport_type = SSETransport if spec.transport == "sse" else StreamableHttpTransport
        transport = transport_type(spec.url, headers=headers or None)
        client_options = {"timeout": timeout, "init_timeout": timeout} if timeout is not None else {}
        toolset = MCPToolset(Client(transport, **client_options), id=spec.id)
    if spec.tool_filter is not None:
        include = set(spec.tool_filter.include) if spec.tool_filter.include is not None else None
        exclude = set(spec.tool_filter.exclude)
        toolset = toolset.filtered(
            lambda ctx, tool: (include is None or tool.name in include) and tool.name not in exclude
        )
    # Before the prefix: approval rules name MCP tools as the server does.
    toolset = requiring_approval(toolset, spec.id, approval_rules)
    if spec.tool_prefix:
        toolset = toolset.prefixed(spec.tool_prefix)
    return toolset


def tool_metadata_capabilities(
    config: RuntimeConfig, tools: Mapping[str, Mapping[str, ActivityConfig | Literal[False]]]
) -> list[AbstractCapability[Any]]:
    """Per-tool activity settings, as the `temporal` tool metadata pydantic-ai reads."""
    prefixes = {s.id: s.tool_prefix for s in config.agent.mcp_servers if s.tool_prefix}
    capabilities: list[AbstractCapability[Any]] = []
    for toolset_id, by_tool in tools.items():
        for tool, activity in by_tool.items():
            # Manifests name MCP tools as the server does; the agent sees them with the server's prefix.
            prefix = prefixes.get(toolset_id)
            name = f"{prefix}_{tool}" if prefix else tool
            capabilities.append(SetToolMetadata(tools=[name], temporal=activity))
    return capabilities
