"""The command line every benchmark shares: `--quick`, then a Markdown table and the machine's load."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bench._harness import stop_on_sigterm
from bench._stats import Row, machine_line, markdown_table

__all__ = ["run_cli"]


def run_cli(doc: str | None, run: Callable[[bool], Coroutine[Any, Any, list[Row]]], quick_help: str) -> None:
    """Parse `--quick`, run the benchmark, print its rows and the machine line before and after."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args()
    stop_on_sigterm()
    start = machine_line()
    rows = asyncio.run(run(args.quick))
    print(markdown_table(rows))
    print(f"\nstart: {start}\nend:   {machine_line()}")
