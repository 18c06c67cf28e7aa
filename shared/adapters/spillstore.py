"""Adapter for spilled digests: a run's intermediate digest sets in the app's own Blob Storage.

While a large snapshot is read, each identifier kind's digests are held in memory up to a
budget; over it, they are written out as a *run*: one blob, ``<SPILL_CONTAINER>/<run id>/
<attempt>/<schema>-<n>.run``, holding a sorted, distinct digest set as 256 frames, one per
leading byte, so that a bucket (a range of leading bytes) is one ranged read. Each frame is
an AES-256-GCM box under a key made for the attempt and held only in its memory: a spilled
file is unreadable by anyone else, and useless once the attempt is over. The attempt deletes
its runs when it ends, however it ends; a crashed attempt's are deleted by the next attempt
of the run and, failing that, by the storage account's lifecycle rule (``infra/``).

Why Blob Storage and not the instance's disk: Flex Consumption documents each instance's
memory (512, 2,048 or 4,096 MB) but no local disk size to rely on, and the account is
already the app's own, reached with the identity it already has.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.core import digestsets
from shared.core.errors import StorageError

_TAG = 16  # bytes an AES-GCM box adds to its plaintext


@dataclass(frozen=True)
class Run:
    """A spilled set: its blob and where each leading byte's frame starts in it."""

    name: str
    number: int
    offsets: tuple[int, ...]  # 257 byte offsets of the frames in the blob


class SpillStore:
    def __init__(self, container: ContainerClient, run_id: str, attempt: str) -> None:
        self._container = container
        self._prefix = f"{run_id}/"
        self._folder = f"{run_id}/{attempt}/"
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._runs = 0
        self._ready = False
        self.bytes_written = 0  # plaintext digests spilled, over the attempt

    def write(self, schema: str, data: bytes) -> Run:
        """Spill the sorted set ``data`` as one run."""
        number, self._runs = self._runs, self._runs + 1
        name = f"{self._folder}{schema}-{number}.run"
        cuts = digestsets.leading_offsets(data)
        boxes, offsets, at = [], [0], 0
        for leading in range(digestsets.LEADING_BYTES):
            plain = data[cuts[leading] : cuts[leading + 1]]
            box = self._aead.encrypt(_nonce(number, leading), plain, _associated(name, leading))
            boxes.append(box)
            at += len(box)
            offsets.append(at)
        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ready = True
            self._container.upload_blob(name, iter(boxes), length=at, overwrite=True)
        except AzureError as exc:
            raise StorageError(f"spill {name}: cannot be written ({type(exc).__name__})") from None
        self.bytes_written += len(data)
        return Run(name, number, tuple(offsets))

    def read(self, run: Run, low: int, high: int) -> bytes:
        """The run's digests whose leading byte is in ``[low, high)``, sorted."""
        start, end = run.offsets[low], run.offsets[high]
        if end - start == (high - low) * _TAG:
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
                self._aead.decrypt(_nonce(run.number, leading), box, _associated(run.name, leading))
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
    return f"{name}\n{leading}".encode()


def random_attempt() -> str:
    return os.urandom(6).hex()
