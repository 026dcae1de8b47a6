"""`durable-agents crds`: print the CRDs, write them into the repository, or check the files there."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .kinds import KINDS
from .render import HEADER, render_all, render_yaml

__all__ = ["CRD_DIRS", "main"]

# Where `--write` puts the files, relative to the repository root.
CRD_DIRS = ("crds", "charts/durable-agents/crds")


def _expected_files(root: Path) -> dict[Path, str]:
    rendered = render_all()
    return {root / directory / name: text for directory in CRD_DIRS for name, text in rendered.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """`durable-agents crds [--write | --check] [--root DIR]`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="durable-agents crds",
        description="Print the CustomResourceDefinitions generated from the API models, as multi-document "
        "YAML.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--write", action="store_true", help=f"write <plural>.yaml into {' and '.join(CRD_DIRS)} under --root"
    )
    action.add_argument(
        "--check", action="store_true", help="exit 1, listing the files, when the files on disk differ"
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="repository root (default: the current directory)"
    )
    args = parser.parse_args(argv)
    if args.write:
        for path, text in _expected_files(args.root).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path}", file=sys.stderr)
        return 0
    if args.check:
        stale = [
            path
            for path, text in _expected_files(args.root).items()
            if not path.exists() or path.read_text() != text
        ]
        if stale:
            listing = "\n".join(f"  {path}" for path in stale)
            print(f"CRDs out of date with the API models:\n{listing}\nrun `make crds`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write("---\n".join(render_yaml(kind).removeprefix(HEADER) for kind in KINDS))
    return 0
