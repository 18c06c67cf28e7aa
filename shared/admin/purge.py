"""Erasing what the app keeps of people on request: an export's stored digests.

Hashed identifiers are still personal data. Mirror mode keeps, per export, audience and
identifier kind, the set of digests the audience holds and, after a failed run, the set it
may have touched (``shared.adapters.statestore``). ``purge`` erases them on request, for one
audience or all of an export's (the timer's erasure of sets no export uses is
``shared.runs.orphans``). What it deleted is logged (blob names: an export, an audience ID
and a kind, never a digest) and answered.
"""

from __future__ import annotations

import logging

from shared.adapters.statestore import delete_sets, stored_sets
from shared.core.definitions import is_audience_id, is_export_name
from shared.core.errors import BadRequest, NotFound
from shared.runs import locking
from shared.runtime import Runtime

log = logging.getLogger(__name__)

_HOLD_SECONDS = 300.0  # the export is held while its sets are deleted


def purge(rt: Runtime, export: str, *, audience: str | None, by: str) -> dict[str, object]:
    """Erase the export's stored digests (of ``audience`` only, if given): refused while a run
    of the export is active, since it would write its state again. The export, if it is
    still defined, then starts mirroring afresh: its next run adds everything and removes
    nobody."""
    if not is_export_name(export):
        raise NotFound(f"no export named {export!r} can have stored digests")
    if audience is not None and not is_audience_id(audience):
        raise BadRequest(f"audience_id {audience!r} is not an audience ID")
    with locking.hold(rt, export, "purging", _HOLD_SECONDS):
        prefix = f"{export}/{audience}/" if audience else f"{export}/"
        found = [stored.name for stored in stored_sets(rt.state_container, prefix)]
        deleted = delete_sets(rt.state_container, found)
    log.warning("Stored digests of export %s%s purged by %s: %d file(s)", export,
                f" for audience {audience}" if audience else "", by, len(deleted))  # fmt: skip
    return {"export": export, "audience_id": audience, "deleted": deleted}
