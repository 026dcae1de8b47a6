"""Imports of user code named by entrypoint (`package.module:attribute`): agents, toolsets, models."""

from __future__ import annotations

import importlib
from typing import Any

from durable_agents_runtime.errors import AgentLoadError

__all__ = ["import_object"]


def import_object(path: str, *, what: str) -> Any:
    """Import `package.module:attribute` (the attribute may be dotted).

    Whatever goes wrong becomes an `AgentLoadError` naming `what`, the entrypoint and the fix: a module
    that is not installed, or one that raises while it is imported (any exception: its type, message
    and the file and line that raised it, not a traceback).
    """
    import traceback

    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise AgentLoadError(
                f"{what} {path!r}: cannot import module {module_name!r} ({exc}); install the package or add "
                "its directory to PYTHONPATH"
            ) from exc
        raise AgentLoadError(
            f"{what} {path!r}: module {module_name!r} imports {missing!r}, which is not installed: install "
            "it where the worker runs (the agent's image, or this environment)"
        ) from exc
    except (Exception, SystemExit) as exc:  # a module may raise anything at import, sys.exit() included
        if isinstance(exc, SyntaxError) and exc.filename:
            where = f"{exc.filename}:{exc.lineno}"
        else:
            # The innermost frame is where it was raised; importlib's own frames say nothing useful.
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "an unknown line"
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise AgentLoadError(
            f"{what} {path!r}: importing module {module_name!r} raised {detail} (at {where}); fix the module "
            "so that importing it succeeds"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentLoadError(
                f"{what} {path!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return obj
