"""One export run: from a snapshot in Blob Storage to identifiers accepted by Snapchat.

Rows stream through: partition bytes -> CSV cells -> digests -> first occurrences -> batches
-> request bodies. One background thread sends a batch while the next one is prepared; at
most ``_IN_FLIGHT`` bodies exist at once, so memory stays bounded by the batch size and the
de-duplication set. Counters land on the run record, which is saved after every accepted
batch so that its progress can be followed while it runs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from shared import identifiers
from shared.blobsource import BlobSource
from shared.csvstream import column_cells
from shared.definitions import Export
from shared.errors import LeaseLost, SourceError
from shared.layout import Model, Snapshot, model_blob_name, read_model, snapshots
from shared.runlog import RunRecord
from shared.snapchat import SnapchatClient

log = logging.getLogger(__name__)

_IN_FLIGHT = 2  # request bodies built ahead of the one being sent


@dataclass(frozen=True)
class Plan:
    """What a run will read: a snapshot, its model (if any) and the partitions in order."""

    export: Export
    snapshot: Snapshot
    model: Model | None
    partitions: tuple[str, ...]


def find_snapshots(source: BlobSource, export: Export) -> list[Snapshot]:
    """The export's snapshots in Blob Storage, oldest first."""
    return snapshots(export.path, source.list(export.container, export.path))


def plan(source: BlobSource, export: Export, snapshot_id: str) -> Plan:
    found = {s.id: s for s in find_snapshots(source, export)}
    snapshot = found.get(snapshot_id)
    where = f"{export.container}/{export.path}"
    if snapshot is None:
        raise SourceError(f"{where}: snapshot {snapshot_id} not found (was it deleted?)")
    if snapshot.folder is None:
        return Plan(export, snapshot, None, snapshot.partitions)
    model_name = model_blob_name(export.path)
    document = source.read_small(export.container, model_name)
    if document is None:
        return Plan(export, snapshot, None, snapshot.partitions)
    model = read_model(
        document,
        entity=export.table_name,
        container=export.container,
        where=f"{export.container}/{model_name}",
    )
    listed = [p for p in model.partitions if p.startswith(snapshot.folder + "/")]
    if not listed:
        # model.json describes another snapshot: keep its columns, read the folder's files.
        return Plan(export, snapshot, model, snapshot.partitions)
    missing = sorted(set(listed) - set(snapshot.partitions))
    if missing:
        raise SourceError(
            f"{export.container}/{model_name} lists partition {missing[0]}, which is not in "
            f"Blob Storage ({len(missing)} missing)"
        )
    return Plan(export, snapshot, model, tuple(listed))


def run(
    plan: Plan,
    source: BlobSource,
    client: SnapchatClient,
    *,
    record: RunRecord,
    on_progress: Callable[[RunRecord], None],
    still_held: Callable[[], bool] = lambda: True,
) -> None:
    """Upload every distinct valid identifier of the plan; counters go to ``record``.

    Batches are a pure function of the snapshot and ``record.batch_size``, so a run that an
    earlier attempt left after ``record.batches`` accepted batches rebuilds the same batches
    and skips those (counted as ``resumed``) instead of sending them again.
    """
    export = plan.export
    accepted = record.batches if record.source_version == plan.snapshot.version else 0
    if accepted != record.batches:
        log.warning(
            "Run %s: the snapshot's files changed since the last attempt; starting over",
            record.run_id,
        )
    record.source_version = plan.snapshot.version
    record.batches = record.uploaded = record.resumed = 0
    tally = identifiers.Tally()
    cells = column_cells(
        plan.partitions,
        lambda name: source.open(export.container, name),
        column=export.email_column,
        model=plan.model,
    )
    digests = identifiers.unique(identifiers.email_digests(cells, tally), tally)
    schema = identifiers.IdentifierType.EMAIL.schema
    pending: deque[tuple[Future[int], int]] = deque()
    failed = threading.Event()

    def send(body: bytes) -> int:
        # Runs on the sender thread, one batch after another. Once a batch has failed, the
        # batches queued behind it must not reach Snapchat: the checkpoint only counts an
        # unbroken prefix of accepted batches, and a resumed run sends the rest.
        if failed.is_set():
            return 0
        try:
            return client.add_users(export.audience_id, body)
        except BaseException:
            failed.set()
            raise

    def settle_oldest() -> None:
        future, size = pending.popleft()
        future.result()
        record.uploaded += size
        record.batches += 1
        _copy(tally, record)
        on_progress(record)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as sender:
        try:
            for index, batch in enumerate(identifiers.batches(digests, record.batch_size)):
                if index < accepted:  # delivered by an earlier attempt of this run
                    record.batches += 1
                    record.uploaded += len(batch)
                    record.resumed += len(batch)
                    continue
                if not still_held():
                    raise LeaseLost(f"run {record.run_id}: another worker took over the export")
                body = identifiers.users_body(schema, batch)
                pending.append((sender.submit(send, body), len(batch)))
                while len(pending) >= _IN_FLIGHT:
                    settle_oldest()
            while pending:
                settle_oldest()
        finally:
            for future, _ in pending:
                future.cancel()
            _copy(tally, record)
            record.requests += client.counters.requests
            record.retries += client.counters.retries
    if record.rows_read == 0:
        raise SourceError(
            f"{export.container}/{export.path}: snapshot {plan.snapshot.id} holds no data rows; "
            "nothing was sent (an empty segment export is treated as a fault)"
        )


def _copy(tally: identifiers.Tally, record: RunRecord) -> None:
    record.rows_read = tally.rows
    record.empty = tally.empty
    record.invalid = tally.invalid
    record.prehashed = tally.prehashed
    record.duplicates = tally.duplicates
