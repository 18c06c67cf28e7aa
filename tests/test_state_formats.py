"""Mirror state of the formats before generations (1 and 2) is still read for a set that has
none recorded, and refused once one is: then it can only be an old copy put back."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.adapters.statestore import MAGIC_1, MAGIC_2
from shared.core.errors import ConfigurationError
from tests.conftest import AUDIENCE, STATE_KEY, App

SCHEMA = "EMAIL_SHA256"


def older_format(magic: bytes, names: tuple[str, str, str, str], digests: bytes) -> bytes:
    """A state file as versions before format 3 wrote it: under the state key itself, one
    frame of digests and an empty last one, each bound to the set's names."""
    bound = names if magic == MAGIC_2 else (names[0], names[2])  # format 1: export and kind
    prefix, aead = os.urandom(8), AESGCM(bytes.fromhex(STATE_KEY))
    out = bytearray(magic + prefix)
    for index, (plain, last) in enumerate([(digests, False), (b"", True)]):
        associated = "\n".join([*bound, str(index), str(int(last))]).encode()
        box = aead.encrypt(prefix + struct.pack(">I", index), plain, associated)
        out += struct.pack(">I", len(box)) + box
    return bytes(out)


@pytest.mark.parametrize("magic", [MAGIC_1, MAGIC_2])
def test_an_older_format_is_refused_once_a_generation_is_recorded(app: App, magic: bytes) -> None:
    store = app.runtime.state()
    container = app.runtime.state_container
    export, blob = "high-value", f"high-value/{AUDIENCE}/{SCHEMA}.state"
    old = bytes(range(32)) * 2
    container.create_container()
    container.upload_blob(blob, older_format(magic, (export, AUDIENCE, SCHEMA, "state"), old))
    assert b"".join(store.read(export, AUDIENCE, SCHEMA)) == old  # no generation yet: read

    store.write(export, AUDIENCE, SCHEMA, bytes(range(1, 33)))  # format 3, generation 1
    container.upload_blob(blob, older_format(magic, (export, AUDIENCE, SCHEMA, "state"), old),
                          overwrite=True)  # fmt: skip
    with pytest.raises(ConfigurationError) as refused:
        b"".join(app.runtime.state().read(export, AUDIENCE, SCHEMA))
    message = str(refused.value)
    for named in (export, AUDIENCE, SCHEMA, f"format {1 if magic == MAGIC_1 else 2}"):
        assert named in message
    assert old.hex() not in message
    assert bytes(range(32)).hex() not in message
