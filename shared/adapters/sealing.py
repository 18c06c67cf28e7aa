"""Sealing: the app's one way to encrypt what it keeps (mirror state, spilled digests, the
Connect flows' PKCE verifiers).

A key of its own for each use is derived (HKDF-SHA-256, 32 bytes) from a secret and a
``label`` naming the use; a ``Seal`` under that key turns a plaintext into an AES-256-GCM
box (16 bytes longer) bound to associated data, also a ``label``, so that a box moved to
another place does not open. Who chooses the nonce stays with the caller: a frame number
under a key of its own (state, spills), or a random 96-bit nonce stored in front of the box
(``seal_with_nonce``). Labels and associated data are their parts, one a line (UTF-8): the
bytes already on disk and in tables depend on exactly this.

This module holds the primitives only; each format (headers, frames, what the labels name)
stays with its adapter.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TAG_BYTES = 16  # what a box adds to its plaintext
NONCE_BYTES = 12  # AES-GCM's 96-bit nonce


class SealError(Exception):
    """A box that does not open: another key, other associated data, or altered."""


def label(*parts: str) -> bytes:
    """A key's label or a box's associated data: the parts, one a line."""
    return "\n".join(parts).encode()


def derive_key(secret: bytes, label: bytes, salt: bytes | None = None) -> bytes:
    """A 32-byte key of its own for the use ``label`` names (HKDF-SHA-256 of ``secret``)."""
    return HKDF(hashes.SHA256(), length=32, salt=salt, info=label).derive(secret)


def random_key() -> bytes:
    """A new random 256-bit key (held in memory only, by whoever asked for it)."""
    return AESGCM.generate_key(bit_length=256)


class Seal:
    """AES-256-GCM under one key: ``seal`` and ``open`` a box with a given nonce, or
    ``seal_with_nonce`` and ``open_with_nonce`` one with a random nonce in front of it."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plain: bytes, associated: bytes) -> bytes:
        return self._aead.encrypt(nonce, plain, associated)

    def open(self, nonce: bytes, box: bytes, associated: bytes) -> bytes:
        """The plaintext, or SealError."""
        try:
            return self._aead.decrypt(nonce, box, associated)
        except InvalidTag:
            raise SealError from None

    def seal_with_nonce(self, plain: bytes, associated: bytes) -> bytes:
        """A random nonce followed by the box."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, associated)

    def open_with_nonce(self, sealed: bytes, associated: bytes) -> bytes:
        """The plaintext of what ``seal_with_nonce`` made, or SealError."""
        return self.open(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
