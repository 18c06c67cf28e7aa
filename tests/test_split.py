"""One run over several instances: worker processes on the queue, as the platform's scale-out.

Each test splits a realistic export (``devtools.ci_export``) over real worker processes
(``python -m shared work``, the real queue handlers) on Azurite, and checks what the
sandbox received: the exact audience, no identifier sent twice, the rate limit kept by all
workers together, and a worker killed in the middle of its job resumed by another without
sending an accepted request again."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ci_export import GeneratedExport, write_export
from devtools.snapchat_sandbox import RequestRecord, SnapchatSandbox
from devtools.worker import drain
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import AUDIENCE, App, export_definition, write_definitions
from tests.snapshots import PATH, run

pytestmark = pytest.mark.integration  # worker processes

ROOT = Path(__file__).resolve().parent.parent
SPLIT = {"SPLIT_ABOVE_MB": "0", "SPILL_MEMORY_MB": "0"}  # split every run, spill every block


def start_workers(
    count: int, *, idle: float = 2.5, visibility: int = 60
) -> list[subprocess.Popen[bytes]]:
    """Worker processes, each as one instance of the app on the queue trigger."""
    command = [sys.executable, "-m", "shared", "-v", "work", "--idle-seconds", str(idle),
               "--poll-seconds", "0.2", "--visibility-timeout", str(visibility)]  # fmt: skip
    return [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]


def finish_workers(workers: list[subprocess.Popen[bytes]]) -> list[str]:
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output.decode()[-3000:]
        outputs.append(output.decode())
    return outputs


def split_run(app: App, workers: int, name: str = "high-value") -> tuple[RunRecord, list[str]]:
    queued = service.request_run(app.runtime, name, "http")
    outputs = finish_workers(start_workers(workers))
    record = app.runtime.runs.get(name, queued.run_id)
    assert record is not None
    return record, outputs


def users_requests(sandbox: SnapchatSandbox, since: int = 0) -> list[RequestRecord]:
    return [r for r in sandbox.requests()[since:] if r.path.endswith("/users") and r.status == 200]


def workers_that_did(step: str, outputs: list[str]) -> int:
    return sum(f"Job {step}-" in output and " done" in output for output in outputs)


def leftovers(app: App, blob_service: BlobServiceClient, run_id: str) -> list[str]:
    container = blob_service.get_container_client(app.env["SPILL_CONTAINER"])
    spilled = [b.name for b in container.list_blobs()] if container.exists() else []
    table = app.runtime.runs.table()
    jobs = list(table.query_entities("PartitionKey eq @p", parameters={"p": f"~split-{run_id}"}))
    return spilled + [str(e["RowKey"]) for e in jobs]


def assert_counts(record: RunRecord, generated: GeneratedExport) -> None:
    assert record.rows_read == generated.rows
    assert (record.empty, record.invalid, record.prehashed, record.duplicates) == (
        generated.empty, generated.invalid, generated.prehashed, generated.duplicates)  # fmt: skip


def test_three_workers_add_the_exact_audience_each_identifier_once(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    generated = write_export(blob_service, container=app.container, path=PATH,
                             profiles=3000, partitions=3)  # fmt: skip
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="150", **SPLIT)
    record, outputs = split_run(app, 3)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == generated.expected_hex
    accepted = users_requests(sandbox)
    assert sum(r.identifiers for r in accepted) == len(generated.expected)  # none twice
    assert record.uploaded == len(generated.expected)
    assert_counts(record, generated)
    assert record.jobs == {"read": 3, "read_done": 3, "send": 4, "send_done": 4}
    assert record.spilled_bytes >= 32 * len(generated.expected)
    assert workers_that_did("read", outputs) >= 2  # the jobs were spread over the workers
    assert len({r.token for r in accepted}) >= 2  # several instances sent
    assert leftovers(app, blob_service, record.run_id) == []


def test_three_workers_mirror_two_snapshots_exactly_and_hand_the_state_on(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    definition = export_definition("high-value", app.container, PATH, mode="mirror",
                                   max_removal_percent=100)  # fmt: skip
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100", **SPLIT)
    first = write_export(blob_service, container=app.container, path=PATH, profiles=2500,
                         partitions=3, seed=1)  # fmt: skip
    record, _ = split_run(app, 3)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == first.expected_hex
    assert (record.added, record.removed) == (len(first.expected), 0)

    blob_service.get_container_client(app.container).delete_blobs(*first.partitions)
    second = write_export(blob_service, container=app.container, path=PATH, profiles=3000,
                          partitions=3, seed=2)  # fmt: skip
    before = len(sandbox.requests())
    record, _ = split_run(app, 3)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == second.expected_hex
    kept = first.expected & second.expected
    assert (record.added, record.removed, record.unchanged) == (
        len(second.expected - kept), len(first.expected - kept), len(kept))  # fmt: skip
    sent = collections.Counter(r.method for r in users_requests(sandbox, before)
                               for _ in range(r.identifiers))  # fmt: skip
    assert sent == {"POST": len(second.expected - kept), "DELETE": len(first.expected - kept)}
    assert record.safeguard["decision"] == "passed"
    assert_counts(record, second)
    assert leftovers(app, blob_service, record.run_id) == []

    # The state the split run left is the one a run on one instance starts from.
    app.rebuild(monkeypatch, SPLIT_ABOVE_MB="2048")
    again = run(app)
    assert again.status == "succeeded", again.error
    assert (again.added, again.removed, again.unchanged) == (0, 0, len(second.expected))


def test_the_rate_limit_holds_across_workers(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    write_export(blob_service, container=app.container, path=PATH, profiles=1500, partitions=4)
    rate = 5.0
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="30", SNAPCHAT_REQUESTS_PER_SECOND=str(rate),
                **SPLIT)  # fmt: skip
    record, _ = split_run(app, 3)
    assert record.status == "succeeded", record.error
    sent = [r for r in sandbox.requests() if r.path.endswith("/users")]
    assert len(sent) >= 30
    assert len({r.token for r in sent}) >= 2  # several workers sent at once
    # Every two seconds, at most twice the rate (one more for a request whose slot began
    # right at the window's start); three workers each at the rate would send three times it.
    arrivals = sorted(r.at for r in sent)
    busiest = max(sum(1 for t in arrivals if start <= t < start + 2.0) for start in arrivals)
    assert busiest <= 2 * rate + 1


def test_a_worker_killed_mid_bucket_is_resumed_without_resending(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    generated = write_export(blob_service, container=app.container, path=PATH,
                             profiles=1200, partitions=2)  # fmt: skip
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="40", RUN_LEASE_SECONDS="3", **SPLIT)
    # Four requests go through; the fifth is told to come back in 30 s, and the worker is
    # killed while it waits.
    sandbox.inject("slow:0", path_contains="/users", times=4)
    sandbox.inject("429:retry-after=30", path_contains="/users")
    queued = service.request_run(app.runtime, "high-value", "http")
    (worker,) = start_workers(1, idle=60, visibility=2)
    try:
        deadline = time.monotonic() + 60
        while not any(r.status == 429 for r in sandbox.requests()):
            assert worker.poll() is None, "the worker stopped by itself"
            assert time.monotonic() < deadline, "the worker never reached the fifth request"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    interrupted = app.runtime.runs.get("high-value", queued.run_id)
    assert interrupted is not None
    assert interrupted.status == "running"

    time.sleep(3.5)  # the killed worker's job lease lapses; its message is visible again
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"], visibility_timeout=2)
    record = app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == generated.expected_hex
    accepted = users_requests(sandbox)
    assert len({r.content for r in accepted}) == len(accepted)  # no request accepted twice
    assert sum(r.identifiers for r in accepted) == len(generated.expected)
    assert record.resumed == 4 * 40
    assert record.uploaded == len(generated.expected)
