"""The event-driven start: Event Grid says a blob was written to the export account.

``on_blob_created`` maps the blob to the enabled exports whose segments it belongs to (a
partition of a snapshot folder, a flat file, or the ``model.json`` beside them) and queues at
most one *snapshot check* per export and snapshot: a marker inserted on condition in the run
table (``shared.adapters.snapshot_checks``) turns a flood of events, delivered at least once
and in any order, into one check. ``perform_check`` is that check on the queue: the timer's
own decision (``service.check_export``), and while the snapshot is not complete, the same
check again after ``SNAPSHOT_RECHECK_SECONDS`` (a message hidden that long, never a wait in a
function), at most ``MAX_RECHECKS`` times; the timer catches whatever is left.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import unquote, urlparse

from shared.adapters.jobqueue import CHECK, SNAPSHOT_CHECK, Job
from shared.adapters.snapshot_checks import SnapshotChecks
from shared.core.definitions import Export, Source
from shared.core.errors import RunActive, SnapshotSettling, SourceError, StorageError
from shared.core.layout import MODEL_FILE, BlobEntry, model_blob_name, read_model, snapshots
from shared.core.runrecord import RunRecord, Trigger
from shared.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RECHECKS = 20  # then the timer takes over
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_SUBJECT = re.compile(r"/blobServices/default/containers/([^/]+)/blobs/(.+)")


def blob_of(subject: str, url: str) -> tuple[str, str] | None:
    """The container and blob name an event names: its ``subject``
    (``/blobServices/default/containers/<c>/blobs/<path>``), else its ``data.url``."""
    if match := _SUBJECT.fullmatch(subject or ""):
        return match[1], match[2]
    parts = unquote(urlparse(url or "").path).lstrip("/").split("/", 1)
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def on_event(
    rt: Runtime, event_type: str, subject: str, url: str, at: datetime | None
) -> list[Job]:
    """One Event Grid event as the platform delivers it; only BlobCreated starts checks."""
    blob = blob_of(subject, url)
    if event_type != BLOB_CREATED or blob is None:
        log.info("Event of type %s ignored (not a blob written)", event_type)
        return []
    return on_blob_created(rt, *blob, at or datetime.now(UTC))


def on_blob_created(rt: Runtime, container: str, blob_name: str, at: datetime) -> list[Job]:
    """Queue a check of each enabled export's snapshot this blob belongs to, unless one is
    queued already; the checks queued (none for a blob no enabled export reads)."""
    queued = []
    checks = SnapshotChecks(rt.runs)
    for export in rt.definitions.exports:
        if not export.enabled:
            continue
        for where in export.sources:
            snapshot = _snapshot_of(rt, where, container, blob_name, at)
            if snapshot is None or not checks.mark(export.name, where.label, snapshot):
                continue
            job = Job(run_id=CHECK, export=export.name, snapshot=snapshot, step=SNAPSHOT_CHECK)
            try:
                rt.jobs.send(job)
            except StorageError:
                checks.forget(export.name, where.label, snapshot)  # the redelivery asks again
                raise
            queued.append(job)
            log.info("Export %s: a snapshot was written; check queued", export.name)
    return queued


def _snapshot_of(
    rt: Runtime, where: Source, container: str, blob_name: str, at: datetime
) -> str | None:
    """The id of the segment's snapshot the blob belongs to; None when it is not one."""
    if container != where.container:
        return None
    names = [blob_name]
    if blob_name == model_blob_name(where.path) and posixpath.basename(blob_name) == MODEL_FILE:
        names = list(_partitions_named(rt, where))  # the snapshot model.json describes
    elif not blob_name.startswith(where.path):
        return None
    found = snapshots(where.path, [BlobEntry(name, at, 0) for name in names])
    return found[-1].id if found else None


def _partitions_named(rt: Runtime, where: Source) -> tuple[str, ...]:
    name = model_blob_name(where.path)
    try:
        document = rt.source.read_small(where.container, name)
        if document is None:
            return ()
        return read_model(
            document, entity=where.table_name, container=where.container, where=name
        ).partitions
    except SourceError as exc:  # the timer's run reports a broken model.json
        log.info("A model.json names no snapshot of a segment (%s)", exc)
        return ()


Decide = Callable[[Runtime, Export, datetime, str], RunRecord | None]


def perform_check(rt: Runtime, job: Job, decide: Decide) -> RunRecord | None:
    """Queue the export's run if its newest snapshot is complete (``decide``: the timer's
    own decision, ``service.check_export``); otherwise check again later. A disabled (or
    deleted) export is left alone."""
    rt.forget_definitions()  # as stored now: it may have been disabled since the event
    export = rt.definitions.export(job.export)
    if export is None or not export.enabled:
        log.info("Export %s is not enabled; snapshot check dropped", job.export)
        return None
    try:
        return decide(rt, export, datetime.now(UTC), Trigger.EVENT)
    except (SnapshotSettling, RunActive) as exc:
        _check_again(rt, export, job, exc)
        return None


def _check_again(rt: Runtime, export: Export, job: Job, why: Exception) -> None:
    if job.part >= MAX_RECHECKS:
        log.warning("Export %s: snapshot still not ready after %d checks (%s); the timer "
                    "takes over", export.name, job.part + 1, why)  # fmt: skip
        return
    delay = int(rt.settings.snapshot_recheck_seconds)
    rt.jobs.send(dataclasses.replace(job, part=job.part + 1), delay_seconds=delay)
    log.info("Export %s: snapshot not ready (%s); checked again in %d s", export.name, why, delay)
