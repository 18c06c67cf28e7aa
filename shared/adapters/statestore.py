"""Adapter for mirror-sync state: the identifier set an export's audience holds, per kind.

After a mirror-mode run succeeds, the sorted digests it left in the audience are written to
``<STATE_CONTAINER>/<export>/<audience>/<schema>.state`` in the app's own Blob Storage (a new
audience starts without state, so everything is added to it), encrypted, so
that no hash ever sits in a file readable as such. The next run merges its own sorted set
with this stream to find what to add and what to remove, holding one frame at a time.

A set is written while the run goes through its buckets (``Writer``): each piece is staged
as a block of the blob, and only ``commit`` makes them the blob's content, at once, so the
previous set stays readable until the new one is complete.

Format 3: ``MAGIC``, the key's ID (8 bytes of a hash of the key, never the key), the set's
generation (8 bytes, one more with every write) and a 16-byte random salt; then frames of a
4-byte big-endian length and an AES-256-GCM box of up to ``_CHUNK`` digests, then an empty
last frame. Each blob has a key of its own, derived (HKDF-SHA-256) from the state key, the
salt, the set's names and generation, so frame numbers are unique nonces under it: with a
96-bit frame counter there is no nonce bound to keep, and a random 128-bit salt makes two
blobs share a key with a chance under 2^-64 for 2^32 blobs. Each box's associated data names
the export, the audience, the kind (schema), the part (state or touched), the generation,
the frame number and whether it is the last one, so frames cannot be swapped, moved to
another set, or cut off, and a blob copied over another set is refused.

Rollback: each set's last generation is also recorded in Table Storage
(``shared.adapters.state_generations``); a blob older than the recorded generation (an old
copy put back) is refused. Key rotation: the header names the key; a blob written under
``exporter-state-key-previous`` is read with it, and the next successful run writes it
again under ``exporter-state-key``. Formats 1 and 2 (before key IDs and generations) are
still read, with either key, but only for a set with no generation recorded: once one was
written in format 3, a file of an older format under its name is an old copy put back, and
refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient

from shared.adapters.sealing import Seal, SealError, derive_key, label
from shared.core.definitions import is_audience_id
from shared.core.errors import ConfigurationError, StorageError

STATE = "state"
TOUCHED = "touched"
KEY_SECRET = "exporter-state-key"  # noqa: S105 - the secret's name, not its value
PREVIOUS_KEY_SECRET = "exporter-state-key-previous"  # noqa: S105 - a name, as above
MAGIC_1 = b"CI2SNAP-STATE-1\n"
MAGIC_2 = b"CI2SNAP-STATE-2\n"
MAGIC = b"CI2SNAP-STATE-3\n"
_HEADER = struct.Struct(">8sQ16s")  # format 3, after MAGIC: key ID, generation, salt
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


def _name(export: str, audience: str, schema: str, part: str) -> str:
    """The blob of a set; an audience ID that cannot be one never makes a blob name."""
    if not is_audience_id(audience):
        raise ConfigurationError(f"mirror state of export {export}: {audience!r} is not an "
                                 "audience ID")  # fmt: skip
    return f"{export}/{audience}/{schema}.{part}"


def key_id(key: bytes) -> bytes:
    """What a state file records of its key: enough to tell keys apart, nothing more."""
    return hashlib.sha256(b"ci2snap state key id\n" + key).digest()[:8]


class Generations(Protocol):
    """Where each set's last generation is recorded (``state_generations.StateGenerations``)."""

    def get(self, name: str) -> int: ...

    def set(self, name: str, generation: int) -> None: ...


