"""Small helpers shared by the end-to-end tests: polling, conditions, manifests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Json = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
API_VERSION = "durable-agents.dev/v1alpha1"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
    """Poll *check* until it returns something truthy; fail naming *what* after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pod_ready(pod: Json) -> bool:
    """Whether a pod object reports the Ready condition."""
    return condition(pod, "Ready") == "True"


def condition(obj: Json, kind: str, field: str = "status") -> str | None:
    """*field* (``status``, ``reason``, ``message``) of the condition *kind* of *obj*, None if absent."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get(field)
    return None


def alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def load_example(name: str) -> Json:
    """The one document of ``examples/<name>``."""
    return yaml.safe_load((EXAMPLES / name).read_text())


def service_account_of(pid: int) -> str:
    """The Kubernetes user a process acts as: the subject of the token in its ``KUBECONFIG``."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    config = json.loads(Path(env["KUBECONFIG"]).read_text())
    token = config["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["sub"]


def temporal_cli(address: str, *args: str) -> str:
    """Run the real ``temporal`` CLI against *address* (the ``default`` namespace); its stdout."""
    from durable_agents_runtime.devserver import find_temporal_binary

    result = subprocess.run(
        [find_temporal_binary(), *args, "--address", address, "--namespace", "default"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"temporal {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def workflows(address: str, query: str) -> list[Json]:
    """``temporal workflow list --query`` as JSON objects."""
    output = temporal_cli(address, "workflow", "list", "--query", query, "-o", "jsonl")
    return [json.loads(line) for line in output.splitlines() if line.strip()]
