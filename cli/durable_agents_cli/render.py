"""Terminal output of the CLI: rich when stdout is a terminal, plain lines otherwise (logs, pipes, tests)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from durable_agents_api.contract import RunOutput, ToolCallRecord

__all__ = ["Renderer"]


def _args(args: dict[str, Any] | str | None) -> str:
    if args is None:
        return ""
    if isinstance(args, str):
        return args
    return ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in args.items())


def _call(record: ToolCallRecord) -> str:
    return f"{record.tool_name}({_args(record.args)})"


class Renderer:
    """Prints runs, events and health; `rich` decides whether to use colours and tables."""

    def __init__(self, stream: TextIO | None = None, *, rich: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty() if rich is None else rich
        self._console: Console | None = None
        self._in_text = False

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """One line of text (styled on a terminal)."""
        self._end_text()
        if self.rich:
            self.console.print(text, style=style, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def run_output(self, output: RunOutput, *, tool_calls: bool = True) -> None:
        """The tool calls a run made, its output and its usage."""
        self._end_text()
        if tool_calls:
            self.line(f"Tool calls ({len(output.tool_calls)}):", style="bold")
            for record in output.tool_calls:
                self.line(f"  {_call(record)}", style="cyan")
        self.line("Output:", style="bold")
        if self.rich and not isinstance(output.output, str):
            from rich.json import JSON

            self.console.print(JSON(output.output_text))
        else:
            self.line(output.output_text)
        usage = output.usage
        self.line(
            f"Usage: {usage.requests} requests, {usage.input_tokens} input tokens, "
            f"{usage.output_tokens} output tokens, {usage.tool_calls} tool calls"
            + (f", estimated cost ${output.cost_usd:.6f}" if output.cost_usd is not None else ""),
            style="dim",
        )
        for child in output.children:
            self.line(f"  called {child.agent}: run {child.workflow_id} (usage included above)", style="dim")

    def event(self, event: Any) -> None:
        """One live run event: tool calls and results on their own lines, text as it streams."""
        from pydantic_ai.messages import (
            FunctionToolCallEvent,
            FunctionToolResultEvent,
            PartDeltaEvent,
            PartStartEvent,
            TextPart,
            TextPartDelta,
        )

        if isinstance(event, FunctionToolCallEvent):
            self.line(f"→ {event.part.tool_name}({_args(event.part.args_as_dict())})", style="cyan")
        elif isinstance(event, FunctionToolResultEvent):
            content = event.part.model_response_str()
            self.line(f"← {event.part.tool_name}: {content}", style="green")
        elif isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            self._text(event.part.content)
        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
            self._text(event.delta.content_delta)

    def _text(self, text: str) -> None:
        if not text:
            return
        self._in_text = True
        self.stream.write(text)
        self.stream.flush()

    def end_text(self) -> None:
        """End streamed text with a newline, if any was written since the last line."""
        self._end_text()

    def _end_text(self) -> None:
        if self._in_text:
            self._in_text = False
            self.stream.write("\n")
            self.stream.flush()

    def health(self, health: Any) -> None:
        """An `AgentHealth` (from `durable_agents_runtime.health.read_health`)."""
        rows = [
            ("task queue", health.task_queue),
            ("workers", health.workers),
            ("backlog", f"{health.backlog_count} (oldest {health.backlog_age_seconds:.1f}s)"),
            ("running", health.running),
            ("completed", health.completed),
            ("failed", health.failed),
        ]
        failure = health.last_failure
        if failure is not None:
            rows.append(("last failure", f"{failure.workflow_id} at {failure.time}: {failure.message}"))
        if health.error:
            rows.append(("error", health.error))
        if self.rich:
            from rich.table import Table

            table = Table(show_header=False, box=None)
            for key, value in rows:
                table.add_row(key, str(value), style=None)
            self.console.print(table)
        else:
            for key, value in rows:
                print(f"{key}: {value}", file=self.stream, flush=True)
