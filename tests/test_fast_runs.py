"""Runs in the fast tier: the real adapters and orchestration on the in-memory storage fakes
(``devtools.storage_fakes``, held to Azurite by tests/test_storage_contract.py) and the
Snapchat sandbox answering in process (``devtools.sandbox_transport``). Leases,
first-writer-wins, resuming and lost replies, in milliseconds rather than through Azurite.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import pytest
import requests
from azure.core.exceptions import ServiceResponseError
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devtools.sandbox_transport import SANDBOX_URL, SandboxTransport
from devtools.storage_fakes import FakeStorage, FakeTable
from shared.adapters import tables
from shared.adapters.export_locks import ExportLocks
from shared.core.errors import LeaseLost, RunActive
from shared.core.runrecord import RunStatus, row_key
from shared.core.settings import StorageTarget
from shared.runs import locking, service
from shared.runs.records import finish
from tests.conftest import AUDIENCE, FastApp


def emails(count: int, start: int = 0) -> list[str]:
    return [f"fast.{i}@example.com" for i in range(start, start + count)]


def test_a_queued_run_is_delivered_and_fills_the_audience(fast_app: FastApp) -> None:
    expected = fast_app.write_snapshot(emails(120))
    queued = service.request_run(fast_app.runtime, "high-value", "http")
    assert fast_app.deliver() == 1
    record = fast_app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None
    assert (record.status, record.uploaded, record.attempts) == ("succeeded", 120, 1)
    assert fast_app.sandbox.identifiers(AUDIENCE) == expected
    assert ExportLocks(fast_app.runtime.runs).holder("high-value") is None


# --------------------------------------------------------------------------- leases


def test_a_lapsed_lease_is_taken_over_and_its_run_ends_abandoned(fast_app: FastApp) -> None:
    rt = fast_app.runtime
    fast_app.write_snapshot(emails(5))
    first = service.request_run(rt, "high-value", "http")
    locking.claim(rt, first, "worker-1", 0.2)  # a worker takes the queued run over
    assert locking.worker_holds(rt, first)
    with pytest.raises(RunActive) as active:
        service.request_run(rt, "high-value", "http")
    assert active.value.active_run_id == first.run_id
    assert ExportLocks(rt.runs).renew("high-value", first.run_id, "worker-1", 0.2)
    time.sleep(0.3)  # the worker stops renewing: its lease lapses
    assert not locking.worker_holds(rt, first)
    taken = service.request_run(rt, "high-value", "http")
    abandoned = rt.runs.get("high-value", first.run_id)
    assert abandoned is not None
    assert abandoned.status == RunStatus.FAILED
    assert "abandoned" in abandoned.error
    holder = ExportLocks(rt.runs).holder("high-value")
    assert holder is not None
    assert holder.run_id == taken.run_id


def test_a_heartbeat_renews_until_the_hold_is_taken(fast_app: FastApp) -> None:
    renewals: list[float] = []
    held = threading.Event()
    held.set()

    def renew() -> bool:
        renewals.append(time.monotonic())
        return held.is_set()

    with locking.Heartbeat(renew, 0.15, what="job read-0", taken="taken over") as beat:
        time.sleep(0.2)
        beat.check()  # renewed: still held
        held.clear()  # the next renewal finds another holder
        time.sleep(0.12)
        with pytest.raises(LeaseLost, match="taken over"):
            beat.check()
    assert len(renewals) >= 3


def test_a_heartbeat_on_the_export_s_lock_moves_its_expiry_on(fast_app: FastApp) -> None:
    rt = fast_app.runtime
    fast_app.write_snapshot(emails(5))
    record = service.request_run(rt, "high-value", "http")
    locking.claim(rt, record, "worker-1", 0.3)
    locks = ExportLocks(rt.runs)
    before = locks.holder("high-value")

    def renew() -> bool:  # what a worker's Lease renews, on a shorter lease
        return locks.renew("high-value", record.run_id, "worker-1", 0.3)

    with locking.Heartbeat(renew, 0.3, what="run", taken="taken over") as beat:
        time.sleep(0.5)  # four renewals, at a third of the lease each
        beat.check()
    after = locks.holder("high-value")
    assert before is not None
    assert after is not None
    assert after.owner == "worker-1"
    assert after.expires_at > before.expires_at + 0.3


# --------------------------------------------------------------------------- first writer wins


def test_the_first_writer_ends_the_run_and_the_second_gets_its_record(
    fast_app: FastApp,
) -> None:
    rt = fast_app.runtime
    fast_app.write_snapshot(emails(5))
    queued = service.request_run(rt, "high-value", "http")
    mine, theirs = (rt.runs.get("high-value", queued.run_id) for _ in range(2))
    assert mine is not None
    assert theirs is not None
    won = finish(rt, mine, RunStatus.SUCCEEDED, "")
    lost = finish(rt, theirs, RunStatus.FAILED, "gave up")
    assert won is mine
    assert lost is not theirs
    assert (lost.status, lost.error, lost.etag) == (RunStatus.SUCCEEDED, "", mine.etag)
    stored = rt.runs.get("high-value", queued.run_id)
    assert stored is not None
    assert stored.status == RunStatus.SUCCEEDED


# --------------------------------------------------------------------------- resuming


class FailingThird(SandboxTransport):
    """The sandbox, with the third users request (and only it) answered 503."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.users = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if (request.url or "").endswith("/users") and request.method == "POST":
            self.users += 1
            if self.users == 3:
                self.sandbox.inject("503", path_contains="/users")
        return super().send(request, *args, **kwargs)


