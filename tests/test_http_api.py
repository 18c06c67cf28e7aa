"""Every HTTP route, called through the real decorated handlers against Azurite."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.ci_export import write_export
from devtools.localhost import app_functions
from devtools.worker import drain
from tests.conftest import (
    CLIENT_SECRET,
    REFRESH_TOKEN,
    App,
    export_definition,
    local_request,
    write_definitions,
)

BASE = "http://127.0.0.1:7071"  # the local host (local mode answers loopback only)
PATH = "CustomerInsights_t1/BlobExport/HighValue"


def call(handler: Any, method: str, route: str, body: bytes = b"", **params: str) -> Any:
    route_params = {k: v for k, v in params.items() if k in ("name", "run_id")}
    query = {k: v for k, v in params.items() if k not in route_params}
    request = local_request(
        method, f"{BASE}/api/{route}", route_params=route_params, params=query, body=body
    )
    response: func.HttpResponse = handler(request)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body()), response.headers


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    return {f.get_function_name(): f for f in app_functions()}


def test_http_routes_are_left_to_the_platforms_sign_in(functions: dict[str, Any]) -> None:
    """Anonymous at the Functions level: the platform's sign-in and the app's own check
    (test_sign_in_and_roles.py) protect them, not a shared function key."""
    routes = {}
    for name, function in functions.items():
        trigger = function.get_bindings()[0]
        if trigger.type == "httpTrigger":
            assert trigger.auth_level == func.AuthLevel.ANONYMOUS, name
            routes[name] = (trigger.route, tuple(str(m) for m in trigger.methods))
    assert routes == {
        "start_run": ("exports/{name}/runs", ("POST",)),
        "get_run": ("exports/{name}/runs/{run_id}", ("GET",)),
        "list_runs": ("exports/{name}/runs", ("GET",)),
        "list_exports": ("exports", ("GET",)),
        "get_export": ("exports/{name}", ("GET",)),
        "put_export": ("exports/{name}", ("PUT",)),
        "delete_export": ("exports/{name}", ("DELETE",)),
        "export_history": ("exports/{name}/history", ("GET",)),
        "list_connections": ("connections", ("GET",)),
        "get_connection": ("connections/{name}", ("GET",)),
        "put_connection": ("connections/{name}", ("PUT",)),
        "delete_connection": ("connections/{name}", ("DELETE",)),
        "connection_history": ("connections/{name}/history", ("GET",)),
        "me": ("me", ("GET",)),
        "start_connect": ("connections/{name}/connect", ("POST",)),
        "purge_export": ("exports/{name}/purge", ("POST",)),
        "list_segments": ("segments", ("GET",)),
        "preview_export": ("preview", ("POST",)),
        "console": ("console/{*path}", ("GET",)),
        "finish_connect": ("oauth/snapchat/callback", ("GET",)),
    }
    for name in routes:  # what the host reads from the generated function.json
        bindings = json.loads(functions[name].get_function_json())["bindings"]
        assert bindings[0]["authLevel"] == "ANONYMOUS", name


def test_timer_and_queue_bindings_read_their_settings(functions: dict[str, Any]) -> None:
    timer = functions["find_new_snapshots"].get_bindings()[0]
    assert (timer.type, timer.schedule) == ("timerTrigger", "%EXPORT_SCHEDULE%")
    queue = functions["export_worker"].get_bindings()[0]
    assert (queue.type, queue.queue_name, queue.connection) == (
        "queueTrigger",
        "%JOBS_QUEUE%",
        "AzureWebJobsStorage",
    )


def test_post_run_queues_and_the_run_can_be_followed(
    app: App, blob_service: BlobServiceClient
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=50, partitions=1)
    status, body, headers = call(function_app.start_run, "POST", "exports/high-value/runs",
                                 name="high-value")  # fmt: skip
    assert status == 202
    assert headers["Location"] == body["status_url"]
    run_id = body["run_id"]

    status, record, _ = call(function_app.get_run, "GET", f"exports/high-value/runs/{run_id}",
                             name="high-value", run_id=run_id)  # fmt: skip
    assert (status, record["status"], record["trigger"]) == (200, "queued", "http")

    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    _, record, _ = call(function_app.get_run, "GET", f"exports/high-value/runs/{run_id}",
                        name="high-value", run_id=run_id)  # fmt: skip
    assert record["status"] == "succeeded"


def test_post_runs_the_newest_snapshot_even_if_exported_before(
    app: App, blob_service: BlobServiceClient
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=20, partitions=1)
    first = call(function_app.start_run, "POST", "r", name="high-value")[1]["run_id"]
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    status, body, _ = call(function_app.start_run, "POST", "r", name="high-value")
    assert status == 202
    assert body["run_id"] != first
    assert body["run"]["snapshot"] == app.runtime.runs.get("high-value", first).snapshot  # type: ignore[union-attr]


def test_list_runs_newest_first_and_limit(app: App, blob_service: BlobServiceClient) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=5, partitions=1)
    ids = []
    for _ in range(3):
        ids.append(call(function_app.start_run, "POST", "r", name="high-value")[1]["run_id"])
        drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    status, body, _ = call(function_app.list_runs, "GET", "r", name="high-value")
    assert status == 200
    assert [r["run_id"] for r in body["runs"]] == ids[::-1]
    _, limited, _ = call(function_app.list_runs, "GET", "r", name="high-value", limit="2")
    assert [r["run_id"] for r in limited["runs"]] == ids[:0:-1]
    status, error, _ = call(function_app.list_runs, "GET", "r", name="high-value", limit="x")
    assert (status, error["error"]) == (400, "bad_request")


def test_a_second_request_while_a_run_is_active_is_409_naming_it(
    app: App, blob_service: BlobServiceClient
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=5, partitions=1)
    first = call(function_app.start_run, "POST", "r", name="high-value")[1]["run_id"]
    status, body, _ = call(function_app.start_run, "POST", "r", name="high-value")
    assert (status, body["error"], body["active_run_id"]) == (409, "active_run", first)
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    status, _, _ = call(function_app.start_run, "POST", "r", name="high-value")
    assert status == 202  # the lock went with the finished run


def test_list_exports_shows_each_export_and_its_last_run(
    app: App, blob_service: BlobServiceClient
) -> None:
    write_definitions(
        app.exports_file,
        [
            export_definition("high-value", app.container, PATH),
            export_definition("paused", app.container, PATH, enabled=False),
        ],
    )
    write_export(blob_service, container=app.container, path=PATH, profiles=5, partitions=1)
    app.rebuild(pytest.MonkeyPatch())
    run_id = call(function_app.start_run, "POST", "r", name="high-value")[1]["run_id"]
    status, body, _ = call(function_app.list_exports, "GET", "exports")
    assert status == 200
    by_name = {e["name"]: e for e in body["exports"]}
    assert by_name["high-value"]["last_run"]["run_id"] == run_id
    assert by_name["high-value"]["columns"] == {"email": "EMail"}
    assert by_name["paused"]["enabled"] is False
    assert by_name["paused"]["last_run"] is None


@pytest.mark.parametrize("name", ["nope", "..", "a/b", "%2F", "high-value/../x"])
def test_unknown_or_path_like_export_names_are_404(app: App, name: str) -> None:
    for handler, method in ((function_app.start_run, "POST"), (function_app.list_runs, "GET")):
        status, body, _ = call(handler, method, "r", name=name)
        assert (status, body["error"]) == (404, "not_found")


def test_unknown_run_is_404(app: App) -> None:
    for run_id in ("20260101T000000000Z-abcdef", "not-a-run-id"):
        status, body, _ = call(function_app.get_run, "GET", "r", name="high-value", run_id=run_id)
        assert (status, body["error"]) == (404, "not_found")


def test_disabled_export_is_400(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    write_definitions(
        app.exports_file, [export_definition("high-value", app.container, PATH, enabled=False)]
    )
    app.rebuild(monkeypatch)
    status, body, _ = call(function_app.start_run, "POST", "r", name="high-value")
    assert (status, body["error"]) == (400, "disabled")


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'"text"', b'{"colour": "red"}'])
def test_malformed_request_bodies_are_400(app: App, body: bytes) -> None:
    status, answer, _ = call(function_app.start_run, "POST", "r", body=body, name="high-value")
    assert (status, answer["error"]) == (400, "bad_request")


def test_no_snapshot_yet_is_409(app: App, blob_service: BlobServiceClient) -> None:
    status, body, _ = call(function_app.start_run, "POST", "r", name="high-value")
    assert (status, body["error"]) == (409, "no_snapshot")
    assert f"container '{app.container}': not found" in body["message"]

    blob_service.create_container(app.container)
    status, body, _ = call(function_app.start_run, "POST", "r", name="high-value")
    assert (status, body["error"]) == (409, "no_snapshot")
    assert f"{app.container}/{PATH}: no snapshot found" in body["message"]


def test_broken_definitions_are_a_500_that_names_the_problem(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.exports_file.write_text('{"connections": [], "exports": []}')
    from shared import runtime  # noqa: PLC0415

    runtime.install(None)  # the next call rebuilds from the environment, as a cold start does
    status, body, _ = call(function_app.list_exports, "GET", "exports")
    assert (status, body["error"]) == (500, "configuration")
    assert body["problems"] == ["connections: expected a non-empty list"]


def test_connections_say_which_secrets_are_present_and_when_a_token_last_worked(
    app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def connection() -> dict[str, Any]:
        _, body, _ = call(function_app.list_connections, "GET", "connections")
        [only] = body["connections"]
        return only

    before = connection()
    assert before["secrets_present"] == {
        "snapchat-main-client-id": True,
        "snapchat-main-client-secret": True,
        "snapchat-main-refresh-token": True,
    }
    assert before["token_refreshed_at"] is None
    write_export(blob_service, container=app.container, path=PATH, profiles=50)
    status, body, _ = call(function_app.start_run, "POST", "exports/high-value/runs",
                           name="high-value")  # fmt: skip
    assert status == 202
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    after = connection()
    assert after["token_refreshed_at"] >= body["run"]["queued_at"]
    for value in (CLIENT_SECRET, REFRESH_TOKEN):
        assert value not in json.dumps(after)

    monkeypatch.delenv("SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN")
    app.rebuild(monkeypatch)
    assert connection()["secrets_present"]["snapchat-main-refresh-token"] is False


def test_a_failed_run_carries_the_advice_of_the_manual(
    app: App, blob_service: BlobServiceClient
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=20,
                 email_column="Mail")  # fmt: skip
    _, body, _ = call(function_app.start_run, "POST", "exports/high-value/runs", name="high-value")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    run_id = body["run_id"]
    _, run, _ = call(function_app.get_run, "GET", "exports/high-value/runs/x",
                     name="high-value", run_id=run_id)  # fmt: skip
    assert run["status"] == "failed"
    assert "no column named" in run["error"]
    assert run["error_kind"] == "missing_column"  # a malformed export, not "no snapshot"
    assert run["advice"].startswith("fix columns.email in the definition")  # plain text
    assert "`" not in run["advice"]
    assert run["advice_field"] == "columns.email"  # the form's field the console links to
    assert run["columns"] == ["CustomerId", "FirstName", "LastName", "Mail", "City", "Address",
                              "LifetimeValue"]  # fmt: skip
    _, listed, _ = call(function_app.list_exports, "GET", "exports")
    assert listed["exports"][0]["last_run"]["advice"] == run["advice"]
    assert listed["next_check"].endswith("Z")
