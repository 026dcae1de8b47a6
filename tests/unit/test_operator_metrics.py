"""The operator's /metrics: the exposition text (pure), and the real endpoint served over HTTP."""

from __future__ import annotations

import urllib.request

import pytest

from durable_agents_operator.approval_status import Waits
from durable_agents_operator.metrics import CONTENT_TYPE, exposition, metrics_server
from durable_agents_runtime.devserver import free_port


def waits(**by_agent: int) -> Waits:
    result = Waits.empty()
    for key, count in by_agent.items():
        namespace, agent = key.split("__")
        for i in range(count):
            result.mark((namespace, agent), f"{key}-{i}", waiting=True)
    return result


def test_the_gauge_counts_waiting_runs_per_agent_sorted_and_drops_agents_with_none() -> None:
    current = waits(team_b__files=2, team_a__mail=1)
    current.mark(("team_a", "mail"), "team_a__mail-0", waiting=False)

    text = exposition(current)

    assert text.splitlines() == [
        "# HELP durable_agents_runs_awaiting_decision AgentRuns whose workflow waits for a decision on a "
        "tool call, by agent.",
        "# TYPE durable_agents_runs_awaiting_decision gauge",
        'durable_agents_runs_awaiting_decision{namespace="team_b",agent="files"} 2',
    ]


def test_label_values_are_escaped() -> None:
    current = Waits.empty()
    current.mark(('n"s', "a\\b"), "uid", waiting=True)
    assert 'namespace="n\\"s",agent="a\\\\b"} 1' in exposition(current)


@pytest.mark.anyio
async def test_the_endpoint_serves_the_current_counts_and_port_zero_serves_nothing() -> None:
    import anyio

    current = waits(ns__files=1)
    port = free_port()
    async with metrics_server(lambda: current, "127.0.0.1", port):

        def get() -> tuple[str, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.headers["Content-Type"], response.read().decode()

        content_type, body = await anyio.to_thread.run_sync(get)
        current.mark(("ns", "files"), "ns__files-1", waiting=True)
        _, later = await anyio.to_thread.run_sync(get)
    assert content_type == CONTENT_TYPE
    assert 'durable_agents_runs_awaiting_decision{namespace="ns",agent="files"} 1' in body
    assert 'durable_agents_runs_awaiting_decision{namespace="ns",agent="files"} 2' in later
    async with metrics_server(lambda: current, "127.0.0.1", 0):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.anyio
async def test_an_endpoint_closes_its_port_when_the_block_ends_even_on_error_and_a_taken_port_raises() -> (
    None
):
    import socket

    import anyio
    from aiohttp import web

    from durable_agents_operator.http_endpoint import serving

    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"hello": "there"})

    def get(port: int, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read()

    port = free_port()
    with pytest.raises(RuntimeError, match="inside"):
        async with serving({"/hello": hello}, "127.0.0.1", port):
            assert await anyio.to_thread.run_sync(get, port, "/hello") == b'{"hello": "there"}'
            raise RuntimeError("inside")
    with pytest.raises(OSError):  # closed: connection refused
        await anyio.to_thread.run_sync(get, port, "/hello")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            async with serving({"/hello": hello}, "127.0.0.1", taken.getsockname()[1]):
                pytest.fail("served on a port another socket holds")
