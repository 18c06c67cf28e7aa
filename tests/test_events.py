"""The event-driven start: Event Grid's BlobCreated events, in Microsoft's documented schema
and decoded by the worker's own converter, to the real decorated handler
(``function_app.blob_created``); checks and runs delivered by the real queue handlers. On the
fast tier (storage fakes, the sandbox in process)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import threading

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions.timer import TimerRequest

import function_app
from devtools.events import blob_created, post
from shared.adapters import telemetry
from shared.core.runrecord import RunRecord, parse
from shared.entry import api
from shared.runs import events, locking
from shared.runtime import Runtime
from tests.conftest import AUDIENCE, FAST_PATH, FastApp

EXPORT = "high-value"
MODEL = FAST_PATH.rsplit("/", 1)[0] + "/model.json"


def part_name(part: int, folder: str = "2026/11/05/1200") -> str:
    return f"{FAST_PATH}/{folder}/HighValue_{part}.csv"


def emails(part: int, count: int = 5) -> list[str]:
    return [f"event.{part}.{i}@example.com" for i in range(count)]


def model_json(app: FastApp, parts: int, folder: str = "2026/11/05/1200") -> bytes:
    base = f"https://devstoreaccount1.blob.core.windows.net/{app.container}"
    partitions = [
        {"name": f"HighValue_{p}", "location": f"{base}/{part_name(p, folder)}",
         "fileFormatSettings": {"$type": "CsvFormatSettings", "columnHeaders": True}}
        for p in range(1, parts + 1)
    ]  # fmt: skip
    entity = {"$type": "LocalEntity", "name": "HighValue", "partitions": partitions,
              "attributes": [{"name": "CustomerId", "dataType": "string"},
                             {"name": "EMail", "dataType": "string"}]}  # fmt: skip
    return json.dumps({"name": "BlobExport", "version": "1.0", "entities": [entity]}).encode()


class Writer:
    """Customer Insights writing blobs, and Event Grid telling the app of each one."""

    def __init__(self, app: FastApp) -> None:
        self.app = app
        self.blobs = app.storage.blobs(app.runtime.settings.export_storage)
        with contextlib.suppress(ResourceExistsError):
            self.blobs.create_container(app.container)

    def write(self, name: str, content: bytes) -> None:
        self.blobs.get_blob_client(self.app.container, name).upload_blob(content, overwrite=True)

    def partition(self, part: int, folder: str = "2026/11/05/1200") -> None:
        rows = "".join(f"{part}-{i},{e}\n" for i, e in enumerate(emails(part)))
        self.write(part_name(part, folder), ("CustomerId,EMail\n" + rows).encode())

    def event(self, name: str, container: str = "") -> None:
        post(function_app.blob_created, blob_created(container or self.app.container, name))


def digests(parts: range) -> set[str]:
    return {hashlib.sha256(e.encode()).hexdigest() for p in parts for e in emails(p)}


def runs(app: FastApp) -> list[RunRecord]:
    return app.runtime.runs.recent(EXPORT, limit=100)


@pytest.fixture
def waiting(fast_app: FastApp, monkeypatch: pytest.MonkeyPatch) -> FastApp:
    """Without model.json a snapshot is complete only an hour after its newest file."""
    fast_app.rebuild(monkeypatch, SNAPSHOT_SETTLE_SECONDS="3600", SNAPSHOT_RECHECK_SECONDS="30")
    return fast_app


class Histogram:
    """Stands in for an OpenTelemetry histogram: what was recorded."""

    def __init__(self) -> None:
        self.points: list[tuple[float, dict[str, str]]] = []

    def record(self, value: float, attributes: dict[str, str]) -> None:
        self.points.append((value, attributes))


def test_sixteen_partitions_as_seventeen_events_in_any_order_make_one_run(
    waiting: FastApp, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="shared.runs.events")
    latencies = Histogram()
    monkeypatch.setattr(telemetry, "LATENCY", latencies)
    writer, order = Writer(waiting), random.Random(26)
    blobs: list[int] = [*range(1, 17), 0]  # 0: model.json
    order.shuffle(blobs)
    for step, blob in enumerate(blobs):
        if blob:
            writer.partition(blob)
        else:
            writer.write(MODEL, model_json(waiting, 16))
        name = part_name(blob) if blob else MODEL
        for _ in range(1 + step % 3 // 2):  # every third one twice
            writer.event(name)
        if step % 4 == 3:  # and an earlier one again, late
            writer.event(part_name(max(blobs[0], 1)))
        waiting.deliver()
        if step < len(blobs) - 1:
            assert runs(waiting) == [], f"a run started after {step + 1} of 17 blobs"
        waiting.storage.advance(31)  # the re-check's delay passes
    waiting.deliver()
    [run] = runs(waiting)
    assert (run.status, run.trigger, run.uploaded) == ("succeeded", "event", 16 * 5)
    assert waiting.sandbox.identifiers(AUDIENCE) == digests(range(1, 17))
    landed = max(b.last_modified for b in waiting.runtime.source.list(waiting.container, ""))
    assert parse(run.snapshot_complete_at) == landed
    assert parse(run.started_at) >= landed
    latency = api._run(run)["latency_seconds"]  # the API's run answer
    assert latency == (parse(run.finished_at) - landed).total_seconds()
    assert latencies.points == [(latency, {"export": EXPORT, "trigger": "event"})]
    queued = [r for r in caplog.records if "check queued" in r.getMessage()]
    assert len(queued) == 1, "a flood of events for one snapshot is one check"


def test_an_incomplete_snapshot_is_checked_again_and_runs_once_complete(waiting: FastApp) -> None:
    writer = Writer(waiting)
    writer.write(MODEL, model_json(waiting, 4))
    writer.event(MODEL)
    for part in (1, 2, 3):
        writer.partition(part)
        writer.event(part_name(part))
    assert waiting.deliver() == 1  # one check: not complete, checked again later
    assert runs(waiting) == []
    assert waiting.deliver() == 0  # the re-check is hidden for SNAPSHOT_RECHECK_SECONDS
    writer.partition(4)
    writer.event(part_name(4))  # already being checked: no second check
    waiting.storage.advance(31)
    waiting.deliver()
    [run] = runs(waiting)
    assert (run.status, run.uploaded) == ("succeeded", 20)
    assert waiting.sandbox.identifiers(AUDIENCE) == digests(range(1, 5))


def test_rechecks_are_bounded_and_leave_the_rest_to_the_timer(waiting: FastApp) -> None:
    writer = Writer(waiting)
    writer.write(MODEL, model_json(waiting, 2))
    writer.partition(1)
    writer.event(part_name(1))
    deliveries = 0
    for _ in range(events.MAX_RECHECKS + 5):
        deliveries += waiting.deliver()
        waiting.storage.advance(31)
    assert deliveries == events.MAX_RECHECKS + 1
    assert runs(waiting) == []
    writer.partition(2)
    function_app.find_new_snapshots(TimerRequest(past_due=False))
    waiting.deliver()
    assert [(r.trigger, r.status) for r in runs(waiting)] == [("timer", "succeeded")]


def test_an_event_for_a_blob_no_export_reads_does_nothing(waiting: FastApp) -> None:
    writer = Writer(waiting)
    writer.write("elsewhere/Other/2026/11/05/1200/Other_1.csv", b"CustomerId,EMail\n1,a@b.c\n")
    writer.event("elsewhere/Other/2026/11/05/1200/Other_1.csv")
    writer.event(f"{FAST_PATH}/notes.txt")
    writer.event(part_name(1), container="another-container")
    post(function_app.blob_created, {**blob_created(waiting.container, part_name(1)),
                                     "eventType": "Microsoft.Storage.BlobDeleted"})  # fmt: skip
    assert waiting.deliver() == 0
    assert runs(waiting) == []


def test_a_disabled_export_is_not_started(fast_app: FastApp) -> None:
    writer = Writer(fast_app)
    writer.partition(1)
    writer.event(part_name(1))  # queued while enabled
    store = fast_app.runtime.definition_store
    current = store.get("export", EXPORT)
    assert current is not None
    store.put("export", EXPORT, {**(current.document or {}), "enabled": False},
              etag=current.etag, by="test")  # fmt: skip
    writer.partition(1, folder="2026/11/05/1300")
    # The handler's definitions may be a few seconds old: it may queue a check, but each
    # check reads the definition as stored now.
    writer.event(part_name(1, folder="2026/11/05/1300"))
    assert fast_app.deliver() == 2  # both checks, dropped
    fast_app.runtime.forget_definitions()
    writer.partition(2, folder="2026/11/05/1300")
    writer.event(part_name(2, folder="2026/11/05/1300"))  # known disabled: no check at all
    assert fast_app.deliver() == 0
    assert runs(fast_app) == []
    assert fast_app.sandbox.identifiers(AUDIENCE) == set()


def test_the_timer_and_the_event_path_never_start_a_snapshot_twice(fast_app: FastApp) -> None:
    writer = Writer(fast_app)
    folders = [f"2026/11/05/{hour:02d}00" for hour in range(10, 16)]
    failures: list[BaseException] = []

    def together(start: threading.Barrier, name: str) -> None:
        start.wait()
        try:
            if name:  # an event, and a worker delivering what it queued
                writer.event(name)
                fast_app.deliver()
            else:
                function_app.find_new_snapshots(TimerRequest(past_due=False))
        except BaseException as exc:
            failures.append(exc)

    for folder in folders:
        writer.write(MODEL, model_json(fast_app, 2, folder))
        writer.partition(1, folder)
        writer.partition(2, folder)
        start = threading.Barrier(3)
        names = (part_name(1, folder), MODEL, "")  # "": the timer
        threads = [threading.Thread(target=together, args=(start, name)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        fast_app.deliver()
        fast_app.storage.advance(31)
        fast_app.deliver()
    done = runs(fast_app)
    assert sorted(r.snapshot for r in done) == folders, "one run per snapshot"
    assert {r.status for r in done} == {"succeeded"}


def test_a_run_that_ends_while_the_event_path_decides_is_not_started_again(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrowest race, forced: the event's check has found no run of the snapshot, and
    before it claims the export the timer queues a run that a worker finishes."""
    writer = Writer(fast_app)
    writer.partition(1)
    claim, raced = locking.claim_queued, []

    def timer_first(rt: Runtime, record: RunRecord) -> None:
        if record.trigger == "event" and not raced:
            raced.append(record.run_id)
            function_app.find_new_snapshots(TimerRequest(past_due=False))
            fast_app.deliver()  # the timer's run, start to end
        claim(rt, record)

    monkeypatch.setattr(locking, "claim_queued", timer_first)
    writer.event(part_name(1))
    fast_app.deliver()
    assert raced
    assert [(r.trigger, r.status) for r in runs(fast_app)] == [("timer", "succeeded")]
