"""The queue worker against the Snapchat sandbox: batching, tokens, retries, failures."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.adapters.jobqueue import Job
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import AUDIENCE, App, export_definition, write_definitions

PATH = "CustomerInsights_t1/BlobExport/HighValue"


def run_export(app: App, name: str = "high-value") -> RunRecord:
    queued = service.request_run(app.runtime, name, "http")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get(name, queued.run_id)
    assert record is not None
    return record


def write_plain_csv(blob_service: BlobServiceClient, container: str, count: int) -> set[str]:
    """A header-only-detectable snapshot of ``count`` distinct valid emails."""
    blob_service.create_container(container)
    emails = [f"person{i}@example.com" for i in range(count)]
    data = ("CustomerId,EMail\n" + "".join(f"{i},{e}\n" for i, e in enumerate(emails))).encode()
    blob_service.get_blob_client(container, f"{PATH}/2026/11/05/1200/HighValue_1.csv").upload_blob(
        data
    )
    return {hashlib.sha256(e.encode()).hexdigest() for e in emails}


def uploads(sandbox: SnapchatSandbox) -> list[int]:
    return [
        r.identifiers for r in sandbox.requests() if r.path.endswith("/users") and r.status == 200
    ]


def test_batches_split_at_exactly_100000(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    expected = write_plain_csv(blob_service, app.container, 200_001)
    record = run_export(app)
    assert record.status == "succeeded", record.error
    assert uploads(sandbox) == [100_000, 100_000, 1]
    assert (record.batches, record.uploaded) == (3, 200_001)
    assert sandbox.identifiers(AUDIENCE) == expected


def test_the_batch_size_setting_is_honoured(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    expected = write_plain_csv(blob_service, app.container, 25)
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="10")
    record = run_export(app)
    assert uploads(sandbox) == [10, 10, 5]
    assert record.batches == 3
    assert sandbox.identifiers(AUDIENCE) == expected
    tokens = [r for r in sandbox.requests() if r.path.endswith("/access_token")]
    assert len(tokens) == 1  # the access token is cached across batches


def test_a_401_refreshes_the_token_once_and_retries(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    expected = write_plain_csv(blob_service, app.container, 30)
    sandbox.expire_tokens()  # nothing issued yet; the first token is fresh
    sandbox.inject("401", path_contains="/users")
    record = run_export(app)
    assert record.status == "succeeded", record.error
    log = [r for r in sandbox.requests() if r.method == "POST"]
    assert [r.path.endswith("/access_token") for r in log] == [True, False, True, False]
    assert log[1].status == 401
    assert log[3].token != log[1].token
    assert sandbox.identifiers(AUDIENCE) == expected


def test_429_and_500_are_retried(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    expected = write_plain_csv(blob_service, app.container, 30)
    sandbox.inject("429", path_contains="/users")
    sandbox.inject("500", path_contains="/users")
    record = run_export(app)
    assert record.status == "succeeded", record.error
    assert [r.status for r in sandbox.requests() if r.path.endswith("/users")] == [429, 500, 200]
    assert (record.retries, record.requests) == (2, 3)
    assert sandbox.identifiers(AUDIENCE) == expected


def test_retries_are_bounded_and_the_queue_gives_up_after_its_last_delivery(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    write_plain_csv(blob_service, app.container, 30)
    app.rebuild(monkeypatch, RETRY_ATTEMPTS="3")
    sandbox.inject("503", path_contains="/users", times=1000)
    record = run_export(app)
    assert record.status == "failed"
    assert record.error.startswith("gave up after 5 attempt(s): attempt 5 interrupted: Snapchat")
    assert "still failing after 3 attempts (HTTP 503" in record.error
    assert len(uploads_tried(sandbox)) == 15  # 5 deliveries (host.json) x 3 attempts
    assert sandbox.identifiers(AUDIENCE) == set()
    # the export is free again for the next run
    sandbox.reset()
    assert run_export(app).status == "succeeded"


def uploads_tried(sandbox: SnapchatSandbox) -> list[int]:
    return [r.status for r in sandbox.requests() if r.path.endswith("/users")]


def test_a_redelivered_run_resumes_after_its_last_accepted_batch(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    expected = write_plain_csv(blob_service, app.container, 45)
    app.rebuild(monkeypatch, RETRY_ATTEMPTS="2", UPLOAD_BATCH_SIZE="10")
    sandbox.inject("slow:0", path_contains="/users", times=2)  # two batches go through first
    sandbox.inject("503", path_contains="/users", times=2)  # then one delivery runs out of tries
    record = run_export(app)
    assert record.status == "succeeded", record.error
    assert (record.attempts, record.resumed, record.uploaded, record.batches) == (2, 20, 45, 5)
    assert uploads_tried(sandbox) == [200, 200, 503, 503, 200, 200, 200]
    assert sum(uploads(sandbox)) == len(sandbox.identifiers(AUDIENCE)) == 45  # nothing twice
    assert sandbox.identifiers(AUDIENCE) == expected


@pytest.mark.parametrize(
    ("audience", "fault", "message"),
    [
        (AUDIENCE, "403", "needs Admin or Data Manager"),
        ("aud-unknown", None, "HTTP 404 E3003"),
    ],
)
def test_permission_and_unknown_audience_stop_the_run(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch, audience: str, fault: str | None, message: str,
) -> None:  # fmt: skip
    write_definitions(
        app.exports_file,
        [export_definition("high-value", app.container, PATH, audience_id=audience)],
    )
    app.rebuild(monkeypatch)
    write_plain_csv(blob_service, app.container, 5)
    if fault:
        sandbox.inject(fault, path_contains="/users")
    record = run_export(app)
    assert record.status == "failed"
    assert message in record.error
    assert len([r for r in sandbox.requests() if r.path.endswith("/users")]) == 1


def test_refused_credentials_fail_the_run_with_advice(
    app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_plain_csv(blob_service, app.container, 5)
    app.rebuild(monkeypatch, SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN="revoked-refresh-token")
    record = run_export(app)
    assert record.status == "failed"
    assert "refused the credentials of connection 'main' (invalid_grant)" in record.error
    assert "renew secret 'snapchat-main-refresh-token'" in record.error
    assert "revoked-refresh-token" not in record.error
    assert json.loads(json.dumps(record.as_dict()))["approximate_number_users"] is None  # null


def test_a_missing_email_column_fails_the_run_and_names_the_column(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    write_definitions(
        app.exports_file,
        [export_definition("high-value", app.container, PATH, columns={"email": "PrimaryEmail"})],
    )
    app.rebuild(monkeypatch)
    write_export(blob_service, container=app.container, path=PATH, profiles=10, partitions=1)
    record = run_export(app)
    assert record.status == "failed"
    assert "no column named 'PrimaryEmail'" in record.error
    assert "HighValue_1.csv" in record.error
    assert uploads(sandbox) == []


def test_flat_layout_exports(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    flat = "CustomerInsights_t1/Weekly_HighValue"
    write_definitions(app.exports_file, [export_definition("high-value", app.container, flat)])
    app.rebuild(monkeypatch)
    blob_service.create_container(app.container)
    older = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    newer = older + 86_400
    for epoch, email in ((older, "old@example.com"), (newer, "new@example.com")):
        blob_service.get_blob_client(app.container, f"{flat}_{epoch}.csv").upload_blob(
            f"CustomerId,EMail\r\n1,{email}\r\n".encode()
        )
    record = run_export(app)
    assert (record.status, record.snapshot) == ("succeeded", f"epoch-{newer}")
    assert sandbox.identifiers(AUDIENCE) == {hashlib.sha256(b"new@example.com").hexdigest()}


def test_a_redelivered_job_of_a_finished_run_is_ignored(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    write_plain_csv(blob_service, app.container, 5)
    record = run_export(app)
    job = {"run_id": record.run_id, "export": "high-value", "snapshot": record.snapshot}
    function_app.export_worker(func.QueueMessage(id="again", body=json.dumps(job).encode()))
    assert len(uploads(sandbox)) == 1


def test_a_message_that_is_not_a_job_is_dropped_with_a_log_line(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    function_app.export_worker(func.QueueMessage(id="m1", body=b"hello"))
    assert "Queue message m1 is not an export job" in caplog.text


def test_a_resume_that_would_rebuild_other_requests_starts_over(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Between two deliveries the definition changed (another column): skipping by count
    would skip requests never sent, so the run must notice and start over."""
    blob_service.create_container(app.container)
    rows = "".join(f"{i},first{i}@example.com,second{i}@example.com\n" for i in range(40))
    blob_service.get_blob_client(
        app.container, f"{PATH}/2026/11/05/1200/HighValue_1.csv"
    ).upload_blob(("CustomerId,EMail,Mail2\n" + rows).encode())
    app.rebuild(monkeypatch, RETRY_ATTEMPTS="2", UPLOAD_BATCH_SIZE="10")
    sandbox.inject("slow:0", path_contains="/users", times=2)
    sandbox.inject("503", path_contains="/users", times=2)
    queued = service.request_run(app.runtime, "high-value", "http")
    with pytest.raises(Exception, match="still failing"):
        service.process(app.runtime, Job(queued.run_id, "high-value", queued.snapshot))
    interrupted = app.runtime.runs.get("high-value", queued.run_id)
    assert interrupted is not None
    assert (interrupted.status, interrupted.batches) == ("queued", 2)

    write_definitions(app.exports_file, [export_definition(
        "high-value", app.container, PATH, columns={"email": "Mail2"})])  # fmt: skip
    app.rebuild(monkeypatch)
    with pytest.raises(Exception, match="starting over"):
        service.process(app.runtime, Job(queued.run_id, "high-value", queued.snapshot))
    record = service.process(app.runtime, Job(queued.run_id, "high-value", queued.snapshot))
    assert record is not None
    assert (record.status, record.resumed, record.attempts) == ("succeeded", 0, 3), record.error
    second = {hashlib.sha256(f"second{i}@example.com".encode()).hexdigest() for i in range(40)}
    assert second <= sandbox.identifiers(AUDIENCE)
