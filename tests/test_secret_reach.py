"""No definition, route or role can make the app read a secret outside a connection's own
three: their names follow from the connection's name, a document that names others is
refused, and no answer carries a secret value (the connection's own client ID, inside its
authorize URL, is the one public value)."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from shared.core import definitions
from shared.core.definitions import Connection
from shared.core.errors import InvalidExport
from shared.entry.cli import main
from tests.conftest import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, STATE_KEY, App
from tests.leaks import assert_no_leaks
from tests.test_definitions_api import call
from tests.test_sign_in_and_roles import CALLERS, request

STATE_SECRETS = ("exporter-state-key", "exporter-state-key-previous")
LEGACY_SECRET_FIELDS = ("client_id_secret", "client_secret_secret", "refresh_token_secret")
# Values of secrets no Connect may ever show: every secret but main's client ID.
OTHERS = {
    "SECRET_SNAPCHAT_OTHER_CLIENT_ID": "other-client-id-5b6c7d",
    "SECRET_SNAPCHAT_OTHER_CLIENT_SECRET": "other-client-secret-8e9f0a",
    "SECRET_SNAPCHAT_OTHER_REFRESH_TOKEN": "other-refresh-token-1b2c3d",
    "SECRET_EXPORTER_STATE_KEY_PREVIOUS": "7c" * 32,
}
FORBIDDEN = [CLIENT_SECRET, REFRESH_TOKEN, STATE_KEY, *OTHERS.values()]


def fixed(name: str) -> list[str]:
    return [f"snapchat-{name}-{suffix}" for suffix in ("client-id", "client-secret",
                                                        "refresh-token")]  # fmt: skip


# -- the names (fast) -----------------------------------------------------------------------


def test_secret_names_follow_from_the_name_never_collide_and_never_reach_the_state_key() -> None:
    words = ["a", "client", "id", "secret", "refresh", "token", "exporter", "state", "key"]
    names = ["-".join(p) for n in (1, 2, 3) for p in itertools.product(words, repeat=n)]
    names += ["x" * 63]  # the longest name
    secret_names = [s for name in names for s in Connection(name).secret_names]
    assert len(set(secret_names)) == 3 * len(names)  # no two connections share a secret
    assert all(s.startswith("snapchat-") for s in secret_names)
    assert not any(s.startswith(STATE_SECRETS[0]) for s in secret_names)
    assert Connection("main").secret_names == (
        "snapchat-main-client-id", "snapchat-main-client-secret", "snapchat-main-refresh-token")  # fmt: skip


def document(connection: dict[str, Any]) -> dict[str, Any]:
    export = {"name": "high-value", "connection": connection["name"], "audience_id": "aud-1",
              "source": {"container": "ci-data", "path": "CI/BlobExport/HighValue"},
              "columns": {"email": "EMail"}, "data_transfer_acknowledged": True}  # fmt: skip
    return {"connections": [connection, {"name": "other"}], "exports": [export]}


@pytest.mark.parametrize("field", LEGACY_SECRET_FIELDS)
@pytest.mark.parametrize(
    "target", ["exporter-state-key", "snapchat-other-refresh-token", "snapchat-main-x"]
)
def test_a_connection_naming_a_secret_is_set_aside_with_the_field_named(
    field: str, target: str
) -> None:
    loaded = definitions.parse(document({"name": "main", field: target}))
    assert [c.name for c in loaded.connections] == ["other"]
    assert [b.name for b in loaded.broken_connections] == ["main"]
    assert loaded.connection_problems("main") == [
        f"connection 'main': {field}: secret names are fixed: snapchat-main-client-id, "
        "snapchat-main-client-secret, snapchat-main-refresh-token; remove this field"
    ]
    assert loaded.export("high-value") is None  # its export does not run either
    with pytest.raises(InvalidExport):
        loaded.require_connection("main")


def test_a_field_naming_the_connections_own_fixed_secret_still_loads() -> None:
    """An exported document of an older version, which wrote the names out, re-imports."""
    own = dict(zip(LEGACY_SECRET_FIELDS, fixed("main"), strict=True))
    loaded = definitions.parse(document({"name": "main", **own}))
    assert list(loaded.connection("main").secret_names) == fixed("main")
    assert loaded.problems == []


# -- creating and importing (Azurite) ----------------------------------------------------


TARGETS = ["exporter-state-key", "exporter-state-key-previous", "snapchat-main-refresh-token",
           "snapchat-main-client-secret"]  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
def test_creating_a_connection_that_names_a_secret_is_refused_and_stores_nothing(
    app: App, target: str
) -> None:
    body = {"display_name": "Brand B", "client_id_secret": target}
    status, answer, _ = call(function_app.put_connection, "PUT", "connections/brand-b", body)
    assert (status, answer["error"]) == (400, "invalid_definition"), answer
    assert answer["fields"] == [{"field": "client_id_secret", "message": (
        "secret names are fixed: snapchat-brand-b-client-id, snapchat-brand-b-client-secret, "
        "snapchat-brand-b-refresh-token; remove this field")}]  # fmt: skip
    store = app.runtime.definition_store
    assert store.get("connection", "brand-b") is None
    assert store.history("connection", "brand-b") == []

    # Nor can an existing connection be changed to name another's.
    main = store.get("connection", "main")
    assert main is not None
    status, answer, _ = call(function_app.put_connection, "PUT", "connections/main",
                             {"refresh_token_secret": "snapchat-brand-b-refresh-token"},
                             **{"If-Match": main.etag})  # fmt: skip
    assert status == 400, answer
    assert store.get("connection", "main") == main


def test_importing_a_connection_that_names_a_secret_is_refused_and_stores_nothing(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "exports.json"
    file.write_text(json.dumps({"connections": [
        {"name": "main"},
        {"name": "brand-b", "client_secret_secret": "exporter-state-key"},
        {"name": "brand-c"},
    ], "exports": []}))  # fmt: skip
    store = app.runtime.definition_store
    before = store.document()
    assert main(["definitions", "import", str(file)]) == 2
    refused = json.loads(capsys.readouterr().err)
    assert refused["problems"] == [
        "connection 'brand-b': client_secret_secret: secret names are fixed: "
        "snapchat-brand-b-client-id, snapchat-brand-b-client-secret, "
        "snapchat-brand-b-refresh-token; remove this field"
    ]
    assert store.document() == before  # not even brand-c


# -- connecting, by every caller -----------------------------------------------------------


def stored_unchecked(app: App, name: str, document: dict[str, Any]) -> None:
    """A connection an older version stored, with secret names of its own (written as such
    a version would have, past today's checks)."""
    app.runtime.definition_store.put("connection", name, {"name": name, **document}, etag=None,
                                     by="an older version")  # fmt: skip
    app.runtime.forget_definitions()


LEGACY = {
    "steals-state-key": {"client_id_secret": "exporter-state-key",
                         "client_secret_secret": "snapchat-main-client-secret"},
    "steals-peer": {"client_id_secret": "snapchat-other-refresh-token",
                    "client_secret_secret": "snapchat-other-client-secret"},
    "steals-token": {"client_id_secret": "snapchat-main-refresh-token",
                     "client_secret_secret": "snapchat-main-client-secret"},
}  # fmt: skip


@pytest.fixture
def seeded(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    """Distinct values in every secret, connections stored by an older version that point
    at others' secrets, and callers known by the platform's header."""
    app.rebuild(monkeypatch, LOCAL_PRINCIPAL="header", **OTHERS)
    for name, fields in LEGACY.items():
        stored_unchecked(app, name, fields)
    return app


def test_no_caller_gets_any_secret_but_the_connections_own_client_id(
    seeded: App, sandbox: SnapchatSandbox
) -> None:
    outcomes: dict[tuple[str, str], int] = {}
    for connection in ["main", *LEGACY, "nope"]:
        route = (function_app.start_connect, "POST", f"connections/{connection}/connect", b"", {})
        for caller_name, caller in CALLERS.items():
            answer = request(route, caller, "http://127.0.0.1:7071")
            text = answer.get_body().decode()
            assert_no_leaks(f"Connect of {connection} as {caller_name}", text, FORBIDDEN)
            if connection != "main":
                assert CLIENT_ID not in text
            outcomes[connection, caller_name] = answer.status_code
            if (connection, caller_name) == ("main", "admin"):
                url = json.loads(text)["authorize_url"]
                assert parse_qs(urlsplit(url).query)["client_id"] == [CLIENT_ID]
    admin = {connection: outcomes[connection, "admin"] for connection in ["main", *LEGACY, "nope"]}
    assert admin == {"main": 200, **dict.fromkeys(LEGACY, 400), "nope": 404}
    others = {status for (_, who), status in outcomes.items() if who != "admin"}
    assert others <= {401, 403}


def test_a_stored_connection_naming_a_secret_is_listed_with_its_problem(seeded: App) -> None:
    route = (function_app.list_connections, "GET", "connections", b"", {})
    answer = request(route, CALLERS["admin"], "http://127.0.0.1:7071")
    assert answer.status_code == 200
    text = answer.get_body().decode()
    assert_no_leaks("the connections", text, [*FORBIDDEN, CLIENT_ID])
    listed = {c["name"]: c for c in json.loads(text)["connections"]}
    legacy = listed["steals-state-key"]
    assert legacy["secrets"] == fixed("steals-state-key")
    assert [p.split(": ")[1] for p in legacy["problems"]] == [
        "client_id_secret", "client_secret_secret"]  # fmt: skip
    assert listed["main"]["problems"] == []

    route = (function_app.start_connect, "POST", "connections/steals-peer/connect", b"", {})
    refused = json.loads(request(route, CALLERS["admin"], "http://127.0.0.1:7071").get_body())
    assert refused["error"] == "invalid_definition"
    assert "secret names are fixed" in refused["message"]


def test_the_command_line_connect_writes_only_the_connections_own_secrets(
    seeded: App,
    sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``python -m shared connect`` for a connection an older version stored with the state
    key as its client-ID secret: the state key stays; the fixed names get the values."""
    # The settings name the authorize page (a rebuild re-syncs the definitions: first).
    seeded.rebuild(monkeypatch, SNAPCHAT_AUTHORIZE_URL=sandbox.authorize_url)
    stored_unchecked(seeded, "brand-b", {"client_id_secret": "exporter-state-key"})
    shown: list[str] = []

    class Terminal(io.StringIO):
        """The operator: types the client secret, then pastes where the browser went."""

        def readline(self, size: int | None = -1) -> str:
            if not shown:
                shown.append(capsys.readouterr().out)
                return CLIENT_SECRET + "\n"
            printed = capsys.readouterr().out
            shown.append(printed)
            url = next(w for w in printed.split() if w.startswith(sandbox.authorize_url))
            went = requests.get(url, allow_redirects=False, timeout=10)
            return went.headers["Location"] + "\n"

    monkeypatch.setattr("sys.stdin", Terminal())
    code = main(["connect", "brand-b", "--client-id", CLIENT_ID, "--paste",
                 "--redirect-uri", "https://app.example/callback"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    output = "".join(shown) + captured.out + captured.err
    assert_no_leaks("the connect command's output", output, FORBIDDEN)
    secrets = seeded.runtime.secrets
    assert secrets.get("exporter-state-key") == STATE_KEY
    assert secrets.get("snapchat-brand-b-client-id") == CLIENT_ID
    assert secrets.get("snapchat-brand-b-client-secret") == CLIENT_SECRET
    assert json.loads(captured.out)["stored_secrets"] == fixed("brand-b")


def test_connect_of_a_connection_that_does_not_exist_is_404(app: App) -> None:
    status, body, _ = call(function_app.start_connect, "POST", "connections/nope/connect")
    assert (status, body["error"], body["message"]) == (
        404, "not_found", "no connection named 'nope'")  # fmt: skip
