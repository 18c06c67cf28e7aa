"""Tests for devtools.keyvault_fake, driven mostly through the real SecretClient."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import http_challenge_cache

from devtools.keyvault_fake import (
    CHALLENGE,
    KeyVaultFake,
    StaticTokenCredential,
    secret_client,
)

pytestmark = pytest.mark.integration  # the fake serves HTTPS on loopback

API = {"api-version": "7.5"}
AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
def fake() -> Iterator[KeyVaultFake]:
    with KeyVaultFake() as running:
        yield running


@pytest.fixture
def client(fake: KeyVaultFake) -> Iterator[SecretClient]:
    # No retries: failure-mode tests should fail at once instead of backing off.
    with secret_client(fake, retry_total=0) as sdk_client:
        yield sdk_client


@pytest.fixture
def http(fake: KeyVaultFake) -> Iterator[requests.Session]:
    with requests.Session() as session:
        # Without this, REQUESTS_CA_BUNDLE from the environment would override `verify`
        # (and proxy variables could send loopback traffic elsewhere).
        session.trust_env = False
        session.verify = fake.ca_file
        yield session


def test_get_returns_value_stored_by_test(fake: KeyVaultFake, client: SecretClient) -> None:
    first = fake.set_secret("snapchat-client-id", "id-1")
    second = fake.set_secret("snapchat-client-id", "id-2")

    latest = client.get_secret("snapchat-client-id")
    assert latest.value == "id-2"
    assert latest.name == "snapchat-client-id"
    assert latest.properties.version == second
    assert latest.id == f"{fake.url}/secrets/snapchat-client-id/{second}"
    assert latest.properties.enabled is True
    assert latest.properties.created_on is not None
    assert client.get_secret("snapchat-client-id", first).value == "id-1"


def test_set_secret_through_client_adds_versions(fake: KeyVaultFake, client: SecretClient) -> None:
    fake.set_secret("snapchat-refresh-token", "old")

    stored = client.set_secret("snapchat-refresh-token", "rotated", content_type="text/plain")

    assert stored.value == "rotated"
    assert stored.properties.content_type == "text/plain"
    assert fake.versions("snapchat-refresh-token") == ["old", "rotated"]
    assert fake.value("snapchat-refresh-token") == "rotated"
    listed = [
        p.version for p in client.list_properties_of_secret_versions("snapchat-refresh-token")
    ]
    assert listed[-1] == stored.properties.version
    assert len(listed) == 2


def test_first_request_may_be_a_put(fake: KeyVaultFake, client: SecretClient) -> None:
    # The challenge step sends the PUT without a body; the SDK must resend it afterwards.
    http_challenge_cache.remove_challenge_for_url(fake.url)

    client.set_secret("brand-new", "v1")

    assert fake.versions("brand-new") == ["v1"]
    assert fake.requests() == [
        ("PUT", "/secrets/brand-new", 401),
        ("PUT", "/secrets/brand-new", 200),
    ]


def test_first_request_is_challenged(fake: KeyVaultFake, client: SecretClient) -> None:
    # The SDK caches challenges per host:port for the whole process; forget any entry a
    # previous fake on the same port may have left so the challenge is observable.
    http_challenge_cache.remove_challenge_for_url(fake.url)
    fake.set_secret("a", "1")

    client.get_secret("a")
    client.get_secret("a")

    assert fake.requests() == [
        ("GET", "/secrets/a/", 401),
        ("GET", "/secrets/a/", 200),
        ("GET", "/secrets/a/", 200),
    ]


def test_missing_secret_or_version_raises_not_found(
    fake: KeyVaultFake, client: SecretClient
) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("nope")
    assert missing.value.status_code == 404
    assert missing.value.error is not None
    assert missing.value.error.code == "SecretNotFound"

    fake.set_secret("there", "x")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("there", "0" * 32)


def test_deleted_secret_is_gone(fake: KeyVaultFake, client: SecretClient) -> None:
    fake.set_secret("short-lived", "x")
    fake.delete_secret("short-lived")
    fake.delete_secret("short-lived")  # deleting twice is harmless

    assert fake.value("short-lived") is None
    assert fake.versions("short-lived") == []
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("short-lived")


def test_fail_writes_answers_403(fake: KeyVaultFake, client: SecretClient) -> None:
    fake.set_secret("snapchat-refresh-token", "old")
    fake.fail_writes = True

    with pytest.raises(HttpResponseError) as denied:
        client.set_secret("snapchat-refresh-token", "new")

    assert denied.value.status_code == 403
    assert denied.value.error is not None
    assert denied.value.error.code == "Forbidden"
    assert fake.versions("snapchat-refresh-token") == ["old"]
    assert client.get_secret("snapchat-refresh-token").value == "old"  # reads still work


def test_unavailable_answers_503_then_recovers(fake: KeyVaultFake, client: SecretClient) -> None:
    fake.set_secret("a", "1")
    fake.unavailable = True

    with pytest.raises(HttpResponseError) as outage:
        client.get_secret("a")
    assert outage.value.status_code == 503
    assert all(status == 503 for _, _, status in fake.requests())

    fake.unavailable = False
    assert client.get_secret("a").value == "1"


def test_raw_protocol_details(fake: KeyVaultFake, http: requests.Session) -> None:
    fake.set_secret("Mixed-Case", "v")
    base = f"{fake.url}/secrets"

    challenged = http.get(f"{base}/Mixed-Case", params=API)
    assert challenged.status_code == 401
    assert challenged.headers["WWW-Authenticate"] == CHALLENGE
    assert challenged.content == b""

    empty_token = http.get(f"{base}/Mixed-Case", params=API, headers={"Authorization": "Bearer "})
    assert empty_token.status_code == 401

    no_version = http.get(f"{base}/Mixed-Case", headers=AUTH)
    assert no_version.status_code == 400

    for bad_name in ("under_score", "x" * 128):
        bad = http.get(f"{base}/{bad_name}", params=API, headers=AUTH)
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "BadParameter"
    longest = http.put(f"{base}/{'x' * 127}", params=API, headers=AUTH, json={"value": "ok"})
    assert longest.status_code == 200

    # Names are case-insensitive, as in Azure; the first spelling is kept in ids.
    bundle = http.get(f"{base}/mixed-case/", params=API, headers=AUTH).json()
    assert bundle["value"] == "v"
    assert bundle["id"].startswith(f"{base}/Mixed-Case/")
    assert set(bundle["attributes"]) >= {"enabled", "created", "updated", "recoveryLevel"}
    assert isinstance(bundle["attributes"]["created"], int)

    listing = http.get(f"{base}/Mixed-Case/versions", params=API, headers=AUTH).json()
    assert listing["nextLink"] is None
    assert [item["id"] for item in listing["value"]] == [bundle["id"]]
    assert "value" not in listing["value"][0]

    no_body = http.put(f"{base}/Mixed-Case", params=API, headers=AUTH, data=b"not json")
    assert no_body.status_code == 400
    assert http.delete(f"{base}/Mixed-Case", params=API, headers=AUTH).status_code == 405
    assert fake.versions("Mixed-Case") == ["v"]


def test_secret_values_never_appear_in_logs(
    fake: KeyVaultFake, client: SecretClient, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.set_secret("secret-one", "hunter2-from-test")
    client.set_secret("secret-two", "hunter3-from-client")
    client.get_secret("secret-two")

    captured = capfd.readouterr()
    everything = captured.out + captured.err + repr(fake.requests())
    assert "hunter2" not in everything
    assert "hunter3" not in everything


def test_set_secret_helper_validates_names(fake: KeyVaultFake) -> None:
    with pytest.raises(ValueError, match="invalid"):
        fake.set_secret("no spaces", "x")
    assert fake.value("never-set") is None


def test_plain_http_is_refused(fake: KeyVaultFake, http: requests.Session) -> None:
    with pytest.raises(requests.ConnectionError):
        http.get(fake.url.replace("https://", "http://") + "/secrets/a", params=API)

    # The SDK itself refuses to send a bearer token over plain HTTP.
    plain = SecretClient(
        vault_url=fake.url.replace("https://", "http://"),
        credential=StaticTokenCredential(),
        verify_challenge_resource=False,
        use_env_settings=False,
        retry_total=0,
    )
    with plain, pytest.raises(ServiceRequestError):
        plain.get_secret("a")


def test_client_without_test_ca_is_refused(fake: KeyVaultFake) -> None:
    with requests.Session() as session:
        session.trust_env = False  # default trust store only, no REQUESTS_CA_BUNDLE
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{fake.url}/secrets/a", params=API)

    untrusting = SecretClient(
        vault_url=fake.url,
        credential=StaticTokenCredential(),
        verify_challenge_resource=False,
        use_env_settings=False,
        retry_total=0,
    )
    with untrusting, pytest.raises(ServiceRequestError):
        untrusting.get_secret("a")
    assert fake.requests() == []


def test_stop_removes_ca_file_and_is_idempotent() -> None:
    fake = KeyVaultFake().start()
    ca_file = fake.ca_file
    assert os.path.exists(ca_file)
    assert fake.url.startswith("https://127.0.0.1:")

    fake.stop()
    fake.stop()

    assert not os.path.exists(ca_file)
