"""Several Customer Insights segments into one audience: their union, counted per segment."""

from __future__ import annotations

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.core import definitions
from tests.conftest import AUDIENCE, App, export_definition, write_definitions
from tests.snapshots import emails, hashes, run, sent, snapshot

A = "CustomerInsights_t1/BlobExport/Loyal"
B = "CustomerInsights_t1/BlobExport/Recent"


def two_segments(app: App, monkeypatch: pytest.MonkeyPatch, **overrides: object) -> None:
    definition = export_definition("high-value", app.container, A, **overrides)
    del definition["source"]
    definition["sources"] = [{"container": app.container, "path": A},
                             {"container": app.container, "path": B}]  # fmt: skip
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="30")


def test_the_audience_receives_the_union_deduplicated_across_segments(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    two_segments(app, monkeypatch)
    snapshot(blob_service, app.container, emails(range(60)), day=1, path=A)
    snapshot(blob_service, app.container, emails(range(40, 100)), day=1, path=B)
    record = run(app)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100))
    assert (record.rows_read, record.uploaded, record.duplicates) == (120, 100, 20)
    assert record.by_segment == {f"{app.container}/{A}": {"rows": 60},
                                 f"{app.container}/{B}": {"rows": 60}}  # fmt: skip
    assert record.snapshot.startswith("2026/11/01/0600 + 2026/11/01/0600 @")


def test_in_mirror_mode_a_move_between_segments_changes_nothing(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    two_segments(app, monkeypatch, mode="mirror")
    snapshot(blob_service, app.container, emails(range(50)), day=1, path=A)
    snapshot(blob_service, app.container, emails(range(50, 100)), day=1, path=B)
    assert run(app).status == "succeeded"
    before = len(sandbox.requests())
    snapshot(blob_service, app.container, emails(range(40)), day=2, path=A)  # 40..49 move
    snapshot(blob_service, app.container, emails(range(40, 100)), day=2, path=B)
    moved = run(app)
    assert (moved.status, moved.added, moved.removed, moved.unchanged) == ("succeeded", 0, 0, 100)
    assert [r for r in sandbox.requests()[before:] if r.path.endswith("/users")] == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100))


def test_one_broken_segment_sends_nothing_in_mirror_mode(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    two_segments(app, monkeypatch, mode="mirror")
    snapshot(blob_service, app.container, emails(range(50)), day=1, path=A)
    snapshot(blob_service, app.container, emails(range(50, 100)), day=1, path=B)
    assert run(app).status == "succeeded"
    before = len(sandbox.requests())
    snapshot(blob_service, app.container, emails(range(60)), day=2, path=A)  # 10 new here
    broken = f"{B}/2026/11/02/0600/Recent_1.csv"
    blob_service.get_blob_client(app.container, broken).upload_blob(
        b'CustomerId,EMail\n1,"a@example.com"\n2\n', overwrite=True
    )
    record = run(app)
    assert record.status == "failed"
    assert f"{broken}: line 3 has 1 fields, expected 2" in record.error
    assert [r for r in sandbox.requests()[before:] if r.path.endswith("/users")] == []
    assert sent(sandbox, "DELETE") == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100))


def test_the_timer_queues_a_run_when_any_segment_has_a_new_snapshot(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    two_segments(app, monkeypatch)
    snapshot(blob_service, app.container, emails(range(10)), day=1, path=A)
    snapshot(blob_service, app.container, emails(range(10, 20)), day=1, path=B)

    def tick() -> None:
        function_app.find_new_snapshots(TimerRequest(past_due=False))
        drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])

    tick()
    tick()  # nothing new: nothing queued
    assert len(app.runtime.runs.recent("high-value")) == 1
    snapshot(blob_service, app.container, emails(range(10, 25)), day=2, path=B)  # only B moved
    tick()
    runs = app.runtime.runs.recent("high-value")
    assert [r.snapshot.split(" @")[0] for r in runs] == [
        "2026/11/01/0600 + 2026/11/02/0600", "2026/11/01/0600 + 2026/11/01/0600"]  # fmt: skip
    assert sandbox.identifiers(AUDIENCE) == hashes(range(25))


def test_one_empty_segment_fails_a_mirror_run_before_anything_is_sent(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    two_segments(app, monkeypatch, mode="mirror", max_removal_percent=100)
    snapshot(blob_service, app.container, emails(range(50)), day=1, path=A)
    snapshot(blob_service, app.container, emails(range(50, 100)), day=1, path=B)
    assert run(app).status == "succeeded"
    snapshot(blob_service, app.container, emails(range(50)), day=2, path=A)
    empty = f"{B}/2026/11/02/0600/Recent_1.csv"
    blob_service.get_blob_client(app.container, empty).upload_blob(b"CustomerId,EMail\n")
    record = run(app)
    assert record.status == "failed"
    assert f"{app.container}/{B}: snapshot 2026/11/02/0600 holds no data rows" in record.error
    assert sent(sandbox, "DELETE") == []
    assert sandbox.identifiers(AUDIENCE) == hashes(range(100))


def test_other_segments_at_the_same_times_are_another_snapshot(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    two_segments(app, monkeypatch)
    snapshot(blob_service, app.container, emails(range(10)), day=1, path=A)
    snapshot(blob_service, app.container, emails(range(10, 20)), day=1, path=B)
    first = run(app)
    other = "CustomerInsights_t1/BlobExport/Lapsed"  # replaces B, written at the same time
    snapshot(blob_service, app.container, emails(range(20, 30)), day=1, path=other)
    definition = export_definition("high-value", app.container, A)
    del definition["source"]
    definition["sources"] = [{"container": app.container, "path": A},
                             {"container": app.container, "path": other}]  # fmt: skip
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch)
    function_app.find_new_snapshots(TimerRequest(past_due=False))
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    second = app.runtime.runs.recent("high-value")[0]
    assert second.run_id != first.run_id  # the timer saw a new snapshot
    assert second.snapshot.split(" @")[0] == first.snapshot.split(" @")[0]
    assert second.snapshot != first.snapshot
    assert sandbox.identifiers(AUDIENCE) == hashes(range(30))


def test_source_or_sources_but_not_both_and_no_segment_twice() -> None:
    base = {"name": "x", "audience_id": "a", "connection": "main", "columns": {"email": "E"},
            "data_transfer_acknowledged": True}  # fmt: skip
    one = {"container": "customer-insights", "path": "CI/BlobExport/A"}

    def problems(**fields: object) -> list[str]:
        document = {"connections": [{"name": "main"}], "exports": [{**base, **fields}]}
        return definitions.parse(document).problems

    assert problems(sources=[one]) == []
    assert any("give either source" in p for p in problems(source=one, sources=[one]))
    assert any("give either source" in p for p in problems())
    assert any("listed twice" in p for p in problems(sources=[one, one]))
    assert any("expected a list of 1 to 20" in p for p in problems(sources=[]))
    loaded = definitions.parse({"connections": [{"name": "main"}], "exports": [
        {**base, "sources": [one, {**one, "path": "CI/BlobExport/B"}]}]})  # fmt: skip
    assert [s.path for s in loaded.exports[0].sources] == ["CI/BlobExport/A", "CI/BlobExport/B"]
