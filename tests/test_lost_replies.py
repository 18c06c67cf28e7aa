"""Storage that applies a write and loses the reply: the run knows its own write, and ends.

Each test puts ``devtools.storage_faults.FaultyTransport`` under the app's table and queue
clients (the SDK's retry policy above it), plays one fault at an exact request, and then
checks that the Snapchat sandbox holds exactly the expected digests and that the run record
ended, with no timer tick in between.
"""

from __future__ import annotations

import hashlib

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.storage_faults import Effect, Fault, FaultyTransport
from devtools.worker import drain
from shared import runtime
from shared.adapters.export_locks import ExportLocks
from shared.core.errors import StorageError
from shared.core.runrecord import RunRecord
from shared.core.settings import Settings
from shared.runs import service
from tests.conftest import AUDIENCE, App

pytestmark = pytest.mark.integration

PATH = "CustomerInsights_t1/BlobExport/HighValue"
RECORD = "PartitionKey='high-value'"  # the export's run records (not its lock, in ~locks)
LOCK = "PartitionKey='~locks',RowKey='high-value'"


def emails_in_snapshot(
    app: App, blob_service: BlobServiceClient, count: int, partitions: int = 1
) -> set[str]:
    """One snapshot of ``count`` emails; the digests the audience must end up with."""
    emails = [f"lost.{i}@example.com" for i in range(count)]
    blob_service.create_container(app.container)
    for part in range(partitions):
        rows = "".join(f"{i},{e}\n" for i, e in enumerate(emails) if i % partitions == part)
        blob_service.get_blob_client(
            app.container, f"{PATH}/2026/11/05/1200/HighValue_{part + 1}.csv"
        ).upload_blob(("CustomerId,EMail\n" + rows).encode())
    return {hashlib.sha256(e.encode()).hexdigest() for e in emails}


def with_faults(
    app: App, monkeypatch: pytest.MonkeyPatch, *faults: Fault, **settings: str
) -> FaultyTransport:
    """Rebuild the app (with ``settings``) on a transport that plays ``faults``."""
    app.rebuild(monkeypatch, **settings)
    transport = FaultyTransport(*faults)
    app.runtime = runtime.build(Settings.from_env(), storage_transport=transport)
    runtime.install(app.runtime)
    return transport


def deliver(app: App) -> None:
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])


def ended(app: App, run_id: str) -> RunRecord:
    record = app.runtime.runs.get("high-value", run_id)
    assert record is not None
    assert record.status == "succeeded", (record.status, record.error)
    assert ExportLocks(app.runtime.runs).holder("high-value") is None  # the export is free
    return record


def test_a_checkpoint_whose_reply_was_lost_is_known_as_the_run_s_own(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = emails_in_snapshot(app, blob_service, 30)
    # The record's first write by the worker marks it running; the second is the checkpoint
    # of its first accepted batch: applied, then the connection resets; the SDK sends it
    # again and storage answers 412 (the ETag moved, by that very write).
    checkpoint = Fault("PUT", RECORD, after=1)
    with_faults(app, monkeypatch, checkpoint, UPLOAD_BATCH_SIZE="10")
    queued = service.request_run(app.runtime, "high-value", "http")
    deliver(app)
    assert checkpoint.fired == 1
    record = ended(app, queued.run_id)
    assert (record.uploaded, record.batches, record.attempts) == (30, 3, 1)
    assert sandbox.identifiers(AUDIENCE) == expected


def test_a_lease_renewal_whose_reply_was_lost_keeps_the_lease(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = emails_in_snapshot(app, blob_service, 30)
    # The worker's first write of the lock takes it over from the queued run; the next
    # one is a renewal (every second, with a 3 s lease). Uploads are slowed so that the
    # run lasts several renewals.
    renewal = Fault("PUT", LOCK, after=1)
    with_faults(app, monkeypatch, renewal, UPLOAD_BATCH_SIZE="10", RUN_LEASE_SECONDS="3")
    sandbox.inject("slow:2", path_contains="/users", times=2)
    queued = service.request_run(app.runtime, "high-value", "http")
    deliver(app)
    assert renewal.fired == 1
    record = ended(app, queued.run_id)
    assert (record.uploaded, record.attempts) == (30, 1)
    assert sandbox.identifiers(AUDIENCE) == expected


def test_a_split_job_s_entity_whose_reply_was_lost_is_done(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = emails_in_snapshot(app, blob_service, 40, partitions=2)
    # The second (last) read job saves its entity as done: applied, reply lost. It is the
    # job that completes the read step, so it must pass the gate to the next one.
    done = Fault("PUT", "RowKey='read-00001'", body_contains='"done": true')
    with_faults(app, monkeypatch, done, UPLOAD_BATCH_SIZE="10", SPLIT_ABOVE_MB="0",
                SPILL_MEMORY_MB="0")  # fmt: skip
    queued = service.request_run(app.runtime, "high-value", "http")
    deliver(app)
    assert done.fired == 1
    record = ended(app, queued.run_id)
    assert record.jobs, "the run was not split"
    assert record.uploaded == 40
    assert sandbox.identifiers(AUDIENCE) == expected


def test_a_job_the_queue_kept_though_its_put_failed_still_runs(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = emails_in_snapshot(app, blob_service, 30)
    messages = f"/{app.env['JOBS_QUEUE']}/messages"
    # The put is stored and its reply lost; the SDK's next sends are refused (an outage),
    # so the put is reported failed though the queue holds the job.
    stored = Fault("POST", messages, effect=Effect.LOST_REPLY)
    refused = Fault("POST", messages, effect=Effect.REFUSED, after=1, times=100)
    transport = with_faults(app, monkeypatch, stored, refused)
    with pytest.raises(StorageError):
        service.request_run(app.runtime, "high-value", "http")
    assert stored.fired == 1
    assert refused.fired >= 1
    transport.faults.clear()  # the outage is over
    (queued,) = app.runtime.runs.recent("high-value")
    assert queued.status == "queued"  # not failed: the job may (and here does) run it
    deliver(app)
    ended(app, queued.run_id)
    assert sandbox.identifiers(AUDIENCE) == expected


def test_an_end_that_cannot_be_recorded_is_handed_back_and_resumed_at_once(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = emails_in_snapshot(app, blob_service, 30)
    # Every send of the record's end (succeeded) is refused: its write fails for good.
    end = Fault("PUT", RECORD, effect=Effect.REFUSED, body_contains='"status": "succeeded"',
                times=4)  # fmt: skip
    with_faults(app, monkeypatch, end, UPLOAD_BATCH_SIZE="10", RUN_LEASE_SECONDS="600")
    queued = service.request_run(app.runtime, "high-value", "http")
    deliver(app)  # the long lease: only a hand-back lets the next delivery take the run
    assert end.fired == 4
    record = ended(app, queued.run_id)
    assert record.attempts == 2
    assert sandbox.identifiers(AUDIENCE) == expected
