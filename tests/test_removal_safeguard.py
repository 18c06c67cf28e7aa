"""The removal safeguard: a mirror run never empties (or mostly empties) an audience by accident.

Each run goes through the real queue worker against Azurite and the sandbox; what the sandbox
holds afterwards is the evidence."""

from __future__ import annotations

import json

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.core import safeguard
from shared.core.runrecord import RunRecord
from shared.core.safeguard import Decision, KindChange, Limits
from shared.entry.cli import main
from tests.conftest import AUDIENCE, App, export_definition, local_request, write_definitions
from tests.snapshots import PATH, emails, hashes, run, sent, snapshot


@pytest.fixture
def mirror(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    """A mirror export with the safeguard's defaults (20%, 10 always allowed)."""
    write_definitions(
        app.exports_file, [export_definition("high-value", app.container, PATH, mode="mirror")]
    )
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="50")
    return app


def blank(rows: list[dict[str, str]], column: str = "EMail") -> list[dict[str, str]]:
    return [{**row, column: ""} for row in rows]


def post_run(body: bytes) -> dict[str, object]:
    request = local_request("POST", "http://127.0.0.1:7071/api/exports/high-value/runs",
                               route_params={"name": "high-value"}, body=body)  # fmt: skip
    response = function_app.start_run(request)
    assert response.status_code == 202, response.get_body()
    answer: dict[str, object] = json.loads(response.get_body())
    return answer


def state_blob(app: App, blob_service: BlobServiceClient) -> bytes:
    blob = blob_service.get_blob_client(
        app.runtime.settings.state_container, f"high-value/{AUDIENCE}/EMAIL_SHA256.state"
    )
    return blob.download_blob().readall()


def test_a_snapshot_whose_email_cells_are_all_blank_removes_nobody(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    rows = emails(range(300))
    snapshot(blob_service, mirror.container, rows, day=1)
    assert run(mirror).status == "succeeded"
    state = state_blob(mirror, blob_service)

    snapshot(blob_service, mirror.container, blank(rows), day=2)  # same rows, emails blank
    before = len(sandbox.requests())
    record = run(mirror)
    assert record.status == "failed"
    assert (
        f"would remove 300 of 300 (100%) EMAIL_SHA256 identifiers the app manages in audience "
        f"{AUDIENCE}: the snapshot holds no valid EMAIL_SHA256 identifier at all" in record.error
    )
    assert "allow_large_removal" in record.error  # and what to do about it
    assert [r for r in sandbox.requests()[before:] if r.path.endswith("/users")] == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(300))
    assert state_blob(mirror, blob_service) == state  # nothing moved
    assert record.safeguard["decision"] == "blocked"
    assert record.safeguard["kinds"] == {
        "EMAIL_SHA256": {"managed": 300, "confirmed": 300, "removing": 300, "valid": 0}
    }
    assert (record.empty, record.removed, record.uploaded) == (300, 0, 0)


def test_a_column_mapping_that_points_at_the_wrong_column_removes_nobody(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    rows = [{**row, "City": "Oslo"} for row in emails(range(40))]
    snapshot(blob_service, mirror.container, rows, day=1)
    assert run(mirror).status == "succeeded"
    # Someone points the email mapping at the City column: every cell is invalid.
    write_definitions(mirror.exports_file, [export_definition(
        "high-value", mirror.container, PATH, mode="mirror", columns={"email": "City"})])  # fmt: skip
    mirror.rebuild(monkeypatch)
    snapshot(blob_service, mirror.container, rows, day=2)
    record = run(mirror)
    assert record.status == "failed"
    assert "would remove 40 of 40 (100%)" in record.error
    assert record.invalid == 40
    assert sent(sandbox, "DELETE") == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(40))


def test_removing_more_than_the_share_allowed_fails_before_sending_anything(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    snapshot(blob_service, mirror.container, emails(range(100)), day=1)
    assert run(mirror).status == "succeeded"
    snapshot(blob_service, mirror.container, emails(range(30, 140)), day=2)  # 30 left, 40 new
    before = len(sandbox.requests())
    record = run(mirror)
    assert record.status == "failed"
    assert (
        f"would remove 30 of 100 (30%) EMAIL_SHA256 identifiers the app manages in audience "
        f"{AUDIENCE}; allowed 20% (max_removal_percent)" in record.error
    )
    # not even the additions went out: the run changes nothing until the operator decides
    assert [r for r in sandbox.requests()[before:] if r.path.endswith("/users")] == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100))


