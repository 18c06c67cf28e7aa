"""Sign-in and roles: every route, for every kind of caller, in local and in Azure mode.

The callers send exactly the header the platform's sign-in sends (``X-MS-CLIENT-PRINCIPAL``,
Base64 JSON claims). "Allowed" means the app did not refuse the caller (no 401, 403 or 503):
what the route then answers (200, 202, 404, 409, 412) is the route's business."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from shared import runtime
from shared.core.access import Role, client_principal_header
from shared.core.settings import Settings
from tests.conftest import App, local_request
from tests.snapshots import emails, snapshot

ADMIN = ("0a000000-0000-4000-8000-000000000001", "Ada Admin", [Role.ADMIN])
OPERATOR = ("0b000000-0000-4000-8000-000000000002", "Omar Operator", [Role.OPERATOR])
STRANGER = ("0c000000-0000-4000-8000-000000000003", "Olga Other-Team", [Role.OPERATOR])
READER = ("0d000000-0000-4000-8000-000000000004", "Rita Reader", [Role.READER])
NO_ROLE = ("0e000000-0000-4000-8000-000000000005", "Nils No-Role", [])
CALLERS = {"admin": ADMIN, "operator": OPERATOR, "stranger": STRANGER, "reader": READER,
           "no role": NO_ROLE, "nobody": None}  # fmt: skip

Route = tuple[Callable[[func.HttpRequest], func.HttpResponse], str, str, bytes, dict[str, str]]
STALE = {"If-Match": "W/\"datetime'2000-01-01T00%3A00%3A00Z'\""}
EXPORT = json.dumps({"enabled": False}).encode()
PREVIEW = json.dumps({"source": {"container": "{container}", "path": "CustomerInsights_t1/x/Y"},
                      "audience_id": "aud-1", "connection": "main", "columns": {"email": "EMail"},
                      "data_transfer_acknowledged": True}).encode()  # fmt: skip
ROUTES: dict[str, Route] = {
    "GET exports": (function_app.list_exports, "GET", "exports", b"", {}),
    "GET exports/{name}": (function_app.get_export, "GET", "exports/high-value", b"", {}),
    "GET exports/{name}/history": (function_app.export_history, "GET", "exports/high-value/history", b"", {}),
    "GET exports/{name}/runs": (function_app.list_runs, "GET", "exports/high-value/runs", b"", {}),
    "GET exports/{name}/runs/{id}": (function_app.get_run, "GET", "exports/high-value/runs/20260101T000000000Z-aaaaaa", b"", {}),
    "POST exports/{name}/runs": (function_app.start_run, "POST", "exports/high-value/runs", b"", {}),
    "PUT exports/{name}": (function_app.put_export, "PUT", "exports/high-value", EXPORT, STALE),
    "DELETE exports/{name}": (function_app.delete_export, "DELETE", "exports/high-value", b"", STALE),
    "GET connections": (function_app.list_connections, "GET", "connections", b"", {}),
    "GET connections/{name}": (function_app.get_connection, "GET", "connections/main", b"", {}),
    "GET connections/{name}/history": (function_app.connection_history, "GET", "connections/main/history", b"", {}),
    "PUT connections/{name}": (function_app.put_connection, "PUT", "connections/main", b"{}", STALE),
    "DELETE connections/{name}": (function_app.delete_connection, "DELETE", "connections/main", b"", STALE),
    "GET me": (function_app.me, "GET", "me", b"", {}),
    "POST connections/{name}/connect": (function_app.start_connect, "POST", "connections/main/connect", b"", {}),
    "POST exports/{name}/purge": (function_app.purge_export, "POST", "exports/high-value/purge", b"", {}),
    "GET segments": (function_app.list_segments, "GET", "segments?container={container}", b"", {}),
    "POST preview": (function_app.preview_export, "POST", "preview", PREVIEW, {}),
    "GET console": (function_app.console, "GET", "console/", b"", {}),
    "GET oauth/snapchat/callback": (function_app.finish_connect, "GET", "oauth/snapchat/callback", b"", {}),
}  # fmt: skip
READ = {"admin", "operator", "stranger", "reader"}
WHO_MAY = {
    **{route: READ for route in ROUTES if route.startswith("GET")},
    "GET me": {*READ, "no role"},
    "GET console": {*READ, "no role"},  # the pages; what they show comes from the API
    # Anyone signed in reaches the callback; only the one who started a flow can finish it
    # (tests/test_console.py), and starting one takes an admin.
    "GET oauth/snapchat/callback": {*READ, "no role"},
    "POST connections/{name}/connect": {"admin"},
    "POST exports/{name}/purge": {"admin"},
    "POST exports/{name}/runs": {"admin", "operator"},
    "PUT exports/{name}": {"admin", "operator"},
    "DELETE exports/{name}": {"admin", "operator"},
    # Choosing instead of typing: who creates exports, in containers their exports read.
    "GET segments": {"admin", "operator"},
    "POST preview": {"admin", "operator"},
    "PUT connections/{name}": {"admin"},
    "DELETE connections/{name}": {"admin"},
}


def request(
    route: Route, caller: tuple[str, str, list[Role]] | None, host: str
) -> func.HttpResponse:
    handler, method, path, body, extra = route
    headers = dict(extra)
    if caller is not None:
        object_id, name, roles = caller
        headers["X-MS-CLIENT-PRINCIPAL"] = client_principal_header(object_id, name, roles)
        headers["X-MS-CLIENT-PRINCIPAL-ID"] = object_id
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = name
        headers["Authorization"] = "Bearer token-the-platform-checked"  # as a script's call
    export = runtime.current().definitions.export("high-value")
    container = export.container if export else "ci-none"  # the container the export reads
    path, body = (
        path.replace("{container}", container),
        body.replace(b"{container}", container.encode()),
    )
    path, _, query = path.partition("?")
    parts = path.split("/")
    params = {"name": parts[1]} if len(parts) > 1 else {}
    if len(parts) > 3:
        params["run_id"] = parts[3]
    found = dict(pair.split("=", 1) for pair in query.split("&") if pair)
    return handler(local_request(method, f"{host}/api/{path}", route_params=params,
                                    body=body, headers=headers, params=found))  # fmt: skip


@pytest.fixture
def signed_in(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """The app with connection "main" usable by OPERATOR; ``mode("local" | "azure")``."""
    app.rebuild(monkeypatch, LOCAL_PRINCIPAL="header")  # local mode: the header, or nobody
    store = app.runtime.definition_store
    main = store.get("connection", "main")
    assert main is not None
    store.put("connection", "main", {"name": "main", "allowed": [OPERATOR[0]]}, etag=main.etag,
              by="test")  # fmt: skip

    def mode(name: str) -> None:
        if name == "azure":
            monkeypatch.delenv("LOCAL_PRINCIPAL")
            monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
            monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
        runtime.install(runtime.build(Settings.from_env()))

    yield mode
    runtime.install(app.runtime)


HOSTS = {"local": "http://127.0.0.1:7071", "azure": "https://func-api-abc.azurewebsites.net"}


@pytest.mark.parametrize("mode", ["local", "azure"])
def test_every_route_for_every_caller(signed_in: Callable[[str], None], mode: str) -> None:
    signed_in(mode)
    outcomes: dict[tuple[str, str], int] = {}
    for route_name, route in ROUTES.items():
        for caller_name, caller in CALLERS.items():
            outcomes[route_name, caller_name] = request(route, caller, HOSTS[mode]).status_code
    wrong = []
    for (route_name, caller_name), status in outcomes.items():
        if caller_name == "nobody":
            expected_refusal: int | None = 401
        elif caller_name in WHO_MAY[route_name]:
            expected_refusal = None
        else:
            expected_refusal = 403
        refused = status if status in (401, 403, 503) else None
        if refused != expected_refusal:
            wrong.append(f"{route_name} as {caller_name}: {status}, expected "
                         f"{expected_refusal or 'not refused'}")  # fmt: skip
    assert wrong == []


def test_a_refusal_says_which_role_or_connection_is_missing(
    signed_in: Callable[[str], None],
) -> None:
    signed_in("azure")
    host = HOSTS["azure"]
    reader = json.loads(request(ROUTES["POST exports/{name}/runs"], READER, host).get_body())
    assert reader["error"] == "forbidden"
    assert "needs the app role Exporter.Operator or Exporter.Admin" in reader["message"]
    stranger = json.loads(request(ROUTES["POST exports/{name}/runs"], STRANGER, host).get_body())
    assert "may not use connection 'main'" in stranger["message"]
    me = json.loads(request(ROUTES["GET me"], OPERATOR, host).get_body())
    assert me == {"object_id": OPERATOR[0], "name": "Omar Operator",
                  "roles": ["Exporter.Operator"], "connections": ["main"]}  # fmt: skip
    stranger_me = json.loads(request(ROUTES["GET me"], STRANGER, host).get_body())
    assert stranger_me["connections"] == []


def test_in_azure_every_call_is_refused_while_the_platforms_sign_in_is_off(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCAL_PRINCIPAL")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    runtime.install(runtime.build(Settings.from_env()))
    try:
        for route in ROUTES.values():  # even with a header: it could be forged then
            response = request(route, ADMIN, HOSTS["azure"])
            assert response.status_code == 503
            if response.mimetype == "application/json":
                assert json.loads(response.get_body())["error"] == "sign_in_not_enabled"
            else:  # a page (the console, the Connect callback): the same refusal, as text
                assert b"platform's sign-in" in response.get_body()
    finally:
        runtime.install(app.runtime)


@pytest.mark.parametrize("marker", ["WEBSITE_SITE_NAME", "CONTAINER_APP_NAME",
                                    "KUBERNETES_SERVICE_HOST"])  # fmt: skip
def test_any_hosting_platform_means_only_the_platforms_sign_in_counts(
    app: App, monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    monkeypatch.delenv("LOCAL_PRINCIPAL")
    monkeypatch.setenv(marker, "somewhere")
    runtime.install(runtime.build(Settings.from_env()))
    try:
        response = request(ROUTES["GET exports"], ADMIN, HOSTS["local"])  # even "on loopback"
        assert response.status_code == 503
    finally:
        runtime.install(app.runtime)


def test_without_local_mode_a_developer_machine_refuses_every_call(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCAL_PRINCIPAL")
    runtime.install(runtime.build(Settings.from_env()))
    try:
        response = request(ROUTES["GET exports"], ADMIN, HOSTS["local"])
        assert response.status_code == 503
        assert "set LOCAL_PRINCIPAL" in json.loads(response.get_body())["message"]
    finally:
        runtime.install(app.runtime)


def test_local_mode_answers_loopback_only_and_is_refused_in_azure(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = request(ROUTES["GET exports"], None, "https://app.example.com")
    assert elsewhere.status_code == 401  # LOCAL_PRINCIPAL is set, but not for this host
    assert "loopback only" in json.loads(elsewhere.get_body())["message"]
    assert request(ROUTES["GET exports"], None, HOSTS["local"]).status_code == 200
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
    with pytest.raises(Exception, match="LOCAL_PRINCIPAL: for local development only"):
        Settings.from_env()


def test_who_did_what_is_recorded(
    signed_in: Callable[[str], None], app: App, blob_service: BlobServiceClient
) -> None:
    signed_in("azure")
    host = HOSTS["azure"]
    current = json.loads(request(ROUTES["GET exports/{name}"], READER, host).get_body())
    document = json.dumps({**current["definition"], "enabled": True}).encode()
    put = (function_app.put_export, "PUT", "exports/high-value", document, {"If-Match": "*"})
    changed = request(put, OPERATOR, host)
    assert changed.status_code == 200, changed.get_body()
    history = json.loads(request(ROUTES["GET exports/{name}/history"], READER, host).get_body())
    assert history["versions"][0]["changed_by"] == f"{OPERATOR[0]} (Omar Operator)"
    snapshot(blob_service, app.container, emails(range(3)), day=1)
    started = request(ROUTES["POST exports/{name}/runs"], OPERATOR, host)
    assert started.status_code == 202, started.get_body()
    run = json.loads(started.get_body())["run"]
    assert run["requested_by"] == f"{OPERATOR[0]} (Omar Operator)"
    assert "@" not in json.dumps(run)  # names and counts only, never an identifier


def test_an_operator_cannot_move_an_export_onto_a_connection_they_may_not_use(
    signed_in: Callable[[str], None], app: App
) -> None:
    signed_in("azure")
    host = HOSTS["azure"]
    current = json.loads(request(ROUTES["GET exports/{name}"], READER, host).get_body())
    # Another instance creates a connection now: this one's cached definitions lack it.
    app.runtime.definition_store.put("connection", "other", {"name": "other"}, etag=None,
                                     by="test")  # fmt: skip

    def put_as(caller: Any, connection: object, name: str = "high-value") -> func.HttpResponse:
        document = json.dumps({**current["definition"], "name": name, "connection": connection})
        headers = {"If-Match": "*"} if name == "high-value" else {}
        route = (function_app.put_export, "PUT", f"exports/{name}", document.encode(), headers)
        return request(route, caller, host)

    assert put_as(OPERATOR, "other").status_code == 403  # moving it there
    assert put_as(OPERATOR, "other", name="fresh-one").status_code == 403  # creating it there
    unknown = put_as(OPERATOR, "nowhere")
    assert unknown.status_code == 403
    assert "there is none by that name" in json.loads(unknown.get_body())["message"]
    assert put_as(ADMIN, "nowhere").status_code == 400  # an admin hears what is wrong instead
    malformed = put_as(OPERATOR, ["main"])
    assert malformed.status_code == 400  # not a crash: every problem listed
    assert any("connection" in p for p in json.loads(malformed.get_body())["problems"])
    assert put_as(OPERATOR, "main").status_code == 200


def test_discovery_and_preview_refuse_a_container_or_connection_the_caller_may_not_use(
    signed_in: Callable[[str], None], app: App
) -> None:
    signed_in("azure")
    host = HOSTS["azure"]
    elsewhere = (function_app.list_segments, "GET", "segments?container=ci-elsewhere", b"", {})
    refused = request(elsewhere, OPERATOR, host)
    assert refused.status_code == 403
    message = json.loads(refused.get_body())["message"]
    assert "may not look into container 'ci-elsewhere'" in message
    assert request(elsewhere, ADMIN, host).status_code == 404  # an admin may look: there is none
    # The export's own container: allowed (and not there yet: nothing was exported to it).
    assert request(ROUTES["GET segments"], OPERATOR, host).status_code == 404
    assert request(ROUTES["GET segments"], STRANGER, host).status_code == 403
    moved = PREVIEW.replace(b"{container}", b"ci-elsewhere")
    preview_elsewhere = (function_app.preview_export, "POST", "preview", moved, {})
    assert request(preview_elsewhere, OPERATOR, host).status_code == 403
    stranger = request(ROUTES["POST preview"], STRANGER, host)
    assert stranger.status_code == 403
    assert "may not use connection 'main'" in json.loads(stranger.get_body())["message"]
    operator = request(ROUTES["POST preview"], OPERATOR, host)
    assert operator.status_code == 409  # allowed: the snapshot is not there
