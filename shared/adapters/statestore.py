"""Adapter for mirror-sync state: the identifier set an export's audience holds, per kind.

After a mirror-mode run succeeds, the sorted digests it left in the audience are written to
``<STATE_CONTAINER>/<export>/<audience>/<schema>.state`` in the app's own Blob Storage (a new
audience starts without state, so everything is added to it), encrypted, so
that no hash ever sits in a file readable as such. The next run merges its own sorted set
with this stream to find what to add and what to remove, holding one chunk at a time.

Format: ``MAGIC`` and an 8-byte random prefix, then frames of a 4-byte big-endian length and
an AES-256-GCM box of up to ``_CHUNK`` digests. Each box's nonce is the prefix plus the frame
number, and its associated data names the export, the schema, the frame number and whether
it is the last one, so frames cannot be swapped, moved to another export, or cut off.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Iterator

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.core.errors import ConfigurationError, StorageError

STATE = "state"
TOUCHED = "touched"
KEY_SECRET = "exporter-state-key"  # noqa: S105 - the secret's name, not its value
MAGIC = b"CI2SNAP-STATE-1\n"
_DIGEST = 32
_CHUNK = 65_536  # digests per frame: 2 MiB of plaintext
_FRAME = struct.Struct(">I")


def parse_key(value: str) -> bytes:
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigurationError(
            f"secret {KEY_SECRET!r}: expected 64 hexadecimal characters (a 256-bit key)"
        )
    return key


class StateStore:
    def __init__(self, container: ContainerClient, key: bytes) -> None:
        self._container = container
        self._aead = AESGCM(key)
        self._ready = False

    def read(self, export: str, audience: str, schema: str, part: str = STATE) -> Iterator[bytes]:
        """A sorted digest set: ``STATE`` (what the last successful mirror run left in the
        audience) or ``TOUCHED`` (what runs that failed since may have changed); nothing if
        there is none."""
        name = f"{export}/{audience}/{schema}.{part}"
        try:
            stream = self._container.download_blob(name)
            data = _Frames(stream.chunks())
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be read ({type(exc).__name__})"
            ) from None
        header = data.take(len(MAGIC) + 8)
        if header[: len(MAGIC)] != MAGIC:
            raise StorageError(f"mirror state {name}: not a state file of this app")
        prefix = header[len(MAGIC) :]
        index = 0
        while True:
            size_bytes = data.take(_FRAME.size)
            if not size_bytes:
                raise StorageError(f"mirror state {name}: cut off before its last frame")
            box = data.take(_FRAME.unpack(size_bytes)[0])
            plain, last = self._open(name, export, schema, prefix=prefix, index=index, box=box)
            for start in range(0, len(plain), _DIGEST):
                yield plain[start : start + _DIGEST]
            if last:
                return
            index += 1

    def _open(
        self, name: str, export: str, schema: str, *, prefix: bytes, index: int, box: bytes
    ) -> tuple[bytes, bool]:
        for last in (False, True):
            try:
                plain = self._aead.decrypt(
                    prefix + _FRAME.pack(index), box, _associated(export, schema, index, last)
                )
                return plain, last
            except InvalidTag:
                continue
        raise ConfigurationError(
            f"mirror state {name}: cannot be decrypted with the current {KEY_SECRET!r} or was "
            "altered; delete the blob to start mirroring afresh (the next run adds everything "
            "and removes nothing)"
        )

    def write(
        self, export: str, audience: str, schema: str, digests: list[bytes], part: str = STATE
    ) -> None:
        """Replace a set with ``digests`` (sorted), as one blob upload."""
        name = f"{export}/{audience}/{schema}.{part}"
        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ready = True
            self._container.upload_blob(name, self._frames(export, schema, digests), overwrite=True)
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be written ({type(exc).__name__})"
            ) from None

    def delete(self, export: str, audience: str, schema: str, part: str) -> None:
        name = f"{export}/{audience}/{schema}.{part}"
        try:
            self._container.delete_blob(name)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be deleted ({type(exc).__name__})"
            ) from None

    def _frames(self, export: str, schema: str, digests: list[bytes]) -> Iterable[bytes]:
        prefix = os.urandom(8)
        yield MAGIC + prefix
        count = max(1, -(-len(digests) // _CHUNK))
        for index in range(count):
            plain = b"".join(digests[index * _CHUNK : (index + 1) * _CHUNK])
            last = index == count - 1
            box = self._aead.encrypt(
                prefix + _FRAME.pack(index), plain, _associated(export, schema, index, last)
            )
            yield _FRAME.pack(len(box)) + box


def _associated(export: str, schema: str, index: int, last: bool) -> bytes:
    return f"{export}\n{schema}\n{index}\n{int(last)}".encode()


class _Frames:
    """Exact-size reads over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()

    def take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken


def delete_state(container: ContainerClient, export: str) -> int:
    """Delete every state and touched set of the export, for all its audiences (the export
    was deleted); returns how many files went."""
    deleted = 0
    try:
        if not container.exists():
            return 0
        for blob in container.list_blobs(name_starts_with=f"{export}/"):
            with contextlib.suppress(ResourceNotFoundError):
                container.delete_blob(blob.name)
                deleted += 1
    except AzureError as exc:
        raise StorageError(
            f"mirror state of export {export}: cannot be deleted ({type(exc).__name__})"
        ) from None
    return deleted
