"""`durable-agents`: dev · worker · run · result · status · runs · approve · deny · answer · replay ·
chat · sessions · history · schedules · trigger · gateway · operator · crds.

The top layer: it may import the API layer, the runtime and the operator. Each verb lives in its own module
(`dev`, `worker`, `runs`, `status`, `decisions`, `replay`, `chat`) with its parser; heavy modules
(pydantic-ai, temporalio, the operator) are imported inside each verb, so `--help` is instant and a worker
pod pays only for what `worker` needs.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
from collections.abc import Sequence

from durable_agents_cli import chat, decisions, dev, gateway, replay, runs, schedules, status, worker
from durable_agents_cli.targeting import EXIT_FAILED, EXIT_USAGE

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The `durable-agents` argument parser: each verb module adds its own."""
    parser = argparse.ArgumentParser(
        prog="durable-agents", description="Durable pydantic-ai agents on Temporal."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    dev.add_parser(verbs)
    worker.add_parser(verbs)
    runs.add_parsers(verbs)
    status.add_parser(verbs)
    decisions.add_parsers(verbs)
    replay.add_parser(verbs)
    chat.add_parsers(verbs)
    schedules.add_parsers(verbs)
    gateway.add_parser(verbs)
    verbs.add_parser("operator", help="run the kopf operator", add_help=False)
    verbs.add_parser("crds", help="print (or --write) the generated CRDs", add_help=False)
    return parser


def _delegate(verb: str, argv: Sequence[str]) -> int:
    if verb == "operator":
        try:
            from durable_agents_operator.main import run as run_operator
        except ModuleNotFoundError as error:
            if error.name not in ("kopf", "kubernetes"):
                raise
            from durable_agents_api.errors import ConfigError

            # The runtime image leaves out the operator's dependencies (pyproject's `operator` extra).
            raise ConfigError(
                f"`durable-agents operator` needs {error.name}, which this installation lacks: install "
                "the operator extra (pip install 'durable-agents[operator]') or use the operator image"
            ) from error

        return run_operator(list(argv)) or 0
    from durable_agents_operator.crd import main as crds_main

    return crds_main(list(argv)) or 0


def _dispatch(args: argparse.Namespace) -> int:
    if not getattr(args, "renders", True):
        return args.handler(args)
    from durable_agents_cli.render import Renderer

    result = args.handler(args, Renderer())
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def _exit(code: int) -> None:
    """Leave without interpreter finalization once a verb is done.

    A process that ran a Temporal client can abort at exit (PyGILState_Release, temporalio/sdk-python#300),
    turning a success into a crash; everything that matters is flushed here first.
    """
    logfire = sys.modules.get("logfire")  # None where `import_gate` kept Logfire out
    if logfire is not None:
        logfire.force_flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `durable-agents` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("operator", "crds"):
        # Their flags belong to the operator's own parsers.
        sys.exit(_delegate(argv[0], argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    chat.take_message(parser, args, extra)
    from durable_agents_api.errors import ConfigError, DurableAgentsError
    from durable_agents_runtime.errors import AgentLoadError

    try:
        code = _dispatch(args)
    except (ConfigError, AgentLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_USAGE
    except DurableAgentsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    _exit(code)
