"""A run's record and the progress it computes: the data every layer shares. Pure.

``RunRecord`` is what the service stores (one Table entity per run): who asked, what, when,
how it ended. ``Progress`` is what one attempt of the pipeline computes while it reads and
sends: counts, the checkpoint, the removal safeguard's decision. The pipeline writes only a
``Progress``; the service attaches it to the record it saves. The record's JSON (HTTP answers,
the command line) stays flat: progress fields appear beside the record's own.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

_TIMESTAMP = "%Y%m%dT%H%M%S%f"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


class Trigger(enum.StrEnum):
    """Who asked for a run."""

    TIMER = "timer"
    HTTP = "http"
    CLI = "cli"
    EVENT = "event"  # Event Grid said a blob of the export's snapshot was written


@dataclass
class Progress:
    """What one attempt of a run computes; ``batches`` and ``checkpoint`` let the next
    attempt resume after the requests Snapchat accepted (see ``shared.export.send``)."""

    rows_read: int = 0
    rows_scanned: int = 0  # rows read so far (progress); the snapshot is read once
    spilled_bytes: int = 0  # digests written out (encrypted) to keep memory flat; deleted
    empty: int = 0
    invalid: int = 0
    prehashed: int = 0
    duplicates: int = 0
    uploaded: int = 0
    batches: int = 0  # accepted requests, an unbroken prefix of the run's requests
    resumed: int = 0  # identifiers an earlier attempt delivered, not sent again
    checkpoint: str = ""  # fingerprint of the accepted requests' content
    source_version: str = ""  # fingerprint of the snapshot's files the requests came from
    added: int = 0  # identifiers sent to be added (mirror: only the new ones)
    removed: int = 0  # identifiers sent to be removed (mirror mode)
    unchanged: int = 0  # identifiers already in the audience, not sent (mirror mode)
    by_type: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # + "reasons"
    by_segment: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # rows
    safeguard: dict[str, Any] = dataclasses.field(default_factory=dict)  # core.safeguard
    # A run split over several instances (shared.runs.split): its jobs per step, and how many of
    # each are done ("read", "read_done", "send", "send_done"); empty for a one-instance run.
    jobs: dict[str, int] = dataclasses.field(default_factory=dict)


T = TypeVar("T")


class _FromProgress(Generic[T]):
    """A ``Progress`` field seen on the record, read-only: ``record.batches`` reads
    ``record.progress.batches``; only the pipeline writes progress."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, record: RunRecord | None, owner: type | None = None) -> T:
        if record is None:
            raise AttributeError(self._name)
        value: T = getattr(record.progress, self._name)
        return value

    def __set__(self, record: RunRecord, value: T) -> None:
        raise AttributeError(
            f"{self._name} is part of the run's progress: set record.progress.{self._name}"
        )


@dataclass
class RunRecord:
    run_id: str
    export: str
    trigger: str
    snapshot: str
    status: str = RunStatus.QUEUED
    snapshot_complete_at: str = ""  # when its data landed (timer and event runs); latency
    queued_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    batch_size: int = 0
    attempts: int = 0
    requests: int = 0  # HTTP requests to Snapchat, over all attempts
    retries: int = 0
    mode: str = "add"  # a definitions.Mode
    dry_run: bool = False
    audience_id: str = ""
    audience_name: str = ""  # as Snapchat named it when the run read its status
    approximate_number_users: int | None = None  # None: not read (or Snapchat did not say)
    upload_status: str = ""
    targetable_status: str = ""
    allow_large_removal: bool = False  # the operator let this run past the removal safeguard
    allowed_by: str = ""  # who did: the trigger that asked for the run (http, cli)
    requested_by: str = ""  # who asked: "<object id> (<name>)", "timer" or "cli (<user>)"
    error: str = ""
    error_kind: str = ""  # why it failed: an EndReason (shared.core.endings); telemetry
    # What Snapchat made of the run, read later (shared.runs.audience_checks); None before.
    audience_check: dict[str, Any] | None = None
    progress: Progress = dataclasses.field(default_factory=Progress)
    # The stored entity's ETag when this copy was read or last saved ("" for a new record):
    # every save is conditional on it. Not part of the record itself.
    etag: str = dataclasses.field(default="", repr=False, compare=False)

    rows_read = _FromProgress[int]()
    rows_scanned = _FromProgress[int]()
    spilled_bytes = _FromProgress[int]()
    empty = _FromProgress[int]()
    invalid = _FromProgress[int]()
    prehashed = _FromProgress[int]()
    duplicates = _FromProgress[int]()
    uploaded = _FromProgress[int]()
    batches = _FromProgress[int]()
    resumed = _FromProgress[int]()
    checkpoint = _FromProgress[str]()
    source_version = _FromProgress[str]()
    added = _FromProgress[int]()
    removed = _FromProgress[int]()
    unchanged = _FromProgress[int]()
    by_type = _FromProgress[dict[str, dict[str, Any]]]()
    by_segment = _FromProgress[dict[str, dict[str, int]]]()
    safeguard = _FromProgress[dict[str, Any]]()
    jobs = _FromProgress[dict[str, int]]()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def latency_seconds(self) -> float | None:
        """Data landed → audience updated: from the snapshot's completion to the run's
        successful end; None for a run that did not succeed or knows no completion time."""
        if self.status != RunStatus.SUCCEEDED or not self.snapshot_complete_at:
            return None
        if not self.finished_at:
            return None
        landed, done = parse(self.snapshot_complete_at), parse(self.finished_at)
        return round(max((done - landed).total_seconds(), 0.0), 3)

    def as_dict(self) -> dict[str, Any]:
        """The record as one flat JSON object (the progress fields beside the others)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del values["etag"], values["progress"]
        values.update(dataclasses.asdict(self.progress))
        return {k: str(v) if isinstance(v, enum.Enum) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunRecord:
        """The inverse of ``as_dict`` (unknown keys are ignored)."""
        own = {f.name for f in dataclasses.fields(cls)} - {"etag", "progress"}
        kept = {f.name for f in dataclasses.fields(Progress)}
        record = cls(**{k: v for k, v in values.items() if k in own})
        record.progress = Progress(**{k: v for k, v in values.items() if k in kept})
        return record


def now() -> str:
    return stamp(datetime.now(UTC))


def stamp(at: datetime) -> str:
    """A record's time: UTC, milliseconds, ``Z``."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(value: str) -> datetime:
    """The inverse of ``stamp``."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_run_id(at: datetime | None = None) -> str:
    """A run id that sorts by creation time: ``20261130T031500123Z-1a2b3c``."""
    stamp = (at or datetime.now(UTC)).strftime(_TIMESTAMP)[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


def row_key(run_id: str) -> str:
    """Row key of a run: the time digits inverted (9 - d), so newer runs sort first."""
    stamp, _, suffix = run_id.partition("Z-")
    digits = stamp.replace("T", "")
    if not (digits.isdigit() and len(digits) == 17 and suffix.isalnum()):
        raise ValueError("not a run id")
    inverted = "".join(str(9 - int(d)) for d in digits)
    return f"{inverted}-{suffix}"


def is_run_id(value: str) -> bool:
    try:
        row_key(value)
    except ValueError:
        return False
    return True
