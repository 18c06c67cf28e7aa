"""Mirror sync and dry runs, each checked against what the Snapchat sandbox received."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.entry.cli import main
from tests.conftest import AUDIENCE, App, export_definition, local_request, write_definitions
from tests.snapshots import (
    PATH,
    emails,
    hashes,
    outside_identifier,
    run,
    sent,
    sha,
    snapshot,
)


@pytest.fixture
def mirror_app(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    # These tests churn up to half of a small audience on purpose; the removal safeguard's
    # own tests (test_removal_safeguard.py) use its defaults.
    definition = export_definition("high-value", app.container, PATH, mode="mirror",
                                   max_removal_percent=80)  # fmt: skip
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="25")
    return app


def test_mirror_adds_the_new_removes_the_departed_and_leaves_the_rest(
    mirror_app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    app = mirror_app
    outsider = outside_identifier(sandbox)
    snapshot(blob_service, app.container, emails(range(100)), day=1)
    first = run(app)
    assert first.status == "succeeded", first.error
    assert (first.added, first.removed, first.unchanged) == (100, 0, 0)
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100)) | {outsider}

    snapshot(blob_service, app.container, emails(range(10, 105)), day=2)  # 10 left, 5 joined
    before = len(sandbox.requests())
    second = run(app)
    assert second.status == "succeeded", second.error
    assert (second.added, second.removed, second.unchanged) == (5, 10, 90)
    assert second.by_type["EMAIL_SHA256"]["removed"] == 10
    # exactly the departed were removed, exactly the new added; the outsider stays
    assert sandbox.identifiers(AUDIENCE) == hashes(range(10, 105)) | {outsider}
    later = sandbox.requests()[before:]
    assert [r.identifiers for r in later if r.method == "POST" and r.path.endswith("/users")] == [5]
    assert [r.identifiers for r in later if r.method == "DELETE"] == [10]


def test_mirror_state_is_encrypted_and_only_written_by_a_successful_run(
    mirror_app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    app = mirror_app
    snapshot(blob_service, app.container, emails(range(50)), day=1)
    assert run(app).status == "succeeded"
    state = blob_service.get_blob_client(app.runtime.settings.state_container,
                                         f"high-value/{AUDIENCE}/EMAIL_SHA256.state")  # fmt: skip
    stored = state.download_blob().readall()
    for value in hashes(range(50)):
        assert value.encode() not in stored
        assert bytes.fromhex(value) not in stored
    assert b"person1@example.com" not in stored

    snapshot(blob_service, app.container, emails(range(25, 75)), day=2)
    sandbox.inject("403", path_contains="/users")
    assert run(app).status == "failed"
    assert state.download_blob().readall() == stored  # a failed run leaves the state alone
    retried = run(app)
    assert (retried.status, retried.added, retried.removed) == ("succeeded", 25, 25)
    assert sandbox.identifiers(AUDIENCE) == hashes(range(25, 75))


def test_mirror_needs_the_state_key(
    mirror_app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_EXPORTER_STATE_KEY")
    snapshot(blob_service, mirror_app.container, emails(range(5)), day=1)
    record = run(mirror_app)
    assert record.status == "failed"
    assert "secret 'exporter-state-key': not set" in record.error


def test_a_dry_run_sends_nothing_and_says_what_would_change(
    mirror_app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    app = mirror_app
    snapshot(blob_service, app.container, emails(range(40)), day=1)
    assert run(app).status == "succeeded"
    snapshot(blob_service, app.container, emails(range(5, 50)), day=2)
    before = len(sandbox.requests())

    request = local_request("POST", "http://127.0.0.1:7071/api/exports/high-value/runs",
                               route_params={"name": "high-value"}, body=b'{"dry_run": true}')  # fmt: skip
    answer = json.loads(function_app.start_run(request).get_body())
    assert answer["run"]["dry_run"] is True
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get("high-value", answer["run_id"])
    assert record is not None
    assert (record.status, record.dry_run) == ("succeeded", True)
    assert (record.added, record.removed, record.unchanged, record.uploaded) == (10, 5, 35, 0)
    assert record.by_type["EMAIL_SHA256"]["added"] == 10
    assert [r for r in sandbox.requests()[before:] if r.path.endswith("/users")] == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(40))

    assert main(["run", "high-value", "--dry-run"]) == 0  # the command line's equivalent
    cli_record = json.loads(capsys.readouterr().out)
    assert (cli_record["dry_run"], cli_record["added"], cli_record["removed"]) == (True, 10, 5)
    assert sandbox.identifiers(AUDIENCE) == hashes(range(40))
    assert run(app).removed == 5  # the state did not move: the real run does the work


def test_churn_of_one_percent_sends_about_one_percent_in_mirror_mode(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A CI-sized version of the 1,000,000-profile figure in the README."""
    counts = {}
    for mode in ("add", "mirror"):
        write_definitions(app.exports_file,
                          [export_definition(mode, app.container, PATH, mode=mode)])  # fmt: skip
        app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100")
        snapshot(blob_service, app.container, emails(range(10_000)), day=1)
        assert run(app, mode).status == "succeeded"
        snapshot(blob_service, app.container, emails(range(100, 10_100)), day=2)  # 1% churn
        before = len(sandbox.requests())
        assert run(app, mode).status == "succeeded"
        counts[mode] = len([r for r in sandbox.requests()[before:] if r.path.endswith("/users")])
        blob_service.delete_container(app.container)
    assert counts == {"add": 100, "mirror": 2}  # 10,000 / 100 versus one add and one remove


def test_an_empty_snapshot_in_mirror_mode_removes_nothing(
    mirror_app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    app = mirror_app
    snapshot(blob_service, app.container, emails(range(30)), day=1)
    assert run(app).status == "succeeded"
    folder = f"{PATH}/2026/11/02/0600"
    blob_service.get_blob_client(app.container, f"{folder}/HighValue_1.csv").upload_blob(
        b"CustomerId,EMail\n"
    )
    record = run(app)
    assert record.status == "failed"
    assert "holds no data rows" in record.error
    assert sent(sandbox, "DELETE") == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(30))


def test_after_a_half_applied_mirror_run_the_next_run_still_lands_exactly(
    mirror_app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    app = mirror_app  # batch size 25
    snapshot(blob_service, app.container, emails(range(50)), day=1)
    assert run(app).status == "succeeded"
    # Run 2 adds 50..74, then its removal of 0..24 is refused: it fails half applied.
    snapshot(blob_service, app.container, emails(range(25, 75)), day=2)
    sandbox.inject("403", path_contains="/users", method="DELETE")
    failed = run(app)
    assert failed.status == "failed"
    assert sandbox.identifiers(AUDIENCE) == hashes(range(75))
    # Run 3 must take back 60..74, which only the failed run had added.
    keep = [*range(10), *range(30, 60)]
    rows = [{"CustomerId": str(i), "EMail": f"person{i}@example.com"} for i in keep]
    snapshot(blob_service, app.container, rows, day=3)
    third = run(app)
    assert third.status == "succeeded", third.error
    assert sandbox.identifiers(AUDIENCE) == {sha(f"person{i}@example.com") for i in keep}
    fourth_state = list(app.runtime.state().read("high-value", AUDIENCE, "EMAIL_SHA256", "touched"))
    assert fourth_state == []  # cleared by the successful run