def test_an_interrupted_attempt_resumes_after_its_accepted_requests(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = fast_app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="10", RETRY_ATTEMPTS="1")
    rt.http.mount(SANDBOX_URL, FailingThird(fast_app.sandbox))
    expected = fast_app.write_snapshot(emails(50))
    queued = service.request_run(rt, "high-value", "http")
    assert fast_app.deliver() == 2  # the first delivery fails at the third request
    record = rt.runs.get("high-value", queued.run_id)
    assert record is not None
    assert (record.status, record.attempts, record.resumed) == ("succeeded", 2, 20)
    assert fast_app.sandbox.identifiers(AUDIENCE) == expected
    accepted = [r.identifiers for r in fast_app.sandbox.requests()
                if r.path.endswith("/users") and r.status == 200]  # fmt: skip
    assert accepted == [10] * 5  # nothing sent twice, nothing skipped


# --------------------------------------------------------------------------- lost replies


class LostReplies(FakeTable):
    """A table whose write number ``after`` + 1 of the entity ``row_key`` is applied, then
    its reply lost: the SDK sends a PUT again itself (its retry policy), which is refused
    since the ETag moved; a POST it leaves to the caller (``ServiceResponseError``)."""

    def __init__(self, storage: FakeStorage, name: str, row_key: str, after: int = 0) -> None:
        super().__init__(storage, name)
        self.row_key, self.after, self.lost = row_key, after, 0

    def _lose(self, entity: dict[str, Any], write: Any, *, resent: bool) -> Any:
        answer = write()
        if entity["RowKey"] != self.row_key:
            return answer
        self.after -= 1
        if self.after != -1:
            return answer
        self.lost += 1
        if resent:
            return write()
        raise ServiceResponseError("connection reset before the reply (fake)")

    def create_entity(self, entity: Any, **options: Any) -> Any:
        return self._lose(entity, lambda: super(LostReplies, self).create_entity(entity),
                          resent=False)  # fmt: skip

    def update_entity(self, entity: Any, *args: Any, **options: Any) -> Any:
        return self._lose(entity, lambda: super(LostReplies, self).update_entity(
            entity, *args, **options), resent=True)  # fmt: skip


@dataclass
class LossyStorage:
    """The app's fake storage, with its table losing one reply (a ``runtime.Storage``)."""

    storage: FakeStorage
    row_key: str
    after: int
    table_made: LostReplies | None = None

    def table(self, name: str) -> TableClient:
        self.table_made = LostReplies(self.storage, name, self.row_key, self.after)
        return cast(TableClient, self.table_made)

    def queue(self, name: str) -> QueueClient:
        return self.storage.queue(name)

    def blobs(self, target: StorageTarget) -> BlobServiceClient:
        return self.storage.blobs(target)


def test_a_conditional_write_whose_reply_was_lost_is_known_as_its_own(fast_app: FastApp) -> None:
    fast_app.storage.table("lost").create_table()
    table: Any = LostReplies(fast_app.storage, "lost", "a")
    etag = tables.insert(table, {"PartitionKey": "p", "RowKey": "a", "n": 1})
    assert table.lost == 1
    assert etag == table.get_entity("p", "a").metadata["etag"]
    table.after = 0
    etag = tables.replace(table, {"PartitionKey": "p", "RowKey": "a", "n": 2}, etag)
    assert table.lost == 2
    assert table.get_entity("p", "a")["n"] == 2
    tables.upsert(table, {"PartitionKey": "p", "RowKey": "a", "n": 3})  # a competitor
    with pytest.raises(tables.Conflict):
        tables.replace(table, {"PartitionKey": "p", "RowKey": "a", "n": 4}, etag)
    with pytest.raises(tables.Conflict):
        tables.insert(table, {"PartitionKey": "p", "RowKey": "a", "n": 5})


def test_a_checkpoint_whose_reply_was_lost_does_not_stop_the_run(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = fast_app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="10")
    expected = fast_app.write_snapshot(emails(30))
    queued = service.request_run(rt, "high-value", "http")
    # The worker's first write of the record marks it running; the second, the checkpoint
    # of its first accepted request, is applied and its reply lost.
    lossy = LossyStorage(fast_app.storage, row_key(queued.run_id), after=1)
    rt = fast_app.rebuild(monkeypatch, storage=lossy)
    assert fast_app.deliver() == 1
    assert lossy.table_made is not None
    assert lossy.table_made.lost == 1
    record = rt.runs.get("high-value", queued.run_id)
    assert record is not None
    assert (record.status, record.uploaded, record.attempts) == ("succeeded", 30, 1)
    assert fast_app.sandbox.identifiers(AUDIENCE) == expected
