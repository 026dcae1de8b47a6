"""Keeps Logfire out of a worker process whose spans could go nowhere.

pydantic-ai imports `logfire_api`, which imports the whole `logfire` package whenever it is installed
(about a fifth of a worker's import time), and pydantic loads Logfire's plugin at its first model. A
worker that exports no spans needs neither: `keep_logfire_out` runs before anything imports pydantic,
reads the raw runtime config, and, when no span could leave the process, makes `import logfire` fail so
`logfire_api` falls back to its no-op shims, and turns the plugin off. `spans_may_leave` is the one rule
for "could a span leave the process", used here and by `observability` once the config is validated.

No pydantic and no pydantic-ai here: this module runs before them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["OTLP_ENDPOINT_ENV", "keep_logfire_out", "spans_may_leave"]

OTLP_ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PLUGIN_SWITCH = "PYDANTIC_DISABLE_PLUGINS"
_LOGFIRE_PLUGIN = "logfire-plugin"


def spans_may_leave(observability: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether spans would go anywhere, from the runtime config's `observability` section as JSON
    (camelCase, defaults as the schema has them): Logfire on and either an OTLP endpoint (the config's or
    the standard `OTEL_EXPORTER_OTLP_*` variables) or `logfire.send` with a `LOGFIRE_TOKEN`."""
    logfire = observability.get("logfire") or {}
    if not logfire.get("enabled", True):
        return False
    if observability.get("otlpEndpoint") or any(environ.get(name) for name in OTLP_ENDPOINT_ENV):
        return True
    return bool(logfire.get("send", True)) and bool(environ.get("LOGFIRE_TOKEN"))


def keep_logfire_out(
    config_path: str | os.PathLike[str], environ: MutableMapping[str, str] = os.environ
) -> bool:
    """Before pydantic is imported: keep Logfire out of this process if the config at `config_path` sends
    no span anywhere. Whether it did (not when Logfire is already imported, or the file does not read as
    JSON: the real load reports that)."""
    if "logfire" in sys.modules:
        return False
    try:
        raw = json.loads(Path(config_path).read_text())
    except (OSError, ValueError):
        return False
    observability = raw.get("observability") if isinstance(raw, dict) else None
    if not isinstance(observability, dict):
        observability = {}
    if spans_may_leave(observability, environ):
        return False
    sys.modules["logfire"] = None  # pyright: ignore[reportArgumentType]
    disabled = environ.get(_PLUGIN_SWITCH, "")
    if disabled.lower() not in ("__all__", "1", "true"):
        environ[_PLUGIN_SWITCH] = ",".join(p for p in (disabled, _LOGFIRE_PLUGIN) if p)
    return True
