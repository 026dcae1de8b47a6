"""The API layer's errors and the one formatter of validation errors. Each message names the field."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["ConfigError", "DurableAgentsError", "format_validation"]


class DurableAgentsError(Exception):
    """Base of every error the durable-agents packages raise on purpose."""


class ConfigError(DurableAgentsError):
    """A manifest or runtime config is invalid; the message names each bad field."""

    @classmethod
    def from_validation(cls, exc: ValueError, *, source: str, prefix: str = "") -> ConfigError:
        return cls(f"invalid {source}:\n{format_validation(exc, prefix=prefix)}")


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
