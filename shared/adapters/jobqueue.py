"""Adapter for the job queue: one message per export run, consumed by the queue worker; a
run split over several instances adds one message per job of it (``shared.runs.split``)."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.core.errors import StorageError

log = logging.getLogger(__name__)


# "": the run itself; read, judge, send: a job of a split run; audience-check: a later look at
# what Snapchat made of a run that ended (shared.runs.audience_checks), ``part`` its number;
# snapshot-check: whether an export's new snapshot is complete (shared.runs.events), ``part``
# the re-checks before it (its ``run_id`` is CHECK, no run's).
STEPS = ("", "read", "judge", "send", "audience-check", "snapshot-check")
AUDIENCE_CHECK = "audience-check"
SNAPSHOT_CHECK = "snapshot-check"
CHECK = "check"  # the run_id of a snapshot check, which belongs to no run yet
MAX_DELAY_SECONDS = 7 * 24 * 3600  # Queue Storage hides a new message for at most 7 days


@dataclass(frozen=True)
class Job:
    run_id: str
    export: str
    snapshot: str
    step: str = ""
    part: int = 0  # which job of the step

    def to_json(self) -> str:
        fields = asdict(self)
        if not self.step:
            del fields["step"], fields["part"]
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Parse a queue message; ValueError when it is not a job this app wrote."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("job message is not JSON") from None
        if not isinstance(raw, dict) or not all(
            isinstance(raw.get(key), str) and raw[key] for key in ("run_id", "export", "snapshot")
        ):
            raise ValueError("job message lacks run_id, export or snapshot")
        step, part = raw.get("step", ""), raw.get("part", 0)
        if step not in STEPS or type(part) is not int or not 0 <= part < 1 << 16:
            raise ValueError("job message names no step of a run this app knows")
        return cls(run_id=raw["run_id"], export=raw["export"], snapshot=raw["snapshot"],
                   step=step, part=part)  # fmt: skip


def encode_policy() -> TextBase64EncodePolicy:
    """The Functions host decodes queue messages as base64 by default, so encode likewise."""
    return TextBase64EncodePolicy()


class JobQueue:
    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue
        self._ready = False

    def send(self, job: Job, delay_seconds: int = 0) -> None:
        """Put ``job`` on the queue, visible after ``delay_seconds`` (at most 7 days)."""
        delay = min(max(int(delay_seconds), 0), MAX_DELAY_SECONDS)
        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._queue.create_queue()
                self._ready = True
            self._queue.send_message(job.to_json(), visibility_timeout=delay or None)
        except AzureError as exc:
            log.warning("Queue Storage failed to send a job: %s", type(exc).__name__)
            raise StorageError(f"job queue: could not send ({type(exc).__name__})") from None
