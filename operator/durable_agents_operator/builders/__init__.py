"""Pure builders: a DurableAgent (and its resolved Temporal connection) in, Kubernetes manifests out.

No client, clock, environment or randomness here: everything a builder needs is an argument.
"""

from .configmap import build_configmap, config_hash, render_config
from .deployment import build_deployment, desired_replicas, termination_grace_period
from .metadata import labels, owner_reference, selector_labels, selector_string, stable_hash
from .pdb import build_pdb
from .service import build_service
from .temporal import WorkerTemporal, resolve_temporal

__all__ = [
    "WorkerTemporal",
    "build_configmap",
    "build_deployment",
    "build_pdb",
    "build_service",
    "config_hash",
    "desired_replicas",
    "labels",
    "owner_reference",
    "render_config",
    "resolve_temporal",
    "selector_labels",
    "selector_string",
    "stable_hash",
    "termination_grace_period",
]
