"""The bad-input matrix: each fault ends in its own clear error; the other export carries on."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient, ContainerClient

import function_app
from devtools.ci_export import write_export
from devtools.localhost import app_functions
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

GOOD = "CustomerInsights_good/BlobExport/Good"
BAD = "CustomerInsights_bad/BlobExport/Bad"
FOLDER = f"{BAD}/2026/11/05/1200"
BAD_AUDIENCE = "aud-bad-01"
SECRET_EMAIL = "secret.person@example.com"


def model(columns: list[str], partitions: list[str], *, header: bool = True) -> bytes:
    return json.dumps(
        {
            "name": "ci",
            "version": "1.0",
            "entities": [
                {
                    "$type": "LocalEntity",
                    "name": "Bad",
                    "attributes": [{"name": c, "dataType": "string"} for c in columns],
                    "partitions": [
                        {
                            "name": p.rsplit("/", 1)[-1],
                            "location": f"https://acct.blob.core.windows.net/CONTAINER/{p}",
                            "fileFormatSettings": {"columnHeaders": header},
                        }
                        for p in partitions
                    ],
                }
            ],
        }
    ).encode()


def put(container: ContainerClient, name: str, data: bytes) -> None:
    if name.endswith("model.json"):
        data = data.replace(b"CONTAINER", container.container_name.encode())
    container.upload_blob(name, data, overwrite=True)


MODEL = "CustomerInsights_bad/BlobExport/model.json"
ROW = f"1,{SECRET_EMAIL},Oslo\n".encode()
HEAD = b"CustomerId,EMail,City\n"

Scenario = Callable[[ContainerClient], None]
SCENARIOS: dict[str, tuple[Scenario, str]] = {
    "missing email column": (
        lambda c: (
            put(c, f"{FOLDER}/Bad_1.csv", b"CustomerId,Mail,City\n" + ROW),
            put(c, MODEL, model(["CustomerId", "Mail", "City"], [f"{FOLDER}/Bad_1.csv"])),
        ),
        "Bad_1.csv: no column named 'EMail'; model.json's columns are CustomerId, Mail, City",
    ),
    "model.json promises a header the partition lacks": (
        lambda c: (
            put(c, f"{FOLDER}/Bad_1.csv", ROW),
            put(c, MODEL, model(["CustomerId", "EMail", "City"], [f"{FOLDER}/Bad_1.csv"])),
        ),
        "model.json's columns are CustomerId, EMail, City (and the partition's first row does not",
    ),
    "model.json is not JSON": (
        lambda c: (put(c, f"{FOLDER}/Bad_1.csv", HEAD + ROW), put(c, MODEL, b"{'oops'")),
        "CustomerInsights_bad/BlobExport/model.json: not valid JSON",
    ),
    "model.json lacks the entity": (
        lambda c: (
            put(c, f"{FOLDER}/Bad_1.csv", HEAD + ROW),
            put(c, MODEL, model(["CustomerId"], []).replace(b'"Bad"', b'"Other"')),
        ),
        "model.json: lists no entity named 'Bad'",
    ),
    "partition listed but missing": (
        lambda c: (
            put(c, f"{FOLDER}/Bad_1.csv", HEAD + ROW),
            put(
                c,
                MODEL,
                model(
                    ["CustomerId", "EMail", "City"], [f"{FOLDER}/Bad_1.csv", f"{FOLDER}/Bad_2.csv"]
                ),
            ),
        ),
        f"lists partition {FOLDER}/Bad_2.csv, which is not in Blob Storage",
    ),
    "ragged rows": (
        lambda c: put(c, f"{FOLDER}/Bad_1.csv", HEAD + ROW + b"2,other@example.com\n"),
        "Bad_1.csv: line 3 has 2 fields, expected 3",
    ),
    "bytes that are not UTF-8": (
        lambda c: put(c, f"{FOLDER}/Bad_1.csv", HEAD + ROW + b"2,caf\xe9@example.com,Oslo\n"),
        "Bad_1.csv: not valid UTF-8 text: the first invalid byte sequence is on line 3 "
        f"(byte {len(HEAD + ROW) + 5})",
    ),
    "a NUL byte in a row": (
        lambda c: put(c, f"{FOLDER}/Bad_1.csv", HEAD + ROW + b"2,nul\x00x@example.com,Oslo\n"),
        f"Bad_1.csv: line 3 (byte {len(HEAD + ROW) + 5}) holds a NUL byte",
    ),
    "empty snapshot": (
        lambda c: (put(c, f"{FOLDER}/Bad_1.csv", b""), put(c, f"{FOLDER}/Bad_2.csv", b"")),
        "snapshot 2026/11/05/1200 holds no data rows",
    ),
    "a 1 MB field": (
        lambda c: put(
            c, f"{FOLDER}/Bad_1.csv", HEAD + ROW + b'2,"' + b"x" * 1_048_576 + b'",Oslo\n'
        ),
        "Bad_1.csv: line 3: malformed CSV (field larger than field limit",
    ),
}


@pytest.fixture
def two_exports(app: App, sandbox: SnapchatSandbox, monkeypatch: pytest.MonkeyPatch) -> App:
    sandbox.add_audience(BAD_AUDIENCE)
    write_definitions(
        app.exports_file,
        [
            export_definition("good", app.container, GOOD),
            export_definition("bad", app.container, BAD, audience_id=BAD_AUDIENCE),
        ],
    )
    app.rebuild(monkeypatch)
    return app


def tick_and_drain(app: App) -> None:
    function_app.find_new_snapshots(TimerRequest(past_due=False))
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_bad_input_fails_its_run_with_a_specific_error(
    two_exports: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    caplog: pytest.LogCaptureFixture,
    scenario: str,
) -> None:
    caplog.set_level(logging.INFO)
    app = two_exports
    good = write_export(blob_service, container=app.container, path=GOOD, profiles=100)
    prepare, message = SCENARIOS[scenario]
    prepare(blob_service.get_container_client(app.container))

    tick_and_drain(app)

    bad_runs = app.runtime.runs.recent("bad")
    assert [r.status for r in bad_runs] == ["failed"]
    assert message in bad_runs[0].error
    assert message in caplog.text  # the log says it too
    # Nothing uploaded: each fault is found before a request's worth of identifiers was read
    # (add mode sends while reading; see docs/how-it-works.md, "When requests start").
    assert sandbox.identifiers(BAD_AUDIENCE) == set()
    good_runs = app.runtime.runs.recent("good")
    assert [r.status for r in good_runs] == ["succeeded"]
    assert sandbox.identifiers(AUDIENCE) == good.expected_hex
    raw = {SECRET_EMAIL, "caf\xe9@example.com", "other@example.com"}
    forbidden = raw | {hashlib.sha256(v.encode()).hexdigest() for v in raw}
    forbidden |= {CLIENT_SECRET, REFRESH_TOKEN} | good.expected_hex
    assert_no_leaks("log", caplog.text, forbidden)
    assert_no_leaks("run record", json.dumps(bad_runs[0].as_dict()), forbidden)


def test_a_broken_definition_is_reported_and_the_others_run(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = export_definition("bad", app.container, BAD)
    del bad["audience_id"]
    write_definitions(
        app.exports_file,
        [export_definition("good", app.container, GOOD), bad],
    )  # fmt: skip
    app.rebuild(monkeypatch)
    good = write_export(blob_service, container=app.container, path=GOOD, profiles=50)
    tick_and_drain(app)
    assert [r.status for r in app.runtime.runs.recent("good")] == ["succeeded"]
    assert sandbox.identifiers(AUDIENCE) == good.expected_hex
    assert (
        "export bad, whose definition is invalid: export 'bad': audience_id: give either"
        in caplog.text
    )

    request = local_request("POST", "http://127.0.0.1:7071/api/exports/bad/runs",
                               route_params={"name": "bad"}, body=b"")  # fmt: skip
    response = function_app.start_run(request)
    body = json.loads(response.get_body())
    assert (response.status_code, body["error"]) == (400, "invalid_definition")
    assert body["problems"][0].startswith("export 'bad': audience_id: give either audience_id")
    listing = json.loads(
        function_app.list_exports(
            local_request("GET", "http://127.0.0.1:7071/api/exports", body=b"")
        ).get_body()
    )
    assert {i["name"] for i in listing["invalid"]} == {"bad"}


def test_a_missing_secret_fails_only_that_export(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = {
        "connections": [{"name": "main"}, {"name": "other"}],
        "exports": [
            export_definition("good", app.container, GOOD),
            export_definition("bad", app.container, BAD, connection="other"),
        ],
    }
    app.exports_file.write_text(json.dumps(document))
    monkeypatch.setenv("SECRET_SNAPCHAT_OTHER_CLIENT_ID", "other-client")
    monkeypatch.setenv("SECRET_SNAPCHAT_OTHER_CLIENT_SECRET", "   ")
    app.rebuild(monkeypatch)
    write_export(blob_service, container=app.container, path=GOOD, profiles=50)
    write_export(blob_service, container=app.container, path=BAD, profiles=50)
    tick_and_drain(app)
    assert [r.status for r in app.runtime.runs.recent("good")] == ["succeeded"]
    failed = app.runtime.runs.recent("bad")[0]
    assert failed.status == "failed"
    assert failed.error == (
        "secret 'snapchat-other-client-secret': not set "
        "(environment variable SECRET_SNAPCHAT_OTHER_CLIENT_SECRET)"
    )


ODD_NAMES = ("no-such-thing", "UPPER", "a" * 200, "..", "%00", "x y", "é", "high-value")
ODD_BODIES = (b"", b"[]", b"null", b'{"x": 1}', b"\xff\xfe", b"[" * 10_000,
              b'{"name": 5, "connection": ["a"], "audience_id": {}, "columns": 3}')  # fmt: skip


def test_no_route_answers_500_to_a_bad_or_unknown_input(app: App) -> None:
    """Every HTTP route, as the local admin, with names that do not exist or cannot, bodies
    that are not what it takes and ETags that mean nothing: a 4xx each time, never a 5xx."""
    failures = set()
    for function in app_functions():  # built once per process, as the host does
        trigger = function.get_bindings()[0]
        if trigger.type != "httpTrigger":
            continue
        handler = function.get_user_function()
        for method in trigger.methods or ["GET"]:
            for name in ODD_NAMES:
                for body in ODD_BODIES:
                    for if_match in ("", "garbage"):
                        request = local_request(
                            str(method), f"http://127.0.0.1:7071/api/{trigger.route}", body=body,
                            route_params={"name": name, "run_id": name, "path": name},
                            params={"limit": name, "code": name, "state": name},
                            headers={"If-Match": if_match} if if_match else {},
                        )  # fmt: skip
                        status = handler(request).status_code
                        if status >= 500:
                            failures.add(f"{method} {trigger.route} {name[:12]!r}: {status}")
    assert sorted(failures) == []
