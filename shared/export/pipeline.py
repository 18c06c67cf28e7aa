"""One export run on one instance: the pipeline's stages, driven in order in this process.

The stages are written once, each in a module of its own, and two drivers run them: this
one, on one instance, and the queue's (``shared.runs.split``), which spreads a large run's
read and send over several instances. In order:

1. **read** (``shared.export.read``): the snapshot (``shared.export.plan``) is read once;
   every identifier column is normalised and hashed, and the digests go to the digest pool
   (``shared.export.digest_pool``: held up to a memory budget, spilled encrypted beyond it);
2. **judge**, mirror mode only (``shared.export.mirror``): every kind's changes against the
   last successful run's state, and the removal safeguard, before any request;
3. **send**: in add mode every distinct digest, bucket by bucket (``shared.export.add``; for
   an export of one segment, most of them while the snapshot is still read); in mirror mode
   each kind's changes. One sender (``shared.export.send``) sends on a background thread
   while the next body is prepared, and keeps the checkpoint that lets a later delivery
   resume the run;
4. **commit**, mirror mode only: the new state, once every kind's requests were accepted.

Memory stays bounded by the budget and one bucket, whatever the segment's size. The caller
saves the attempt's ``Progress`` after every accepted request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.adapters.blobsource import BlobSource
from shared.adapters.snapchat import SnapchatClient
from shared.adapters.spillstore import SpillStore
from shared.adapters.statestore import StateStore
from shared.core.definitions import Mode
from shared.core.runrecord import Progress
from shared.export import mirror
from shared.export.add import add_all, add_while_reading
from shared.export.digest_pool import DigestPool
from shared.export.plan import AttemptSpec, Plan
from shared.export.read import read_snapshot, require_rows
from shared.export.send import Sender

log = logging.getLogger(__name__)


def run(
    plan: Plan,
    source: BlobSource,
    client: SnapchatClient,
    attempt: AttemptSpec,
    *,
    resume: Progress,
    progress: Progress,
    on_progress: Callable[[Progress], None],
    spill: SpillStore,
    memory_budget: int,
    check_lease: Callable[[], None] = lambda: None,
    state: StateStore | None = None,
) -> None:
    """Bring the audience ``attempt.audience_id`` up to date with the plan's snapshot.

    ``resume`` is what the previous attempt of the run did; ``progress`` (new, the caller's)
    is filled in with what this one does, also when it fails, and handed to ``on_progress``
    after each accepted request.

    One read of the snapshot for all the identifier kinds the export maps, then per kind:
    in ``add`` mode every distinct valid identifier is sent; in ``mirror`` mode only new
    identifiers are added and only those that left are removed, and the new state is
    written once every kind's requests were accepted. ``attempt.dry_run`` sends nothing.
    Spilled digests (``spill``, over ``memory_budget`` bytes) are deleted when it ends.

    Requests are a pure function of the snapshot, the state and ``attempt.batch_size``, so
    an attempt after one that left ``resume.batches`` accepted requests rebuilds the same
    ones and skips those (counted as ``resumed``) instead of sending them again.
    """
    same_files = resume.source_version == plan.snapshot.version
    accepted = resume.batches if same_files else 0
    if accepted != resume.batches:
        log.warning(
            "Run %s: the snapshot's files changed since the last attempt; starting over",
            attempt.run_id,
        )
    progress.source_version = plan.snapshot.version
    sender = Sender(client, attempt, progress, accepted=accepted, expected=resume.checkpoint,
                     on_progress=on_progress, check_lease=check_lease)  # fmt: skip
    spill.delete_all()  # what a crashed attempt of the run may have left
    try:
        _stages(plan, source, attempt, progress=progress, sender=sender, spill=spill,
                memory_budget=memory_budget, check_lease=check_lease, state=state)  # fmt: skip
    except BaseException:
        # The checkpoint never goes back: an attempt that failed while it was still
        # skipping what an earlier one delivered must not forget those requests (unless
        # it found them to differ, and starts over).
        if not sender.restart and progress.batches < accepted:
            progress.batches, progress.checkpoint = accepted, resume.checkpoint
        raise
    finally:
        spill.delete_all()


def _stages(
    plan: Plan,
    source: BlobSource,
    attempt: AttemptSpec,
    *,
    progress: Progress,
    sender: Sender,
    spill: SpillStore,
    memory_budget: int,
    check_lease: Callable[[], None],
    state: StateStore | None,
) -> None:
    """Read, [judge,] send, [commit]: the stages in order, on this instance."""
    export = plan.export
    if export.mode is Mode.ADD and len(plan.segments) == 1:
        add_while_reading(plan, source, attempt, progress=progress, sender=sender, spill=spill,
                          memory_budget=memory_budget, check_lease=check_lease)  # fmt: skip
        return
    pool = DigestPool(spill, memory_budget, (kind.schema for kind, _ in export.columns))
    tallies = read_snapshot(plan, source, progress=progress, pool=pool,
                            publish=sender.publish, check_lease=check_lease)  # fmt: skip
    progress.spilled_bytes = pool.spilled_bytes
    require_rows(plan, progress)
    if export.mode is not Mode.MIRROR:
        add_all(plan, pool, tallies=tallies, attempt=attempt, progress=progress, sender=sender)
        return
    assert state is not None, "mirror mode needs a state store"
    changes = mirror.judge(plan, pool, tallies=tallies, state=state, attempt=attempt,
                           progress=progress)  # fmt: skip
    written = mirror.send_changes(plan, pool, changes, state=state, attempt=attempt,
                                  progress=progress, sender=sender)  # fmt: skip
    if not attempt.dry_run:
        check_lease()
        mirror.commit(state, export, attempt.audience_id, written)
