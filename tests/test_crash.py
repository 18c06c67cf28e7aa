"""A worker process killed mid-export: the redelivered job resumes, nothing is sent twice."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.adapters.export_locks import ExportLocks
from shared.runs import service
from tests.conftest import AUDIENCE, CLIENT_SECRET, REFRESH_TOKEN, App
from tests.leaks import assert_no_leaks

pytestmark = pytest.mark.integration  # it kills a worker process

PATH = "CustomerInsights_t1/BlobExport/HighValue"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_killed_worker_s_run_resumes_after_its_last_accepted_batch(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    emails = [f"crash.{i}@example.com" for i in range(60)]
    blob_service.create_container(app.container)
    blob_service.get_blob_client(
        app.container, f"{PATH}/2026/11/05/1200/HighValue_1.csv"
    ).upload_blob(
        ("CustomerId,EMail\n" + "".join(f"{i},{e}\n" for i, e in enumerate(emails))).encode()
    )
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="10", RUN_LEASE_SECONDS="3")
    # Three batches go through; the fourth is told to come back in 15 s, and the worker
    # is killed while it waits.
    sandbox.inject("slow:0", path_contains="/users", times=3)
    sandbox.inject("429:retry-after=15", path_contains="/users")
    queued = service.request_run(app.runtime, "high-value", "http")

    worker = subprocess.Popen(
        [sys.executable, "-m", "shared", "-v", "work", "--once", "--visibility-timeout", "2"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            record = app.runtime.runs.get("high-value", queued.run_id)
            assert record is not None
            told_to_wait = any(r.status == 429 for r in sandbox.requests())
            if record.batches == 3 and told_to_wait:
                break
            assert worker.poll() is None, "the worker stopped by itself"
            assert time.monotonic() < deadline, "the worker never reached the fourth batch"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
        output, _ = worker.communicate(timeout=10)
    worker_log = output.decode()
    assert worker.returncode == -signal.SIGKILL
    interrupted = app.runtime.runs.get("high-value", queued.run_id)
    assert interrupted is not None
    assert interrupted.status == "running"
    assert interrupted.batches == 3

    # The killed worker's lease runs out; the queue makes the job visible again.
    holder = ExportLocks(app.runtime.runs).holder("high-value")
    assert holder is not None
    time.sleep(max(0.0, holder.expires_at - time.time()) + 0.5)
    assert drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"]) == 1

    record = app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None
    assert record.status == "succeeded", record.error
    assert (record.attempts, record.resumed, record.uploaded, record.batches) == (2, 30, 60, 6)
    accepted = [
        r.identifiers for r in sandbox.requests() if r.path.endswith("/users") and r.status == 200
    ]
    assert accepted == [10] * 6  # three before the kill, three after: no batch twice
    expected = {hashlib.sha256(e.encode()).hexdigest() for e in emails}
    assert sandbox.identifiers(AUDIENCE) == expected

    forbidden = set(emails) | expected | {CLIENT_SECRET, REFRESH_TOKEN}
    forbidden |= {r.token for r in sandbox.requests() if r.token}
    assert_no_leaks("killed worker's log", worker_log, forbidden)
    resumed_log = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert_no_leaks("resumed run's log", resumed_log, forbidden)
    assert_no_leaks("run record", json.dumps(record.as_dict()), forbidden)
