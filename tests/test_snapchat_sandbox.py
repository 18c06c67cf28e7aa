"""The Snapchat sandbox, exercised the way the exporter uses it: real HTTP over loopback."""

from __future__ import annotations

import hashlib
import json
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devtools.snapchat_sandbox import RequestRecord, SnapchatSandbox, fingerprint

pytestmark = pytest.mark.integration  # the sandbox serves HTTP on loopback

CLIENT_ID = "client-a"
SECRET = "secret-a"
REFRESH = "refresh-a"
SEGMENT = "seg-1"
ACCOUNT = "adacct-1"
REDIRECT = "http://127.0.0.1:9/callback"
ROOT = Path(__file__).resolve().parents[1]


def digests(count: int, seed: str = "x") -> list[str]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(count)]


def users_body(hashes: list[str], schema: str = "EMAIL_SHA256") -> dict[str, Any]:
    return {"users": [{"schema": [schema], "data": [[h] for h in hashes]}]}


def refresh_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "refresh_token": REFRESH,
    }
    form.update(overrides)
    return form


@pytest.fixture
def snap() -> Iterator[SnapchatSandbox]:
    with SnapchatSandbox() as server:
        server.add_client(CLIENT_ID, SECRET, REFRESH)
        server.add_audience(SEGMENT, ad_account_id=ACCOUNT)
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def grant(snap: SnapchatSandbox, http: requests.Session, **overrides: str) -> requests.Response:
    return http.post(snap.token_url, data=refresh_form(**overrides), timeout=10)


def bearer(snap: SnapchatSandbox, http: requests.Session) -> dict[str, str]:
    response = grant(snap, http)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def users_url(snap: SnapchatSandbox, segment: str = SEGMENT) -> str:
    return f"{snap.api_url}/segments/{segment}/users"


def post_users(
    snap: SnapchatSandbox, http: requests.Session, body: object, method: str = "POST"
) -> requests.Response:
    return http.request(method, users_url(snap), json=body, headers=bearer(snap, http), timeout=30)


def assert_snap_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["request_status"] == "ERROR"
    assert set(body) == {
        "request_status",
        "request_id",
        "debug_message",
        "display_message",
        "error_code",
    }
    return body


def last(snap: SnapchatSandbox) -> RequestRecord:
    return snap.requests()[-1]


# ---------------------------------------------------------------------------- OAuth


