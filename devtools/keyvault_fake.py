"""An in-process stand-in for the Azure Key Vault secrets REST API, for tests.

`KeyVaultFake` runs a small HTTPS server on the loopback interface.  Its certificate is
issued by a throw-away CA made with ``trustme``; the CA's PEM file is exposed as
``ca_file`` so a client can trust it.  The server mimics enough of the real service for
the genuine ``azure.keyvault.secrets.SecretClient`` to run unmodified against it:

* a request without a bearer token gets ``401`` plus the ``WWW-Authenticate`` challenge
  that Key Vault sends, so the SDK's challenge-authentication policy is exercised;
* ``GET /secrets/{name}[/{version}]`` returns a secret bundle, ``PUT /secrets/{name}``
  stores a new version, ``GET /secrets/{name}/versions`` and ``GET /secrets`` list
  properties (one page, ``nextLink`` is null);
* errors use Key Vault's ``{"error": {"code": ..., "message": ...}}`` shape, so the SDK
  raises the same exception types it raises against Azure.

Two switches simulate failures: ``fail_writes`` (``PUT`` answers ``403``) and
``unavailable`` (everything answers ``503``).  ``requests()`` returns a log of
``(method, path, status)`` tuples; secret values are never logged or printed.

Modelling choices worth knowing: names are matched case-insensitively (as in Azure),
listing the versions of an unknown secret yields an empty list, every stored version is
enabled, and ``delete_secret`` removes a secret outright (no soft-delete state).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient

__all__ = ["KeyVaultFake", "StaticTokenCredential", "secret_client"]

# The challenge Key Vault sends to unauthenticated callers (all-zero tenant id).
CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/'
    '00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"'
)

_NAME_PATTERN = re.compile(r"[0-9A-Za-z-]{1,127}")
_MAX_BODY_BYTES = 1024 * 1024
# How long a client may take for the TLS handshake, and how long an idle keep-alive
# connection is kept open before the server hangs up.
_HANDSHAKE_TIMEOUT_S = 5.0
_IDLE_TIMEOUT_S = 30.0
_JSON_TYPE = "application/json; charset=utf-8"


def _valid_name(name: str) -> bool:
    return _NAME_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True)
class _Version:
    version_id: str
    value: str
    created: int
    content_type: str | None = None
    tags: dict[str, str] | None = None


@dataclass
class _Secret:
    name: str  # spelling used when the secret was first created
    versions: list[_Version] = field(default_factory=list)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def _json_reply(status: int, document: object) -> _Reply:
    return _Reply(status, json.dumps(document).encode("utf-8"), (("Content-Type", _JSON_TYPE),))


def _error(status: int, code: str, message: str, *, inner: str | None = None) -> _Reply:
    error: dict[str, object] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return _json_reply(status, {"error": error})


class KeyVaultFake:
    """A loopback HTTPS server speaking (a subset of) the Key Vault secrets API."""

    def __init__(self) -> None:
        self.url = ""
        self.ca_file = ""
        self.fail_writes = False
        self.unavailable = False
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}
        self._log: list[tuple[str, str, int]] = []
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> KeyVaultFake:
        """Create the certificates, bind 127.0.0.1 on a free port and start serving."""
        if self._server is not None:
            raise RuntimeError("KeyVaultFake is already running")
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        leaf.configure_cert(context)

        self._tmpdir = tempfile.mkdtemp(prefix="keyvault-fake-")
        ca_path = Path(self._tmpdir) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_file = str(ca_path)

        server = _TlsServer(("127.0.0.1", 0), fake=self, context=context)
        self._server = server
        self.url = f"https://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="keyvault-fake",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and remove the temporary CA file."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.drop_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> KeyVaultFake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test-side helpers ----------------------------------------------------------

    def set_secret(self, name: str, value: str) -> str:
        """Store ``value`` as a new version of ``name`` and return the version id."""
        if not _valid_name(name):
            raise ValueError(f"invalid Key Vault secret name: {name!r}")
        return self._add_version(name, value, None, None).version_id

    def versions(self, name: str) -> list[str]:
        """Values of every version of ``name``, oldest first (empty if unknown)."""
        with self._lock:
            secret = self._secrets.get(name.lower())
            return [] if secret is None else [v.value for v in secret.versions]

    def value(self, name: str) -> str | None:
        """The latest value of ``name``, or None when there is no such secret."""
        with self._lock:
            secret = self._secrets.get(name.lower())
            return None if secret is None else secret.versions[-1].value

    def delete_secret(self, name: str) -> None:
        """Forget ``name`` and all of its versions; unknown names are ignored."""
        with self._lock:
            self._secrets.pop(name.lower(), None)

    def requests(self) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` for every request answered so far, in order."""
        with self._lock:
            return list(self._log)

    # -- request handling (called from server threads) ------------------------------

    def _add_version(
        self, name: str, value: str, content_type: str | None, tags: dict[str, str] | None
    ) -> _Version:
        version = _Version(uuid.uuid4().hex, value, int(time.time()), content_type, tags)
        with self._lock:
            secret = self._secrets.setdefault(name.lower(), _Secret(name))
            secret.versions.append(version)
        return version

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log.append((method, path, status))

    def _lookup(self, name: str, version_id: str | None) -> tuple[str, _Version] | None:
        with self._lock:
            secret = self._secrets.get(name.lower())
            if secret is None:
                return None
            if version_id is None:
                return secret.name, secret.versions[-1]
            for version in secret.versions:
                if version.version_id == version_id.lower():
                    return secret.name, version
            return None

    def _attributes(self, version: _Version) -> dict[str, object]:
        return {
            "enabled": True,
            "created": version.created,
            "updated": version.created,
            "recoverableDays": 90,
            "recoveryLevel": "Recoverable+Purgeable",
        }

    def _properties(self, name: str, version: _Version, *, with_version: bool) -> dict[str, object]:
        item_id = f"{self.url}/secrets/{name}"
        if with_version:
            item_id += f"/{version.version_id}"
        document: dict[str, object] = {"id": item_id, "attributes": self._attributes(version)}
        if version.content_type is not None:
            document["contentType"] = version.content_type
        if version.tags is not None:
            document["tags"] = version.tags
        return document

    def _bundle(self, name: str, version: _Version) -> _Reply:
        document = {"value": version.value, **self._properties(name, version, with_version=True)}
        return _json_reply(200, document)

    def _respond(self, method: str, target: str, authorization: str, body: bytes) -> _Reply:
        if self.unavailable:
            return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _Reply(401, b"", (("WWW-Authenticate", CHALLENGE),))

        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        if not query.get("api-version", [""])[0]:
            return _error(400, "BadParameter", "The 'api-version' query parameter is required.")

        return self._route(method, parts.path, body)

    def _route(self, method: str, path: str, body: bytes) -> _Reply:
        # "/secrets", "/secrets/", "/secrets/{name}", "/secrets/{name}/" and
        # "/secrets/{name}/{version or 'versions'}" are the only shapes served.
        segments = path.split("/")[1:]
        if not segments or segments[0] != "secrets" or len(segments) > 3:
            return _error(404, "NotFound", "The requested resource was not found.")
        name = segments[1] if len(segments) > 1 else ""
        tail = segments[2] if len(segments) > 2 else None
        if not name and tail is None:
            operation = "list-secrets"
        elif not _valid_name(name):
            return _error(
                400,
                "BadParameter",
                "Secret names must be 1-127 characters of letters, digits and dashes.",
            )
        elif tail is None:
            operation = "secret"
        elif tail in ("", "versions"):
            operation = "latest" if tail == "" else "list-versions"
        else:
            operation = "version"

        handlers: dict[tuple[str, str], Callable[[], _Reply]] = {
            ("GET", "list-secrets"): self._list_secrets,
            ("GET", "secret"): lambda: self._get(name, None),
            ("PUT", "secret"): lambda: self._put(name, body),
            ("GET", "latest"): lambda: self._get(name, None),
            ("GET", "list-versions"): lambda: self._list_versions(name),
            ("GET", "version"): lambda: self._get(name, tail),
        }
        handler = handlers.get((method, operation))
        if handler is None:
            return _error(405, "MethodNotAllowed", f"The method '{method}' is not supported here.")
        return handler()

    def _get(self, name: str, version_id: str | None) -> _Reply:
        found = self._lookup(name, version_id)
        if found is None:
            which = "" if version_id is None else f" with version ({version_id})"
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name}{which} was not found in this key vault.",
            )
        return self._bundle(*found)

    def _put(self, name: str, body: bytes) -> _Reply:
        if self.fail_writes:
            return _error(
                403,
                "Forbidden",
                "The caller is not authorized to perform action on resource "
                "(Microsoft.KeyVault/vaults/secrets/setSecret/action).",
                inner="ForbiddenByRbac",
            )
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("value"), str):
            return _error(
                400, "BadParameter", "The request body must be a JSON object with a value."
            )
        content_type = document.get("contentType")
        tags = document.get("tags")
        if content_type is not None and not isinstance(content_type, str):
            return _error(400, "BadParameter", "contentType must be a string.")
        if tags is not None and not (
            isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())
        ):
            return _error(400, "BadParameter", "tags must map names to strings.")
        version = self._add_version(name, document["value"], content_type, tags)
        with self._lock:
            stored_name = self._secrets[name.lower()].name
        return self._bundle(stored_name, version)

    def _list_versions(self, name: str) -> _Reply:
        with self._lock:
            secret = self._secrets.get(name.lower())
            items = (
                []
                if secret is None
                else [self._properties(secret.name, v, with_version=True) for v in secret.versions]
            )
        return _json_reply(200, {"value": items, "nextLink": None})

    def _list_secrets(self) -> _Reply:
        with self._lock:
            items = [
                self._properties(s.name, s.versions[-1], with_version=False)
                for s in self._secrets.values()
            ]
        return _json_reply(200, {"value": items, "nextLink": None})


