"""The read: a snapshot's partitions read once, every identifier column normalised and hashed.

Each partition's bytes go through Arrow's CSV parser (``shared.core.csvstream``); every
identifier column the export maps is normalised and hashed as whole blocks of cells, on
``_WORKERS`` threads while the next blocks are parsed, and the digests go to the digest
pool (``shared.export.digest_pool``), or, in add mode, to the adds made while reading
(``shared.export.add``). Rows are counted per kind (and per segment when there are several);
a segment without rows is refused before anything is sent.
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from shared.adapters.blobsource import BlobSource
from shared.core import coverage, identifiers
from shared.core.csvstream import column_blocks
from shared.core.errors import EmptySnapshot
from shared.core.runrecord import Progress
from shared.export.digest_pool import DigestPool
from shared.export.plan import Plan, SegmentPlan

_WORKERS = 2  # threads normalising and hashing blocks (Arrow and DataFusion release the GIL)


class DigestTaker(Protocol):
    """What takes the digests instead of the pool (``shared.export.add.AddsWhileReading``)."""

    def add(self, schema: str, digests: bytes) -> None: ...


def read_snapshot(
    plan: Plan,
    source: BlobSource,
    *,
    progress: Progress,
    pool: DigestPool,
    publish: Callable[[], None],
    check_lease: Callable[[], None],
    adds: DigestTaker | None = None,
) -> dict[str, identifiers.Tally]:
    """Read every segment's partitions once, putting each kind's digests in the pool (with
    ``adds``: handing them to it, in the order they are read); count the rows (per segment
    when there are several). Blocks are normalised and hashed on ``_WORKERS`` threads while the next
    ones are parsed; at most ``2 * _WORKERS`` are in hand at once."""
    export = plan.export
    tallies = {kind.schema: identifiers.Tally() for kind, _ in export.columns}
    for kind, _ in export.columns:
        progress.by_type.setdefault(kind.schema, {})

    def digest_block(cells: tuple[Any, ...]) -> list[tuple[str, bytes, identifiers.Tally]]:
        found = []
        for (kind, _), column in zip(export.columns, cells, strict=True):
            tally = identifiers.Tally()
            digests = identifiers.digest_column(
                kind, column, tally, export.default_country_code, coverage.explain
            )
            found.append((kind.schema, digests, tally))
        return found

    def take(block: Future[list[tuple[str, bytes, identifiers.Tally]]]) -> None:
        for schema, digests, tally in block.result():
            if adds is None:
                pool.add(schema, digests)
            else:
                adds.add(schema, digests)
            _add_tally(tallies[schema], tally)
        progress.rows_read = progress.rows_scanned = max(t.rows for t in tallies.values())
        progress.spilled_bytes = pool.spilled_bytes
        publish()
        check_lease()

    try:
        _read_all(plan, source, progress, tallies, digest=digest_block, take=take)
    except BaseException:
        # Let a spill in progress end before the caller deletes the run's spilled files.
        with contextlib.suppress(Exception):
            pool.settle()
        raise
    pool.settle()
    return tallies


def _read_all(
    plan: Plan,
    source: BlobSource,
    progress: Progress,
    tallies: dict[str, identifiers.Tally],
    *,
    digest: Callable[[tuple[Any, ...]], list[tuple[str, bytes, identifiers.Tally]]],
    take: Callable[[Future[list[tuple[str, bytes, identifiers.Tally]]]], None],
) -> None:
    columns = [column for _, column in plan.export.columns]
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="digest") as pool:
        pending: deque[Future[list[tuple[str, bytes, identifiers.Tally]]]] = deque()
        for segment in plan.segments:
            before = max(t.rows for t in tallies.values())
            blocks = column_blocks(
                segment.partitions,
                functools.partial(source.open, segment.source.container),
                columns=columns,
                model=segment.model,
            )
            for _, cells in blocks:
                pending.append(pool.submit(digest, cells))
                while len(pending) >= 2 * _WORKERS:
                    take(pending.popleft())
            while pending:
                take(pending.popleft())
            if len(plan.segments) > 1:
                rows = max(t.rows for t in tallies.values()) - before
                progress.by_segment[segment.source.label] = {"rows": rows}


def _add_tally(total: identifiers.Tally, part: identifiers.Tally) -> None:
    total.rows += part.rows
    total.empty += part.empty
    total.invalid += part.invalid
    total.prehashed += part.prehashed
    add_reasons(total.reasons, part.reasons)


def add_reasons(total: dict[str, int], part: dict[str, int]) -> None:
    """Add one count of invalid cells by reason to another."""
    for reason, count in part.items():
        total[reason] = total.get(reason, 0) + count


def _segment_rows(plan: Plan, progress: Progress, segment: SegmentPlan) -> int:
    if len(plan.segments) == 1:
        return progress.rows_read
    return progress.by_segment.get(segment.source.label, {}).get("rows", 0)


def require_rows(plan: Plan, progress: Progress) -> None:
    """Every segment must hold data rows: an empty segment export is treated as a fault (in
    mirror mode it would otherwise remove its members from the audience). Checked after the
    read and before anything is sent."""
    empty = [s for s in plan.segments if _segment_rows(plan, progress, s) == 0]
    if empty:
        where = ", ".join(s.source.label for s in empty)
        snapshot = empty[0].snapshot.id
        raise EmptySnapshot(
            f"{where}: snapshot {snapshot} holds no data rows; nothing was sent "
            "(an empty segment export is treated as a fault)"
        )


def count_kind(
    kind: identifiers.IdentifierType, tally: identifiers.Tally, repeats: int, progress: Progress
) -> None:
    """Record a kind's counts once its distinct digests are known (``repeats``: how many
    of those read were repeats)."""
    tally.duplicates = repeats
    counts = progress.by_type[kind.schema]
    counts.update(
        rows=tally.rows,
        empty=tally.empty,
        invalid=tally.invalid,
        prehashed=tally.prehashed,
        duplicates=tally.duplicates,
        reasons=dict(sorted(tally.reasons.items())),
    )
    progress.empty += tally.empty
    progress.invalid += tally.invalid
    progress.prehashed += tally.prehashed
    progress.duplicates += tally.duplicates
