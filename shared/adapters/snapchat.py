"""Adapter for the Snap Marketing API and its OAuth token endpoint.

Building a request body is left to ``shared.core.identifiers``; this module sends requests and
decides what a response means. ``classify`` is the one table from a response to an action;
``SnapchatClient`` applies it with bounded, jittered retries, a single token refresh on 401
and a per-token request pacer.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from shared.adapters import telemetry
from shared.adapters.secretstore import Credentials
from shared.core.definitions import Connection, is_audience_id
from shared.core.errors import (
    AudienceNotFound,
    AuthenticationError,
    PermissionDenied,
    RedirectRefused,
    RequestRejected,
    RetryableError,
    SnapchatError,
)
from shared.core.identifiers import UsersBody
from shared.core.privacy import SECRETS, scrub

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
_CONNECT_TIMEOUT = 10.0
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0
_REREAD_WAITS = (0.5, 1.0, 2.0)  # seconds between looks for a refresh token rotated elsewhere
_Timeout = float | tuple[float, float]


class Action(enum.Enum):
    DONE = "done"
    RETRY = "retry"  # transient: back off and send again
    REFRESH = "refresh"  # the access token was refused: refresh once, send again
    DENIED = "denied"  # permission problem: stop, the operator must act
    NOT_FOUND = "not_found"  # unknown audience or ad account: stop
    REJECTED = "rejected"  # the request itself is wrong: stop


_BY_STATUS = {401: Action.REFRESH, 403: Action.DENIED, 404: Action.NOT_FOUND, 408: Action.RETRY}
_BY_ERROR_CODE = {"E3002": Action.DENIED, "E3003": Action.NOT_FOUND}


def classify(status: int, body: Mapping[str, Any] | None) -> Action:
    """What to do with a Snap Marketing API response."""
    if 200 <= status < 300:
        return Action.DONE if _all_succeeded(body) else Action.RETRY
    if status == 429 or status >= 500:
        return Action.RETRY
    code = body.get("error_code") if body else None
    if isinstance(code, str) and code in _BY_ERROR_CODE and status != 401:
        return _BY_ERROR_CODE[code]
    return _BY_STATUS.get(status, Action.REJECTED)


def _all_succeeded(body: Mapping[str, Any] | None) -> bool:
    """A 2xx answer may still report failure, overall or in one of its sub-requests."""
    if body is None:
        return False
    if body.get("request_status", "SUCCESS") != "SUCCESS":
        return False
    for key in ("users", "segments"):
        for item in body.get(key) or ():
            if isinstance(item, dict) and item.get("sub_request_status", "SUCCESS") != "SUCCESS":
                return False
    return True


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    max_seconds: float = 300.0
    timeout: float = 60.0


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0
    token_refreshes: int = 0


@dataclass
class _Token:
    value: str = field(default="", repr=False)
    expires_at: float = 0.0


def _checked(segment_id: str, *, answered: bool = False) -> str:
    """``segment_id``, if it can be one; never put in a URL path otherwise."""
    if not is_audience_id(segment_id):
        where = "Snapchat answered" if answered else "the app was given"
        raise RequestRejected(f"{where} an audience ID that is not one (letters, digits, '_' "
                              "and '-' only); not used")  # fmt: skip
    return segment_id


def post_form(
    session: requests.Session, url: str, form: dict[str, str], *, timeout: _Timeout
) -> requests.Response:
    """POST a form that carries a secret. A redirect is never followed: ``requests`` would
    send the body again (307, 308) to wherever it points. RedirectRefused instead."""
    answer = session.post(url, data=form, timeout=timeout, allow_redirects=False)
    if answer.is_redirect or 300 <= answer.status_code < 400:
        raise RedirectRefused(
            f"the Snapchat token endpoint answered a redirect (HTTP {answer.status_code}); it "
            "was not followed, so no secret went elsewhere. Check SNAPCHAT_TOKEN_URL."
        )
    return answer


class SnapchatClient:
    def __init__(
        self,
        session: requests.Session,
        *,
        api_url: str,
        token_url: str,
        credentials: Credentials,
        policy: RetryPolicy,
        on_new_refresh_token: Callable[[str], None] | None = None,
        stored_refresh_token: Callable[[], str] | None = None,
        on_access_token: Callable[[], None] | None = None,
        requests_per_second: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        connection: Connection | None = None,
        pace: Callable[[], None] | None = None,
    ) -> None:
        self._connection = connection  # named in errors about the credentials
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._token_url = token_url
        self._credentials = credentials
        self._policy = policy
        self._on_new_refresh_token = on_new_refresh_token
        self._stored_refresh_token = stored_refresh_token
        self._on_access_token = on_access_token  # told each time a refresh succeeds
        self._label = connection.name if connection is not None else ""
        # 5% under the limit, so that scheduling jitter never puts an 11th request in a second.
        self._interval = 1.05 / requests_per_second if requests_per_second > 0 else 0.0
        self._sleep = sleep
        self._shared_pace = pace  # waits for a slot shared with other instances, if given
        self._token = _Token()
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self.counters = Counters()
        SECRETS.add(credentials.client_secret, credentials.refresh_token)

    # -- the calls the exporter makes --------------------------------------------------------

    def add_users(self, segment_id: str, body: UsersBody) -> int:
        """POST a users body; returns how many identifiers Snapchat says it received."""
        path = f"/segments/{_checked(segment_id)}/users"
        return _received(self._api("POST", path, body, "/segments/{id}/users"))

    def remove_users(self, segment_id: str, body: UsersBody) -> int:
        """DELETE a users body (same shape as an add)."""
        path = f"/segments/{_checked(segment_id)}/users"
        return _received(self._api("DELETE", path, body, "/segments/{id}/users"))

    def find_segment(self, ad_account_id: str, name: str) -> str | None:
        """The ID of the ad account's audience called ``name``, if there is one."""
        for segment in self._segments(ad_account_id):
            if segment.get("name") == name:
                return _checked(str(segment.get("id")), answered=True)
        return None

    def segment_count(self, ad_account_id: str) -> int:
        return sum(1 for _ in self._segments(ad_account_id))  # Snapchat allows 1,000

    def _segments(self, ad_account_id: str) -> Iterator[dict[str, Any]]:
        """The ad account's audiences, page after page (``paging.next_link``)."""
        path: str | None = f"/adaccounts/{_checked(ad_account_id)}/segments"
        while path:
            answer = self._api("GET", path, None, _SEGMENTS)
            for item in answer.get("segments") or ():
                segment = item.get("segment") if isinstance(item, dict) else None
                if isinstance(segment, dict):
                    yield segment
            next_link = (answer.get("paging") or {}).get("next_link")
            path = _relative(next_link, self._api_url) if next_link else None

    def create_lookalike(
        self, ad_account_id: str, name: str, seed_id: str, type: str, countries: Sequence[str]
    ) -> str:
        """Create a lookalike audience of the audience ``seed_id``; returns its ID."""
        spec = {"seed_segment_id": seed_id, "type": type, "countries": list(countries)}
        return self._create(ad_account_id, {"name": name, "source_type": "LOOKALIKE",
                            "retention_in_days": 180,  # the longest Snapchat allows
                            "creation_spec": spec})  # fmt: skip

    def create_segment(
        self, ad_account_id: str, *, name: str, description: str, retention_in_days: int
    ) -> str:
        """Create a first-party customer-list audience; returns its ID."""
        return self._create(ad_account_id, {"name": name, "description": description,
                            "source_type": "FIRST_PARTY",
                            "retention_in_days": retention_in_days})  # fmt: skip

    def _create(self, ad_account_id: str, fields: dict[str, Any]) -> str:
        account = _checked(ad_account_id)
        document = {"segments": [{**fields, "ad_account_id": account}]}
        answer = self._api("POST", f"/adaccounts/{account}/segments",
                           json.dumps(document).encode(), _SEGMENTS)  # fmt: skip
        segments = answer.get("segments") or [{}]
        segment = segments[0].get("segment") if isinstance(segments[0], dict) else None
        if not isinstance(segment, dict) or not segment.get("id"):
            raise RequestRejected("Snapchat created no audience (its answer named none)")
        return _checked(str(segment["id"]), answered=True)

    def segment(self, audience_id: str) -> dict[str, Any]:
        """The audience as Snapchat describes it now (``{}`` when the answer holds none)."""
        answer = self._api("GET", f"/segments/{_checked(audience_id)}", None, "/segments/{id}")
        segments = answer.get("segments") or [{}]
        segment = segments[0].get("segment") if isinstance(segments[0], dict) else None
        return segment if isinstance(segment, dict) else {}

    get_segment = segment

    # -- sending -----------------------------------------------------------------------------

    def _api(
        self, method: str, path: str, body: UsersBody | bytes | None, route: str
    ) -> dict[str, Any]:
        """``route``: the path's template, which telemetry records instead of the path."""
        where = f"{method} {path}"
        refreshed = False
        deadline = time.monotonic() + self._policy.max_seconds
        attempt = 0
        while True:
            attempt += 1
            token = self._access_token()
            self._pace()
            self.counters.requests += 1
            # The request's span and outcome: a failure is "retried" only when the client
            # sends again, else "refused"; the back-off happens after the span.
            again, refresh = 0.0, False  # wait this long, or refresh the token, then send again
            with telemetry.snapchat_request(method, route, self._label) as call:
                try:
                    response = self._session.request(
                        method,
                        self._api_url + path,
                        data=body,
                        headers={**_JSON, "Authorization": f"Bearer {token}"},
                        timeout=(_CONNECT_TIMEOUT, self._policy.timeout),
                    )
                except (requests.ConnectionError, requests.Timeout) as exc:
                    call.answered(None, "refused")
                    again = self._retry_delay(where, attempt, deadline, type(exc).__name__, None)
                    call.answered(None, "retried")
                else:
                    answer = _json(response)
                    action = classify(response.status_code, answer)
                    status = response.status_code
                    if action is Action.DONE:
                        call.answered(status, "accepted")
                        return answer or {}
                    if action is Action.REFRESH and not refreshed:
                        call.answered(status, "retried")
                        refresh = True
                    elif action is Action.RETRY:
                        call.answered(status, "refused")
                        reason = f"HTTP {status}" + _api_reason(answer)
                        again = self._retry_delay(where, attempt, deadline, reason, response)
                        call.answered(status, "retried")
                    else:
                        call.answered(status, "refused")
                        raise _stop_error(action, where, status, answer)
            if refresh:
                refreshed = True
                self._invalidate(token)
                continue
            self._sleep(again)

    def _retry_delay(
        self,
        where: str,
        attempt: int,
        deadline: float,
        reason: str,
        response: requests.Response | None,
    ) -> float:
        """How long to wait before sending again; RetryableError when the budget is spent."""
        delay = _backoff(attempt, response)
        if attempt >= self._policy.attempts or time.monotonic() + delay > deadline:
            raise RetryableError(
                f"Snapchat {where}: still failing after {attempt} attempts ({reason})"
            )
        self.counters.retries += 1
        log.info("Snapchat %s: %s, retry %d in %.1fs", where, reason, attempt, delay)
        return delay

    def _pace(self) -> None:
        """Space requests so that one access token stays under the configured rate (with
        ``pace``: the connection, over every instance that uses it)."""
        if self._shared_pace is not None:
            self._shared_pace()
            return
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
        if slot > now:
            self._sleep(slot - now)

    # -- tokens ------------------------------------------------------------------------------

    def _access_token(self) -> str:
        with self._lock:
            if self._token.value and time.monotonic() < self._token.expires_at:
                return self._token.value
        return self._refresh()

    def _invalidate(self, token: str) -> None:
        with self._lock:
            if self._token.value == token:
                self._token = _Token()

    def _refresh(self) -> str:
        deadline = time.monotonic() + self._policy.max_seconds
        attempt = 0
        while True:
            attempt += 1
            form = {
                "grant_type": "refresh_token",
                "client_id": self._credentials.client_id,
                "client_secret": self._credentials.client_secret,
                "refresh_token": self._credentials.refresh_token,
            }
            self.counters.token_refreshes += 1
            again = 0.0
            with telemetry.snapchat_request("POST", TOKEN_ROUTE, self._label) as call:
                try:
                    limits = (_CONNECT_TIMEOUT, self._policy.timeout)
                    response = post_form(self._session, self._token_url, form, timeout=limits)
                except (requests.ConnectionError, requests.Timeout) as exc:
                    call.answered(None, "refused")
                    again = self._retry_delay("token", attempt, deadline, type(exc).__name__, None)
                    call.answered(None, "retried")
                else:
                    status = response.status_code
                    answer = _json(response) or {}
                    if status == 200 and isinstance(answer.get("access_token"), str):
                        call.answered(status, "accepted")
                        return self._accept_token(answer)
                    call.answered(status, "refused")
                    if status == 429 or status >= 500:
                        again = self._retry_delay("token", attempt, deadline, f"HTTP {status}",
                                                  response)  # fmt: skip
                        call.answered(status, "retried")
                    elif status in (400, 401) and self._reload_refresh_token():
                        call.answered(status, "retried")  # another run rotated it meanwhile
                        continue
                    else:
                        error = scrub(str(answer.get("error") or f"HTTP {status}"))
                        raise AuthenticationError(self._refused(error))
            self._sleep(again)

    def _refused(self, error: str) -> str:
        connection = self._connection
        if connection is None:
            return (
                f"Snapchat token endpoint refused the connection's credentials ({error}); "
                "reconnect the Snapchat account and update the secrets"
            )
        return (
            f"Snapchat token endpoint refused the credentials of connection "
            f"{connection.name!r} ({error}): connect the Snapchat account again "
            f"(python -m shared connect {connection.name} --client-id <id>) to renew secret "
            f"{connection.refresh_token_secret!r}; if the Snapchat app's client secret changed, "
            f"update secret {connection.client_secret_secret!r} as well"
        )

    def _reload_refresh_token(self) -> bool:
        """Re-read the stored refresh token; True when it differs from the one refused.

        Runs on the same connection share one refresh token; when Snapchat rotates it,
        the run that refreshed first stores the new one and the others pick it up here.
        """
        if self._stored_refresh_token is None:
            return False
        # The run that rotated it may not have stored it yet: look a few times, briefly.
        for wait in (0.0, *_REREAD_WAITS):
            self._sleep(wait)
            stored = self._stored_refresh_token()
            if stored != self._credentials.refresh_token:
                break
        else:
            return False
        SECRETS.add(stored)
        self._credentials = Credentials(
            self._credentials.client_id, self._credentials.client_secret, stored
        )
        return True

    def _accept_token(self, answer: dict[str, Any]) -> str:
        token = str(answer["access_token"])
        lifetime = float(answer.get("expires_in") or 1800)
        SECRETS.add(token, short_lived=True)
        with self._lock:
            # Renew a little before Snapchat would: a minute, or a tenth of short lifetimes.
            self._token = _Token(token, time.monotonic() + lifetime - min(60.0, lifetime / 10))
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._credentials.refresh_token:
            SECRETS.add(rotated)
            if self._on_new_refresh_token is not None:
                self._on_new_refresh_token(rotated)
            self._credentials = Credentials(
                self._credentials.client_id, self._credentials.client_secret, rotated
            )
        if self._on_access_token is not None:
            self._on_access_token()
        return token


