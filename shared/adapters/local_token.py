"""Local mode's token: a random value kept in a file only the developer can read, made on
first use. A request in local mode is trusted only when it presents it (header
``X-Local-Token``, or the console's cookie), so a host that listens beyond loopback, or a
page of another site, cannot act as the local principal.

The file sits beside the local secret file (``LOCAL_SECRETS_FILE``'s folder, by default
``~/.local/state/ci-snapchat-export/local-token``); delete it to make a new token.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from shared.core.errors import ConfigurationError

TOKEN_BYTES = 32


def read_or_create(path: Path) -> str:
    """The token in ``path``, made (readable by the user only) when there is none yet."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Written whole under another name, then linked: a second process sees either
            # no file or the whole token, and the first link made wins.
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".local-token-")
            try:
                with os.fdopen(descriptor, "w", encoding="ascii") as out:  # mode 0600
                    out.write(secrets.token_urlsafe(TOKEN_BYTES))
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        return _read(path)
    except OSError as exc:
        raise ConfigurationError(
            f"local token file {path}: cannot be read or made ({type(exc).__name__})"
        ) from None


def _read(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(
            f"local token file {path}: readable by others; run chmod 600 {path}, or delete "
            "it to make a new token"
        )
    token = path.read_text(encoding="ascii").strip()
    if len(token) < TOKEN_BYTES:  # made by a process that stopped half-way, or edited
        raise ConfigurationError(f"local token file {path}: malformed; delete it to make a new one")
    return token
