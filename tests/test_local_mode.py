"""Local mode trusts nobody by accident, and what every caller is refused with is clear.

Through the real decorated handlers: the local token (header, the console's cookie, the
printed address), a hosted app with ``LOCAL_PRINCIPAL``, malformed principal headers, the role
checked before a name is looked up, bodies that are not JSON, HSTS, and who may erase an
export's state by deleting it."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from shared import runtime
from shared.adapters import local_token
from shared.core.access import Role, client_principal_header
from shared.core.settings import Settings
from tests.conftest import App, export_definition, local_request
from tests.snapshots import PATH, emails, run, snapshot

LOCAL = "http://127.0.0.1:7071"
AZURE = "https://func-api-abc.azurewebsites.net"
READER = client_principal_header("0d000000-0000-4000-8000-000000000004", "Rita", [Role.READER])
NO_ROLE = client_principal_header("0e000000-0000-4000-8000-000000000005", "Nils", [])
OPERATOR_ID = "0b000000-0000-4000-8000-000000000002"
OPERATOR = client_principal_header(OPERATOR_ID, "Omar", [Role.OPERATOR])


def status(handler: object, method: str, path: str, **headers: str) -> tuple[int, dict[str, str]]:
    """A request without the local token unless ``headers`` carries one."""
    name = path.split("/")[1] if "/" in path else ""
    request = func.HttpRequest(method, f"{LOCAL}/api/{path}", body=b"", headers=headers,
                               route_params={"name": name} if name else {})  # fmt: skip
    response: func.HttpResponse = handler(request)  # type: ignore[operator]
    return response.status_code, dict(response.headers)


@pytest.fixture
def header_mode(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """Local mode that takes the caller from the platform's header (``LOCAL_PRINCIPAL=header``):
    the mode in which a forged header was enough before the local token."""
    app.rebuild(monkeypatch, LOCAL_PRINCIPAL="header")
    yield app
    runtime.install(app.runtime)


# -- the local token ------------------------------------------------------------------------


def test_local_mode_refuses_a_request_without_the_local_token(header_mode: App) -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL": client_principal_header("x", "anyone", [Role.ADMIN])}
    assert status(function_app.list_exports, "GET", "exports", **forged)[0] == 401
    wrong = {**forged, "X-Local-Token": "not-the-token-" * 4}
    assert status(function_app.list_exports, "GET", "exports", **wrong)[0] == 401
    token = local_token.read_or_create(header_mode.runtime.settings.local_token_file)
    assert status(function_app.list_exports, "GET", "exports", **forged,
                  **{"X-Local-Token": token})[0] == 200  # fmt: skip


def test_local_mode_with_a_default_principal_needs_the_token_too(app: App) -> None:
    """``LOCAL_PRINCIPAL=admin``: a request from a host listening beyond loopback, or a page
    of another site, is nobody without the token."""
    assert status(function_app.list_exports, "GET", "exports")[0] == 401
    body = json.loads(
        function_app.me(func.HttpRequest("GET", f"{LOCAL}/api/me", body=b"")).get_body()
    )
    assert "local token" in body["message"]
    assert function_app.me(local_request("GET", f"{LOCAL}/api/me")).status_code == 200


def test_the_token_is_made_once_readable_by_its_owner_only(app: App) -> None:
    path = app.runtime.settings.local_token_file
    path.unlink(missing_ok=True)
    first = local_token.read_or_create(path)
    assert local_token.read_or_create(path) == first
    assert len(first) >= local_token.TOKEN_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(Exception, match="readable by others"):
        local_token.read_or_create(path)


def test_the_printed_console_address_becomes_a_cookie_that_the_api_takes(app: App) -> None:
    token = local_token.read_or_create(app.runtime.settings.local_token_file)
    page = function_app.console(func.HttpRequest(
        "GET", f"{LOCAL}/api/console/?local_token={token}", body=b"", route_params={"path": ""},
        params={"local_token": token}))  # fmt: skip
    assert page.status_code == 302
    assert page.headers["Location"] == "/api/console/"  # the token leaves the address
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    value = cookie.split(";", 1)[0]
    assert status(function_app.list_exports, "GET", "exports", Cookie=value)[0] == 200
    # A wrong token in the address is refused like any other request without it.
    wrong = function_app.console(func.HttpRequest(
        "GET", f"{LOCAL}/api/console/?local_token=wrong", body=b"", route_params={"path": ""}))  # fmt: skip
    assert wrong.status_code == 401


def test_the_token_is_not_taken_from_the_address_of_an_api_call(app: App) -> None:
    token = local_token.read_or_create(app.runtime.settings.local_token_file)
    request = func.HttpRequest("GET", f"{LOCAL}/api/exports?local_token={token}", body=b"",
                               params={"local_token": token})  # fmt: skip
    assert function_app.list_exports(request).status_code == 401


# -- hosted, malformed, and who may look up what ---------------------------------------------


def test_a_hosted_app_with_local_principal_answers_503_with_the_reason(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.install(None)  # built from the environment by the next request, as in Azure
    try:
        headers = {"X-MS-CLIENT-PRINCIPAL": READER}
        request = func.HttpRequest("GET", f"{AZURE}/api/exports", body=b"", headers=headers)
        response = function_app.list_exports(request)
        assert response.status_code == 503
        body = json.loads(response.get_body())
        assert body["error"] == "configuration"
        assert any("LOCAL_PRINCIPAL" in p for p in body["problems"])
    finally:
        runtime.install(app.runtime)


def _b64(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
MALFORMED = {
    "typ is a list": _b64({"claims": [{"typ": [OID], "val": "0a000000"}]}),
    "val is a number": _b64({"claims": [{"typ": OID, "val": 7}, {"typ": "roles", "val": "x"}]}),
    "role_typ is a list": _b64({"claims": [{"typ": OID, "val": "a"}], "role_typ": ["roles"]}),
    "claims is an object": _b64({"claims": {"typ": OID, "val": "a"}}),
    "hundreds of kilobytes": _b64({"claims": [{"typ": OID, "val": "a" * 300_000}]}),
    "not base64 json": "%%%not-base64%%%",
    "deeply nested": _b64({"claims": [{"typ": OID, "val": "a"}], "x": [[[[]]]]})[:-4]
    + "W1tb" * 5000,
}


@pytest.mark.parametrize("shape", sorted(MALFORMED))
def test_a_malformed_principal_header_is_401_never_500(
    app: App, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    monkeypatch.delenv("LOCAL_PRINCIPAL")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    runtime.install(runtime.build(Settings.from_env()))
    try:
        request = func.HttpRequest("GET", f"{AZURE}/api/me", body=b"",
                                   headers={"X-MS-CLIENT-PRINCIPAL": MALFORMED[shape]})  # fmt: skip
        response = function_app.me(request)
        assert response.status_code == 401, response.get_body()
        assert json.loads(response.get_body())["error"] == "unauthenticated"
    finally:
        runtime.install(app.runtime)


@pytest.mark.parametrize(
    ("handler", "method", "path"),
    [
        (function_app.start_run, "POST", "exports/no-such-export/runs"),
        (function_app.put_export, "PUT", "exports/no-such-export"),
        (function_app.delete_export, "DELETE", "exports/no-such-export"),
        (function_app.purge_export, "POST", "exports/no-such-export/purge"),
        (function_app.start_connect, "POST", "connections/no-such-connection/connect"),
        (function_app.put_connection, "PUT", "connections/no-such-connection"),
    ],
)
def test_a_caller_without_the_role_cannot_probe_which_names_exist(
    header_mode: App, handler: object, method: str, path: str
) -> None:
    """A Reader hears 403 for a name that does not exist as for one that does."""
    token = local_token.read_or_create(header_mode.runtime.settings.local_token_file)
    for who in (READER, NO_ROLE):
        code, _ = status(handler, method, path, **{"X-MS-CLIENT-PRINCIPAL": who,
                                                   "X-Local-Token": token,
                                                   "If-Match": "*"})  # fmt: skip
        assert code == 403, (path, code)


def test_a_role_less_caller_learns_who_they_are_and_nothing_else(header_mode: App) -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": NO_ROLE}
    me = function_app.me(local_request("GET", f"{LOCAL}/api/me", headers=headers))
    assert me.status_code == 200
    assert json.loads(me.get_body())["roles"] == []
    listing = function_app.list_exports(local_request("GET", f"{LOCAL}/api/exports",
                                                      headers=headers))  # fmt: skip
    assert listing.status_code == 403


# -- bodies and headers ----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_sent_as_json_is_415_and_nothing_is_stored(
    app: App, content_type: str
) -> None:
    document = json.dumps(export_definition("typed", app.container, PATH)).encode()
    request = local_request("PUT", f"{LOCAL}/api/exports/typed", body=document,
                            route_params={"name": "typed"},
                            headers={"Content-Type": content_type})  # fmt: skip
    response = function_app.put_export(request)
    assert response.status_code == 415, response.get_body()
    assert json.loads(response.get_body())["error"] == "unsupported_media_type"
    assert app.runtime.definition_store.get("export", "typed") is None
    run_request = local_request("POST", f"{LOCAL}/api/exports/high-value/runs",
                                body=b'{"dry_run": true}', route_params={"name": "high-value"},
                                headers={"Content-Type": content_type})  # fmt: skip
    assert function_app.start_run(run_request).status_code == 415
    assert app.runtime.runs.recent("high-value") == []


def test_json_with_a_charset_is_json(app: App) -> None:
    document = json.dumps(export_definition("typed", app.container, PATH)).encode()
    request = local_request("PUT", f"{LOCAL}/api/exports/typed", body=document,
                            route_params={"name": "typed"},
                            headers={"Content-Type": "application/json; charset=utf-8"})  # fmt: skip
    assert function_app.put_export(request).status_code == 201


def test_every_answer_carries_hsts(app: App) -> None:
    api = function_app.list_exports(local_request("GET", f"{LOCAL}/api/exports"))
    page = function_app.console(local_request("GET", f"{LOCAL}/api/console/",
                                              route_params={"path": ""}))  # fmt: skip
    refused = function_app.list_exports(func.HttpRequest("GET", f"{LOCAL}/api/exports", body=b""))
    for response in (api, page, refused):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


# -- deleting an export: erasing its state is the purge right --------------------------------


@pytest.mark.integration
def test_an_operators_delete_keeps_the_state_and_an_admins_erases_it(
    header_mode: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = header_mode
    store = app.runtime.definition_store
    main = store.get("connection", "main")
    assert main is not None
    store.put("connection", "main", {"name": "main", "allowed": [OPERATOR_ID]}, etag=main.etag,
              by="test")  # fmt: skip
    for name in ("by-operator", "by-admin"):
        store.put("export", name, export_definition(name, app.container, PATH, mode="mirror"),
                  etag=None, by="test")  # fmt: skip
    app.runtime.forget_definitions()
    snapshot(blob_service, app.container, emails(range(30)), day=1)
    for name in ("by-operator", "by-admin"):
        record = run(app, name)
        assert record.status == "succeeded", record.error
    state = blob_service.get_container_client(app.runtime.settings.state_container)
    admin = client_principal_header("0a000000-0000-4000-8000-000000000001", "Ada", [Role.ADMIN])
    for name, who in (("by-operator", OPERATOR), ("by-admin", admin)):
        request = local_request("DELETE", f"{LOCAL}/api/exports/{name}", route_params={"name": name},
                                headers={"X-MS-CLIENT-PRINCIPAL": who, "If-Match": "*",
                                         "X-Requested-With": "XMLHttpRequest"})  # fmt: skip
        response = function_app.delete_export(request)
        assert response.status_code == 200, response.get_body()
        answer = json.loads(response.get_body())
        left = [b.name for b in state.list_blobs(name_starts_with=f"{name}/")]
        if name == "by-operator":
            assert answer["deleted_state_files"] == 0
            assert "kept" in answer["state"]
            assert left  # still there, for an Admin's purge or the timer
        else:
            assert answer["deleted_state_files"] >= 1
            assert left == []
