"""Connecting to Temporal from a `TemporalSpec`, honouring Temporal's standard environment variables.

The spec (from the runtime config or the CLI flags) comes first; Temporal's own environment variables
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, read by
`temporalio.envconfig`) override it, as they do for every Temporal tool. A config file is read only when
`TEMPORAL_CONFIG_FILE` names one. `temporal.apiKeyEnv` names another variable holding the API key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client, Plugin
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from durable_agents_api.config import TemporalSpec
from durable_agents_api.errors import ConfigError
from durable_agents_runtime.connect_errors import RUNTIME_SETTINGS, SettingNames, explain_connect_error
from durable_agents_runtime.errors import TemporalConnectError

__all__ = ["connect", "connect_options"]


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"temporal.tls.{field}: cannot read {path!r} ({exc.strerror}); check the mount"
        ) from None


def connect_options(
    spec: TemporalSpec, *, use_env: bool = True, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments for `Client.connect`: the spec, Temporal's environment variables over it, then
    `overrides` (e.g. explicit command-line flags) over both."""
    options: dict[str, Any] = {"target_host": spec.address, "namespace": spec.namespace}
    if spec.tls is not None:
        tls = spec.tls
        options["tls"] = TLSConfig(
            domain=tls.server_name,
            server_root_ca_cert=_read(tls.ca_file, "caFile") if tls.ca_file else None,
            client_cert=_read(tls.client_cert_file, "clientCertFile") if tls.client_cert_file else None,
            client_private_key=_read(tls.client_key_file, "clientKeyFile") if tls.client_key_file else None,
        )
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise ConfigError(
                f"temporal.apiKeyEnv names {spec.api_key_env}, which is not set: set it to the API key"
            )
        options["api_key"] = key
        options.setdefault("tls", True)
    if use_env:
        from temporalio.envconfig import ClientConfigProfile

        profile = ClientConfigProfile.load(disable_file=not os.environ.get("TEMPORAL_CONFIG_FILE"))
        from_env = profile.to_client_connect_config()
        # With an API key in the environment the profile says `tls: True`; the spec's TLSConfig (its CA,
        # its server name) says more and stays.
        if from_env.get("tls") is True and isinstance(options.get("tls"), TLSConfig):
            del from_env["tls"]
        options.update(from_env)
    options.update(overrides or {})
    return options


async def connect(
    spec: TemporalSpec,
    *,
    plugins: Sequence[Plugin] = (),
    runtime: Runtime | None = None,
    use_env: bool = True,
    overrides: Mapping[str, Any] | None = None,
    settings: SettingNames = RUNTIME_SETTINGS,
) -> Client:
    """Connect a client with pydantic-ai's plugin (payload converter, sandbox pass-through) and `plugins`.

    A failure raises `TemporalConnectError` naming the setting to fix, in the words of `settings`.
    """
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    options = connect_options(spec, use_env=use_env, overrides=overrides)
    try:
        return await Client.connect(plugins=[PydanticAIPlugin(), *plugins], runtime=runtime, **options)
    except RuntimeError as exc:
        # Never echo options: they may hold an API key.
        tls = options.get("tls")
        raise TemporalConnectError(
            explain_connect_error(
                str(exc),
                target=str(options["target_host"]),
                namespace=str(options["namespace"]),
                tls=bool(tls) or bool(options.get("api_key")),
                ca=isinstance(tls, TLSConfig) and tls.server_root_ca_cert is not None,
                client_cert=isinstance(tls, TLSConfig) and tls.client_cert is not None,
                api_key=bool(options.get("api_key")),
                settings=settings,
            )
        ) from None
