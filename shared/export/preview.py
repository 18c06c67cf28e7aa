"""A preview of an export before it is saved: the plan of a dry run on one snapshot, and what
the identifier rules make of a bounded sample of its rows, as counts only.

The sample is the first ``MAX_ROWS`` rows of the snapshot (its segments and partitions in
the run's order); ``sampled`` says when the snapshot holds more. Valid, empty, invalid and
already-hashed cells are counted by the run's own column rules (``identifiers``); each
invalid cell's reason comes from ``shared.core.coverage``. No value leaves this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from shared.adapters.blobsource import BlobSource
from shared.core import coverage, identifiers
from shared.core.csvstream import column_blocks
from shared.core.definitions import Export
from shared.core.errors import MissingColumn
from shared.core.identifiers import IdentifierType
from shared.core.layout import Snapshot
from shared.export.plan import Plan, choose_snapshot, plan_run

MAX_ROWS = 10_000


class ColumnMissing(MissingColumn):
    """A missing column, with the snapshot's columns when model.json names them."""

    kind = "missing_column"

    def __init__(self, message: str, columns: tuple[str, ...]) -> None:
        super().__init__(message)
        self.columns = columns

    def details(self) -> dict[str, Any]:
        return {"columns": list(self.columns)} if self.columns else {}


def preview(
    source: BlobSource,
    export: Export,
    settled: Callable[[Snapshot], bool],
    wanted: str | None = None,
) -> dict[str, Any]:
    """``POST /api/preview``'s answer for ``export`` (checked, not necessarily saved)."""
    plan = plan_run(source, export, choose_snapshot(source, export, settled, wanted=wanted).id)
    tallies = {kind: identifiers.Tally() for kind, _ in export.columns}
    rows, sampled = 0, False
    for cells in _sample(source, plan):
        if rows >= MAX_ROWS:
            sampled = True
            break
        take = min(len(cells[0]), MAX_ROWS - rows)
        sampled = sampled or take < len(cells[0])
        rows += take
        for (kind, _), column in zip(export.columns, cells, strict=True):
            _count(kind, column.slice(0, take), export.default_country_code, tallies)
    return {
        "snapshot": plan.snapshot.id,
        "rows_read": rows,
        "sampled": sampled,
        "kinds": {
            kind.schema: {
                "column": column,
                "valid": tallies[kind].rows
                - tallies[kind].empty
                - tallies[kind].invalid
                - tallies[kind].prehashed,
                "empty": tallies[kind].empty,
                "prehashed": tallies[kind].prehashed,
                "invalid": tallies[kind].invalid,
                "reasons": dict(sorted(tallies[kind].reasons.items())),
            }
            for kind, column in export.columns
        },
    }


def _sample(source: BlobSource, plan: Plan) -> Iterator[tuple[pa.Array, ...]]:
    """The snapshot's blocks of identifier cells, in the run's order, until the caller stops."""
    columns = [column for _, column in plan.export.columns]
    for segment in plan.segments:
        try:
            for _, cells in column_blocks(
                segment.partitions,
                functools.partial(source.open, segment.source.container),
                columns=columns,
                model=segment.model,
            ):
                yield cells
        except MissingColumn as exc:
            known = segment.model.columns if segment.model else ()
            raise ColumnMissing(str(exc), known) from None


def _count(
    kind: IdentifierType,
    cells: pa.Array,
    country: str | None,
    tallies: dict[IdentifierType, identifiers.Tally],
) -> None:
    """Count one block of one kind: the run's rules say what is valid, and why each cell
    they refused was refused (only those are classified one by one), as in a run."""
    identifiers.digest_column(kind, cells, tallies[kind], country, coverage.explain)
