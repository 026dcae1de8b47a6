"""Where a worker finds its runtime config: names only, importable before pydantic (the worker decides
what to import from the file's contents). `contract` re-exports them."""

__all__ = ["CONFIG_FILE_KEY", "CONFIG_MOUNT_DIR", "ENV_CONFIG"]

ENV_CONFIG = "DURABLE_AGENTS_CONFIG"
"""Path of the RuntimeConfig file (JSON or YAML) the worker reads."""
CONFIG_MOUNT_DIR = "/etc/durable-agents"
"""Where the operator mounts the agent's ConfigMap in a worker pod."""
CONFIG_FILE_KEY = "runtime.json"
"""The ConfigMap key (and file name) of the rendered runtime config."""
