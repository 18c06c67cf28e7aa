"""Adapter for the Blob Storage account Customer Insights exports into (read only)."""

from __future__ import annotations

import contextvars
import functools
import io
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient

from shared.core.csvstream import ChunkReader
from shared.core.errors import (
    NotFound,
    SourceAccessDenied,
    SourceError,
    SourceMalformed,
    StorageError,
)
from shared.core.layout import BlobEntry

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 32 * 1024 * 1024  # model.json lists columns and partitions; larger is wrong


class BlobSource:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    def list(self, container: str, prefix: str) -> list[BlobEntry]:
        try:
            client = self._service.get_container_client(container)
            return [
                BlobEntry(name=b.name, last_modified=b.last_modified, size=b.size or 0)
                for b in client.list_blobs(name_starts_with=prefix)
            ]
        except AzureError as exc:
            raise _translate(exc, f"container {container!r}") from None

    def list_bounded(
        self, container: str, *, limit: int, seconds: float
    ) -> tuple[Sequence[BlobEntry], bool]:
        """The container's blobs, in name order, stopping after ``limit`` blobs or
        ``seconds``; and whether it stopped before the end. NotFound for no such container."""
        deadline = time.monotonic() + seconds
        found: list[BlobEntry] = []
        try:
            for blob in self._service.get_container_client(container).list_blobs():
                if len(found) >= limit or time.monotonic() > deadline:
                    return found, True
                found.append(BlobEntry(blob.name, blob.last_modified, blob.size or 0))
        except ResourceNotFoundError:
            raise NotFound(f"no container {container!r} in the export storage account") from None
        except AzureError as exc:
            raise _translate(exc, f"container {container!r}") from None
        return found, False

    def read_small(self, container: str, name: str) -> bytes | None:
        """The whole content of a small blob (model.json), or None if it does not exist."""
        try:
            downloader = self._service.get_blob_client(container, name).download_blob()
            if downloader.size > MAX_MODEL_BYTES:
                raise SourceMalformed(f"{container}/{name}: larger than {MAX_MODEL_BYTES} bytes")
            return downloader.readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _translate(exc, f"{container}/{name}") from None

    def open(self, container: str, name: str) -> io.RawIOBase:
        """A stream over a blob's content, downloaded chunk by chunk as it is read.

        A background thread fetches up to ``_AHEAD`` chunks ahead of the reader, so that
        waiting on the network overlaps parsing (socket reads release the GIL).
        """
        try:
            downloader = self._service.get_blob_client(container, name).download_blob()
        except AzureError as exc:
            raise _translate(exc, f"{container}/{name}") from None
        return ChunkReader(_prefetched(downloader.chunks(), f"{container}/{name}"))


_AHEAD = 2  # chunks of up to 4 MiB held ahead of the reader
_DONE = object()


def _prefetched(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    ready: queue.Queue[object] = queue.Queue(maxsize=_AHEAD)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        ready.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_DONE)
        except AzureError as exc:
            ready.put(_translate(exc, where))
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
            ready.put(exc)

    in_context = functools.partial(contextvars.copy_context().run, fetch)  # the run's log IDs
    thread = threading.Thread(target=in_context, name="blob-prefetch", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def _translate(exc: AzureError, where: str) -> Exception:
    if isinstance(exc, ResourceNotFoundError):
        return SourceError(f"{where}: not found in the export storage account")
    if isinstance(exc, ClientAuthenticationError) or (
        isinstance(exc, HttpResponseError) and exc.status_code == 403
    ):
        return SourceAccessDenied(
            f"{where}: the app's identity may not read it (grant Storage Blob Data Reader)"
        )
    log.warning("Blob Storage failed on %s: %s", where, type(exc).__name__)
    return StorageError(f"{where}: Blob Storage failed ({type(exc).__name__})")
