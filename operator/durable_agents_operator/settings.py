"""The operator's configuration, read once from `DURABLE_AGENTS_*` environment variables at start-up.

The Helm chart sets these variables; their names are part of the chart's contract.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["DEFAULT_WORKER_IMAGE", "OperatorSettings"]

DEFAULT_WORKER_IMAGE = "ghcr.io/durable-agents/runtime:0.1.0"


class OperatorSettings(BaseSettings):
    """Everything the operator reads from its environment. Built once in the entrypoint, then passed down."""

    model_config = SettingsConfigDict(env_prefix="DURABLE_AGENTS_", extra="ignore", frozen=True)

    temporal_address: str = Field(
        "127.0.0.1:7233", description="Temporal frontend used when an agent names no `connectionRef`."
    )
    temporal_namespace: str = Field("default", description="Temporal namespace of the default connection.")
    temporal_api_key: SecretStr | None = Field(
        None, description="API key the operator uses on the default connection (never given to worker pods)."
    )
    temporal_tls: bool = Field(
        False, description="Use TLS on the default connection (implied by any other TLS setting)."
    )
    temporal_tls_server_name: str | None = Field(None, description="TLS server name (SNI).")
    temporal_tls_ca_file: str | None = Field(None, description="CA bundle (PEM file).")
    temporal_tls_cert_file: str | None = Field(None, description="mTLS client certificate (PEM file).")
    temporal_tls_key_file: str | None = Field(None, description="mTLS client key (PEM file).")
    watch_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated namespaces to watch; empty means the whole cluster."
    )
    worker_image: str = Field(DEFAULT_WORKER_IMAGE, description="Image of the worker pods.")
    health_interval: float = Field(10.0, gt=0, description="Seconds between health reads from Temporal.")
    # An idle live worker re-polls only when its long poll returns (up to ~60 s): stay above that.
    live_within: float = Field(
        75.0, gt=0, description="A poller counts as a live worker if it polled within this many seconds."
    )
    temporal_timeout: float = Field(
        5.0, gt=0, description="Seconds any single Temporal call of the operator may take."
    )
    run_poll_interval: float = Field(5.0, gt=0, description="Seconds between checks of a running AgentRun.")
    liveness_port: int = Field(8080, ge=1, le=65535, description="Port of the operator's /healthz endpoint.")
    metrics_port: int = Field(
        9090, ge=0, le=65535, description="Port of the operator's Prometheus /metrics endpoint (0: none)."
    )
    bind_host: str = Field(
        "0.0.0.0", description="Address the operator's /healthz and /metrics endpoints bind to."
    )
    field_manager: str = Field("durable-agents", min_length=1, description="Server-side apply field manager.")
    worker_network_policy: bool = Field(
        False,
        description="Give each agent's workers a NetworkPolicy allowing only what its spec needs "
        "(`builders.networkpolicy`); needs create/patch/delete on networkpolicies.",
    )
    worker_egress: tuple[dict[str, Any], ...] = Field(
        ({"ports": [{"port": 443, "protocol": "TCP"}]},),
        description="Egress rules (JSON list of NetworkPolicyEgressRule objects) every worker policy "
        "gets on top of what the agent's spec needs; the default opens HTTPS for model providers.",
    )

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ns.strip() for ns in value.split(",") if ns.strip())
        return value

    @property
    def clusterwide(self) -> bool:
        """Whether the operator watches every namespace."""
        return not self.watch_namespaces

    @property
    def temporal_shares_credentials(self) -> bool:
        """Whether the default connection has material (CA, client certificate, API key) the operator copies
        into a Secret next to each agent that uses it (so it needs to create and patch Secrets)."""
        return any((self.temporal_api_key, self.temporal_tls_ca_file, self.temporal_tls_cert_file))

    @property
    def temporal_uses_tls(self) -> bool:
        """Whether the default connection uses TLS."""
        return self.temporal_tls or any(
            (
                self.temporal_tls_server_name,
                self.temporal_tls_ca_file,
                self.temporal_tls_cert_file,
                self.temporal_tls_key_file,
            )
        )


def settings_from_environment() -> OperatorSettings:
    """The settings of the `DURABLE_AGENTS_*` environment; a `ConfigError` names each bad variable."""
    from pydantic import ValidationError

    from durable_agents_api.errors import ConfigError

    try:
        return OperatorSettings()  # pyright: ignore[reportCallIssue]  # fields come from the environment
    except ValidationError as exc:
        lines = [f"  DURABLE_AGENTS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid operator settings:\n" + "\n".join(lines)) from None
