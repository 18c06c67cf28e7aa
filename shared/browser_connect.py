"""Connect Snapchat from the console: the OAuth authorization-code flow, in the browser.

An admin presses **Connect Snapchat**; ``start`` records a pending flow (under the SHA-256 of
a fresh ``state``, with who started it and a ten-minute deadline) and answers Snapchat's
authorize URL, which the browser opens. Snapchat sends the browser back to
``/api/oauth/snapchat/callback``; ``finish`` finds the pending flow, checks that the same
person is signed in and that it has not expired, takes it (once: a second use of the same
state finds nothing), exchanges the code and stores the new refresh token. The code is bound
to the flow with PKCE (S256); the verifier is derived from the client secret and the state
(``shared.connect.derived_verifier``), so it is never stored.

The client ID and client secret are those already stored for the connection: the app only
ever writes the refresh-token secret, which it must be able to write anyway (Snapchat
rotates refresh tokens), so the console needs no wider right on Key Vault than the app has
(see docs/console.md). No secret, code or token is shown or logged; the browser is told how
it went with a fixed reason code (``NotConnected.reason``), never with free text.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.connection_status import PendingConnect, PendingConnects, TokenRefreshes
from shared.connect import authorize_url, derived_verifier, exchange_code, pkce_pair
from shared.core.access import Action, Principal, authorize
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
    rt.forget_definitions()
    connection = rt.definitions.connection(name)
    authorize(who, Action.EDIT_CONNECTION, connection)
    client_id = _stored(rt, connection.client_id_secret, name)
    client_secret = _stored(rt, connection.client_secret_secret, name)  # before Snapchat is asked
    state = secrets.token_urlsafe(32)
    _, challenge = pkce_pair(derived_verifier(client_secret, state))
    redirect_uri = f"{(rt.settings.public_url or base_url).rstrip('/')}/api/{CALLBACK_ROUTE}"
    now = datetime.now(UTC)
    pending = PendingConnects(rt.runs)
    pending.forget_expired(now.isoformat(timespec="seconds"))
    expires = now + timedelta(minutes=FLOW_MINUTES)
    pending.start(
        state,
        PendingConnect(
            connection=name,
            started_by=who.object_id,
            redirect_uri=redirect_uri,
            expires_at=expires.isoformat(timespec="seconds"),
        ),
    )
    log.info("Connection %s: Connect started by %s", name, who.label)
    url = authorize_url(rt.settings.snapchat_authorize_url, client_id, redirect_uri, state,
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
    pending = PendingConnects(rt.runs)
    flow = pending.find(state) if state else None
    if flow is None:
        raise NotConnected("unknown", "a Connect callback for no pending flow (unknown state)")
    if not hmac.compare_digest(flow.started_by, who.object_id):
        # Left pending: the person who started it can still finish it.
        raise NotConnected("someone_else", "a Connect callback from someone other than its starter")
    if not _in_time(flow.expires_at):
        raise NotConnected("expired", f"a Connect callback after {FLOW_MINUTES} minutes")
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
    connection = rt.definitions.connection(flow.connection)
    authorize(who, Action.EDIT_CONNECTION, connection)  # still an admin, connection still there
    client_secret = _stored(rt, connection.client_secret_secret, connection.name)
    refresh = exchange_code(
        rt.http,
        rt.settings.snapchat_token_url,
        client_id=_stored(rt, connection.client_id_secret, connection.name),
        client_secret=client_secret,
        code=code,
        redirect_uri=flow.redirect_uri,
        verifier=derived_verifier(client_secret, state),
    )
    rt.secrets.set(connection.refresh_token_secret, refresh)
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


def _stored(rt: Runtime, secret: str, connection: str) -> str:
    try:
        value = rt.secrets.get(secret)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"connection {connection!r}: {exc}; add the Snapchat app's client ID and client "
            "secret to Key Vault first (docs/console.md)"
        ) from None
    SECRETS.add(value)
    return value
