"""Run records are written on conditions (ETags): two writers never overwrite each other.

The rule: the first writer wins. A writer whose copy is stale gets RecordChanged and
decides again from a fresh read; an ended record stays as it ended; a worker that loses
stops and writes nothing more."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from shared.adapters.export_locks import ExportLocks
from shared.adapters.jobqueue import Job
from shared.core.errors import RecordChanged
from shared.core.runrecord import RunRecord, new_run_id
from shared.runs import service
from shared.runs.records import finish
from tests.conftest import App
from tests.snapshots import emails, snapshot


def test_a_stale_copy_cannot_overwrite_a_newer_write(app: App) -> None:
    runs = app.runtime.runs
    runs.save(RunRecord(run_id=new_run_id(), export="high-value", trigger="http", snapshot="s"))
    stored = runs.recent("high-value")[0]
    first, second = dataclasses.replace(stored), dataclasses.replace(stored)
    first.etag = second.etag = stored.etag
    first.status, first.error = "failed", "ended by the first writer"
    runs.save(first)
    second.progress.rows_read = 42
    with pytest.raises(RecordChanged, match="changed by another writer"):
        runs.save(second)
    now = runs.get("high-value", stored.run_id)
    assert now is not None
    assert (now.status, now.error, now.rows_read) == ("failed", "ended by the first writer", 0)
    # a new record cannot be created over an existing one either
    with pytest.raises(RecordChanged):
        runs.save(dataclasses.replace(stored, etag=""))
    # while a copy that is up to date saves, and carries the new ETag for the next save
    now.progress.rows_read = 7
    runs.save(now)
    now.progress.rows_read = 8
    runs.save(now)
    assert (runs.get("high-value", stored.run_id) or now).rows_read == 8


def test_an_ender_with_a_stale_copy_leaves_a_run_a_worker_moved_on(app: App) -> None:
    runs = app.runtime.runs
    runs.save(RunRecord(run_id=new_run_id(), export="high-value", trigger="http", snapshot="s",
                        status="running"))  # fmt: skip
    seen_by_the_poison_handler = runs.recent("high-value")[0]
    worker_copy = runs.recent("high-value")[0]
    worker_copy.progress.batches = 3
    runs.save(worker_copy)  # the worker wrote progress after the other one read the record
    result = finish(app.runtime, seen_by_the_poison_handler, "failed", "gave up")
    assert (result.status, result.batches) == ("running", 3)
    stored = runs.get("high-value", worker_copy.run_id)
    assert stored is not None
    assert (stored.status, stored.batches, stored.error) == ("running", 3, "")


def test_a_worker_whose_run_was_ended_by_another_writer_stops_and_overwrites_nothing(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="10", SNAPCHAT_REQUESTS_PER_SECOND="20")
    snapshot(blob_service, app.container, emails(range(80)), day=1)  # 8 requests
    queued = service.request_run(app.runtime, "high-value", "http")
    sandbox.inject("slow:0", path_contains="/users")
    sandbox.inject("slow:3", path_contains="/users")  # the second request takes a while
    job = Job(run_id=queued.run_id, export="high-value", snapshot=queued.snapshot)
    outcome: list[RunRecord | None] = []
    worker = threading.Thread(target=lambda: outcome.append(service.process(app.runtime, job)))
    worker.start()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the worker recorded its first batch
        record = app.runtime.runs.get("high-value", queued.run_id)
        if record is not None and record.batches >= 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the worker recorded no progress")
    record.status, record.error = "failed", "ended by an operator while the worker was on it"
    app.runtime.runs.save(record)  # the other writer wins: it wrote first
    worker.join(timeout=30)

    final = app.runtime.runs.get("high-value", queued.run_id)
    assert final is not None
    assert (final.status, final.error) == ("failed", record.error)
    assert final.batches == record.batches  # the worker's later progress was not written
    uploads = [r for r in sandbox.requests() if r.path.endswith("/users")]
    assert len(uploads) < 8  # it stopped instead of finishing the run
    assert outcome
    assert outcome[0] is not None
    assert outcome[0].error == record.error
    assert ExportLocks(app.runtime.runs).holder("high-value") is None  # not left locked


def test_an_interrupted_worker_whose_run_was_ended_meanwhile_frees_the_export(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    app.rebuild(monkeypatch, RETRY_ATTEMPTS="2")
    snapshot(blob_service, app.container, emails(range(30)), day=1)
    queued = service.request_run(app.runtime, "high-value", "http")
    sandbox.inject("429:retry-after=2", path_contains="/users", times=2)  # then it gives up
    job = Job(run_id=queued.run_id, export="high-value", snapshot=queued.snapshot)
    outcome: list[object] = []

    def deliver() -> None:
        try:
            outcome.append(service.process(app.runtime, job))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=deliver)
    worker.start()
    deadline = time.monotonic() + 20
    while not any(r.status == 429 for r in sandbox.requests()):
        assert time.monotonic() < deadline, "the worker sent nothing"
        time.sleep(0.02)
    record = app.runtime.runs.get("high-value", queued.run_id)  # the worker waits 2 s now
    assert record is not None
    record.status, record.error = "failed", "ended by an operator"
    app.runtime.runs.save(record)
    worker.join(timeout=30)

    final = app.runtime.runs.get("high-value", queued.run_id)
    assert final is not None
    assert (final.status, final.error) == ("failed", "ended by an operator")
    assert not isinstance(outcome[0], Exception)  # nothing to deliver again
    assert ExportLocks(app.runtime.runs).holder("high-value") is None  # the export is free
    assert service.request_run(app.runtime, "high-value", "http").status == "queued"


def test_a_delivery_of_an_ended_run_frees_an_export_it_still_holds(app: App) -> None:
    record = RunRecord(run_id=new_run_id(), export="high-value", trigger="http", snapshot="s",
                       status="failed")  # fmt: skip
    app.runtime.runs.save(record)
    ExportLocks(app.runtime.runs).acquire("high-value", record.run_id, "a-worker", 3600)
    job = Job(run_id=record.run_id, export="high-value", snapshot="s")
    assert service.process(app.runtime, job) is not None
    assert ExportLocks(app.runtime.runs).holder("high-value") is None
