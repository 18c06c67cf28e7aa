"""Adapter for request slots: Snapchat's rate limit kept by several instances at once.

Snapchat allows each access token about 10 requests a second. One instance spaces its own
requests (``SnapchatClient``); the jobs of a split run (``shared.runs.split``) send from several
instances at once, so they take turns through one Table Storage entity per connection, in
the run table's partition ``~slots``: it holds the wall-clock time of the next free slot,
and a sender reserves the slot by moving that time on by one interval, with a conditional
write (ETag), then waits for its slot. Two senders can never reserve the same slot, so the
connection's requests stay an interval apart, however many instances send. The instances'
clocks must agree to well within an interval (Azure keeps them in sync with NTP); the
interval is already 5% longer than the limit allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import RunLog, table_failure
from shared.core.errors import RetryableError

SLOTS_PARTITION = tables.REQUEST_SLOTS
_TRIES = 100  # conflicting reservations before giving up (each loses only to another's win)


class RequestSlots(tables.TableAdapter):
    def __init__(
        self,
        runs: RunLog,
        connection: str,
        requests_per_second: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(runs)
        self._connection = connection
        self._interval = 1.05 / requests_per_second
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        """Reserve the connection's next free slot, and wait until it comes."""
        table = self._table()
        for _ in range(_TRIES):
            try:
                entity: Any = table.get_entity(SLOTS_PARTITION, self._connection)
            except ResourceNotFoundError:
                entity = None
            except AzureError as exc:
                raise table_failure("read the request slots", exc) from None
            now = self._clock()
            slot = max(now, float(entity["next_at"]) if entity is not None else 0.0)
            claimed = {"PartitionKey": SLOTS_PARTITION, "RowKey": self._connection,
                       "next_at": slot + self._interval}  # fmt: skip
            try:
                if entity is None:
                    tables.insert(table, claimed)
                else:
                    tables.replace(table, claimed, entity.metadata["etag"])
            except tables.Conflict:
                continue  # another sender took this slot: try for the next one
            except AzureError as exc:
                raise table_failure("reserve a request slot", exc) from None
            if slot > now:
                self._sleep(slot - now)
            return
        raise RetryableError(
            f"connection {self._connection}: no request slot could be reserved (too many "
            "senders at once); try again"
        )
