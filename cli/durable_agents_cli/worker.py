"""`durable-agents worker`: serve one agent from its runtime config (what the worker pods run)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from durable_agents_cli.targeting import STARTED

__all__ = ["add_parser"]


def worker_verb(args: argparse.Namespace) -> int:
    import logging

    from durable_agents_api.config_location import CONFIG_FILE_KEY, CONFIG_MOUNT_DIR, ENV_CONFIG
    from durable_agents_runtime.import_gate import keep_logfire_out

    path = args.config or os.environ.get(ENV_CONFIG)
    if path is None and (Path(CONFIG_MOUNT_DIR) / CONFIG_FILE_KEY).is_file():
        path = str(Path(CONFIG_MOUNT_DIR) / CONFIG_FILE_KEY)
    if path is not None:
        # Before pydantic loads its plugins: a worker whose spans go nowhere never imports Logfire.
        keep_logfire_out(path)

    from durable_agents_api.config import RuntimeConfig
    from durable_agents_api.errors import ConfigError

    if path is None:
        raise ConfigError(f"no runtime config: pass --config PATH or set {ENV_CONFIG}")
    if not Path(path).is_file():
        raise ConfigError(f"runtime config {path!r} does not exist: check --config / {ENV_CONFIG}")
    config = RuntimeConfig.from_file(path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from durable_agents_runtime.worker import serve

    asyncio.run(serve(config, started=STARTED))
    return 0


def add_parser(verbs: argparse._SubParsersAction) -> None:
    worker = verbs.add_parser("worker", help="run a worker from a runtime config (what pods run)")
    worker.add_argument("--config", help="RuntimeConfig file (JSON or YAML; default: $DURABLE_AGENTS_CONFIG)")
    worker.set_defaults(handler=worker_verb, renders=False)
