"""The Snapchat sandbox in process: a ``requests`` transport adapter that answers from it.

The fast tier starts no server, yet its runs should meet the same strict Snapchat as the
integration tier's. ``SandboxTransport`` hands each request a ``requests.Session`` sends to
``SANDBOX_URL`` to a ``SnapchatSandbox`` (not started) and turns its answer into a
``requests.Response``: the app's ``SnapchatClient`` runs unchanged, and the sandbox checks
every body, token and path as it does over HTTP (faults too; a dropped connection is a
``requests.ConnectionError``, a slow answer waits in process).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from devtools.snapchat_sandbox import SnapchatSandbox, _bearer, _media_type, _Request

# Loopback, as the settings require of plain HTTP; the discard port, never connected to:
# the adapter answers every request under it.
SANDBOX_URL = "http://127.0.0.1:9/"
API_URL = f"{SANDBOX_URL}v1"
TOKEN_URL = f"{SANDBOX_URL}login/oauth2/access_token"


class SandboxTransport(BaseAdapter):
    """Answers a session's requests from ``sandbox`` (see the module docstring)."""

    def __init__(self, sandbox: SnapchatSandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        body = request.body or b""
        answer = self.sandbox._answer(  # the sandbox's one entry for a request
            _Request(
                method=str(request.method),
                path=parts.path,
                query=parts.query,
                content_type=_media_type(request.headers.get("Content-Type")),
                body=body.encode() if isinstance(body, str) else bytes(body),
                token=_bearer(request.headers.get("Authorization")),
            )
        )
        if answer is None:
            raise requests.ConnectionError("the sandbox dropped the connection (a fault)")
        response = requests.Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response._content = answer.body  # how requests holds a read body
        response.url, response.request, response.encoding = request.url or "", request, "utf-8"
        return response

    def close(self) -> None:
        pass


def mount(session: requests.Session, sandbox: SnapchatSandbox) -> Mapping[str, str]:
    """Answer ``session``'s requests to the sandbox's address from ``sandbox``; the
    settings that point the app at it."""
    session.mount(SANDBOX_URL, SandboxTransport(sandbox))
    return {"SNAPCHAT_API_URL": API_URL, "SNAPCHAT_TOKEN_URL": TOKEN_URL}
