"""The mirror-sync merge: what to add and remove so an audience holds exactly a new set. Pure.

Inputs are sorted streams of 32-byte digests: the snapshot's set, what the last successful
run left in the audience (``state``) and what failed runs since may have sent (``touched``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class Diff:
    added: list[bytes]
    removed: list[bytes]
    unchanged: int
    managed: int = 0  # identifiers the app may have in the audience: state and touched together
    confirmed: int = 0  # of those, the ones the last successful run left there (state)


def diff(current: list[bytes], state: Iterable[bytes], touched: Iterable[bytes] = ()) -> Diff:
    """What to send so that the audience holds exactly ``current`` (all inputs sorted).

    ``state`` is what the last successful run left in the audience; ``touched`` what runs
    that failed since then sent (added or removed) before failing, so whether those are in
    the audience now is unknown. An identifier in ``current`` is sent unless it certainly is
    there (in ``state`` and not touched); one not in ``current`` is removed if it is in
    either, which are only ever identifiers this app sent. Sending an add for something
    present, or a removal for something absent, changes nothing at Snapchat.
    """
    result = Diff([], [], 0)
    position, total = 0, len(current)
    for old, certain, in_state in _merge(state, touched):
        result.managed += 1
        result.confirmed += in_state
        while position < total and current[position] < old:
            result.added.append(current[position])
            position += 1
        if position < total and current[position] == old:
            if certain:
                result.unchanged += 1
            else:
                result.added.append(old)
            position += 1
        else:
            result.removed.append(old)
    result.added.extend(current[position:])
    return result


def _merge(state: Iterable[bytes], touched: Iterable[bytes]) -> Iterator[tuple[bytes, bool, bool]]:
    """The sorted union of the two sets, each digest with: is it certainly in the audience,
    and was it in ``state``?"""
    states, touches = iter(state), iter(touched)
    a, b = next(states, None), next(touches, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a < b):
            yield a, True, True  # type: ignore[misc]
            a = next(states, None)
        elif a is None or b < a:
            yield b, False, False
            b = next(touches, None)
        else:
            yield a, False, True
            a, b = next(states, None), next(touches, None)
