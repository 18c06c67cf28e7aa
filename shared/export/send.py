"""Sending users requests: the one sender every stage that adds or removes identifiers uses.

Requests go one after another on a background thread while the caller prepares the next
body (at most ``_IN_FLIGHT`` at once). The sender keeps the run's checkpoint: an unbroken
count of accepted requests (``progress.batches``) with a running fingerprint of their
content, so that a later attempt, which rebuilds the same requests, skips those already
accepted, or starts over when it finds them to differ. The caller saves the ``Progress``
after every accepted request (``on_progress``).
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from shared.adapters.snapchat import SnapchatClient
from shared.core import digestsets, identifiers
from shared.core.errors import RetryableError
from shared.core.runrecord import Progress
from shared.export.plan import AttemptSpec

_IN_FLIGHT = 2  # request bodies built ahead of the one being sent
_SKIPPED = -1  # what the sender thread returns for a request it did not send

_PUBLISH_SECONDS = 1.0  # progress while reading, or of a dry run, is saved at most this often


class Sender:
    """Sends users requests one after another on a background thread, while the caller
    prepares the next; keeps the run's checkpoint (``progress.batches``) an unbroken count of
    accepted requests; skips the requests an earlier attempt already delivered."""

    def __init__(
        self,
        client: SnapchatClient,
        attempt: AttemptSpec,
        progress: Progress,
        *,
        accepted: int,
        expected: str,
        on_progress: Callable[[Progress], None],
        check_lease: Callable[[], None],
    ) -> None:
        self._client = client
        self._attempt = attempt
        self._progress = progress
        self._accepted = accepted
        self._on_progress = on_progress
        self._check_lease = check_lease
        self._index = 0
        self._pending: deque[tuple[Future[int], str, int, dict[str, int], str]] = deque()
        self._failed = threading.Event()
        # A running fingerprint of every request's content: the checkpoint carries it, so a
        # resumed attempt can tell whether it rebuilt the same requests (same code, same
        # definition) before it skips any; if not, the run starts over.
        self._fingerprint = hashlib.sha256()
        self._expected = expected if accepted else ""
        self.restart = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload")
        self.counts: dict[str, int] = {}  # the current kind's entry of progress.by_type
        self._published = time.monotonic()

    def send(self, method: str, kind: identifiers.IdentifierType, batch: bytes) -> None:
        """Send one request of ``batch`` (concatenated digests)."""
        index, self._index = self._index, self._index + 1
        attempt, progress = self._attempt, self._progress
        size = digestsets.count(batch)
        self._fingerprint.update(f"{method} {kind.schema} {size}\n".encode())
        self._fingerprint.update(batch)
        mark = self._fingerprint.hexdigest()[:32]
        if index < self._accepted:
            # Delivered by an earlier attempt of this run: count, send nothing.
            if index == self._accepted - 1 and self._expected and mark != self._expected:
                self.restart = True
                progress.batches = progress.uploaded = progress.resumed = 0
                progress.added = progress.removed = 0
                progress.checkpoint = ""
                raise RetryableError(
                    f"run {attempt.run_id}: the requests rebuilt for resuming differ from those "
                    "delivered before (the app or the definition changed); starting over"
                )
            self._account(method, size, self.counts, resumed=True)
            progress.checkpoint = mark
            return
        if attempt.dry_run:
            self._account(method, size, self.counts, resumed=False)
            self.publish()
            return
        self._check_lease()
        body = identifiers.UsersBody(kind.schema, batch)
        # On the sender thread, in this thread's context: the request's span is the run's
        # child, and its log records carry the run's IDs.
        future = self._pool.submit(contextvars.copy_context().run, self._send_one, method, body)
        self._pending.append((future, method, size, self.counts, mark))
        while len(self._pending) >= _IN_FLIGHT:
            self._settle_oldest()

    def send_batches(
        self, method: str, kind: identifiers.IdentifierType, digests: bytes, batch_size: int
    ) -> None:
        """Send ``digests`` (sorted, concatenated) in requests of ``batch_size``, in order."""
        for batch in digestsets.chunks(digests, batch_size):
            self.send(method, kind, batch)

    def _send_one(self, method: str, body: identifiers.UsersBody) -> int:
        # Runs on the sender thread. Once a request has failed, those queued behind it must
        # not reach Snapchat: the checkpoint only counts an unbroken prefix of accepted
        # requests, and a resumed run sends the rest.
        if self._failed.is_set():
            return _SKIPPED
        try:
            if method == "POST":
                return self._client.add_users(self._attempt.audience_id, body)
            return self._client.remove_users(self._attempt.audience_id, body)
        except BaseException:
            self._failed.set()
            raise

    def _settle_oldest(self) -> None:
        future, method, size, counts, mark = self._pending.popleft()
        future.result()
        self._account(method, size, counts, resumed=False)
        self._progress.checkpoint = mark
        self.publish(now=True)  # each accepted request: the checkpoint moves on

    def publish(self, *, now: bool = False) -> None:
        moment = time.monotonic()
        if now or moment - self._published >= _PUBLISH_SECONDS:
            self._published = moment
            self._on_progress(self._progress)

    def _account(self, method: str, size: int, counts: dict[str, int], *, resumed: bool) -> None:
        attempt, progress = self._attempt, self._progress
        if not attempt.dry_run:
            progress.batches += 1  # accepted requests: a dry run sends none
        key = "added" if method == "POST" else "removed"
        counts[key] = counts.get(key, 0) + size
        if method == "POST":
            progress.added += size
            progress.uploaded += 0 if attempt.dry_run else size
        else:
            progress.removed += size
        if resumed:
            progress.resumed += size

    def drain(self) -> None:
        while self._pending:
            self._settle_oldest()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        for future, *_ in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        # A request that was in flight when the run failed may still have been accepted:
        # count the unbroken prefix of those, so the checkpoint includes them.
        while self._pending and self._pending[0][0].done():
            future, method, size, counts, mark = self._pending.popleft()
            if future.cancelled() or future.exception() is not None or future.result() < 0:
                break
            self._account(method, size, counts, resumed=False)
            self._progress.checkpoint = mark
