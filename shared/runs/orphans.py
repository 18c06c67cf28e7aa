"""The timer's part of erasing what the app keeps of people: stored digest sets that no
export uses any more (its export was deleted, or moved to another audience) are deleted
once they are older than ``STATE_RETENTION_DAYS``. What it deleted is logged (blob names:
an export, an audience ID and a kind, never a digest). On request, ``shared.admin.purge``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.adapters.created_audiences import CreatedAudiences
from shared.adapters.statestore import StoredSet, delete_sets, stored_sets
from shared.core.errors import ExportError
from shared.runtime import Runtime

log = logging.getLogger(__name__)


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
