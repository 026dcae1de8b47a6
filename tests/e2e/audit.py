"""The session apiserver's audit log (`AUDIT_POLICY` in conftest.py): the requests service accounts made."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from .cluster import ControlPlane

__all__ = ["audit_log", "requested_at", "service_account_requests"]


def audit_log(control_plane: ControlPlane) -> Path:
    """Where the session's control plane writes its audit log."""
    return control_plane.workdir / "audit.log"


def service_account_requests(log: Path, user: str | None = None) -> list[dict[str, Any]]:
    """Completed requests of service accounts (of *user* only, when given), oldest first."""
    events = (json.loads(line) for line in log.read_text().splitlines() if line.strip())
    done = [e for e in events if e.get("stage") == "ResponseComplete" and "user" in e]
    return [e for e in done if user is None or e["user"].get("username") == user]


def requested_at(event: dict[str, Any]) -> float:
    """When the apiserver received the request (seconds since the epoch)."""
    stamp = event["requestReceivedTimestamp"].replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()
