"""The ConfigMap holding an agent's runtime config (`runtime.json`), which the worker pods mount."""

from __future__ import annotations

from typing import Any

from durable_agents_api.config import RuntimeConfig
from durable_agents_api.contract import CONFIG_FILE_KEY
from durable_agents_operator.naming import LABEL_BUILD_ID, configmap_name, version_configmap_name

from .metadata import object_meta, stable_hash

__all__ = ["build_configmap", "config_hash", "render_config"]


def render_config(config: RuntimeConfig) -> str:
    """The exact text of `runtime.json`: what the worker reads and what the config hash covers."""
    return config.to_json()


def config_hash(config: RuntimeConfig) -> str:
    """sha256 of the rendered config; written on the pod template so a config change rolls the workers."""
    return stable_hash(render_config(config))


def build_configmap(
    *,
    agent: str,
    namespace: str,
    config: RuntimeConfig,
    owner: dict[str, Any],
    build_id: str | None = None,
) -> dict[str, Any]:
    """The ConfigMap `<agent>-runtime` with one key, `runtime.json`; with `build_id`, the config of that
    version (`<agent>-runtime-<build id>`)."""
    name = configmap_name(agent) if build_id is None else version_configmap_name(agent, build_id)
    metadata = object_meta(name=name, namespace=namespace, agent=agent, owner=owner)
    if build_id is not None:
        metadata["labels"][LABEL_BUILD_ID] = build_id
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {CONFIG_FILE_KEY: render_config(config)},
    }
