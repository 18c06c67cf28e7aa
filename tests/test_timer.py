"""The timer: one job per new snapshot, never the same snapshot twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from tests.conftest import AUDIENCE, App, export_definition, write_definitions

PATH = "CustomerInsights_t1/BlobExport/HighValue"


def tick() -> None:
    function_app.find_new_snapshots(TimerRequest(past_due=False))


def runs(app: App, name: str = "high-value") -> list[tuple[str, str, str]]:
    return [(r.trigger, r.snapshot, r.status) for r in app.runtime.runs.recent(name)]


def test_a_new_snapshot_is_exported_once(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    first = write_export(blob_service, container=app.container, path=PATH, profiles=40,
                         partitions=2, taken_at=datetime(2026, 11, 1, 6, tzinfo=UTC))  # fmt: skip
    tick()
    tick()  # a second tick while the job is queued adds nothing
    assert runs(app) == [("timer", first.snapshot, "queued")]
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    tick()  # nor after it succeeded
    assert runs(app) == [("timer", first.snapshot, "succeeded")]
    uploads = [r for r in sandbox.requests() if r.path.endswith("/users")]
    assert len(uploads) == 1

    second = write_export(blob_service, container=app.container, path=PATH, profiles=30,
                          partitions=1, taken_at=datetime(2026, 11, 2, 6, tzinfo=UTC),
                          seed=99)  # fmt: skip
    tick()
    assert runs(app)[0] == ("timer", second.snapshot, "queued")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    assert [r[2] for r in runs(app)] == ["succeeded", "succeeded"]
    assert sandbox.identifiers(AUDIENCE) == first.expected_hex | second.expected_hex


def test_a_snapshot_still_being_written_waits(
    app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.rebuild(monkeypatch, SNAPSHOT_SETTLE_SECONDS="3600")
    # without model.json (which, naming every partition, would make it complete at once)
    write_export(blob_service, container=app.container, path=PATH, profiles=5, partitions=1,
                 model=False)  # fmt: skip
    tick()
    assert runs(app) == []
    from shared.runs import service  # noqa: PLC0415

    later = datetime.now(UTC) + timedelta(hours=2)
    assert len(service.schedule(app.runtime, at=later)) == 1


def test_failed_snapshots_are_retried_a_bounded_number_of_times(
    app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_definitions(
        app.exports_file,
        [export_definition("high-value", app.container, PATH, columns={"email": "Missing"})],
    )
    app.rebuild(monkeypatch, TIMER_MAX_ATTEMPTS="2")
    write_export(blob_service, container=app.container, path=PATH, profiles=5, partitions=1)
    for _ in range(4):
        tick()
        drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    assert [r[2] for r in runs(app)] == ["failed", "failed"]


def test_disabled_exports_and_broken_exports_do_not_stop_the_others(
    app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_definitions(
        app.exports_file,
        [
            export_definition("paused", app.container, PATH, enabled=False),
            export_definition("missing-container", "no-such-container", PATH),
            export_definition("high-value", app.container, PATH),
        ],
    )
    app.rebuild(monkeypatch)
    write_export(blob_service, container=app.container, path=PATH, profiles=5, partitions=1)
    tick()
    assert runs(app, "paused") == []
    assert runs(app, "missing-container") == []
    assert [r[0] for r in runs(app)] == ["timer"]


def test_a_run_left_running_without_a_hold_is_ended_and_its_snapshot_runs_again(
    app: App, blob_service: BlobServiceClient
) -> None:
    from shared.core.runrecord import RunRecord, new_run_id  # noqa: PLC0415

    export = write_export(blob_service, container=app.container, path=PATH, profiles=10,
                          partitions=1)  # fmt: skip
    stuck = RunRecord(run_id=new_run_id(), export="high-value", trigger="cli",
                      snapshot=export.snapshot, status="running")  # fmt: skip
    app.runtime.runs.save(stuck)  # as a command-line run killed with SIGKILL leaves it
    tick()
    ended = app.runtime.runs.get("high-value", stuck.run_id)
    assert ended is not None
    assert (ended.status, ended.error) == (
        "failed", "abandoned: its hold on the export lapsed before it ended")  # fmt: skip
    assert runs(app)[0] == ("timer", export.snapshot, "queued")
