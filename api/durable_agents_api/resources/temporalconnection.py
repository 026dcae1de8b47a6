"""`TemporalConnection`: how to reach a Temporal namespace (address, TLS, mTLS or API key)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import Field, model_validator

from durable_agents_api.config import Spec

from .common import API_VERSION, Condition, LocalObjectReference, ObjectMeta, SecretKeySelector

__all__ = [
    "TemporalConnection",
    "TemporalConnectionSpec",
    "TemporalConnectionStatus",
    "TemporalConnectionTLS",
]


class TemporalConnectionTLS(Spec):
    """TLS to the Temporal frontend."""

    server_name: str | None = Field(default=None, description="Expected server name (SNI).")
    ca_secret_ref: SecretKeySelector | None = Field(
        default=None, description="Secret key holding the CA bundle (PEM)."
    )
    client_cert_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Name of a Secret of type kubernetes.io/tls holding the mTLS client certificate "
        "(`tls.crt`) and its private key (`tls.key`), e.g. one cert-manager issues.",
    )


class TemporalConnectionSpec(Spec):
    """Where Temporal is and how to authenticate."""

    address: str = Field(min_length=1, description="Frontend `host:port`, e.g. `temporal-frontend:7233`.")
    namespace: str = Field(default="default", min_length=1, description="Temporal namespace.")
    tls: TemporalConnectionTLS | None = Field(default=None, description="TLS settings; plain TCP when unset.")
    api_key_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description="Secret key holding a Temporal Cloud API key (excludes an mTLS client certificate).",
    )

    @model_validator(mode="after")
    def _mtls_xor_api_key(self) -> Self:
        if self.api_key_secret_ref and self.tls and self.tls.client_cert_secret_ref:
            raise ValueError(
                "set either apiKeySecretRef or tls.clientCertSecretRef (mTLS), not both: remove one"
            )
        return self


class TemporalConnectionStatus(Spec):
    """Whether the operator can reach this Temporal."""

    last_check_time: datetime | None = Field(
        default=None, description="When the connection was last checked."
    )
    conditions: list[Condition] = Field(default_factory=list, description="`Reachable`.")


class TemporalConnection(Spec):
    """A Temporal namespace that DurableAgents can run on."""

    model_config = Spec.model_config | {"extra": "ignore"}

    api_version: Literal["durable-agents.dev/v1alpha1"] = Field(
        default=API_VERSION, description="API version."
    )
    kind: Literal["TemporalConnection"] = Field(default="TemporalConnection", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: TemporalConnectionSpec = Field(description="Connection settings.")
    status: TemporalConnectionStatus | None = Field(default=None, description="Observed state.")