def test_refresh_grant_answers_a_bearer_token_and_keeps_the_refresh_token(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    first = grant(snap, http).json()
    second = grant(snap, http).json()

    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == 1800
    assert first["scope"] == "snapchat-marketing-api"
    assert first["refresh_token"] == second["refresh_token"] == REFRESH
    assert first["access_token"] != second["access_token"]
    record = last(snap)
    assert (record.method, record.path, record.status, record.token) == (
        "POST",
        "/login/oauth2/access_token",
        200,
        None,
    )


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_id": "nobody"}, 401, "invalid_client"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_secret": "sécret"}, 401, "invalid_client"),
        ({"refresh_token": "stale"}, 400, "invalid_grant"),
        ({"refresh_token": ""}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_refresh_grant_failures_are_oauth_errors(
    snap: SnapchatSandbox,
    http: requests.Session,
    overrides: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = grant(snap, http, **overrides)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert "error_description" in response.json()


def test_token_endpoint_refuses_json_bodies(snap: SnapchatSandbox, http: requests.Session) -> None:
    response = http.post(snap.token_url, json=refresh_form(), timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_rotation_hands_out_a_new_refresh_token_and_retires_the_old_one(
    http: requests.Session,
) -> None:
    with SnapchatSandbox(rotate_refresh_tokens=True, token_lifetime=3600) as snap:
        snap.add_client(CLIENT_ID, SECRET, REFRESH)
        first = grant(snap, http).json()
        rotated = first["refresh_token"]

        assert first["expires_in"] == 3600
        assert rotated != REFRESH
        assert snap.current_refresh_token(CLIENT_ID) == rotated
        assert grant(snap, http).json()["error"] == "invalid_grant"
        assert grant(snap, http, refresh_token=rotated).status_code == 200


def test_authorize_redirects_with_a_code_that_works_once(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "snapchat-marketing-api",
        "state": "xyz",
    }
    response = http.get(
        f"{snap.base_url}/login/oauth2/authorize",
        params=query,
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    params = parse_qs(location.query)
    assert params["state"] == ["xyz"]

    exchange = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "code": params["code"][0],
        "redirect_uri": REDIRECT,
    }
    tokens = http.post(snap.token_url, data=exchange, timeout=10)
    assert tokens.status_code == 200
    assert tokens.json()["refresh_token"] == REFRESH
    replay = http.post(snap.token_url, data=exchange, timeout=10)
    assert replay.json()["error"] == "invalid_grant"


def test_authorization_code_needs_the_same_redirect_uri(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    code = snap.issue_code(CLIENT_ID, REDIRECT)
    exchange = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "code": code,
        "redirect_uri": "http://127.0.0.1:9/elsewhere",
    }

    response = http.post(snap.token_url, data=exchange, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "change", [{"client_id": "nobody"}, {"scope": "other"}, {"response_type": "token"}]
)
def test_authorize_refuses_unknown_clients_and_wrong_parameters(
    snap: SnapchatSandbox, http: requests.Session, change: dict[str, str]
) -> None:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "snapchat-marketing-api",
    }
    query.update(change)
    response = http.get(
        f"{snap.base_url}/login/oauth2/authorize",
        params=query,
        allow_redirects=False,
        timeout=10,
    )

    assert response.status_code == 400


# ---------------------------------------------------------------------------- bearer tokens


def segment_url(snap: SnapchatSandbox, segment: str = SEGMENT) -> str:
    return f"{snap.api_url}/segments/{segment}"


@pytest.mark.parametrize("authorization", [None, "Bearer unknown-token", "Basic abc"])
def test_api_calls_need_an_issued_token(
    snap: SnapchatSandbox, http: requests.Session, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = http.get(segment_url(snap), headers=headers, timeout=10)

    assert_snap_error(response, 401)


def test_expire_tokens_retires_every_token_issued_so_far(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    old = bearer(snap, http)
    assert http.get(segment_url(snap), headers=old, timeout=10).status_code == 200

    snap.expire_tokens()

    assert_snap_error(http.get(segment_url(snap), headers=old, timeout=10), 401)
    assert http.get(segment_url(snap), headers=bearer(snap, http), timeout=10).status_code == 200


def test_tokens_expire_after_their_lifetime(http: requests.Session) -> None:
    with SnapchatSandbox(token_lifetime=0) as snap:
        snap.add_client(CLIENT_ID, SECRET, REFRESH)
        snap.add_audience(SEGMENT)
        headers = bearer(snap, http)

        assert_snap_error(http.get(segment_url(snap), headers=headers, timeout=10), 401)
        assert last(snap).token == headers["Authorization"].removeprefix("Bearer ")


# ---------------------------------------------------------------------------- users


def test_add_then_remove_users_per_schema(snap: SnapchatSandbox, http: requests.Session) -> None:
    emails, phones = digests(5, "e"), digests(3, "p")

    added = post_users(snap, http, users_body(emails))
    post_users(snap, http, users_body(phones, "PHONE_SHA256"))
    removed = post_users(snap, http, users_body(emails[:2]), method="DELETE")

    assert added.json()["request_status"] == "SUCCESS"
    assert added.json()["users"] == [
        {"sub_request_status": "SUCCESS", "user": {"number_uploaded_users": 5}}
    ]
    assert removed.json()["users"][0]["user"]["number_uploaded_users"] == 2
    assert snap.identifiers(SEGMENT) == set(emails[2:])
    assert snap.identifiers(SEGMENT, "PHONE_SHA256") == set(phones)
    record = last(snap)
    assert (record.method, record.identifiers, record.schema) == ("DELETE", 2, "EMAIL_SHA256")


def test_remove_all_users_clears_every_schema(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    post_users(snap, http, users_body(digests(4)))
    post_users(snap, http, users_body(digests(2), "MOBILE_AD_ID_SHA256"))

    response = http.delete(f"{segment_url(snap)}/all_users", headers=bearer(snap, http), timeout=10)

    assert response.status_code == 200
    assert snap.identifiers(SEGMENT) == set()
    assert snap.identifiers(SEGMENT, "MOBILE_AD_ID_SHA256") == set()


def test_a_full_batch_of_100000_is_accepted(snap: SnapchatSandbox, http: requests.Session) -> None:
    hashes = digests(100_000)

    response = post_users(snap, http, users_body(hashes))

    assert response.status_code == 200
    assert response.json()["users"][0]["user"]["number_uploaded_users"] == 100_000
    assert snap.identifiers(SEGMENT) == set(hashes)
    assert last(snap).identifiers == 100_000


def test_100001_identifiers_are_refused_even_across_entries(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    hashes = digests(100_001)
    body = {
        "users": [
            {"schema": ["EMAIL_SHA256"], "data": [[h] for h in hashes[:50_000]]},
            {"schema": ["PHONE_SHA256"], "data": [[h] for h in hashes[50_000:]]},
        ]
    }

    assert_snap_error(post_users(snap, http, body), 400)
    assert snap.identifiers(SEGMENT) == set()
    assert snap.identifiers(SEGMENT, "PHONE_SHA256") == set()


GOOD = hashlib.sha256(b"good").hexdigest()
ENTRY = {"schema": ["EMAIL_SHA256"], "data": [[GOOD]]}
MALFORMED: dict[str, object] = {
    "top level list": [ENTRY],
    "extra top key": {"users": [ENTRY], "extra": 1},
    "users not a list": {"users": ENTRY},
    "users empty": {"users": []},
    "entry not an object": {"users": [[GOOD]]},
    "entry extra key": {"users": [{**ENTRY, "id": 1}]},
    "entry without data": {"users": [{"schema": ["EMAIL_SHA256"]}]},
    "schema a string": {"users": [{"schema": "EMAIL_SHA256", "data": [[GOOD]]}]},
    "two schemas": {"users": [{"schema": ["EMAIL_SHA256", "PHONE_SHA256"], "data": [[GOOD]]}]},
    "unknown schema": {"users": [{"schema": ["EMAIL"], "data": [[GOOD]]}]},
    "data empty": {"users": [{"schema": ["EMAIL_SHA256"], "data": []}]},
    "data flat": {"users": [{"schema": ["EMAIL_SHA256"], "data": [GOOD]}]},
    "two per row": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[GOOD, GOOD]]}]},
    "empty row": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[]]}]},
    "uppercase hex": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[GOOD.upper()]]}]},
    "63 chars": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[GOOD[:63]]]}]},
    "65 chars": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[GOOD + "0"]]}]},
    "not hex": {"users": [{"schema": ["EMAIL_SHA256"], "data": [["g" * 64]]}]},
    "non ascii": {"users": [{"schema": ["EMAIL_SHA256"], "data": [["é" * 64]]}]},
    "a number": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[12345]]}]},
    "plain email": {"users": [{"schema": ["EMAIL_SHA256"], "data": [["a@b.com"]]}]},
    "second entry bad": {
        "users": [ENTRY, {"schema": ["PHONE_SHA256"], "data": [[GOOD], ["nope"]]}]
    },
    "last row bad": {"users": [{"schema": ["EMAIL_SHA256"], "data": [[GOOD]] * 50 + [[1]]}]},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_malformed_users_bodies_are_refused_and_record_nothing(
    snap: SnapchatSandbox, http: requests.Session, body: object, method: str
) -> None:
    post_users(snap, http, users_body([GOOD]))
    before = snap.identifiers(SEGMENT)

    response = post_users(snap, http, body, method=method)

    assert_snap_error(response, 400)
    assert snap.identifiers(SEGMENT) == before == {GOOD}
    assert snap.identifiers(SEGMENT, "PHONE_SHA256") == set()
    assert (last(snap).status, last(snap).identifiers) == (400, 0)


