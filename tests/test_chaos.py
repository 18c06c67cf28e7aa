"""Fault injection: a fifth of all Snapchat requests fail, the export still ends exact."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import RequestRecord, SnapchatSandbox
from devtools.worker import drain
from shared.runs import service
from tests.conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, App
from tests.leaks import assert_no_leaks

PATH = "CustomerInsights_t1/BlobExport/HighValue"
PROFILES = 50_000


def busiest_second(log: list[RequestRecord]) -> int:
    """The most upload requests one access token sent within any one-second window."""
    by_token: dict[str, list[float]] = defaultdict(list)
    for record in log:
        if record.path.endswith("/users") and record.token:
            by_token[record.token].append(record.at)
    most = 0
    for times in by_token.values():
        times.sort()
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
    return most


@pytest.fixture
def sandbox() -> Iterator[SnapchatSandbox]:
    """Short-lived access tokens, so that the token endpoint is called (and faulted) often."""
    with SnapchatSandbox(token_lifetime=3) as server:
        server.add_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        server.add_audience(AUDIENCE)
        yield server


def test_an_export_survives_a_fifth_of_requests_failing(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    blob_service.create_container(app.container)
    emails = [f"chaos.{i}@example.com" for i in range(PROFILES)]
    csv = "CustomerId,EMail\n" + "".join(f"{i},{e}\n" for i, e in enumerate(emails))
    blob_service.get_blob_client(
        app.container, f"{PATH}/2026/11/05/1200/HighValue_1.csv"
    ).upload_blob(csv.encode())
    expected = {hashlib.sha256(e.encode()).hexdigest() for e in emails}
    app.rebuild(
        monkeypatch,
        UPLOAD_BATCH_SIZE="1000",
        HTTP_TIMEOUT_SECONDS="1",
        RETRY_ATTEMPTS="10",
        RETRY_MAX_SECONDS="60",
    )
    sandbox.chaos(0.2, seed=20261130, faults=("429", "500", "503", "slow", "drop"),
                  slow_seconds=1.5)  # fmt: skip
    sandbox.inject("500", path_contains="access_token")  # and the token endpoint surely fails
    sandbox.inject("drop", path_contains="access_token")

    queued = service.request_run(app.runtime, "high-value", "http")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None

    log = sandbox.requests()
    faults = Counter(r.fault for r in log if r.fault)
    uploads = [r for r in log if r.path.endswith("/users")]
    tokens = [r for r in log if r.path.endswith("/access_token")]
    figures = {
        "requests": len(log),
        "upload_requests": len(uploads),
        "token_requests": len(tokens),
        "injected_faults": dict(faults),
        "fault_share": round(sum(faults.values()) / len(log), 3),
        "client_retries": record.retries,
        "deliveries": record.attempts,
        "busiest_second_per_token": busiest_second(log),
        "held": len(sandbox.identifiers(AUDIENCE)),
        "expected": len(expected),
    }
    print("chaos figures:", json.dumps(figures))

    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == expected
    assert record.uploaded == PROFILES
    assert len([r for r in uploads if r.status == 200]) >= 50
    assert sum(faults.values()) >= 0.15 * len(log)  # the chaos really happened
    assert {"429", "500", "503", "slow", "drop"} <= set(faults)
    assert any(r.fault for r in tokens)  # the token endpoint was hit too
    assert busiest_second(log) <= 10

    forbidden = set(emails[:2000]) | set(list(expected)[:2000]) | {CLIENT_SECRET, REFRESH_TOKEN}
    forbidden |= {r.token for r in log if r.token}
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert_no_leaks("log", text, forbidden)
    assert_no_leaks("run record", json.dumps(record.as_dict()), forbidden)
