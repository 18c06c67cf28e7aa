"""Timer, HTTP and duplicate deliveries racing for one export: one active run at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import azure.functions as func
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.adapters.export_locks import ExportLocks
from shared.adapters.jobqueue import Job
from shared.core.errors import RunBusy
from shared.runs.service import process
from tests.conftest import AUDIENCE, App, local_request

PATH = "CustomerInsights_t1/BlobExport/HighValue"


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Run the calls on separate threads released by one barrier; return results or errors."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def post() -> int:
    request = local_request("POST", "http://127.0.0.1:7071/api/exports/high-value/runs",
                               route_params={"name": "high-value"}, body=b"")  # fmt: skip
    response: func.HttpResponse = function_app.start_run(request)
    return response.status_code


def tick() -> None:
    function_app.find_new_snapshots(TimerRequest(past_due=False))


def test_timer_and_http_at_the_same_moment_make_one_active_run(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    export = write_export(blob_service, container=app.container, path=PATH, profiles=200)
    for _ in range(5):
        results = at_once(tick, post, post, tick)
        runs = app.runtime.runs.recent("high-value", limit=100)
        active = [r for r in runs if r.status in ("queued", "running")]
        assert len(active) == 1, results
        statuses = sorted(r for r in results if isinstance(r, int))
        assert statuses in ([202, 409], [409, 409])  # 409 when the timer won the race
        drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    runs = app.runtime.runs.recent("high-value", limit=100)
    assert len(runs) == 5
    assert {r.status for r in runs} == {"succeeded"}
    assert sandbox.identifiers(AUDIENCE) == export.expected_hex


def test_two_deliveries_of_one_job_do_not_both_upload(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=200)
    assert post() == 202
    record = app.runtime.runs.recent("high-value")[0]
    job = Job(run_id=record.run_id, export="high-value", snapshot=record.snapshot)
    sandbox.inject("slow:1", path_contains="/users")  # keep the first worker busy
    results = at_once(lambda: process(app.runtime, job), lambda: process(app.runtime, job))
    busy = [r for r in results if isinstance(r, RunBusy)]
    done = [r for r in results if not isinstance(r, Exception)]
    assert (len(busy), len(done)) == (1, 1), results
    uploads = [r for r in sandbox.requests() if r.path.endswith("/users")]
    assert len(uploads) == 1
    final = app.runtime.runs.get("high-value", record.run_id)
    assert final is not None
    assert final.status == "succeeded"
    assert ExportLocks(app.runtime.runs).holder("high-value") is None
    assert json.loads(json.dumps(final.as_dict()))["attempts"] == 1
