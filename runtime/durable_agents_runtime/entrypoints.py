"""Imports of user code named by entrypoint (`package.module:attribute`): agents, toolsets, models."""

from __future__ import annotations

import importlib
from typing import Any

from durable_agents_runtime.errors import AgentLoadError

__all__ = ["import_object"]


def import_object(path: str, *, what: str) -> Any:
    """Import `package.module:attribute` (the attribute may be dotted)."""
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentLoadError(
            f"{what} {path!r}: cannot import module {module_name!r} ({exc}); install the package or add its "
            "directory to PYTHONPATH"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentLoadError(
                f"{what} {path!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return obj
