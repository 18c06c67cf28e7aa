"""The whole path: a Customer Insights export in Azurite, the HTTP trigger, the queue worker,
the Snapchat sandbox, and the run record served back over HTTP."""

from __future__ import annotations

import json

import azure.functions as func
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from tests.conftest import AUDIENCE, App, local_request

BASE = "http://127.0.0.1:7071"  # the local host (local mode answers loopback only)


def post_run(name: str, body: bytes = b"") -> func.HttpResponse:
    request = local_request(
        "POST", f"{BASE}/api/exports/{name}/runs", route_params={"name": name}, body=body
    )
    response: func.HttpResponse = function_app.start_run(request)
    return response


def get_run(name: str, run_id: str) -> func.HttpResponse:
    request = local_request(
        "GET",
        f"{BASE}/api/exports/{name}/runs/{run_id}",
        route_params={"name": name, "run_id": run_id},
        body=b"",
    )
    response: func.HttpResponse = function_app.get_run(request)
    return response


def test_http_run_through_the_queue_worker_uploads_exactly_the_valid_emails(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    export = write_export(
        blob_service,
        container=app.container,
        path="CustomerInsights_t1/BlobExport/HighValue",
        profiles=3000,
        partitions=3,
    )

    started = post_run("high-value")
    assert started.status_code == 202
    answer = json.loads(started.get_body())
    assert started.headers["Location"] == answer["status_url"]
    assert answer["status_url"] == f"{BASE}/api/exports/high-value/runs/{answer['run_id']}"

    assert drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"]) == 1

    record = json.loads(get_run("high-value", answer["run_id"]).get_body())
    assert record["status"] == "succeeded", record["error"]
    assert record["snapshot"] == export.snapshot
    assert record["rows_read"] == export.rows == 3000
    assert record["empty"] == export.empty
    assert record["invalid"] == export.invalid
    assert record["duplicates"] == export.duplicates
    assert record["prehashed"] == export.prehashed
    assert record["uploaded"] == len(export.expected)
    assert sandbox.identifiers(AUDIENCE) == export.expected_hex
