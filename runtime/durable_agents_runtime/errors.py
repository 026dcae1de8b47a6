"""The runtime's errors. Each message names what is wrong and how to fix it."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "AgentLoadError",
    "AgentNotServedError",
    "ConfigError",
    "DevServerError",
    "DurableAgentsError",
    "TemporalConnectError",
    "format_validation",
]


class DurableAgentsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(DurableAgentsError):
    """A manifest or runtime config is invalid; the message names each bad field."""

    @classmethod
    def from_validation(cls, exc: ValueError, *, source: str, prefix: str = "") -> ConfigError:
        return cls(f"invalid {source}:\n{format_validation(exc, prefix=prefix)}")


class AgentLoadError(DurableAgentsError):
    """The agent could not be built from its spec (bad entrypoint, unknown model, missing toolset)."""


class TemporalConnectError(DurableAgentsError):
    """The Temporal frontend could not be reached or refused the connection."""


class DevServerError(DurableAgentsError):
    """The embedded Temporal dev server's binary is missing, or the server did not start; the message
    holds the end of its log."""


class AgentNotServedError(DurableAgentsError):
    """A workflow reached a worker that does not serve its task queue's agent (a misrouted task queue)."""


def format_validation(exc: ValueError, *, prefix: str = "") -> str:
    """One line per error: `  spec.agent.name: <what is wrong>` using the API's (camelCase) field paths."""
    if not isinstance(exc, ValidationError):
        return f"  {prefix or '(root)'}: {exc}"
    lines = []
    for error in exc.errors(include_url=False):
        # `field_error` (config.py) locates cross-field errors below the model that raised them.
        field = (error.get("ctx") or {}).get("field_path")
        parts = [*(prefix.split(".") if prefix else []), *error["loc"], *(field.split(".") if field else [])]
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in parts).replace(".[", "[")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field: remove it or check its spelling"
        elif error["type"] == "missing":
            message = "required field is missing"
        lines.append(f"  {path or '(root)'}: {message}")
    return "\n".join(lines)
