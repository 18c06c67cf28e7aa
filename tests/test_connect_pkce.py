"""The console's Connect binds Snapchat's code to its flow with PKCE: a random verifier per
flow, kept only sealed in the flow's Table entity, sent to the token endpoint at the end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox, pkce_challenge
from shared.adapters.connection_status import CONNECT_PARTITION
from tests.conftest import CLIENT_SECRET, App, local_request
from tests.test_definitions_api import call

RFC_7636_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
REFRESH_SECRET = "snapchat-main-refresh-token"


@pytest.fixture
def connecting(app: App, sandbox: SnapchatSandbox, monkeypatch: pytest.MonkeyPatch) -> App:
    app.rebuild(monkeypatch, SNAPCHAT_AUTHORIZE_URL=sandbox.authorize_url)
    return app


def start(connection: str = "main") -> tuple[str, dict[str, str]]:
    """Press Connect Snapchat: the authorize URL, and its query."""
    status, body, _ = call(function_app.start_connect, "POST", f"connections/{connection}/connect")
    assert status == 200, body
    url = body["authorize_url"]
    return url, {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def consent(url: str) -> dict[str, str]:
    """The browser at Snapchat, which approves at once: the query it is sent back with."""
    went = requests.get(url, allow_redirects=False, timeout=10)
    assert went.status_code == 302, went.text
    return {k: v[0] for k, v in parse_qs(urlsplit(went.headers["Location"]).query).items()}


def finish(query: dict[str, str]) -> str:
    """The browser back at the app's callback: where the console is sent (its outcome)."""
    request = local_request("GET", "http://127.0.0.1:7071/api/oauth/snapchat/callback",
                            params=query)  # fmt: skip
    answer = function_app.finish_connect(request)
    assert answer.status_code == 302
    return str(answer.headers["Location"])


def flows(app: App) -> list[dict[str, object]]:
    table = app.runtime.runs.table()
    return [dict(e) for e in table.query_entities(f"PartitionKey eq '{CONNECT_PARTITION}'")]


def test_each_flow_has_its_own_random_verifier_kept_sealed_and_sent_at_the_end(
    connecting: App, sandbox: SnapchatSandbox
) -> None:
    first_url, first = start()
    second_url, second = start()
    assert first["code_challenge"] != second["code_challenge"]
    stored = json.dumps(flows(connecting), default=str)

    for url in (first_url, second_url):
        assert finish(consent(url)).endswith("connect=ok&connection=main")
    redeemed = sandbox.redeemed_pkce()
    assert [challenge for challenge, _ in redeemed] == [first["code_challenge"],
                                                        second["code_challenge"]]  # fmt: skip
    verifiers = [verifier for _, verifier in redeemed]
    assert verifiers[0] != verifiers[1]
    for (challenge, verifier), query in zip(redeemed, (first, second), strict=True):
        assert RFC_7636_VERIFIER.fullmatch(verifier)
        assert pkce_challenge(verifier) == challenge
        assert verifier not in stored  # the table never held it in clear
        # Nor is it what the client secret and the state make (the earlier derivation).
        mac = hmac.new(CLIENT_SECRET.encode(), f"pkce\n{query['state']}".encode(), hashlib.sha256)
        assert verifier != base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
        assert CLIENT_SECRET not in verifier
    assert connecting.runtime.secrets.get(REFRESH_SECRET) == sandbox.current_refresh_token(
        first["client_id"]
    )


def test_a_sealed_verifier_moved_to_another_flow_does_not_open(
    connecting: App, sandbox: SnapchatSandbox
) -> None:
    first_url, first = start()
    second_url, _ = start()
    table = connecting.runtime.runs.table()
    entities = {
        e["RowKey"]: e for e in table.query_entities(f"PartitionKey eq '{CONNECT_PARTITION}'")
    }
    ours = hashlib.sha256(first["state"].encode()).hexdigest()
    [other] = [key for key in entities if key != ours]
    table.update_entity({**entities[ours], "verifier_sealed": entities[other]["verifier_sealed"]})

    assert finish(consent(first_url)).endswith("connect=failed&reason=unknown")
    assert sandbox.redeemed_pkce() == []  # no code was exchanged
    assert finish(consent(second_url)).endswith("connect=ok&connection=main")


def test_without_the_state_key_the_console_cannot_connect_and_says_why(
    connecting: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_EXPORTER_STATE_KEY")
    connecting.rebuild(monkeypatch)
    _, body, _ = call(function_app.start_connect, "POST", "connections/main/connect")
    assert body["error"] == "configuration", body
    assert "exporter-state-key" in body["message"]
    assert "authorize_url" not in body
    assert flows(connecting) == []
