"""The Snapchat client's decisions, in milliseconds: the response table, the backoff, and
retries and token refresh over a scripted transport (no server, no sleeping)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from shared.adapters.secretstore import Credentials
from shared.adapters.snapchat import Action, RetryPolicy, SnapchatClient, _backoff, classify
from shared.core.definitions import default_connection
from shared.core.errors import (
    AuthenticationError,
    PermissionDenied,
    RequestRejected,
    RetryableError,
)
from shared.core.identifiers import UsersBody

OK = {"request_status": "SUCCESS"}
ERROR = {"request_status": "ERROR", "error_code": "E1001"}


@pytest.mark.parametrize(
    ("status", "body", "action"),
    [
        (200, OK, Action.DONE),
        (201, {}, Action.DONE),
        (200, None, Action.RETRY),  # no JSON body: not a confirmed success
        (200, {"request_status": "ERROR"}, Action.RETRY),
        (200, {"users": [{"sub_request_status": "FAILED"}]}, Action.RETRY),
        (200, {"segments": [{"sub_request_status": "SUCCESS"}]}, Action.DONE),
        (429, None, Action.RETRY),
        (500, ERROR, Action.RETRY),
        (503, None, Action.RETRY),
        (408, None, Action.RETRY),
        (401, {"error_code": "E3002"}, Action.REFRESH),  # a refused token wins over the code
        (403, None, Action.DENIED),
        (400, {"error_code": "E3002"}, Action.DENIED),
        (404, None, Action.NOT_FOUND),
        (400, {"error_code": "E3003"}, Action.NOT_FOUND),
        (400, ERROR, Action.REJECTED),
        (422, None, Action.REJECTED),
    ],
)
def test_each_response_maps_to_one_action(
    status: int, body: Mapping[str, Any] | None, action: Action
) -> None:
    assert classify(status, body) is action


def answer(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"Retry-After": "3"}, 3.0, 3.0),
        ({"Retry-After": "0"}, 0.0, 0.0),
        ({"Retry-After": "120"}, 30.0, 30.0),  # capped
        ({"Retry-After": "-5"}, 0.0, 0.0),
        ({"Retry-After": "soon"}, 0.0, 0.5),  # unreadable: the jittered backoff
    ],
)
def test_backoff_honours_retry_after_within_the_cap(
    headers: dict[str, str], low: float, high: float
) -> None:
    assert low <= _backoff(1, answer(429, headers)) <= high


def test_backoff_reads_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8.0 <= _backoff(1, answer(503, {"Retry-After": later})) <= 10.0


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (4, 4.0), (9, 30.0)])
def test_backoff_is_full_jitter_doubling_up_to_the_cap(attempt: int, ceiling: float) -> None:
    waits = [_backoff(attempt, None) for _ in range(300)]
    assert all(0.0 <= wait <= ceiling for wait in waits)
    assert max(waits) > ceiling / 2  # spread over the whole range, not a fixed delay


# -- a scripted transport -----------------------------------------------------------------


@dataclass
class Sent:
    method: str
    url: str
    body: bytes
    authorization: str


@dataclass
class Script(BaseAdapter):
    """Answers each request with the next scripted (status, json, headers) for its kind
    ("token" or "api"), and records what was sent."""

    token: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    api: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body or b""
        if not isinstance(body, bytes):
            body = b"".join(body) if not isinstance(body, str) else body.encode()
        self.sent.append(Sent(str(request.method), str(request.url), body,
                              request.headers.get("Authorization", "")))  # fmt: skip
        queue = self.token if "access_token" in str(request.url) else self.api
        status, document, headers = queue.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = json.dumps(document).encode() if document is not None else b""
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass


def token(value: str, refresh: str | None = None) -> tuple[int, Any, dict[str, str]]:
    document: dict[str, Any] = {"access_token": value, "expires_in": 1800}
    if refresh:
        document["refresh_token"] = refresh
    return 200, document, {}


def client(script: Script, **options: Any) -> tuple[SnapchatClient, list[float]]:
    session = requests.Session()
    session.mount("https://", script)
    slept: list[float] = []
    made = SnapchatClient(
        session,
        api_url="https://api.test/v1",
        token_url="https://auth.test/login/oauth2/access_token",
        credentials=Credentials("id", "client-secret-value", "refresh-value-1"),
        policy=RetryPolicy(attempts=options.pop("attempts", 4), max_seconds=600, timeout=5),
        requests_per_second=0,
        sleep=slept.append,
        **options,
    )
    return made, slept


BODY = UsersBody("EMAIL_SHA256", bytes(32))


def test_a_refused_access_token_is_refreshed_once_and_the_request_sent_again() -> None:
    script = Script(token=[token("first"), token("second")],
                    api=[(401, None, {}), (200, {"users": []}, {})])  # fmt: skip
    snap, _ = client(script)
    snap.add_users("aud-1", BODY)
    api = [s for s in script.sent if "/segments/" in s.url]
    assert [s.authorization for s in api] == ["Bearer first", "Bearer second"]
    assert api[0].body == api[1].body == bytes(BODY)  # the same body, written again
    assert snap.counters.token_refreshes == 2


def test_a_second_refusal_after_a_refresh_is_an_authentication_error() -> None:
    script = Script(token=[token("a"), token("b")], api=[(401, None, {}), (401, None, {})])
    snap, _ = client(script)
    with pytest.raises(AuthenticationError, match="refused after a refresh"):
        snap.add_users("aud-1", BODY)


def test_transient_answers_are_retried_after_the_servers_wait() -> None:
    script = Script(token=[token("t")], api=[(429, None, {"Retry-After": "7"}),
                                             (503, None, {"Retry-After": "2"}),
                                             (200, {"users": []}, {})])  # fmt: skip
    snap, slept = client(script)
    snap.add_users("aud-1", BODY)
    assert slept == [7.0, 2.0]
    assert (snap.counters.requests, snap.counters.retries) == (3, 2)


def test_retries_are_bounded_by_the_attempts() -> None:
    script = Script(token=[token("t")], api=[(500, ERROR, {"Retry-After": "1"})] * 3)
    snap, slept = client(script, attempts=3)
    with pytest.raises(RetryableError, match=r"still failing after 3 attempts \(HTTP 500 E1001"):
        snap.remove_users("aud-1", BODY)
    assert slept == [1.0, 1.0]


def test_a_permission_problem_stops_at_once_with_advice() -> None:
    script = Script(token=[token("t")], api=[(403, {"error_code": "E3002"}, {})])
    snap, slept = client(script)
    with pytest.raises(PermissionDenied, match="needs Admin or Data Manager"):
        snap.add_users("aud-1", BODY)
    assert slept == []


def test_a_rotated_refresh_token_is_handed_over_before_it_is_relied_on() -> None:
    stored: list[str] = []
    script = Script(token=[token("t", refresh="refresh-value-2")], api=[(200, OK, {})])
    snap, _ = client(script, on_new_refresh_token=stored.append)
    snap.get_segment("aud-1")
    assert stored == ["refresh-value-2"]


def test_refused_credentials_name_the_connection_and_the_secret_to_renew() -> None:
    script = Script(token=[(400, {"error": "invalid_grant"}, {})])
    snap, _ = client(script, connection=default_connection("eu"))
    with pytest.raises(AuthenticationError) as caught:
        snap.get_segment("aud-1")
    message = str(caught.value)
    assert "credentials of connection 'eu' (invalid_grant)" in message
    assert "renew secret 'snapchat-eu-refresh-token'" in message
    assert "refresh-value-1" not in message
    assert "client-secret-value" not in message


@pytest.mark.parametrize("audience", ["../adaccounts/1", "a/b", "x?y=1", "", "a" * 200])
def test_an_audience_id_that_is_not_one_never_reaches_a_url(audience: str) -> None:
    session = requests.Session()
    client = SnapchatClient(
        session, api_url="http://127.0.0.1:9/v1", token_url="http://127.0.0.1:9/token",
        credentials=Credentials("id", "secret-value", "refresh-value"),
        policy=RetryPolicy(attempts=1, max_seconds=0, timeout=1),
    )  # fmt: skip
    with pytest.raises(RequestRejected, match="not one"):
        client.add_users(audience, UsersBody("EMAIL_SHA256", b"\x01" * 32))
    assert client.counters.requests == 0
