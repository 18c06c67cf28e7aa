"""Adapter for the audiences the app created: which audience belongs to an export that named
none (``audience`` instead of ``audience_id``). One entity per export in the run table,
partition ``~audiences``."""

from __future__ import annotations

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.runlog import RunLog, table_failure

AUDIENCE_PARTITION = "~audiences"


class CreatedAudiences:
    """Which audience the app created for an export that names none (``audience`` given)."""

    def __init__(self, runs: RunLog) -> None:
        self._runs = runs

    def get(self, export: str) -> str | None:
        try:
            entity = self._runs.table().get_entity(AUDIENCE_PARTITION, export)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure(f"read the audience of export {export}", exc) from None
        return str(entity.get("audience_id", "")) or None

    def remember(self, export: str, audience_id: str) -> None:
        entity = {"PartitionKey": AUDIENCE_PARTITION, "RowKey": export, "audience_id": audience_id}
        try:
            self._runs.table().upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise table_failure(f"record the audience of export {export}", exc) from None
