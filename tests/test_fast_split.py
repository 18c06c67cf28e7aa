"""A split run's steps in the fast tier: read, judge and send jobs driven by the queue on
the storage fakes, with the Snapchat sandbox answering in process; and the gate between
steps, passed once when two jobs finish together."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from devtools.storage_fakes import FakeTable
from shared.adapters.jobqueue import Job
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import AUDIENCE, FastApp, export_definition, sync_definitions

SPLIT = {"SPLIT_ABOVE_MB": "0", "SPILL_MEMORY_MB": "0"}  # split every run, spill every block


def emails(count: int, start: int = 0) -> list[str]:
    return [f"split.{i}@example.com" for i in range(start, start + count)]


def ended(fast_app: FastApp, run_id: str) -> RunRecord:
    record = fast_app.runtime.runs.get("high-value", run_id)
    assert record is not None
    assert record.status == "succeeded", (record.status, record.error)
    return record


def queued_steps(fast_app: FastApp) -> list[str]:
    """The steps of the split jobs waiting in the queue (without taking them); not the
    later audience checks of runs that ended."""
    waiting = fast_app.storage.queues[fast_app.runtime.settings.jobs_queue]
    steps = (Job.from_json(message.content).step for message in waiting)
    return sorted(step for step in steps if step != "audience-check")


def test_an_add_run_is_read_and_sent_by_jobs_on_the_queue(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = fast_app.rebuild(monkeypatch, **SPLIT)
    expected = fast_app.write_snapshot(emails(300), partitions=3)
    queued = service.request_run(rt, "high-value", "http")
    fast_app.deliver(max_deliveries=1)  # the run's own job: split into three reads
    assert queued_steps(fast_app) == ["read"] * 3
    fast_app.deliver(max_deliveries=3)  # the last read passes the gate: the sends
    assert queued_steps(fast_app) == ["send"] * 4
    fast_app.deliver()
    record = ended(fast_app, queued.run_id)
    assert (record.rows_read, record.uploaded) == (300, 300)
    assert fast_app.sandbox.identifiers(AUDIENCE) == expected


def test_a_mirror_run_is_read_judged_and_sent(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports_file = Path(fast_app.env["EXPORTS_FILE"])
    definition = export_definition("high-value", fast_app.container,
                                   "CustomerInsights_t1/BlobExport/HighValue", mode="mirror")  # fmt: skip
    exports_file.write_text(json.dumps({"connections": [{"name": "main"}],
                                        "exports": [definition]}))  # fmt: skip
    rt = fast_app.rebuild(monkeypatch, **SPLIT)
    sync_definitions(rt, exports_file)
    fast_app.write_snapshot(emails(200), partitions=2)
    first = service.request_run(rt, "high-value", "http")
    fast_app.deliver()
    ended(fast_app, first.run_id)
    # The next snapshot keeps 190 of them and brings 20 new: 10 removed, 20 added.
    expected = fast_app.write_snapshot(emails(210, start=10), partitions=2)
    second = service.request_run(rt, "high-value", "http")
    fast_app.deliver(max_deliveries=3)  # the run's job, then its two reads
    assert queued_steps(fast_app) == ["judge"]
    fast_app.deliver()
    record = ended(fast_app, second.run_id)
    assert (record.uploaded, record.removed) == (20, 10)
    assert fast_app.sandbox.identifiers(AUDIENCE) == expected


def test_two_reads_finishing_together_pass_the_gate_once(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = fast_app.rebuild(monkeypatch, **SPLIT)
    expected = fast_app.write_snapshot(emails(100), partitions=2)
    queued = service.request_run(rt, "high-value", "http")
    fast_app.deliver(max_deliveries=1)
    jobs = fast_app.storage.queue(rt.settings.jobs_queue)
    taken = list(jobs.receive_messages(max_messages=2, visibility_timeout=60))
    # Each read job, once it has saved itself done, waits for the other: both then find
    # every read done, and both try to pass the gate.
    together = threading.Barrier(2, timeout=10)
    update = FakeTable.update_entity

    def done_together(table: FakeTable, entity: Any, *args: Any, **options: Any) -> Any:
        answer = update(table, entity, *args, **options)
        if str(entity["RowKey"]).startswith("read-") and entity.get("done"):
            together.wait()
        return answer

    create, gates = FakeTable.create_entity, []

    def counted(table: FakeTable, entity: Any) -> Any:
        if entity["RowKey"] == "gate-read":
            gates.append(entity["RowKey"])
        return create(table, entity)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(FakeTable, "update_entity", done_together)
        patched.setattr(FakeTable, "create_entity", counted)
        workers = [threading.Thread(target=service.process,
                                    args=(rt, Job.from_json(message.content)))
                   for message in taken]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
    for message in taken:
        jobs.delete_message(message)
    assert len(gates) == 2  # both tried to pass the gate
    assert queued_steps(fast_app) == ["send"] * 2  # queued once, not once per reader
    fast_app.deliver()
    ended(fast_app, queued.run_id)
    assert fast_app.sandbox.identifiers(AUDIENCE) == expected