# Route templates, as telemetry names requests (never a path with its IDs).
TOKEN_ROUTE = "/login/oauth2/access_token"  # noqa: S105 - a path, not a password
_USERS = "/segments/{id}/users"
_SEGMENTS = "/adaccounts/{id}/segments"


def _received(answer: dict[str, Any]) -> int:
    return sum(
        int((item.get("user") or {}).get("number_uploaded_users", 0))
        for item in answer.get("users") or ()
        if isinstance(item, dict)
    )


def _relative(link: str, api_url: str) -> str | None:
    """A paging link as a path under the API URL; None if it points elsewhere."""
    return link[len(api_url) :] if link.startswith(api_url + "/") else None


def _json(response: requests.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _api_reason(answer: Mapping[str, Any] | None) -> str:
    if not answer:
        return ""
    code = answer.get("error_code")
    message = answer.get("display_message") or answer.get("debug_message")
    parts = [str(p) for p in (code, message) if p]
    return f" {scrub(': '.join(parts))}" if parts else ""


def _stop_error(
    action: Action, where: str, status: int, answer: Mapping[str, Any] | None
) -> SnapchatError:
    detail = f"Snapchat {where}: HTTP {status}{_api_reason(answer)}"
    if action is Action.REFRESH:
        return AuthenticationError(f"{detail}; the access token was refused after a refresh")
    if action is Action.DENIED:
        return PermissionDenied(
            f"{detail}; the connected Snapchat user needs Admin or Data Manager on the ad account"
        )
    if action is Action.NOT_FOUND:
        return AudienceNotFound(f"{detail}; check the export's audience_id")
    return RequestRejected(detail)


def _backoff(attempt: int, response: requests.Response | None) -> float:
    """Full-jitter exponential backoff, or the server's Retry-After when it gives one."""
    if response is not None and (header := response.headers.get("Retry-After")):
        try:
            return min(max(float(header), 0.0), _BACKOFF_CAP)
        except ValueError:
            try:
                wait = parsedate_to_datetime(header).timestamp() - time.time()
                return min(max(wait, 0.0), _BACKOFF_CAP)
            except (TypeError, ValueError):
                pass
    return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))  # noqa: S311
