"""A new deployment's seed file with one broken definition beside good ones: the good ones
are seeded and run, the broken one is listed as invalid with its problems."""

from __future__ import annotations

import json
import secrets
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared import runtime
from shared.adapters.definition_store import SEEDED_BY
from shared.core.settings import Settings
from tests.conftest import AUDIENCE, App, export_definition, local_request
from tests.snapshots import PATH, emails, hashes, snapshot


def call(handler: Any, method: str, route: str) -> tuple[int, dict[str, Any]]:
    parts = route.split("/")
    params = {"name": parts[1]} if len(parts) > 1 else {}
    request = local_request(method, f"http://127.0.0.1:7071/api/{route}", route_params=params,
                            body=b"", headers={})  # fmt: skip
    response: func.HttpResponse = handler(request)
    return response.status_code, json.loads(response.get_body() or b"{}")


def test_a_broken_definition_in_the_seed_file_is_listed_and_the_good_one_runs(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNS_TABLE", f"fresh{secrets.token_hex(4)}")  # a new deployment
    broken = export_definition("no-columns", app.container, "CI/BlobExport/Other", columns={})
    app.exports_file.write_text(json.dumps({"connections": [{"name": "main"}], "exports": [
        export_definition("high-value", app.container, PATH), broken]}))  # fmt: skip
    app.runtime = runtime.build(Settings.from_env())
    runtime.install(app.runtime)

    status, listed = call(function_app.list_exports, "GET", "exports")
    assert status == 200
    assert [e["name"] for e in listed["exports"]] == ["high-value"]
    (invalid,) = listed["invalid"]
    assert invalid["name"] == "no-columns"
    assert invalid["problems"]
    assert all("columns" in p for p in invalid["problems"])
    store = app.runtime.definition_store
    assert store.history("export", "high-value")[0].changed_by == SEEDED_BY
    assert store.history("export", "no-columns")[0].changed_by == SEEDED_BY  # kept, as written

    snapshot(blob_service, app.container, emails(range(12)), day=1)
    status, queued = call(function_app.start_run, "POST", "exports/high-value/runs")
    assert status == 202, queued
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get("high-value", queued["run_id"])
    assert record is not None
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == hashes(range(12))
    status, refused = call(function_app.start_run, "POST", "exports/no-columns/runs")
    assert (status, refused["error"]) == (400, "invalid_definition")
