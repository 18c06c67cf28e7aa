"""Connect Snapchat from the console: the OAuth authorization-code flow, in the browser.

An admin presses **Connect Snapchat**; ``start`` records a pending flow (under the SHA-256 of
a fresh ``state``, with who started it and a ten-minute deadline) and answers Snapchat's
authorize URL, which the browser opens. Snapchat sends the browser back to
``/api/oauth/snapchat/callback``; ``finish`` finds the pending flow, checks that the same
person is signed in and that it has not expired, takes it (once: a second use of the same
state finds nothing), exchanges the code and stores the new refresh token. The code is bound
to the flow with PKCE (S256): the verifier is random and kept, sealed under a key derived
from the mirror-state key, in the flow's entity only (``connection_status``); so a Connect
from the console needs secret ``exporter-state-key``.

The client ID and client secret are those already stored for the connection, read by the
names its name fixes (``secretstore.client_app``): no definition can make a Connect read any
other secret. The app only ever writes the refresh-token secret, which it must be able to
write anyway (Snapchat rotates refresh tokens), so the console needs no wider right on Key
Vault than the app has (see docs/console.md). The one value an answer carries is the
connection's own client ID, inside the authorize URL, as OAuth has it. No secret, code or
token is shown or logged; the browser is told how it went with a fixed reason code
(``NotConnected.reason``), never with free text.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.connection_status import PendingConnect, PendingConnects, TokenRefreshes
from shared.adapters.secretstore import ClientApp, client_app, store_refresh_token
from shared.adapters.statestore import KEY_SECRET
from shared.connections.terminal import authorize_url, exchange_code, pkce_pair
from shared.core.access import Action, Principal, authorize
from shared.core.definitions import Connection
from shared.core.errors import (
    AuthenticationError,
    ConfigurationError,
    ExportError,
    Forbidden,
    Transient,
)
from shared.core.privacy import SECRETS, scrub
from shared.runtime import Runtime

log = logging.getLogger(__name__)

CALLBACK_ROUTE = "oauth/snapchat/callback"
FLOW_MINUTES = 10


class NotConnected(AuthenticationError):  # noqa: N818 - reads as the outcome
    """A Connect that did not finish; ``reason`` is the code the console shows text for."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def start(rt: Runtime, who: Principal, name: str, base_url: str) -> dict[str, Any]:
    """Begin a Connect of connection ``name``; the browser goes to ``authorize_url``."""
    authorize(who, Action.EDIT_CONNECTION)  # the role first: whether it exists is no one else's
    rt.forget_definitions()
    connection = rt.definitions.require_connection(name)  # 404 for none, 400 for a broken one
    authorize(who, Action.EDIT_CONNECTION, connection)
    app = _client_app(rt, connection)  # both present, before Snapchat is asked
    pending = _pending(rt)
    state = secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    redirect_uri = f"{(rt.settings.public_url or base_url).rstrip('/')}/api/{CALLBACK_ROUTE}"
    now = datetime.now(UTC)
    pending.forget_expired(now.isoformat(timespec="seconds"))
    expires = now + timedelta(minutes=FLOW_MINUTES)
    pending.start(
        state,
        PendingConnect(
            connection=name,
            started_by=who.object_id,
            redirect_uri=redirect_uri,
            expires_at=expires.isoformat(timespec="seconds"),
            verifier=verifier,
        ),
    )
    log.info("Connection %s: Connect started by %s", name, who.label)
    url = authorize_url(rt.settings.snapchat_authorize_url, app.client_id, redirect_uri, state,
                        challenge)  # fmt: skip
    return {"authorize_url": url, "redirect_uri": redirect_uri, "expires_at": expires.isoformat()}


def finish(rt: Runtime, who: Principal, query: dict[str, str]) -> str:
    """Complete the flow Snapchat redirected back from; the connection's name. Raises
    NotConnected (nothing stored) saying why."""
    try:
        return _finish(rt, who, query)
    except NotConnected:
        raise
    except Forbidden as exc:
        raise NotConnected("not_allowed", str(exc)) from None
    except AuthenticationError as exc:
        raise NotConnected("refused", str(exc)) from None
    except ConfigurationError as exc:
        raise NotConnected("secrets", str(exc)) from None
    except Transient as exc:
        raise NotConnected("unavailable", str(exc)) from None
    except ExportError as exc:
        raise NotConnected("error", str(exc)) from None


def _finish(rt: Runtime, who: Principal, query: dict[str, str]) -> str:
    state = query.get("state", "")
    pending = _pending(rt)
    flow = pending.find(state) if state else None
    if flow is None:
        raise NotConnected("unknown", "a Connect callback for no pending flow (unknown state)")
    if not hmac.compare_digest(flow.started_by, who.object_id):
        # Left pending: the person who started it can still finish it.
        raise NotConnected("someone_else", "a Connect callback from someone other than its starter")
    if not _in_time(flow.expires_at):
        raise NotConnected("expired", f"a Connect callback after {FLOW_MINUTES} minutes")
    if not flow.verifier:
        raise NotConnected("unknown", f"a Connect flow whose PKCE verifier does not open (was "
                           f"{KEY_SECRET!r} changed since it started?)")  # fmt: skip
    if not pending.take(state, flow):
        raise NotConnected("unknown", "a Connect callback for a flow finished meanwhile")
    if "error" in query:
        reason = scrub(query.get("error_description") or query["error"])
        raise NotConnected("refused", f"Snapchat refused the authorization: {reason}")
    code = query.get("code", "")
    if not code:
        raise NotConnected("refused", "Snapchat's redirect carries no code")
    SECRETS.add(code, short_lived=True)
    rt.forget_definitions()
    connection = rt.definitions.require_connection(flow.connection)
    authorize(who, Action.EDIT_CONNECTION, connection)  # still an admin, connection still there
    app = _client_app(rt, connection)
    refresh = exchange_code(
        rt.http,
        rt.settings.snapchat_token_url,
        client_id=app.client_id,
        client_secret=app.client_secret,
        code=code,
        redirect_uri=flow.redirect_uri,
        verifier=flow.verifier,
    )
    store_refresh_token(rt.secrets, connection, refresh)
    log.info("Connection %s: connected by %s; refresh token stored", connection.name, who.label)
    try:
        TokenRefreshes(rt.runs).record(connection.name)
    except ExportError as exc:  # the token is stored: the Connect succeeded all the same
        log.warning("Connection %s: %s", connection.name, exc)
    return connection.name


def _in_time(expires_at: str) -> bool:
    try:
        return datetime.now(UTC) <= datetime.fromisoformat(expires_at)
    except ValueError:
        return False


def _client_app(rt: Runtime, connection: Connection) -> ClientApp:
    """The connection's own client ID and client secret (no other secret can be named)."""
    try:
        app = client_app(rt.secrets, connection)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"connection {connection.name!r}: {exc}; add the Snapchat app's client ID and "
            "client secret to Key Vault first (docs/console.md)"
        ) from None
    SECRETS.add(app.client_id)
    SECRETS.add(app.client_secret)
    return app


def _pending(rt: Runtime) -> PendingConnects:
    """The flows in progress, whose verifiers are sealed under a key derived from the
    mirror-state key (without it, the console cannot Connect)."""
    try:
        key = rt.state_key()
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"Connect Snapchat keeps each flow's PKCE verifier encrypted under a key derived "
            f"from secret {KEY_SECRET!r}: {exc}; add it (docs/deploy.md), or use "
            "python -m shared connect"
        ) from None
    return PendingConnects(rt.runs, key)
