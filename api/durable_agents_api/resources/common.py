"""Types shared by the three resources: Kubernetes-style references, conditions, metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import Field

from durable_agents_api.config import Spec

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "Condition",
    "LocalObjectReference",
    "ObjectMeta",
    "SecretKeySelector",
]

API_GROUP = "durable-agents.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "durable-agents.dev/v1alpha1"
assert f"{API_GROUP}/{VERSION}" == API_VERSION

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Names of namespaced objects (DurableAgents, TemporalConnections, Secrets) are DNS-1123 subdomains.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Keys of a Secret's data.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"


class LocalObjectReference(Spec):
    """A reference to an object in the same namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = Field(
        description="Name of the object."
    )


class SecretKeySelector(Spec):
    """A key of a Secret in the same namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = Field(
        description="Name of the Secret."
    )
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = Field(
        description="Key within the Secret."
    )


class Condition(Spec):
    """A status condition with kstatus meanings (`Ready`, `Progressing`, `Degraded`, ...)."""

    type: str = Field(description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why.")
    message: str = Field(default="", description="What happened and what to do about it.")
    last_transition_time: datetime | None = Field(default=None, description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The generation this condition describes."
    )


class ObjectMeta(Spec):
    """The few metadata fields the models read; the rest is kept as it is."""

    model_config = Spec.model_config | {"extra": "allow"}

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})
