"""Adapter for mirror-sync state: the identifier set an export's audience holds, per kind.

After a mirror-mode run succeeds, the sorted digests it left in the audience are written to
``<STATE_CONTAINER>/<export>/<audience>/<schema>.state`` in the app's own Blob Storage (a new
audience starts without state, so everything is added to it), encrypted, so
that no hash ever sits in a file readable as such. The next run merges its own sorted set
with this stream to find what to add and what to remove, holding one frame at a time.

A set is written while the run goes through its buckets (``Writer``): each piece is staged
as a block of the blob, and only ``commit`` makes them the blob's content, at once, so the
previous set stays readable until the new one is complete.

Format 2: ``MAGIC`` and an 8-byte random prefix, then frames of a 4-byte big-endian length
and an AES-256-GCM box of up to ``_CHUNK`` digests, then an empty last frame. Each box's
nonce is the prefix plus the frame number, and its associated data names the export, the
audience, the schema, the part (state or touched), the frame number and whether it is the
last one, so frames cannot be swapped, moved to another set, or cut off. Format 1 (no
audience and part in the associated data, the last frame not empty) is still read.
"""

from __future__ import annotations

import base64
import contextlib
import os
import struct
from collections.abc import Iterator

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.core.errors import ConfigurationError, StorageError

STATE = "state"
TOUCHED = "touched"
KEY_SECRET = "exporter-state-key"  # noqa: S105 - the secret's name, not its value
MAGIC_1 = b"CI2SNAP-STATE-1\n"
MAGIC = b"CI2SNAP-STATE-2\n"
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
        """A sorted digest set, frame by frame (each the concatenated digests of one frame):
        ``STATE`` (what the last successful mirror run left in the audience) or ``TOUCHED``
        (what runs that failed since may have changed); nothing if there is none."""
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
        magic = header[: len(MAGIC)]
        if magic not in (MAGIC, MAGIC_1):
            raise StorageError(f"mirror state {name}: not a state file of this app")
        names = (export, schema) if magic == MAGIC_1 else (export, audience, schema, part)
        prefix = header[len(MAGIC) :]
        index = 0
        while True:
            size_bytes = data.take(_FRAME.size)
            if not size_bytes:
                raise StorageError(f"mirror state {name}: cut off before its last frame")
            box = data.take(_FRAME.unpack(size_bytes)[0])
            plain, last = self._open(name, names, prefix=prefix, index=index, box=box)
            if plain:
                yield plain
            if last:
                return
            index += 1

    def _open(
        self, name: str, names: tuple[str, ...], *, prefix: bytes, index: int, box: bytes
    ) -> tuple[bytes, bool]:
        for last in (False, True):
            try:
                plain = self._aead.decrypt(
                    prefix + _FRAME.pack(index), box, _associated(names, index, last)
                )
                return plain, last
            except InvalidTag:
                continue
        raise ConfigurationError(
            f"mirror state {name}: cannot be decrypted with the current {KEY_SECRET!r} or was "
            "altered; delete the blob to start mirroring afresh (the next run adds everything "
            "and removes nothing)"
        )

    def writer(self, export: str, audience: str, schema: str, part: str = STATE) -> Writer:
        """A new set for ``export``'s audience, written piece by piece (see ``Writer``)."""
        name = f"{export}/{audience}/{schema}.{part}"
        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ready = True
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be written ({type(exc).__name__})"
            ) from None
        return Writer(self._container, name, self._aead, (export, audience, schema, part))

    def write(
        self, export: str, audience: str, schema: str, digests: bytes, part: str = STATE
    ) -> None:
        """Replace a set with ``digests`` (a sorted set), at once."""
        writer = self.writer(export, audience, schema, part)
        writer.add(digests)
        writer.commit()

    def commit_staged(
        self, export: str, audience: str, schema: str, blocks: int, part: str = STATE
    ) -> None:
        """Make the ``blocks`` a ``Writer`` staged (``stage_all``) the set's content."""
        name = f"{export}/{audience}/{schema}.{part}"
        _commit(self._container.get_blob_client(name), name, blocks)

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


_BLOCK = 4 << 20  # bytes staged per block


class Writer:
    """A set written in ascending pieces: frames are sealed as they fill and staged as
    blocks of the blob; ``commit`` makes the set the blob's content in one step. Until
    then the blob keeps its previous content (a run that fails leaves it as it was)."""

    def __init__(
        self, container: ContainerClient, name: str, aead: AESGCM, names: tuple[str, ...]
    ) -> None:
        self._blob = container.get_blob_client(name)
        self._name, self._aead, self._names = name, aead, names
        self._prefix = os.urandom(8)
        self._pending = bytearray(MAGIC + self._prefix)  # sealed frames not staged yet
        self._open = bytearray()  # digests of the frame being filled
        self._index = 0  # frames sealed
        self._blocks: list[str] = []

    def add(self, digests: bytes) -> None:
        self._open += digests
        while len(self._open) >= _CHUNK * 32:
            self._seal(bytes(self._open[: _CHUNK * 32]), last=False)
            del self._open[: _CHUNK * 32]

    def commit(self) -> None:
        _commit(self._blob, self._name, self.stage_all())

    def stage_all(self) -> int:
        """Seal and stage the rest, without committing: how many blocks the set has, which
        ``StateStore.commit_staged`` commits later (another job of a split run)."""
        if self._open:
            self._seal(bytes(self._open), last=False)
            self._open.clear()
        self._seal(b"", last=True)
        self._stage(force=True)
        return len(self._blocks)

    def _seal(self, plain: bytes, *, last: bool) -> None:
        nonce = self._prefix + _FRAME.pack(self._index)
        box = self._aead.encrypt(nonce, plain, _associated(self._names, self._index, last))
        self._pending += _FRAME.pack(len(box)) + box
        self._index += 1
        self._stage()

    def _stage(self, *, force: bool = False) -> None:
        if not self._pending or (len(self._pending) < _BLOCK and not force):
            return
        block = _block_id(len(self._blocks))
        try:
            self._blob.stage_block(block, bytes(self._pending))
        except AzureError as exc:
            raise StorageError(
                f"mirror state {self._name}: cannot be written ({type(exc).__name__})"
            ) from None
        self._blocks.append(block)
        self._pending.clear()


def _block_id(number: int) -> str:
    return base64.b64encode(f"{number:010d}".encode()).decode()


def _commit(blob: BlobClient, name: str, blocks: int) -> None:
    try:
        blob.commit_block_list([BlobBlock(block_id=_block_id(n)) for n in range(blocks)])
    except AzureError as exc:
        raise StorageError(
            f"mirror state {name}: cannot be written ({type(exc).__name__})"
        ) from None


def _associated(names: tuple[str, ...], index: int, last: bool) -> bytes:
    return "\n".join([*names, str(index), str(int(last))]).encode()


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
