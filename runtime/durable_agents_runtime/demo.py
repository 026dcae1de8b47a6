"""Two deterministic, offline tools for examples/hello.yaml (`durable_agents_runtime.demo:toolset`).

The answers are made up but stable: the same city always gets the same weather and the same UTC offset,
so the demo and the tests need no network and give repeatable output.
"""

from __future__ import annotations

import zlib

from pydantic_ai import FunctionToolset

__all__ = ["TOOLSET_ID", "get_local_time", "get_weather", "toolset"]

TOOLSET_ID = "demo"

_CONDITIONS = ("sunny", "partly cloudy", "overcast", "light rain", "windy", "clear")
# Offsets from UTC in hours for a few cities; any other city gets one derived from its name.
_OFFSETS = {"paris": 1, "london": 0, "new york": -5, "tokyo": 9, "sydney": 11, "berlin": 1}


def _seed(city: str) -> int:
    return zlib.crc32(city.strip().lower().encode())


def get_weather(city: str) -> str:
    """Current weather in `city`: conditions and temperature in °C."""
    seed = _seed(city)
    return f"{_CONDITIONS[seed % len(_CONDITIONS)]}, {5 + seed % 25} °C in {city}"


def get_local_time(city: str) -> str:
    """Local time in `city` (24-hour clock) at the demo's fixed moment, 12:00 UTC."""
    offset = _OFFSETS.get(city.strip().lower(), _seed(city) % 25 - 12)
    return f"{(12 + offset) % 24:02d}:00 in {city} (UTC{offset:+d})"


toolset: FunctionToolset[None] = FunctionToolset([get_weather, get_local_time], id=TOOLSET_ID)
"""The demo toolset; its id `demo` matches the manifest's toolset id."""
