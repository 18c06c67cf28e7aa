"""Adapter for spilled digests: a run's intermediate digest sets in the app's own Blob Storage.

While a large snapshot is read, each identifier kind's digests are held in memory up to a
budget; over it, they are written out as a *run*: one blob, ``<SPILL_CONTAINER>/<run id>/
<attempt>/<schema>-<n>.run``, holding a sorted, distinct digest set as 256 frames, one per
leading byte, after a header of where each frame starts, so that a bucket (a range of
leading bytes) is one ranged read. Each frame is an AES-256-GCM box. On one instance the key
is made for the attempt and held only in its memory: a spilled file is unreadable by anyone
else, and useless once the attempt is over. A split run's jobs (``shared.runs.split``) share
their runs, so each job's key is derived (HKDF) from the mirror-state key, the run, the job
and its attempt, and never stored. The attempt deletes its runs when it ends, however it
ends (a split run: when the run ends); a crashed attempt's are deleted by the next attempt
of the run and, failing that, by the storage account's lifecycle rule (``infra/``).

Why Blob Storage and not the instance's disk: Flex Consumption documents each instance's
memory (512, 2,048 or 4,096 MB) but no local disk size to rely on, and the account is
already the app's own, reached with the identity it already has.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.adapters.sealing import TAG_BYTES, Seal, derive_key, label, random_key
from shared.core import digestsets
from shared.core.errors import StorageError

_HEADER = struct.Struct(f">{digestsets.LEADING_BYTES + 1}Q")  # where each frame starts


@dataclass(frozen=True)
class Run:
    """A spilled set: its blob and where each leading byte's frame starts in it."""

    name: str
    number: int
    offsets: tuple[int, ...]  # 257 byte offsets of the frames in the blob


def derived_key(secret: bytes, run_id: str, job: str, attempt: str) -> bytes:
    """The key of one attempt of one job of a split run, from the mirror-state key."""
    return derive_key(secret, label("ci2snap spill", run_id, job, attempt))


class SpillStore:
    """``prefix``: every spilled file of the run (or of one job of a split run), which
    ``delete_all`` deletes; ``folder``: this attempt's, under it. ``key``: a new random one
    unless given (a split run's job, see ``derived_key``)."""

    def __init__(
        self, container: ContainerClient, prefix: str, folder: str, key: bytes | None = None
    ) -> None:
        self._container = container
        self._prefix = prefix
        self._folder = folder
        self._seal = Seal(key or random_key())
        self._runs = 0
        self._ready = False
        self.bytes_written = 0  # plaintext digests spilled, over the attempt

    def write(self, schema: str, data: bytes) -> Run:
        """Spill the sorted set ``data`` as one run."""
        cuts = digestsets.leading_offsets(data)
        sizes = [cuts[leading + 1] - cuts[leading] for leading in range(digestsets.LEADING_BYTES)]
        return self.write_frames(
            schema, sizes, lambda leading: data[cuts[leading] : cuts[leading + 1]]
        )

    def write_frames(self, schema: str, sizes: list[int], frame: Callable[[int], bytes]) -> Run:
        """Spill a sorted set given frame by frame (``frame(leading)``, of ``sizes[leading]``
        bytes), encrypting each as it is uploaded: memory holds one frame, not the set."""
        number, self._runs = self._runs, self._runs + 1
        name = f"{self._folder}{schema}-{number}.run"
        offsets = [_HEADER.size]
        for size in sizes:
            offsets.append(offsets[-1] + size + TAG_BYTES)

        def boxes() -> Iterator[bytes]:
            yield _HEADER.pack(*offsets)
            for leading in range(digestsets.LEADING_BYTES):
                plain = frame(leading)
                yield self._seal.seal(_nonce(number, leading), plain, _associated(name, leading))

        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ready = True
            self._container.upload_blob(name, boxes(), length=offsets[-1], overwrite=True)
        except AzureError as exc:
            raise StorageError(f"spill {name}: cannot be written ({type(exc).__name__})") from None
        self.bytes_written += sum(sizes)
        return Run(name, number, tuple(offsets))

    def open(self, name: str, number: int) -> Run:
        """A run another job wrote, under this store's key: its frame offsets, read."""
        try:
            header = self._container.download_blob(name, offset=0, length=_HEADER.size).readall()
        except AzureError as exc:
            raise StorageError(f"spill {name}: cannot be read ({type(exc).__name__})") from None
        if len(header) != _HEADER.size:
            raise StorageError(f"spill {name}: cut off")
        return Run(name, number, tuple(_HEADER.unpack(header)))

    def read(self, run: Run, low: int, high: int) -> bytes:
        """The run's digests whose leading byte is in ``[low, high)``, sorted."""
        start, end = run.offsets[low], run.offsets[high]
        if end - start == (high - low) * TAG_BYTES:
            return b""  # only empty frames
        try:
            data = self._container.download_blob(run.name, offset=start, length=end - start)
            raw = data.readall()
        except AzureError as exc:
            raise StorageError(f"spill {run.name}: cannot be read ({type(exc).__name__})") from None
        pieces = []
        for leading in range(low, high):
            box = raw[run.offsets[leading] - start : run.offsets[leading + 1] - start]
            pieces.append(
                self._seal.open(_nonce(run.number, leading), box, _associated(run.name, leading))
            )
        return b"".join(pieces)

    def delete_all(self) -> int:
        """Delete every spilled file of the run (this attempt's and any earlier one's)."""
        deleted = 0
        try:
            for blob in self._container.list_blobs(name_starts_with=self._prefix):
                with contextlib.suppress(ResourceNotFoundError):
                    self._container.delete_blob(blob.name)
                    deleted += 1
        except ResourceNotFoundError:
            return deleted  # no container yet: nothing was ever spilled
        except AzureError as exc:
            raise StorageError(
                f"spill of run {self._prefix.rstrip('/')}: cannot be deleted ({type(exc).__name__})"
            ) from None
        return deleted


def _nonce(number: int, leading: int) -> bytes:
    return struct.pack(">QI", number, leading)  # unique per frame under the attempt's key


def _associated(name: str, leading: int) -> bytes:
    return label(name, str(leading))


def random_attempt() -> str:
    return os.urandom(6).hex()
