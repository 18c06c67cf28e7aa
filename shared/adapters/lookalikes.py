"""Adapter for the lookalike audience the app keeps per export (Table Storage): its ID, status
and size, one entity per export in the run table's partition ``tables.LOOKALIKES``.

Every write is conditional (``tables.insert`` / ``tables.replace``): the entity is the claim
that lets exactly one run create the lookalike (``shared.export.lookalikes``), so a retried or
concurrent run sees the claim, or the created ID, and never creates a second one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import table_failure
from shared.core.definitions import is_audience_id

LOOKALIKE_PARTITION = tables.LOOKALIKES
STATUSES = ("waiting_for_seed", "pending", "active", "failed")


@dataclass(frozen=True)
class LookalikeState:
    """What the app knows of an export's lookalike: the API's answer (``as_dict``), plus
    ``spec`` (the type, countries and name it was asked with) and ``claimed_at`` (when a run
    took it upon itself to create it; an ID follows)."""

    status: str  # one of STATUSES
    id: str = ""  # "" until Snapchat named it
    size: int | None = None  # Snapchat's approximate_number_users, once ACTIVE
    created_at: str = ""  # ISO time the app created it
    error: str = ""  # why it failed (a refusal by Snapchat), or the last problem reading it
    spec: str = ""  # the lookalike field it follows, as canonical JSON
    claimed_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id or None,
            "status": self.status,
            "size": self.size,
            "created_at": self.created_at or None,
            "error": self.error or None,
        }


class Lookalikes(tables.TableAdapter):
    """The export's lookalike state, written only on conditions (see the module docstring)."""

    def get(self, export: str) -> tuple[LookalikeState, str] | None:
        """The state and its ETag; None when the export has none yet."""
        try:
            entity = self._table().get_entity(LOOKALIKE_PARTITION, export)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure(f"read the lookalike of export {export}", exc) from None
        found = str(entity.get("lookalike_id") or "")
        size = getattr(entity.get("size"), "value", entity.get("size"))  # Int64: a wrapper
        state = LookalikeState(
            status=str(entity.get("status") or "failed"),
            id=found if is_audience_id(found) else "",
            size=int(size) if isinstance(size, int) and size >= 0 else None,
            created_at=str(entity.get("created_at") or ""),
            error=str(entity.get("error") or ""),
            spec=str(entity.get("spec") or ""),
            claimed_at=str(entity.get("claimed_at") or ""),
        )
        return state, str(entity.metadata.get("etag") or "")

    def insert(self, export: str, state: LookalikeState) -> str:
        """Write the first state; its ETag. ``tables.Conflict`` when another run did first."""
        try:
            return tables.insert(self._table(), _entity(export, state))
        except AzureError as exc:
            raise table_failure(f"record the lookalike of export {export}", exc) from None

    def replace(self, export: str, state: LookalikeState, etag: str) -> str:
        """Write ``state`` over the one read with ``etag``; the new ETag. ``tables.Conflict``
        when another run changed it since."""
        try:
            return tables.replace(self._table(), _entity(export, state), etag)
        except AzureError as exc:
            raise table_failure(f"record the lookalike of export {export}", exc) from None


def _entity(export: str, state: LookalikeState) -> dict[str, Any]:
    values = dataclasses.asdict(state)
    values["lookalike_id"] = values.pop("id")
    if values["size"] is None:
        del values["size"]
    return {"PartitionKey": LOOKALIKE_PARTITION, "RowKey": export, **values}