def test_the_timer_does_not_retry_a_snapshot_the_safeguard_stopped(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    def tick() -> None:
        function_app.find_new_snapshots(TimerRequest(past_due=False))
        drain(mirror.env["AzureWebJobsStorage"], mirror.env["JOBS_QUEUE"])

    snapshot(blob_service, mirror.container, emails(range(40)), day=1)
    tick()
    snapshot(blob_service, mirror.container, blank(emails(range(40))), day=2)
    tick()
    tick()
    tick()
    runs = mirror.runtime.runs.recent("high-value")
    assert [r.status for r in runs] == ["failed", "succeeded"]  # tried once, not three times
    assert runs[0].safeguard["decision"] == "blocked"
    assert sandbox.identifiers(AUDIENCE) == hashes(range(40))


def test_additions_a_failed_run_planned_do_not_dilute_the_share_removed(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    snapshot(blob_service, mirror.container, emails(range(100)), day=1)
    assert run(mirror).status == "succeeded"  # 100 confirmed members
    snapshot(blob_service, mirror.container, emails(range(600)), day=2)  # 500 to add
    sandbox.inject("403", path_contains="/users")
    assert run(mirror).status == "failed"  # ... but its first request was refused
    # Only the 500 the failed run meant to add: every confirmed member would go.
    snapshot(blob_service, mirror.container, emails(range(100, 600)), day=3)
    record = run(mirror)
    assert record.status == "failed"
    assert "would remove 100 of 100 (100%)" in record.error
    assert record.safeguard["kinds"]["EMAIL_SHA256"]["managed"] == 600
    assert sent(sandbox, "DELETE") == []
    assert hashes(range(100)) <= sandbox.identifiers(AUDIENCE)


@pytest.mark.parametrize(
    ("first", "second", "removed"),
    [(range(100), range(15, 100), 15), (range(20), range(8, 20), 8)],
    ids=["15 of 100 is within 20%", "8 of 20 is within the floor of 10"],
)
def test_removals_within_the_limits_go_through(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    first: range, second: range, removed: int,
) -> None:  # fmt: skip
    snapshot(blob_service, mirror.container, emails(first), day=1)
    assert run(mirror).status == "succeeded"
    snapshot(blob_service, mirror.container, emails(second), day=2)
    record = run(mirror)
    assert (record.status, record.removed) == ("succeeded", removed), record.error
    assert record.safeguard["decision"] == "passed"
    assert sandbox.identifiers(AUDIENCE) == hashes(second)


def test_an_operator_lets_one_large_removal_through_over_http(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    snapshot(blob_service, mirror.container, emails(range(100)), day=1)
    assert run(mirror).status == "succeeded"
    snapshot(blob_service, mirror.container, emails(range(60, 100)), day=2)  # 60% leave
    answer = post_run(b'{"allow_large_removal": true}')
    assert answer["run"]["allow_large_removal"] is True  # type: ignore[index]
    drain(mirror.env["AzureWebJobsStorage"], mirror.env["JOBS_QUEUE"])
    record = mirror.runtime.runs.get("high-value", str(answer["run_id"]))
    assert record is not None
    assert (record.status, record.removed) == ("succeeded", 60), record.error
    assert (record.allow_large_removal, record.allowed_by) == (True, "http")
    assert record.safeguard["decision"] == "allowed"
    assert sandbox.identifiers(AUDIENCE) == hashes(range(60, 100))
    # the permission was for that run only
    snapshot(blob_service, mirror.container, emails(range(90, 100)), day=3)
    assert run(mirror).status == "failed"


def test_the_command_line_lets_one_large_removal_through(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    snapshot(blob_service, mirror.container, emails(range(50)), day=1)
    assert run(mirror).status == "succeeded"
    snapshot(blob_service, mirror.container, blank(emails(range(50))), day=2)
    assert main(["run", "high-value"]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["safeguard"]["decision"] == "blocked"
    assert sandbox.identifiers(AUDIENCE) == hashes(range(50))
    assert main(["run", "high-value", "--allow-large-removal"]) == 0
    allowed = json.loads(capsys.readouterr().out)
    assert (allowed["allowed_by"], allowed["removed"]) == ("cli", 50)
    assert sandbox.identifiers(AUDIENCE) == set()


def test_a_dry_run_reports_what_the_safeguard_would_decide(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    snapshot(blob_service, mirror.container, emails(range(100)), day=1)
    assert run(mirror).status == "succeeded"
    snapshot(blob_service, mirror.container, emails(range(50, 100)), day=2)
    record: RunRecord = run(mirror, dry_run=True)
    assert (record.status, record.removed, record.batches) == ("succeeded", 50, 0)
    assert record.safeguard["decision"] == "would_block"
    assert "would remove 50 of 100 (50%)" in record.safeguard["problems"][0]
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100))


# -- the rules alone ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "allowed"),
    [
        (KindChange("EMAIL_SHA256", managed=0, removing=0, valid=0), True),  # new audience
        (KindChange("EMAIL_SHA256", managed=100, removing=20, valid=80), True),  # exactly 20%
        (KindChange("EMAIL_SHA256", managed=100, removing=21, valid=79), False),
        (KindChange("EMAIL_SHA256", managed=30, removing=10, valid=20), True),  # the floor
        (KindChange("EMAIL_SHA256", managed=30, removing=11, valid=19), False),
        (KindChange("PHONE_SHA256", managed=5, removing=5, valid=0), False),  # nothing valid
        (KindChange("PHONE_SHA256", managed=5, removing=0, valid=5), True),
        # 1,000 confirmed, 5,000 more a failed run may have added: 1,000 is all of them
        (
            KindChange("EMAIL_SHA256", managed=6000, removing=1000, valid=5000, confirmed=1000),
            False,
        ),
        (
            KindChange("EMAIL_SHA256", managed=6000, removing=100, valid=5900, confirmed=1000),
            True,
        ),
    ],
)
def test_the_safeguard_rules(change: KindChange, allowed: bool) -> None:
    verdict = safeguard.judge([change], Limits(), audience="a1")
    assert (verdict.decision is Decision.PASSED) == allowed
    if not allowed:
        overridden = safeguard.judge([change], Limits(), audience="a1", allow_large_removal=True)
        assert overridden.decision is Decision.ALLOWED
        dry = safeguard.judge([change], Limits(), audience="a1", dry_run=True)
        assert dry.decision is Decision.WOULD_BLOCK


def test_a_permitted_removal_can_be_pinned_to_the_snapshot_a_dry_run_showed(
    mirror: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    snapshot(blob_service, mirror.container, emails(range(100)), day=1)
    assert run(mirror).status == "succeeded"
    snapshot(blob_service, mirror.container, emails(range(50, 100)), day=2)
    reviewed = run(mirror, dry_run=True)
    assert (reviewed.snapshot, reviewed.removed) == ("2026/11/02/0600", 50)
    # Meanwhile a broken snapshot arrives: the permission must not apply to it.
    snapshot(blob_service, mirror.container, blank(emails(range(100))), day=3)
    body = json.dumps({"allow_large_removal": True, "snapshot": reviewed.snapshot}).encode()
    answer = post_run(body)
    drain(mirror.env["AzureWebJobsStorage"], mirror.env["JOBS_QUEUE"])
    record = mirror.runtime.runs.get("high-value", str(answer["run_id"]))
    assert record is not None
    assert (record.status, record.snapshot, record.removed) == ("succeeded", reviewed.snapshot, 50)
    assert sandbox.identifiers(AUDIENCE) == hashes(range(50, 100))

    request = local_request("POST", "http://127.0.0.1:7071/api/exports/high-value/runs",
                               route_params={"name": "high-value"},
                               body=b'{"snapshot": "2020/01/01/0000"}')  # fmt: skip
    missing = function_app.start_run(request)
    assert missing.status_code == 409
    assert "no snapshot '2020/01/01/0000'" in json.loads(missing.get_body())["message"]
