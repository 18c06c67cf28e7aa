"""In-memory fakes of the storage clients the adapters use, for the fast tier.

In the manner of httpx's ``MockTransport``: small, stateful and strict. Each fake offers the
part of an Azure SDK client that ``shared/adapters`` and ``shared/entry/localworker.py``
call, with the service's semantics: ETags and their conditions (412 on a stale one, 409 on
inserting what exists), all-or-nothing transactions, a queue message's visibility and
dequeue count, blob ranges, listings and staged blocks. Anything else raises
NotImplementedError, never passes silently. ``tests/test_storage_contract.py`` runs the same
tests on these fakes and on Azurite, so that a fake that drifts from the real thing fails.

- ``FakeTable`` (``tables``): a ``TableClient`` (queries: the few OData shapes the adapters send);
- ``FakeQueue`` (``queues``): a ``QueueClient`` (messages are kept as the text sent: the app
  encodes them as base64 and decodes them likewise, which the fake leaves out);
- ``FakeBlobService``, ``FakeContainer``, ``FakeBlob`` (``blobs``): the Blob Storage clients;
- ``FakeStorage``: one account of all three, handing clients out by name as
  ``shared.runtime.build(settings, storage=...)`` asks; ``advance`` moves its clock (queue
  visibility) forward without waiting.
"""

from __future__ import annotations

import threading
from typing import cast

from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devtools.storage_fakes.blobs import FakeBlob, FakeBlobService, FakeContainer
from devtools.storage_fakes.queues import FakeQueue, Message
from devtools.storage_fakes.service import Clock
from devtools.storage_fakes.tables import FakeTable, TableData
from shared.core.settings import StorageTarget

__all__ = ["FakeBlob", "FakeBlobService", "FakeContainer", "FakeQueue", "FakeStorage", "FakeTable"]


class FakeStorage:
    """One storage account's tables and queues (and, by ``blobs``, blob accounts), held in
    memory; ``shared.runtime.Storage`` for ``build(settings, storage=...)``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.tables: dict[str, TableData] = {}
        self.queues: dict[str, list[Message]] = {}
        self._blob_accounts: dict[tuple[str | None, str | None], FakeBlobService] = {}

    def advance(self, seconds: float) -> None:
        """Move the fakes' clock on (messages hidden until then become visible)."""
        self.clock.ahead += seconds

    def table(self, name: str) -> TableClient:
        return cast(TableClient, FakeTable(self, name))

    def queue(self, name: str) -> QueueClient:
        return cast(QueueClient, FakeQueue(self, name))

    def blobs(self, target: StorageTarget) -> BlobServiceClient:
        """The blob account ``target`` names (one per connection string or endpoint)."""
        with self.lock:
            key = (target.connection_string, target.blob_url)
            return cast(BlobServiceClient, self._blob_accounts.setdefault(key, FakeBlobService()))
