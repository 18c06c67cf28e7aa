"""The export's audience: the one it names, or the one the app created for it; and what
Snapchat reports about it after a run."""

from __future__ import annotations

import logging

from shared.adapters.created_audiences import CreatedAudiences
from shared.adapters.snapchat import SnapchatClient
from shared.core.definitions import Export
from shared.core.errors import SnapchatError
from shared.core.runrecord import RunRecord
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def resolve(rt: Runtime, export: Export, client: SnapchatClient, *, dry_run: bool) -> str:
    """The export's audience ID; for an export that names none, the one the app created
    (found again by name if its record was lost), created now if there is none yet."""
    if export.audience_id or export.new_audience is None:
        return export.audience_id
    created = CreatedAudiences(rt.runs)
    known = created.get(export.name)
    if known:
        return known
    wanted = export.new_audience
    found = client.find_segment(wanted.ad_account_id, wanted.name)
    if found is None and dry_run:
        return ""  # a dry run creates nothing; everything counts as to be added
    if found is None:
        found = client.create_segment(
            wanted.ad_account_id,
            name=wanted.name,
            description=wanted.description,
            retention_in_days=wanted.retention_in_days,
        )
        log.info("Export %s: created audience %s in ad account %s", export.name, found,
                 wanted.ad_account_id)  # fmt: skip
    created.remember(export.name, found)
    return found


def read_status(client: SnapchatClient, record: RunRecord) -> None:
    """Record what Snapchat reports about the audience now (matching happens later)."""
    if not record.audience_id:
        return
    try:
        segment = client.get_segment(record.audience_id)
    except SnapchatError as exc:
        log.warning("Run %s: could not read the audience's status: %s", record.run_id, exc)
        return
    size = segment.get("approximate_number_users")
    record.approximate_number_users = size if isinstance(size, int) else None
    record.upload_status = str(segment.get("upload_status") or "")
    record.targetable_status = str(segment.get("targetable_status") or "")
    record.audience_name = str(segment.get("name") or "")[:375]