class StateStore:
    def __init__(
        self,
        container: ContainerClient,
        key: bytes,
        *,
        generations: Generations,
        previous: bytes | None = None,
    ) -> None:
        self._container = container
        self._key = key
        self._keys = {key_id(key): key}
        if previous is not None:
            self._keys.setdefault(key_id(previous), previous)
        self._generations = generations
        self._ready = False

    def read(self, export: str, audience: str, schema: str, part: str = STATE) -> Iterator[bytes]:
        """A sorted digest set, frame by frame (each the concatenated digests of one frame):
        ``STATE`` (what the last successful mirror run left in the audience) or ``TOUCHED``
        (what runs that failed since may have changed); nothing if there is none (also for an
        audience not created yet, ``""``: a dry run's)."""
        if not audience:
            return
        name = _name(export, audience, schema, part)
        try:
            stream = self._container.download_blob(name)
            data = _Frames(stream.chunks())
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be read ({type(exc).__name__})"
            ) from None
        names = (export, audience, schema, part)
        opener = self._opener(name, names, data)
        index = 0
        while True:
            size_bytes = data.take(_FRAME.size)
            if not size_bytes:
                raise StorageError(f"mirror state {name}: cut off before its last frame")
            box = data.take(_FRAME.unpack(size_bytes)[0])
            plain, last = opener.open(index, box)
            if plain:
                yield plain
            if last:
                return
            index += 1

    def _opener(self, name: str, names: tuple[str, ...], data: _Frames) -> _Opener:
        magic = data.take(len(MAGIC))
        if magic == MAGIC:
            found, generation, salt = _HEADER.unpack(data.take(_HEADER.size).ljust(_HEADER.size))
            key = self._keys.get(found)
            if key is None:
                raise ConfigurationError(
                    f"mirror state {name}: written under a key that is neither "
                    f"{KEY_SECRET!r} nor {PREVIOUS_KEY_SECRET!r}; put that key back as "
                    f"{PREVIOUS_KEY_SECRET!r}, or delete the blob to start mirroring afresh "
                    "(the next run adds everything and removes nothing)"
                )
            recorded = self._generations.get(name)
            if generation < recorded:
                raise ConfigurationError(
                    f"mirror state {name}: generation {generation} is older than the "
                    f"{recorded} last written; refused (was an old copy put back?). Delete "
                    "the blob to start mirroring afresh."
                )
            seal = Seal(_blob_key(key, salt, names, generation))
            return _Opener(name, [seal], (*names, str(generation)), b"\0" * 4)
        if magic not in (MAGIC_2, MAGIC_1):
            raise StorageError(f"mirror state {name}: not a state file of this app")
        recorded = self._generations.get(name)
        if recorded:  # written in format 3 since: an older file is a copy put back
            export, audience, schema, part = names
            raise ConfigurationError(
                f"mirror state of export {export}, audience {audience}, {schema} ({part}): "
                f"a file of format {1 if magic == MAGIC_1 else 2}, older than generation "
                f"{recorded} recorded for it; refused (was an old copy put back?). Delete the "
                f"blob {name} to start mirroring afresh."
            )
        prefix = data.take(8)
        legacy = names[:1] + names[2:3] if magic == MAGIC_1 else names
        return _Opener(name, [Seal(k) for k in self._keys.values()], legacy, prefix)

    def writer(self, export: str, audience: str, schema: str, part: str = STATE) -> Writer:
        """A new set for ``export``'s audience, written piece by piece (see ``Writer``)."""
        name = _name(export, audience, schema, part)
        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ready = True
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be written ({type(exc).__name__})"
            ) from None
        generation = max(self._generations.get(name), self._written(name)) + 1
        names = (export, audience, schema, part)
        salt = os.urandom(16)
        header = MAGIC + _HEADER.pack(key_id(self._key), generation, salt)
        seal = Seal(_blob_key(self._key, salt, names, generation))
        return Writer(self._container, name, seal=seal, header=header,
                      names=(*names, str(generation)), generation=generation,
                      generations=self._generations)  # fmt: skip

    def _written(self, name: str) -> int:
        """The generation of the blob as it is (0 if none, or of an older format)."""
        try:
            head = self._container.download_blob(name, offset=0, length=len(MAGIC) + _HEADER.size)
            raw = head.readall()
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be read ({type(exc).__name__})"
            ) from None
        if len(raw) < len(MAGIC) + _HEADER.size or not raw.startswith(MAGIC):
            return 0
        return int(_HEADER.unpack(raw[len(MAGIC) :])[1])

    def write(
        self, export: str, audience: str, schema: str, digests: bytes, part: str = STATE
    ) -> None:
        """Replace a set with ``digests`` (a sorted set), at once."""
        writer = self.writer(export, audience, schema, part)
        writer.add(digests)
        writer.commit()

    def commit_staged(
        self, export: str, audience: str, schema: str, staged: tuple[int, int], part: str = STATE
    ) -> None:
        """Make what a ``Writer`` staged (``stage_all``: its blocks and generation) the set's
        content."""
        name = _name(export, audience, schema, part)
        blocks, generation = staged
        _commit(self._container.get_blob_client(name), name, blocks)
        self._generations.set(name, generation)

    def delete(self, export: str, audience: str, schema: str, part: str) -> None:
        name = _name(export, audience, schema, part)
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
        self,
        container: ContainerClient,
        name: str,
        *,
        seal: Seal,
        header: bytes,
        names: tuple[str, ...],
        generation: int,
        generations: Generations,
    ) -> None:
        self._blob = container.get_blob_client(name)
        self._name, self._seal, self._names = name, seal, names
        self.generation = generation
        self._generations = generations
        self._pending = bytearray(header)  # sealed frames not staged yet
        self._open = bytearray()  # digests of the frame being filled
        self._index = 0  # frames sealed
        self._blocks: list[str] = []

    def add(self, digests: bytes) -> None:
        self._open += digests
        while len(self._open) >= _CHUNK * 32:
            self._seal_frame(bytes(self._open[: _CHUNK * 32]), last=False)
            del self._open[: _CHUNK * 32]

    def commit(self) -> None:
        _commit(self._blob, self._name, self.stage_all()[0])
        self._generations.set(self._name, self.generation)

    def stage_all(self) -> tuple[int, int]:
        """Seal and stage the rest, without committing: how many blocks the set has and its
        generation, which ``StateStore.commit_staged`` commits later (a split run's job)."""
        if self._open:
            self._seal_frame(bytes(self._open), last=False)
            self._open.clear()
        self._seal_frame(b"", last=True)
        self._stage(force=True)
        return len(self._blocks), self.generation

    def _seal_frame(self, plain: bytes, *, last: bool) -> None:
        nonce = _nonce(self._index)
        box = self._seal.seal(nonce, plain, _associated(self._names, self._index, last))
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


