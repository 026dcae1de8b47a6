"""The HTTP gateway: REST and Server-Sent Events over `durable_agents_runtime.client`, an
OpenAI-compatible chat-completions endpoint, the OpenAPI document and the web console.

`durable-agents dev` starts one next to its workers; `durable-agents gateway` serves one on its own.
"""

from durable_agents_runtime.gateway.app import Gateway, GatewaySettings, build_app
from durable_agents_runtime.gateway.auth import (
    Access,
    Authorizer,
    Forbidden,
    LocalTokens,
    Principal,
    Unauthenticated,
)
from durable_agents_runtime.gateway.catalog import AgentEntry, Catalog, KnownHealth, StaticCatalog
from durable_agents_runtime.gateway.server import GatewayServer

__all__ = [
    "Access",
    "AgentEntry",
    "Authorizer",
    "Catalog",
    "Forbidden",
    "Gateway",
    "GatewayServer",
    "GatewaySettings",
    "KnownHealth",
    "LocalTokens",
    "Principal",
    "StaticCatalog",
    "Unauthenticated",
    "build_app",
]
