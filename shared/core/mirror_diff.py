"""The mirror-sync merge: what to add and remove so an audience holds exactly a new set. Pure.

Inputs are sorted digest sets (``shared.core.digestsets``), usually one bucket of each: the
snapshot's set, what the last successful run left in the audience (``state``) and what
failed runs since may have sent (``touched``). Diffs of the buckets, in order, make the diff
of the whole sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.core import digestsets


@dataclass
class Diff:
    added: bytes  # sorted digests to send as additions
    removed: bytes  # sorted digests to send as removals
    unchanged: int
    managed: int = 0  # identifiers the app may have in the audience: state and touched together
    confirmed: int = 0  # of those, the ones the last successful run left there (state)


def diff(current: bytes, state: bytes, touched: bytes = b"") -> Diff:
    """What to send so that the audience holds exactly ``current`` (all sorted sets).

    ``state`` is what the last successful run left in the audience; ``touched`` what runs
    that failed since then sent (added or removed) before failing, so whether those are in
    the audience now is unknown. An identifier in ``current`` is sent unless it certainly is
    there (in ``state`` and not touched); one not in ``current`` is removed if it is in
    either, which are only ever identifiers this app sent. Sending an add for something
    present, or a removal for something absent, changes nothing at Snapchat.
    """
    certain = digestsets.minus(state, touched)
    managed = digestsets.union(state, touched) if touched else state
    added = digestsets.minus(current, certain)
    return Diff(
        added=added,
        removed=digestsets.minus(managed, current),
        unchanged=digestsets.count(current) - digestsets.count(added),
        managed=digestsets.count(managed),
        confirmed=digestsets.count(state),
    )