class _TlsServer(ThreadingHTTPServer):
    """Threading HTTP server that performs the TLS handshake in the handler thread.

    Wrapping the accepted socket per connection (rather than the listening socket) keeps
    a slow or non-TLS client from stalling the accept loop.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        fake: KeyVaultFake,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, _Handler)
        self.fake = fake
        self._context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_HANDSHAKE_TIMEOUT_S)
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except OSError:
            # Plain HTTP, an untrusting client, or a timeout: the socket is already closed.
            return
        with self._open_lock:
            self._open.add(tls)
        try:
            _Handler(tls, client_address, self)
        except OSError:
            pass  # the peer went away mid-request
        finally:
            with self._open_lock:
                self._open.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def drop_connections(self) -> None:
        """Hang up on every open keep-alive connection so handler threads finish."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; connection resets are routine here.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KeyVaultFake/1.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S
    server: _TlsServer

    def log_message(self, format: str, *args: Any) -> None:
        # Silence the default per-request stderr logging.
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes | _Reply:
        if self.headers.get("Transfer-Encoding"):
            return _Reply(411, close=True)
        raw_length = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw_length.isdigit():
            return replace(_error(400, "BadParameter", "Invalid Content-Length."), close=True)
        length = int(raw_length)
        if length > _MAX_BODY_BYTES:
            too_large = _error(413, "RequestTooLarge", "The request body is too large.")
            return replace(too_large, close=True)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        method = self.command
        body = self._read_body()
        if isinstance(body, _Reply):
            reply = body
        else:
            try:
                reply = self.server.fake._respond(
                    method, self.path, self.headers.get("Authorization", ""), body
                )
            except Exception:
                reply = _error(500, "InternalError", "The fake failed to handle the request.")
        # Record before answering, so a client that has its response also sees the entry.
        self.server.fake._record(method, urlsplit(self.path).path, reply.status)
        self.send_response(reply.status)
        for header, header_value in reply.headers:
            self.send_header(header, header_value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if method != "HEAD" and reply.body:
            self.wfile.write(reply.body)
        self.wfile.flush()


class StaticTokenCredential:
    """A ``TokenCredential`` that hands out a fixed token valid far into the future."""

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 365 * 24 * 3600)


def secret_client(fake: KeyVaultFake, **client_kwargs: Any) -> SecretClient:
    """A real ``SecretClient`` wired to ``fake``: static token, test CA trusted.

    Environment proxy settings are ignored (``use_env_settings=False``) so traffic stays on
    loopback.  Extra keyword arguments go to ``SecretClient`` and win over these defaults
    (e.g. ``retry_total=0``).  Close the client, or use it as a context manager, when done.
    """
    options: dict[str, Any] = {
        "verify_challenge_resource": False,
        "connection_verify": fake.ca_file,
        "use_env_settings": False,
        **client_kwargs,
    }
    return SecretClient(vault_url=fake.url, credential=StaticTokenCredential(), **options)
