"""The filters of ``GET /api/exports/{name}/runs``: which query values mean which run
record fields, each checked against the values that field can hold."""

from __future__ import annotations

from collections.abc import Mapping

from shared.core.definition_types import Mode
from shared.core.errors import BadRequest
from shared.core.runrecord import RunStatus, Trigger

_RUN_FILTERS: dict[str, tuple[str, ...]] = {
    "status": tuple(RunStatus),
    "trigger": tuple(Trigger),
    "mode": tuple(Mode),
    "dry_run": ("true", "false"),
}


def run_filters(query: Mapping[str, str]) -> dict[str, object]:
    """The run filters of a query string, as record fields and values; BadRequest naming
    each value that is not one of the field's."""
    where: dict[str, object] = {}
    problems = []
    for key, known in _RUN_FILTERS.items():
        value = query.get(key) or ""
        if not value:
            continue
        if value not in known:
            problems.append(f"{key}: one of {', '.join(known)}")
        else:
            where[key] = value == "true" if key == "dry_run" else value
    if problems:
        raise BadRequest("; ".join(problems))
    return where
