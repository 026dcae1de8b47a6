"""`DurableAgent` manifests (YAML, several documents per file allowed) → runtime configs for local use.

`durable-agents dev` and `run`/`status` read the same manifests a cluster applies. Each document is validated
with the operator's API model, so a manifest that works here is one the cluster accepts, and an invalid one
fails with a `ConfigError` naming the file, the document and every bad field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_agents_api.config import RuntimeConfig, TemporalSpec
from durable_agents_api.errors import ConfigError

__all__ = ["LoadedManifest", "load_manifests", "runtime_config"]

_KIND = "DurableAgent"


@dataclass(frozen=True)
class LoadedManifest:
    """One `DurableAgent` document and where it came from."""

    agent: Any
    """The validated `durable_agents_api.resources.DurableAgent`."""
    source: str
    """`path` or `path (document N)` for files with several documents."""

    @property
    def name(self) -> str:
        """The agent's name (`spec.agent.name`)."""
        return self.agent.spec.agent.name

    @property
    def task_queue(self) -> str:
        """The task queue: `spec.temporal.taskQueue`, or `<namespace>.<name>` (namespace `default`)."""
        return self.agent.task_queue


def _documents(path: Path) -> list[tuple[int, Any]]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {str(path)!r}: {exc.strerror}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid {path}: not valid YAML: {exc}") from None
    return [(index, doc) for index, doc in enumerate(docs, start=1) if doc is not None]


def load_manifests(paths: Iterable[str | Path]) -> list[LoadedManifest]:
    """Every `DurableAgent` document in `paths`; other kinds in the files are skipped."""
    from durable_agents_api.resources import DurableAgent

    loaded: list[LoadedManifest] = []
    for path in map(Path, paths):
        documents = _documents(path)
        for index, doc in documents:
            source = f"{path} (document {index})" if len(documents) > 1 else str(path)
            if not isinstance(doc, dict):
                raise ConfigError(f"invalid {source}: expected a mapping with apiVersion, kind and spec")
            if doc.get("kind", _KIND) != _KIND:
                continue
            try:
                manifest = LoadedManifest(DurableAgent.model_validate(doc), source)
            except ValueError as exc:
                raise ConfigError.from_validation(exc, source=source) from None
            # Checks that span the whole runtime config (e.g. activity settings naming unknown toolsets).
            runtime_config(manifest, address="127.0.0.1:7233")
            loaded.append(manifest)
    if not loaded:
        names = ", ".join(map(str, paths))
        raise ConfigError(f"no DurableAgent documents in {names}: add one (kind: DurableAgent)")
    return loaded


def runtime_config(manifest: LoadedManifest, *, address: str, namespace: str = "default") -> RuntimeConfig:
    """The runtime config a worker for `manifest` uses against the Temporal at `address`/`namespace`."""
    temporal = TemporalSpec.model_validate(
        {"address": address, "namespace": namespace, "taskQueue": manifest.task_queue}
    )
    try:
        return manifest.agent.spec.runtime_config(
            temporal=temporal, namespace=manifest.agent.metadata.namespace or "default"
        )
    except ValueError as exc:
        raise ConfigError.from_validation(exc, source=manifest.source, prefix="spec") from None
