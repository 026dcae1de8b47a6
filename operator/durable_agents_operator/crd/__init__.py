"""CustomResourceDefinitions rendered from the API models.

The pydantic models in `durable_agents_api.resources` are the single source of truth. `schema` turns
their JSON schema into the structural OpenAPI v3 schema the API server requires; `kinds` adds what only
a CRD has (CEL validation rules, list semantics for server-side apply, subresources, names, printer
columns); `render` writes the manifests.

`durable-agents crds` (`command`) prints the CRDs; `--write` refreshes `crds/` and the chart's `crds/`;
`--check` fails when those files drift from the models.
"""

from .command import CRD_DIRS, main
from .kinds import AGENT_RUN, DURABLE_AGENT, KINDS, TEMPORAL_CONNECTION, CrdKind, PrinterColumn, Rule
from .render import render_all, render_crd, render_yaml
from .schema import structural_schema

__all__ = [
    "AGENT_RUN",
    "CRD_DIRS",
    "DURABLE_AGENT",
    "KINDS",
    "TEMPORAL_CONNECTION",
    "CrdKind",
    "PrinterColumn",
    "Rule",
    "main",
    "render_all",
    "render_crd",
    "render_yaml",
    "structural_schema",
]
