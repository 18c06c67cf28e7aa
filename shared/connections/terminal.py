"""Connecting a Snapchat account: the OAuth authorization-code flow, done from a terminal.

What the Customer Insights connector's "Authenticate with Snapchat" button does: the operator
opens the authorize URL, signs in as an ad-account Admin or Data Manager and consents; Snapchat
redirects to a loopback address where this module waits (or the operator pastes the URL they
were redirected to); the ``state`` is checked; the code is exchanged for a refresh token; and
the client ID, client secret and refresh token are stored as the connection's three secrets.
No secret or token is ever printed or logged.

As OAuth 2.0 Security Best Current Practice (RFC 9700) asks, also of a client with a secret:
PKCE with S256 binds the code to this flow (``pkce_pair``), a pasted redirect URL must be the
registered redirect URI, and a request that carries the client secret or a refresh token
never follows a redirect (``post_form``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlparse

import requests

from shared.adapters.secretstore import Credentials, SecretStore, store_credentials
from shared.adapters.snapchat import post_form
from shared.core.definitions import Connection
from shared.core.errors import AuthenticationError, ConfigurationError, RetryableError
from shared.core.privacy import SECRETS, scrub

log = logging.getLogger(__name__)

AUTHORIZE_URL = "https://accounts.snapchat.com/login/oauth2/authorize"
SCOPE = "snapchat-marketing-api"
_WAIT_SECONDS = 600.0


@dataclass(frozen=True)
class Redirect:
    code: str
    state: str


def authorize_url(base: str, client_id: str, redirect_uri: str, state: str, challenge: str) -> str:
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": SCOPE,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{base}?{query}"


def pkce_pair(verifier: str = "") -> tuple[str, str]:
    """A PKCE code verifier (new, unless given) and its S256 challenge (RFC 7636). A new one
    is 64 random characters of the URL-safe alphabet, within RFC 7636's 43 to 128 unreserved
    characters, and depends on nothing else."""
    verifier = verifier or secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def same_endpoint(url: str, registered: str) -> bool:
    """Whether ``url`` (where the browser was sent) is the registered redirect URI, its
    query aside: scheme, host, port and path."""
    got, want = urlparse(url.strip()), urlparse(registered)
    return (got.scheme, got.netloc.lower(), got.path) == (want.scheme, want.netloc.lower(),
                                                          want.path)  # fmt: skip


def parse_redirect(url: str) -> Redirect:
    """The code and state of the URL Snapchat redirected the browser to."""
    query = parse_qs(urlparse(url.strip()).query)
    if "error" in query:
        reason = scrub(query.get("error_description", query["error"])[0])
        raise AuthenticationError(f"Snapchat refused the authorization: {reason}")
    code, state = query.get("code", [""])[0], query.get("state", [""])[0]
    if not code or not state:
        raise ConfigurationError("the redirect URL carries no code and state")
    return Redirect(code=code, state=state)


class CallbackListener:
    """A one-shot loopback HTTP server that receives Snapchat's redirect."""

    def __init__(self, port: int = 0) -> None:
        self.received: Redirect | Exception | None = None
        self._done = threading.Event()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlparse(self.path).path != "/callback":
                    self.send_error(404)
                    return
                try:
                    listener.received = parse_redirect(self.path)
                    page = b"Snapchat account connected. You can close this window."
                except Exception as exc:  # noqa: BLE001 - reported to the waiting command
                    listener.received = exc
                    page = b"The connection failed; see the terminal."
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                listener._done.set()

            def log_message(self, format: str, *args: object) -> None:
                pass  # the query string holds the code: never log it

        self._server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_address[1]}/callback"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, timeout: float = _WAIT_SECONDS) -> Redirect:
        try:
            if not self._done.wait(timeout):
                raise ConfigurationError("no redirect from Snapchat arrived in time")
        finally:
            self._server.shutdown()
            self._server.server_close()
        if isinstance(self.received, Exception):
            raise self.received
        assert self.received is not None
        return self.received


def connect(
    store: SecretStore,
    connection: Connection,
    *,
    client_id: str,
    client_secret: str,
    token_url: str,
    session: requests.Session,
    show: Callable[[str], None],
    listener: CallbackListener | None = None,
    paste: Callable[[], str] | None = None,
    redirect_uri: str = "",
    authorize_base: str = AUTHORIZE_URL,
) -> None:
    """Run the flow and store the connection's three secrets.

    With a ``listener`` the redirect arrives on loopback; otherwise ``paste()`` returns the
    URL the browser was sent to (``redirect_uri`` must then be the one registered with the
    Snapchat app). ``show`` gets the authorize URL to open.
    """
    SECRETS.add(client_secret)
    state = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    if listener is not None:
        redirect_uri = listener.redirect_uri
    elif paste is None or not redirect_uri:
        raise ConfigurationError(
            "connect needs a loopback listener, or --paste with --redirect-uri"
        )
    show(authorize_url(authorize_base, client_id, redirect_uri, state, challenge))
    if listener is not None:
        got = listener.wait()
    else:
        assert paste is not None
        pasted = paste()
        if not same_endpoint(pasted, redirect_uri):
            raise AuthenticationError(
                "the pasted URL is not the registered redirect URI (scheme, host, port and "
                "path must match --redirect-uri); nothing stored"
            )
        got = parse_redirect(pasted)
    if not hmac.compare_digest(got.state, state):
        raise AuthenticationError("the redirect's state does not match this flow's; nothing stored")
    refresh = exchange_code(
        session, token_url, client_id=client_id, client_secret=client_secret,
        code=got.code, redirect_uri=redirect_uri, verifier=verifier,
    )  # fmt: skip
    store_credentials(store, connection, Credentials(client_id, client_secret, refresh))
    log.info("Connection %s: client ID, client secret and refresh token stored", connection.name)


def exchange_code(
    session: requests.Session,
    token_url: str,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> str:
    """Exchange an authorization code for the refresh token (AuthenticationError if
    Snapchat does not); the tokens join the values the log filter hides."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    try:
        answer = post_form(session, token_url, form, timeout=60)
    except requests.RequestException as exc:
        raise RetryableError(
            f"Snapchat's token endpoint did not answer ({type(exc).__name__}); nothing stored"
        ) from None
    try:
        document = answer.json()
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    refresh = document.get("refresh_token")
    if answer.status_code != 200 or not isinstance(refresh, str) or not refresh:
        error = scrub(str(document.get("error") or f"HTTP {answer.status_code}"))
        raise AuthenticationError(f"Snapchat did not exchange the code ({error}); nothing stored")
    SECRETS.add(refresh)
    SECRETS.add(str(document.get("access_token") or ""), short_lived=True)
    return refresh