def test_users_body_must_be_json_text(snap: SnapchatSandbox, http: requests.Session) -> None:
    headers = {**bearer(snap, http), "Content-Type": "application/json"}

    response = http.post(users_url(snap), data=b'{"users": [', headers=headers, timeout=10)

    assert_snap_error(response, 400)


def test_users_need_the_json_content_type(snap: SnapchatSandbox, http: requests.Session) -> None:
    body = json.dumps(users_body([GOOD]))
    headers = {**bearer(snap, http), "Content-Type": "text/plain"}

    response = http.post(users_url(snap), data=body, headers=headers, timeout=10)

    assert_snap_error(response, 415)
    assert snap.identifiers(SEGMENT) == set()


def test_unknown_segment_and_unknown_path_are_404(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    headers = bearer(snap, http)

    missing = http.post(
        users_url(snap, "nope"), json=users_body([GOOD]), headers=headers, timeout=10
    )
    nowhere = http.get(f"{snap.api_url}/elsewhere", headers=headers, timeout=10)

    assert assert_snap_error(missing, 404)["error_code"] == "E3003"
    assert assert_snap_error(nowhere, 404)["error_code"] == "E3003"


def test_concurrent_uploads_all_land(snap: SnapchatSandbox) -> None:
    batches = [digests(2000, f"t{n}") for n in range(8)]
    statuses: list[int] = []

    def upload(batch: list[str]) -> None:
        with requests.Session() as session:
            statuses.append(post_users(snap, session, users_body(batch)).status_code)

    threads = [threading.Thread(target=upload, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8
    assert snap.identifiers(SEGMENT) == set().union(*batches)


# ---------------------------------------------------------------------------- segments


def test_segment_status_follows_its_contents(snap: SnapchatSandbox, http: requests.Session) -> None:
    def segment() -> dict[str, Any]:
        body = http.get(segment_url(snap), headers=bearer(snap, http), timeout=10).json()
        assert body["request_status"] == "SUCCESS"
        assert body["segments"][0]["sub_request_status"] == "SUCCESS"
        result: dict[str, Any] = body["segments"][0]["segment"]
        return result

    post_users(snap, http, users_body(digests(1)), method="DELETE")
    empty = segment()
    post_users(snap, http, users_body(digests(999)))
    few = segment()
    post_users(snap, http, users_body(digests(1, "more"), "PHONE_SHA256"))
    ready = segment()

    assert (empty["upload_status"], empty["targetable_status"]) == ("NO_UPLOAD", "NOT_READY")
    assert "approximate_number_users" not in empty  # absent until processing is complete
    assert (few["upload_status"], few["targetable_status"]) == ("COMPLETE", "TOO_FEW_USERS")
    assert (ready["approximate_number_users"], ready["targetable_status"]) == (1000, "READY")
    assert ready["id"] == SEGMENT
    assert ready["source_type"] == "FIRST_PARTY"
    assert ready["status"] == "ACTIVE"


def new_segment(**overrides: object) -> dict[str, object]:
    segment: dict[str, object] = {
        "name": "High value",
        "description": "from the exporter",
        "source_type": "FIRST_PARTY",
        "retention_in_days": 180,
        "ad_account_id": ACCOUNT,
    }
    segment.update(overrides)
    return segment


def test_create_then_get_and_list_segments(snap: SnapchatSandbox, http: requests.Session) -> None:
    headers = bearer(snap, http)
    url = f"{snap.api_url}/adaccounts/{ACCOUNT}/segments"

    created = http.post(url, json={"segments": [new_segment()]}, headers=headers, timeout=10)

    assert created.status_code == 200, created.text
    segment = created.json()["segments"][0]["segment"]
    assert (segment["name"], segment["retention_in_days"]) == ("High value", 180)
    fetched = http.get(segment_url(snap, segment["id"]), headers=headers, timeout=10)
    assert fetched.json()["segments"][0]["segment"] == segment
    listed = http.get(url, headers=headers, timeout=10).json()
    assert listed["paging"] == {}
    assert {s["segment"]["id"] for s in listed["segments"]} == {SEGMENT, segment["id"]}
    assert set(snap.segments()) == {SEGMENT, segment["id"]}


@pytest.mark.parametrize(
    "segment",
    [
        new_segment(name="n" * 376),
        new_segment(name=""),
        new_segment(source_type="LOOKALIKE"),
        new_segment(ad_account_id="adacct-other"),
        new_segment(retention_in_days="180"),
        {k: v for k, v in new_segment().items() if k != "name"},
        new_segment(unexpected=True),
    ],
)
def test_invalid_segments_are_refused_and_nothing_is_created(
    snap: SnapchatSandbox, http: requests.Session, segment: dict[str, object]
) -> None:
    url = f"{snap.api_url}/adaccounts/{ACCOUNT}/segments"
    body = {"segments": [new_segment(), segment]}

    response = http.post(url, json=body, headers=bearer(snap, http), timeout=10)

    assert_snap_error(response, 400)
    assert set(snap.segments()) == {SEGMENT}


# ---------------------------------------------------------------------------- knobs


def get_segment(snap: SnapchatSandbox, http: requests.Session, segment: str = SEGMENT) -> Any:
    response = http.get(segment_url(snap, segment), headers=bearer(snap, http), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["segments"][0]["segment"]


def test_processing_takes_processing_seconds_after_the_last_upload(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    snap.configure(processing_seconds=0.6)
    post_users(snap, http, users_body(digests(1200)))
    processing = get_segment(snap, http)
    assert (processing["upload_status"], processing["targetable_status"]) == (
        "PROCESSING", "NOT_READY")  # fmt: skip
    assert "approximate_number_users" not in processing
    time.sleep(0.4)
    post_users(snap, http, users_body(digests(1, "late")))  # a later upload starts it again
    time.sleep(0.4)
    assert get_segment(snap, http)["upload_status"] == "PROCESSING"
    time.sleep(0.3)
    done = get_segment(snap, http)
    assert (done["upload_status"], done["approximate_number_users"]) == ("COMPLETE", 1201)
    assert done["targetable_status"] == "READY"


@pytest.mark.parametrize(
    ("share", "rounding", "minimum", "size", "targetable"),
    [
        (0.62, 0, 1000, 6200, "READY"),
        (0.62, 1000, 1000, 6000, "READY"),
        (0.05, 0, 1000, 500, "TOO_FEW_USERS"),
        (0.05, 0, 500, 500, "READY"),
        (0.0999, 100, 1000, 900, "TOO_FEW_USERS"),
    ],
)
def test_match_share_rounding_and_minimum_make_the_size_and_targetability(
    http: requests.Session, share: float, rounding: int, minimum: int, size: int, targetable: str
) -> None:
    knobs = {"match_share": share, "size_rounding": rounding, "target_minimum": minimum}
    with SnapchatSandbox(**knobs) as snap:
        snap.add_client(CLIENT_ID, SECRET, REFRESH)
        snap.add_audience(SEGMENT, ad_account_id=ACCOUNT)
        post_users(snap, http, users_body(digests(6000)))
        post_users(snap, http, users_body(digests(4000, "phone"), "PHONE_SHA256"))
        post_users(snap, http, users_body(digests(100)))  # repeated: counted once
        segment = get_segment(snap, http)
    assert (segment["approximate_number_users"], segment["targetable_status"]) == (
        size, targetable)  # fmt: skip


def test_knobs_out_of_range_or_unknown_are_refused(snap: SnapchatSandbox) -> None:
    with pytest.raises(ValueError, match="match_share"):
        snap.configure(match_share=1.5)
    with pytest.raises(ValueError, match="processing_seconds"):
        SnapchatSandbox(processing_seconds=-1)
    with pytest.raises(TypeError):
        snap.configure(matchshare=0.5)
    assert snap.knobs.match_share == 1.0  # a refused change changes nothing


def create(
    snap: SnapchatSandbox, http: requests.Session, *segments: dict[str, object]
) -> requests.Response:
    url = f"{snap.api_url}/adaccounts/{ACCOUNT}/segments"
    return http.post(url, json={"segments": list(segments)}, headers=bearer(snap, http),
                     timeout=10)  # fmt: skip


def test_the_audience_cap_refuses_the_segment_over_it(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    snap.configure(audience_cap=3)  # SEGMENT is the first
    assert create(snap, http, new_segment(), new_segment()).status_code == 200
    body = assert_snap_error(create(snap, http, new_segment()), 400)
    assert "at most 3" in body["debug_message"]
    assert len(snap.segments()) == 3


def test_lists_are_paged_through_next_link(snap: SnapchatSandbox, http: requests.Session) -> None:
    snap.configure(page_size=2)
    assert create(snap, http, new_segment(), new_segment(), new_segment()).status_code == 200
    url: str | None = f"{snap.api_url}/adaccounts/{ACCOUNT}/segments"
    pages = []
    while url:
        answer = http.get(url, headers=bearer(snap, http), timeout=10).json()
        pages.append([s["segment"]["id"] for s in answer["segments"]])
        url = answer["paging"].get("next_link")
    assert [len(page) for page in pages] == [2, 2]
    assert {i for page in pages for i in page} == set(snap.segments())


def lookalike(**spec: object) -> dict[str, object]:
    creation_spec: dict[str, object] = {"seed_segment_id": SEGMENT, "type": "BALANCE",
                                        "countries": ["US", "GB"]}  # fmt: skip
    creation_spec.update(spec)
    return new_segment(name="Lookalike", source_type="LOOKALIKE", creation_spec=creation_spec)


def test_a_lookalike_of_a_ready_seed_is_pending_then_active_with_its_own_size(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    snap.configure(lookalike_seconds=0.5)
    post_users(snap, http, users_body(digests(1000)))
    created = create(snap, http, lookalike(type="REACH"))
    assert created.status_code == 200, created.text
    pending = created.json()["segments"][0]["segment"]
    assert (pending["source_type"], pending["status"]) == ("LOOKALIKE", "PENDING")
    assert pending["creation_spec"] == {"seed_segment_id": SEGMENT, "type": "REACH",
                                        "countries": ["US", "GB"]}  # fmt: skip
    assert "approximate_number_users" not in pending
    time.sleep(0.6)
    active = get_segment(snap, http, pending["id"])
    assert (active["status"], active["approximate_number_users"]) == ("ACTIVE", 2_000_000)
    seed_upload = post_users(snap, http, users_body(digests(1)))  # the seed still takes users
    assert seed_upload.status_code == 200
    into_lookalike = http.post(users_url(snap, pending["id"]), json=users_body(digests(1)),
                               headers=bearer(snap, http), timeout=10)  # fmt: skip
    assert_snap_error(into_lookalike, 400)


@pytest.mark.parametrize(
    ("segment", "words"),
    [
        (lookalike(type="WIDE"), "type"),
        (lookalike(countries=[]), "countries"),
        (lookalike(countries=["us"]), "countries"),
        (lookalike(countries=["XX"]), "countries"),
        (lookalike(countries="US"), "countries"),
        (lookalike(seed_segment_id="nope"), "no such segment"),
        (lookalike(country="US"), "creation_spec"),
        ({**lookalike(), "retention_in_days": 181}, "retention_in_days"),
        ({k: v for k, v in lookalike().items() if k != "creation_spec"}, "creation_spec"),
    ],
)
def test_lookalikes_are_validated_strictly(
    snap: SnapchatSandbox, http: requests.Session, segment: dict[str, object], words: str
) -> None:
    post_users(snap, http, users_body(digests(1000)))
    body = assert_snap_error(create(snap, http, segment), 400)
    assert words in body["debug_message"]
    assert set(snap.segments()) == {SEGMENT}


def test_a_lookalike_needs_a_ready_seed(snap: SnapchatSandbox, http: requests.Session) -> None:
    snap.configure(processing_seconds=30)
    body = assert_snap_error(create(snap, http, lookalike()), 400)  # never uploaded
    assert "not READY" in body["debug_message"]
    post_users(snap, http, users_body(digests(1000)))
    assert_snap_error(create(snap, http, lookalike()), 400)  # processing
    snap.configure(processing_seconds=0, match_share=0.5)
    assert_snap_error(create(snap, http, lookalike()), 400)  # TOO_FEW_USERS
    snap.configure(match_share=1.0)
    assert create(snap, http, lookalike()).status_code == 200


def test_knobs_can_be_set_over_http(http: requests.Session) -> None:
    with SnapchatSandbox() as snap:
        answer = http.post(f"{snap.base_url}/_sandbox/configure", json={"size_rounding": 100},
                           timeout=10)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert snap.knobs.size_rounding == 100
        bad = http.post(f"{snap.base_url}/_sandbox/configure", json={"size_rounding": -1},
                        timeout=10)  # fmt: skip
        assert bad.status_code == 400


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", ["429", "500", "503", "401"])
def test_status_faults_answer_once_then_the_api_behaves(
    snap: SnapchatSandbox, http: requests.Session, fault: str
) -> None:
    headers = bearer(snap, http)
    snap.inject(fault)

    faulted = http.get(segment_url(snap), headers=headers, timeout=10)
    normal = http.get(segment_url(snap), headers=headers, timeout=10)

    assert_snap_error(faulted, int(fault))
    assert "Retry-After" not in faulted.headers
    assert normal.status_code == 200
    assert [r.fault for r in snap.requests()[-2:]] == [fault, None]


def test_429_can_carry_retry_after(snap: SnapchatSandbox, http: requests.Session) -> None:
    snap.inject("429:retry-after=1")

    response = grant(snap, http)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


def test_faults_come_before_auth_and_match_path_and_method_in_order(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    snap.inject("503", path_contains="/users", method="post", times=2)
    snap.inject("500", path_contains="/users")
    snap.inject("429", path_contains="/segments/")

    other = http.get(segment_url(snap), timeout=10)
    statuses = [http.post(users_url(snap), json={}, timeout=10).status_code for _ in range(4)]

    assert other.status_code == 429
    assert statuses == [503, 503, 500, 401]


def test_slow_fault_delays_then_processes(snap: SnapchatSandbox, http: requests.Session) -> None:
    headers = bearer(snap, http)
    snap.inject("slow:0.3", path_contains="/users")

    started = time.monotonic()
    response = http.post(users_url(snap), json=users_body([GOOD]), headers=headers, timeout=10)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert snap.identifiers(SEGMENT) == {GOOD}
    assert (last(snap).fault, last(snap).status) == ("slow", 200)


def test_drop_fault_closes_the_connection_without_an_answer(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    headers = bearer(snap, http)
    snap.inject("drop", method="POST", path_contains="/users")

    with pytest.raises(requests.ConnectionError):
        http.post(users_url(snap), json=users_body([GOOD]), headers=headers, timeout=10)

    assert snap.identifiers(SEGMENT) == set()
    assert (last(snap).fault, last(snap).status) == ("drop", 0)
    assert post_users(snap, http, users_body([GOOD])).status_code == 200


def test_sub_request_failure_is_a_200_that_records_nothing(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    snap.inject("sub_request_failed")

    response = post_users(snap, http, users_body(digests(3)))

    assert response.status_code == 200
    assert response.json()["request_status"] == "SUCCESS"
    assert response.json()["users"][0]["sub_request_status"] == "FAILED"
    assert snap.identifiers(SEGMENT) == set()
    assert (last(snap).fault, last(snap).identifiers) == ("sub_request_failed", 0)


@pytest.mark.parametrize("fault", ["teapot", "429:retry-after=soon", "slow:-1", "drop:1"])
def test_unknown_faults_are_refused(snap: SnapchatSandbox, fault: str) -> None:
    with pytest.raises(ValueError):
        snap.inject(fault)


def test_chaos_faults_about_the_share_asked_and_repeats_with_the_seed(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    def run() -> list[int]:
        snap.reset()
        snap.chaos(0.3, seed=7, faults=("429", "500", "503"))
        return [grant(snap, http).status_code for _ in range(200)]

    first, second = run(), run()
    faulted = sum(status != 200 for status in first)

    assert first == second
    assert 40 <= faulted <= 80
    assert {s for s in first if s != 200} == {429, 500, 503}
    assert sum(r.fault is not None for r in snap.requests()) == faulted
    snap.chaos(0)
    assert grant(snap, http).status_code == 200


def test_chaos_slow_uses_slow_seconds(snap: SnapchatSandbox, http: requests.Session) -> None:
    snap.chaos(1.0, faults=("slow",), slow_seconds=0.2)

    started = time.monotonic()
    response = grant(snap, http)

    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200


# ---------------------------------------------------------------------------- state


def test_reset_forgets_data_log_faults_and_tokens_but_keeps_setup(
    snap: SnapchatSandbox, http: requests.Session
) -> None:
    old = bearer(snap, http)
    post_users(snap, http, users_body([GOOD]))
    snap.inject("500", times=5)

    snap.reset()

    assert snap.requests() == []
    assert snap.identifiers(SEGMENT) == set()
    assert_snap_error(http.get(segment_url(snap), headers=old, timeout=10), 401)
    assert http.get(segment_url(snap), headers=bearer(snap, http), timeout=10).status_code == 200


def test_log_keeps_arrival_order_and_tokens(snap: SnapchatSandbox, http: requests.Session) -> None:
    headers = bearer(snap, http)
    http.get(segment_url(snap), headers=headers, timeout=10)
    http.get(f"{snap.base_url}/_sandbox/state", timeout=10)

    records = snap.requests()

    assert [r.path for r in records] == ["/login/oauth2/access_token", f"/v1/segments/{SEGMENT}"]
    assert records[1].token == headers["Authorization"].removeprefix("Bearer ")
    assert records[0].at <= records[1].at


def test_stop_closes_open_connections(snap: SnapchatSandbox, http: requests.Session) -> None:
    url = segment_url(snap)
    bearer(snap, http)

    snap.stop()

    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=5)


def test_fingerprint_is_order_independent() -> None:
    assert fingerprint([]) == hashlib.sha256(b"").hexdigest()
    assert fingerprint(["b", "a"]) == hashlib.sha256(b"a\nb").hexdigest()


# ---------------------------------------------------------------------------- out of process


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the sandbox printed nothing"
    return process.stdout.readline()


def test_command_line_prints_urls_and_serves_control_endpoints(http: requests.Session) -> None:
    command = [
        sys.executable,
        "-m",
        "devtools.snapchat_sandbox",
        "--port",
        "0",
        "--client",
        f"{CLIENT_ID}:{SECRET}:{REFRESH}",
        "--audience",
        SEGMENT,
    ]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            urls = json.loads(read_line(process, timeout=10))
            exercise_remote_sandbox(urls, http)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0


def exercise_remote_sandbox(urls: dict[str, str], http: requests.Session) -> None:
    base = urls["base_url"]
    assert urls["api_url"] == f"{base}/v1"
    assert urls["token_url"] == f"{base}/login/oauth2/access_token"
    token = http.post(urls["token_url"], data=refresh_form(), timeout=10).json()["access_token"]
    hashes = digests(10)
    http.post(
        f"{urls['api_url']}/segments/{SEGMENT}/users",
        json=users_body(hashes),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )

    state = http.get(f"{base}/_sandbox/state", timeout=10).json()
    assert state["audiences"][SEGMENT]["EMAIL_SHA256"] == {
        "count": 10,
        "fingerprint": fingerprint(hashes),
    }
    assert state["audiences"][SEGMENT]["PHONE_SHA256"]["fingerprint"] == fingerprint([])

    fault = {"fault": "503", "times": 1, "path_contains": "/v1/", "method": None}
    assert http.post(f"{base}/_sandbox/faults", json=fault, timeout=10).status_code == 200
    assert http.get(f"{urls['api_url']}/segments/{SEGMENT}", timeout=10).status_code == 503
    logged = http.get(f"{base}/_sandbox/requests", timeout=10).json()
    assert [(r["status"], r["fault"]) for r in logged] == [(200, None), (200, None), (503, "503")]
    assert logged[1]["identifiers"] == 10

    assert http.post(f"{base}/_sandbox/reset", timeout=10).status_code == 200
    assert http.get(f"{base}/_sandbox/requests", timeout=10).json() == []
