"""Erasing what the app keeps of people: an export's stored digests, asked for or orphaned.

Hashed identifiers are still personal data. Mirror mode keeps, per export, audience and
identifier kind, the set of digests the audience holds and, after a failed run, the set it
may have touched (``shared.adapters.statestore``). ``purge`` erases them on request, for one
audience or all of an export's; ``remove_orphans`` (the timer) erases sets that no export
uses any more (its export was deleted outside the app, or moved to another audience) once
they are older than ``STATE_RETENTION_DAYS``. What each deleted is logged (blob names: an
export, an audience ID and a kind, never a digest) and, for ``purge``, answered.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from shared.adapters.created_audiences import CreatedAudiences
from shared.adapters.export_locks import ExportLocks
from shared.adapters.statestore import StoredSet, delete_sets, stored_sets
from shared.core.definitions import is_audience_id, is_export_name
from shared.core.errors import BadRequest, ExportError, NotFound, RunActive
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
    locks = ExportLocks(rt.runs)
    token = f"purging-{secrets.token_hex(4)}"
    taken = locks.acquire(export, token, token, _HOLD_SECONDS)
    if not taken.acquired:
        holder = taken.holder.run_id if taken.holder else ""
        raise RunActive(f"export {export!r} has an active run {holder}; purge it afterwards",
                        holder)  # fmt: skip
    try:
        prefix = f"{export}/{audience}/" if audience else f"{export}/"
        found = [stored.name for stored in stored_sets(rt.state_container, prefix)]
        deleted = delete_sets(rt.state_container, found)
    finally:
        locks.release(export, token, token)
    log.warning("Stored digests of export %s%s purged by %s: %d file(s)", export,
                f" for audience {audience}" if audience else "", by, len(deleted))  # fmt: skip
    return {"export": export, "audience_id": audience, "deleted": deleted}


def remove_orphans(rt: Runtime, now: datetime) -> list[str]:
    """Delete the stored sets no export uses, once older than ``STATE_RETENTION_DAYS``."""
    cutoff = now - timedelta(days=rt.settings.state_retention_days)
    in_use = _audiences_in_use(rt)
    old = [s for s in stored_sets(rt.state_container) if s.last_modified < cutoff]
    orphans = [s.name for s in old if not _used(s, in_use)]
    deleted = delete_sets(rt.state_container, orphans)
    if deleted:
        log.warning("Timer removed %d orphaned state file(s) older than %d days: %s",
                    len(deleted), rt.settings.state_retention_days, ", ".join(deleted))  # fmt: skip
    return deleted


def _audiences_in_use(rt: Runtime) -> dict[str, str]:
    """Each defined export's audience now (``""``: not created yet)."""
    created = CreatedAudiences(rt.runs)
    in_use = {}
    for export in rt.definitions.exports:
        in_use[export.name] = export.audience_id or created.get(export.name) or ""
    for broken in rt.definitions.broken:  # a definition being fixed keeps what it has
        in_use.setdefault(broken.name, "*")
    return in_use


def _used(stored: StoredSet, in_use: dict[str, str]) -> bool:
    audience = in_use.get(stored.export)
    return audience is not None and audience in ("*", stored.audience)


def remove_orphans_quietly(rt: Runtime, now: datetime) -> None:
    """``remove_orphans`` for the timer: a failure is logged, never stops the timer."""
    try:
        remove_orphans(rt, now)
    except ExportError as exc:
        log.error("Timer could not remove orphaned state: %s", exc)
