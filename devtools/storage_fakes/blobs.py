"""Fake Blob Storage clients: a service, its containers and blobs (ranges, listings, blocks)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from devtools.storage_fakes.service import Strict, refused


@dataclass
class _Blob:
    content: bytes
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class BlobProperties:
    """What a listing or ``get_blob_properties`` says of a blob."""

    name: str
    size: int
    etag: str
    last_modified: datetime


@dataclass
class _Container:
    blobs: dict[str, _Blob] = field(default_factory=dict)
    staged: dict[str, dict[str, bytes]] = field(default_factory=dict)  # blob → block → data


class Download:
    """A blob's content (or a range of it), as ``StorageStreamDownloader`` hands it out."""

    def __init__(self, content: bytes, properties: BlobProperties, chunk: int) -> None:
        self._content, self.properties, self._chunk = content, properties, chunk
        self.size = len(content)

    def readall(self) -> bytes:
        return self._content

    def chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self._content), self._chunk):
            yield self._content[start : start + self._chunk]


class FakeBlob(Strict):
    """The ``BlobClient`` surface the state store and the export source use."""

    def __init__(self, container: FakeContainer, name: str) -> None:
        self.container_name, self.blob_name = container.container_name, name
        self._container = container

    def download_blob(self, offset: int | None = None, length: int | None = None) -> Download:
        return self._container.download_blob(self.blob_name, offset=offset, length=length)

    def upload_blob(self, data: bytes | Iterable[bytes], **options: Any) -> dict[str, Any]:
        return self._container.put(self.blob_name, data, **options)

    def delete_blob(self) -> None:
        self._container.delete_blob(self.blob_name)

    def get_blob_properties(self) -> BlobProperties:
        with self._container.lock:
            return self._container.properties(self.blob_name)

    def stage_block(self, block_id: str, data: bytes) -> None:
        with self._container.lock:
            staged = self._container.data().staged.setdefault(self.blob_name, {})
            staged[block_id] = bytes(data)

    def commit_block_list(self, blocks: list[Any]) -> dict[str, Any]:
        """The blob becomes the staged blocks named, in order; the others are dropped."""
        with self._container.lock:
            staged = self._container.data().staged.pop(self.blob_name, {})
            ids = [getattr(block, "id", block) for block in blocks]
            if any(block_id not in staged for block_id in ids):
                raise refused(HttpResponseError, 400, "InvalidBlockList")
            return self._container.store(self.blob_name, b"".join(staged[i] for i in ids))


class FakeContainer(Strict):
    """The ``ContainerClient`` surface the spill and state stores and the source use."""

    def __init__(self, service: FakeBlobService, name: str) -> None:
        self.container_name = name
        self._service, self.lock = service, service.lock

    def data(self) -> _Container:
        found = self._service.containers.get(self.container_name)
        if found is None:
            raise refused(ResourceNotFoundError, 404, "ContainerNotFound")
        return found

    def exists(self) -> bool:
        return self.container_name in self._service.containers

    def create_container(self) -> None:
        with self.lock:
            if self.exists():
                raise refused(ResourceExistsError, 409, "ContainerAlreadyExists")
            self._service.containers[self.container_name] = _Container()

    def get_blob_client(self, blob: str) -> FakeBlob:
        return FakeBlob(self, blob)

    def upload_blob(self, name: str, data: bytes | Iterable[bytes], **options: Any) -> FakeBlob:
        """As the SDK: the new blob's client."""
        self.put(name, data, **options)
        return self.get_blob_client(name)

    def put(self, name: str, data: bytes | Iterable[bytes], *, overwrite: bool = False,
            length: int | None = None, etag: str | None = None,
            match_condition: MatchConditions | None = None) -> dict[str, Any]:  # fmt: skip
        """Write the blob: with ``overwrite`` whatever is there, with an ETag condition only
        over that version, else only if there is none."""
        content = bytes(data) if isinstance(data, bytes | bytearray) else b"".join(data)
        if length is not None and length != len(content):
            raise ValueError(f"upload of {name}: {len(content)} bytes, not {length}")
        with self.lock:
            current = self.data().blobs.get(name)
            if match_condition is not None:
                if match_condition != MatchConditions.IfNotModified or not etag:
                    raise NotImplementedError(f"upload condition {match_condition}")
                if current is None or current.etag != etag:
                    raise refused(ResourceModifiedError, 412, "ConditionNotMet")
            elif current is not None and not overwrite:
                raise refused(ResourceExistsError, 409, "BlobAlreadyExists")
            return self.store(name, content)

    def store(self, name: str, content: bytes) -> dict[str, Any]:
        at = datetime.now(UTC).replace(microsecond=0)  # the service says seconds
        blob = _Blob(content, f'"0x{uuid.uuid4().hex[:15].upper()}"', at)
        self.data().blobs[name] = blob
        return {"etag": blob.etag, "last_modified": at}

    def download_blob(self, blob: str, offset: int | None = None,
                      length: int | None = None) -> Download:  # fmt: skip
        """The blob, or ``length`` bytes of it from ``offset`` (cut at its end)."""
        with self.lock:
            properties = self.properties(blob)
            content = self.data().blobs[blob].content
        if offset is None:
            return Download(content, properties, self._service.chunk)
        if offset >= len(content) and (offset or content):
            raise refused(HttpResponseError, 416, "InvalidRange")
        end = len(content) if length is None else offset + length
        return Download(content[offset:end], properties, self._service.chunk)

    def properties(self, name: str) -> BlobProperties:
        found = self.data().blobs.get(name)
        if found is None:
            raise refused(ResourceNotFoundError, 404, "BlobNotFound")
        return BlobProperties(name, len(found.content), found.etag, found.last_modified)

    def list_blobs(self, name_starts_with: str | None = None) -> Iterator[BlobProperties]:
        with self.lock:
            found = self._service.containers.get(self.container_name)
            listed = None if found is None else [
                self.properties(name) for name in sorted(found.blobs)
                if name.startswith(name_starts_with or "")
            ]  # fmt: skip
        if listed is None:
            raise refused(ResourceNotFoundError, 404, "ContainerNotFound")
        yield from listed

    def delete_blob(self, blob: str) -> None:
        with self.lock:
            self.properties(blob)
            del self.data().blobs[blob]


class FakeBlobService(Strict):
    """The ``BlobServiceClient`` surface: containers and blobs by name."""

    def __init__(self, chunk: int = 4 * 1024 * 1024) -> None:
        self.containers: dict[str, _Container] = {}
        self.lock = threading.RLock()
        self.chunk = chunk  # bytes a download's chunks() hands out at a time

    def get_container_client(self, container: str) -> FakeContainer:
        return FakeContainer(self, container)

    def get_blob_client(self, container: str, blob: str) -> FakeBlob:
        return FakeBlob(FakeContainer(self, container), blob)

    def create_container(self, name: str) -> FakeContainer:
        client = self.get_container_client(name)
        client.create_container()
        return client
