"""Adapter for the audiences the app created: which audience belongs to an export that named
none (``audience`` instead of ``audience_id``). One entity per export in the run table,
partition ``~audiences``."""

from __future__ import annotations

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import table_failure
from shared.core.definitions import is_audience_id
from shared.core.errors import StorageError

AUDIENCE_PARTITION = tables.CREATED_AUDIENCES


class CreatedAudiences(tables.TableAdapter):
    """Which audience the app created for an export that names none (``audience`` given)."""

    def get(self, export: str) -> str | None:
        try:
            entity = self._table().get_entity(AUDIENCE_PARTITION, export)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure(f"read the audience of export {export}", exc) from None
        found = str(entity.get("audience_id", ""))
        if found and not is_audience_id(found):
            raise StorageError(
                f"the audience recorded for export {export} is not an audience ID; not used "
                f"(delete entity {AUDIENCE_PARTITION}/{export} in the run table to look it up "
                "again by name)"
            )
        return found or None

    def remember(self, export: str, audience_id: str) -> None:
        entity = {"PartitionKey": AUDIENCE_PARTITION, "RowKey": export, "audience_id": audience_id}
        try:
            tables.upsert(self._table(), entity)
        except AzureError as exc:
            raise table_failure(f"record the audience of export {export}", exc) from None
