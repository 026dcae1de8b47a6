"""Where a worker's CPU goes under load: py-spy samples a worker (all threads) during the 20-concurrent loop.

Needs py-spy, which is not a project dependency (it is a profiler, not a test tool):
`uv pip install --target /tmp/proftools py-spy` then `PATH=/tmp/proftools/bin:$PATH`.
py-spy sees every thread, which matters here: workflow activations run on the worker's thread pool,
where single-thread profilers (cProfile, pyinstrument) do not look.

Run: `.venv/bin/python -m bench.profile_worker [ours|baseline] [--seconds 20] [--overrides JSON]`.
Prints the top functions by inclusive and by own samples, and the share of samples per top-level package.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import subprocess
from pathlib import Path

from bench._harness import connect, dev_server, stop_on_sigterm, wait_for_poller, within, workdir
from bench._targets import baseline_target, ours_target
from bench.throughput import closed_loop

__all__ = ["summarize_collapsed"]


# Waits that py-spy does not always recognise as idle (a thread-pool thread blocked on its queue, the
# event loop in epoll): left in, they would dominate the report of a busy worker.
_IDLE_LEAVES = ("_worker (concurrent/futures/thread.py:81)", "EpollSelector.select (selectors.py:468)")


def summarize_collapsed(lines: list[str], top: int = 25) -> str:
    """Report of py-spy's collapsed stacks (`frame;frame;... count` per line), idle waits left out."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if frames[-1] in _IDLE_LEAVES:
            continue
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        for package in {_package(frame) for frame in frames}:
            packages[package] += count
    if not total:
        return "no samples"
    out = [f"{total} busy samples"]
    for title, counter in (("inclusive", inclusive), ("own", own), ("inclusive, by package", packages)):
        out.append(f"\n-- top {title} --")
        out += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(out)


def _package(frame: str) -> str:
    # Frames look like `function (package/module.py:line)` or `function (module.py:line)`.
    path = frame.rpartition("(")[2].rstrip(")")
    head = path.split("/", 1)[0]
    return head.split(".py:", 1)[0]


async def _profile(side: str, seconds: float, overrides: dict[str, object], out: Path) -> None:
    target = ours_target(overrides=overrides) if side == "ours" else baseline_target()
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy not found on PATH: see this module's docstring")
    with workdir("bench-profile-") as work, dev_server(work) as server:
        client = await connect(server.address)
        worker = target.worker(server.address, "bench-profile", work).start()
        try:
            await wait_for_poller(client, "bench-profile", worker.pid, timeout=120, worker=worker)
            pids = (worker.pid, server.process.pid)
            await within(closed_loop(client, target, "bench-profile", 10, 30, pids), 180, worker, "warm-up")
            record = subprocess.Popen(
                [py_spy, "record", "--pid", str(worker.pid), "--duration", str(int(seconds)), "--rate", "200",
                 "--format", "raw", "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            runs = 0
            while record.poll() is None:
                await within(closed_loop(client, target, "bench-profile", 20, 40, pids), 180, worker, "load")
                runs += 40
            print(f"{runs} runs during the profile")
        finally:
            worker.stop()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("side", choices=["ours", "baseline"], nargs="?", default="ours")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--overrides", default="{}", help="RuntimeConfig overrides for ours, as JSON")
    parser.add_argument("--output", default="/tmp/bench-profile.txt", help="collapsed stacks file")
    args = parser.parse_args()
    stop_on_sigterm()
    out = Path(args.output)
    asyncio.run(_profile(args.side, args.seconds, json.loads(args.overrides), out))
    print(summarize_collapsed(out.read_text().splitlines()))


if __name__ == "__main__":
    main()