class _Opener:
    """Opens the frames of one blob: under its own key (format 3), or, for a blob of an older
    format, under whichever of the keys opens its first frame."""

    def __init__(self, name: str, seals: list[Seal], names: tuple[str, ...], prefix: bytes) -> None:
        self._name, self._seals, self._names, self._prefix = name, seals, names, prefix

    def open(self, index: int, box: bytes) -> tuple[bytes, bool]:
        nonce = self._prefix + (_FRAME.pack(index) if len(self._prefix) == 8 else
                                struct.pack(">Q", index))  # fmt: skip
        for seal in self._seals:
            for last in (False, True):
                try:
                    plain = seal.open(nonce, box, _associated(self._names, index, last))
                except SealError:
                    continue
                self._seals = [seal]  # the key that opened it opens the rest
                return plain, last
        raise ConfigurationError(
            f"mirror state {self._name}: cannot be decrypted with {KEY_SECRET!r} (or "
            f"{PREVIOUS_KEY_SECRET!r}), or was altered or moved from another set; delete the "
            "blob to start mirroring afresh (the next run adds everything and removes nothing)"
        )


def _blob_key(key: bytes, salt: bytes, names: tuple[str, ...], generation: int) -> bytes:
    return derive_key(key, label("ci2snap state", *names, str(generation)), salt)


def _nonce(index: int) -> bytes:
    return b"\0" * 4 + struct.pack(">Q", index)  # the frame number, under the blob's key


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
    return label(*names, str(index), str(int(last)))


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


@dataclass(frozen=True)
class StoredSet:
    """A state or touched blob: its name (``<export>/<audience>/<schema>.<part>``) and age."""

    name: str
    last_modified: datetime
    size: int

    @property
    def export(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def audience(self) -> str:
        parts = self.name.split("/")
        return parts[1] if len(parts) == 3 else ""


def stored_sets(container: ContainerClient, prefix: str = "") -> list[StoredSet]:
    """Every stored set whose name starts with ``prefix``."""
    try:
        if not container.exists():
            return []
        return [
            StoredSet(blob.name, blob.last_modified, blob.size or 0)
            for blob in container.list_blobs(name_starts_with=prefix or None)
        ]
    except AzureError as exc:
        raise StorageError(f"mirror state: cannot be listed ({type(exc).__name__})") from None


def delete_sets(container: ContainerClient, names: list[str]) -> list[str]:
    """Delete the named sets; the names of those deleted (one gone meanwhile is not)."""
    deleted = []
    for name in names:
        try:
            container.delete_blob(name)
        except ResourceNotFoundError:
            continue
        except AzureError as exc:
            raise StorageError(
                f"mirror state {name}: cannot be deleted ({type(exc).__name__})"
            ) from None
        deleted.append(name)
    return deleted


def delete_state(container: ContainerClient, export: str) -> int:
    """Delete every state and touched set of the export, for all its audiences (the export
    was deleted); returns how many files went."""
    found = [stored.name for stored in stored_sets(container, f"{export}/")]
    return len(delete_sets(container, found))
