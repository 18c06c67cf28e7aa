"""Adapter for mirror-state generations: the last generation written of each state set.

One entity per set in the run table, partition ``~state`` (row key: the set's blob name with
``|`` for ``/``). ``shared.adapters.statestore`` refuses a blob older than what is recorded
here, so an old copy of a set put back in Blob Storage is not taken for the current one.
Holds counts only, never a digest.
"""

from __future__ import annotations

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import table_failure

GENERATIONS_PARTITION = tables.STATE_GENERATIONS


class StateGenerations(tables.TableAdapter):
    def get(self, name: str) -> int:
        """The set's last generation written (0: none recorded)."""
        try:
            entity = self._table().get_entity(GENERATIONS_PARTITION, _row(name))
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise table_failure(f"read the generation of {name}", exc, "mirror state") from None
        return int(entity.get("generation", 0))

    def set(self, name: str, generation: int) -> None:
        entity = {"PartitionKey": GENERATIONS_PARTITION, "RowKey": _row(name),
                  "generation": generation}  # fmt: skip
        try:
            tables.upsert(self._table(), entity)
        except AzureError as exc:
            raise table_failure(f"record the generation of {name}", exc, "mirror state") from None


def _row(name: str) -> str:
    return name.replace("/", "|")
