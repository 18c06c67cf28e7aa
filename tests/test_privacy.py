"""No raw email, hash, token or secret in any log record, run record or HTTP answer."""

from __future__ import annotations

import hashlib
import json
import logging

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from tests.conftest import (
    AUDIENCE,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    App,
    export_definition,
    local_request,
    write_definitions,
)
from tests.leaks import assert_no_leaks

PATH = "CustomerInsights_t1/BlobExport/HighValue"


def emails() -> list[str]:
    valid = [f"Private.Person{i}@Example.com" for i in range(300)]
    odd = ["broken address@example.com", "no-at-sign.example.com", "person0@example.com"]
    return valid + odd


def write_snapshot(blob_service: BlobServiceClient, container: str, cells: list[str]) -> None:
    if not blob_service.get_container_client(container).exists():
        blob_service.create_container(container)
    prehashed = hashlib.sha256(b"upstream@example.com").hexdigest()
    rows = "".join(f'{i},"{cell}"\n' for i, cell in enumerate([*cells, prehashed]))
    blob_service.get_blob_client(container, f"{PATH}/2026/11/05/1200/HighValue_1.csv").upload_blob(
        ("CustomerId,EMail\n" + rows).encode(), overwrite=True
    )


def http(handler: func.FunctionBuilder, method: str, **route: str) -> str:
    request = local_request(method, "http://127.0.0.1:7071/api/r", route_params=route, body=b"")
    response: func.HttpResponse = handler(request)
    return response.get_body().decode()


def choosing_answers(container: str) -> list[str]:
    """What discovery and the preview answer about the snapshot (counts and names only),
    the preview's missing-column answer included."""
    found = function_app.list_segments(local_request(
        "GET", "http://127.0.0.1:7071/api/segments", params={"container": container}))  # fmt: skip
    assert found.status_code == 200
    answers = [found.get_body().decode()]
    for columns in ({"email": "EMail"}, {"email": "Mail"}):
        definition = {**export_definition("preview", container, PATH), "columns": columns}
        checked = function_app.preview_export(local_request(
            "POST", "http://127.0.0.1:7071/api/preview", body=json.dumps(definition).encode()))  # fmt: skip
        assert checked.status_code in (200, 409), checked.get_body()
        answers.append(checked.get_body().decode())
    assert '"invalid":2' in answers[1]  # the preview really read the cells
    return answers


def test_nothing_personal_or_secret_leaks(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, the Azure SDK's and urllib3's included
    cells = emails()
    write_snapshot(blob_service, app.container, cells)
    write_definitions(
        app.exports_file,
        [
            export_definition("high-value", app.container, PATH),
            export_definition("wrong-column", app.container, PATH, columns={"email": "Mail"}),
            export_definition("no-access", app.container, PATH),
        ],
    )
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100")
    answers = []
    sandbox.inject("401", path_contains="/users")
    sandbox.inject("429", path_contains="/users")
    for name in ("high-value", "wrong-column"):
        answers.append(http(function_app.start_run, "POST", name=name))
        drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    sandbox.inject("403", path_contains="/users")
    answers.append(http(function_app.start_run, "POST", name="no-access"))
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    for name in ("high-value", "wrong-column", "no-access"):
        answers.append(http(function_app.list_runs, "GET", name=name))
    answers.append(http(function_app.list_exports, "GET"))
    answers += choosing_answers(app.container)

    records = [r.as_dict() for n in ("high-value", "wrong-column", "no-access")
               for r in app.runtime.runs.recent(n)]  # fmt: skip
    statuses = sorted(r["status"] for r in records)
    assert statuses == ["failed", "failed", "succeeded"]
    assert sandbox.identifiers(AUDIENCE)  # the successful run really sent hashes

    tokens = {r.token for r in sandbox.requests() if r.token}
    assert tokens
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records).lower()
    stored = json.dumps(records).lower()
    served = "\n".join(answers).lower()
    assert len(caplog.records) > 20  # the capture really saw the run's log
    forbidden = {c.strip().lower() for c in cells}
    forbidden |= {hashlib.sha256(c.strip().lower().encode()).hexdigest() for c in cells}
    forbidden |= set(sandbox.identifiers(AUDIENCE))
    forbidden |= {CLIENT_SECRET.lower(), REFRESH_TOKEN.lower()}
    forbidden |= {t.lower() for t in tokens}
    for where, text in (("log", logged), ("run records", stored), ("HTTP answers", served)):
        assert_no_leaks(where, text, forbidden)
