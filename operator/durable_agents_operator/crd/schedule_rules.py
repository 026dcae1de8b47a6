"""What the DurableAgent CRD says about `spec.schedules` beyond its model: list semantics and CEL rules.

The model's patterns already refuse a cron expression of the wrong shape and a time zone that is not a
name; the ranges inside a cron expression and whether a time zone exists are checked by the model where
a manifest is read (the operator reports them as `InvalidSpec`, naming the field). These rules catch the
cross-field mistakes at admission.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEDULE_PATCHES"]

_SCHEDULE = ("spec", "schedules", "[]")

SCHEDULE_PATCHES: dict[tuple[str, ...], dict[str, Any]] = {
    # Keyed by name: server-side apply merges schedules one by one, and a duplicate name is refused.
    ("spec", "schedules"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    _SCHEDULE: {
        "x-kubernetes-validations": [
            {
                "rule": "(has(self.cron) && size(self.cron) > 0) || "
                "(has(self.intervals) && size(self.intervals) > 0)",
                "message": "spec.schedules[] needs `cron` or `intervals`: add e.g. cron: ['0 9 * * MON-FRI'] "
                "or intervals: [{every: 1h}]",
                "fieldPath": ".cron",
                "reason": "FieldValueRequired",
            },
            {
                "rule": "!has(self.catchupWindow) || duration(self.catchupWindow) >= duration('10s')",
                "message": "spec.schedules[].catchupWindow is below Temporal's minimum: set 10s or more",
                "fieldPath": ".catchupWindow",
            },
        ]
    },
    (*_SCHEDULE, "intervals", "[]"): {
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.offset) || duration(self.offset) < duration(self.every)",
                "message": "spec.schedules[].intervals[].offset must be shorter than `every`: lower it",
                "fieldPath": ".offset",
            }
        ]
    },
}
"""Schema additions for `crd.kinds.DURABLE_AGENT.patches`."""
