"""Definitions are data: created, changed and deleted through the HTTP handlers, with ETags
and history, picked up without a restart; exchanged with exports.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared import runtime
from shared.adapters.definition_store import SEEDED_BY
from shared.core.errors import ConfigurationError
from shared.core.settings import Settings
from shared.entry.cli import main
from tests.conftest import AUDIENCE, CLIENT_SECRET, App, export_definition, local_request
from tests.snapshots import emails, hashes, snapshot

SECOND = "aud-second-02"


def call(
    handler: Any, method: str, route: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    parts = route.split("/")
    params = dict(zip(("name", "", "run_id"), parts[1:4], strict=False))
    params.pop("", None)
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = local_request(method, f"http://127.0.0.1:7071/api/{route}", route_params=params,
                               body=data, headers=headers)  # fmt: skip
    response: func.HttpResponse = handler(request)
    text = response.get_body()
    return response.status_code, (json.loads(text) if text else {}), dict(response.headers)


def run_now(app: App, name: str) -> dict[str, Any]:
    status, body, _ = call(function_app.start_run, "POST", f"exports/{name}/runs")
    assert status == 202, body
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get(name, body["run_id"])
    assert record is not None
    return record.as_dict()


def test_create_run_change_run_delete_without_a_restart(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    sandbox.add_audience(SECOND)
    path = "CustomerInsights_t1/BlobExport/HighValue"
    snapshot(blob_service, app.container, emails(range(20)), day=1)
    definition = export_definition("second", app.container, path, mode="mirror")
    status, created, headers = call(function_app.put_export, "PUT", "exports/second", definition)
    assert status == 201, created
    assert created["version"] == 1
    listed = call(function_app.list_exports, "GET", "exports")[1]
    assert "second" in {e["name"] for e in listed["exports"]}

    first = run_now(app, "second")
    assert first["status"] == "succeeded", first["error"]
    assert sandbox.identifiers(AUDIENCE) == hashes(range(20))

    changed = {**definition, "audience_id": SECOND}
    status, replaced, headers = call(function_app.put_export, "PUT", "exports/second", changed,
                                     **{"If-Match": headers["ETag"]})  # fmt: skip
    assert (status, replaced["version"]) == (200, 2)
    second = run_now(app, "second")  # the same runtime: no restart
    assert (second["status"], second["audience_id"]) == ("succeeded", SECOND)
    assert sandbox.identifiers(SECOND) == hashes(range(20))
    state = blob_service.get_container_client(app.runtime.settings.state_container)
    assert [b.name for b in state.list_blobs(name_starts_with="second/")]

    status, deleted, _ = call(function_app.delete_export, "DELETE", "exports/second",
                              **{"If-Match": headers["ETag"]})  # fmt: skip
    assert status == 200, deleted
    assert deleted["deleted_state_files"] == 2  # the mirror state of both audiences
    assert list(state.list_blobs(name_starts_with="second/")) == []
    assert call(function_app.get_export, "GET", "exports/second")[0] == 404
    assert call(function_app.start_run, "POST", "exports/second/runs")[0] == 404
    assert len(app.runtime.runs.recent("second")) == 2  # its run history stays


def test_stale_etags_and_missing_preconditions_are_refused(app: App) -> None:
    status, current, headers = call(function_app.get_export, "GET", "exports/high-value")
    assert status == 200
    etag = headers["ETag"]
    document = {**current["definition"], "enabled": False}
    assert call(function_app.put_export, "PUT", "exports/high-value", document)[0] == 412
    status, _, newer = call(function_app.put_export, "PUT", "exports/high-value", document,
                            **{"If-Match": etag})  # fmt: skip
    assert status == 200
    stale = call(function_app.put_export, "PUT", "exports/high-value", document,
                 **{"If-Match": etag})  # fmt: skip
    assert (stale[0], stale[1]["error"]) == (412, "precondition_failed")
    assert call(function_app.delete_export, "DELETE", "exports/high-value")[0] == 428
    assert call(function_app.delete_export, "DELETE", "exports/high-value",
                **{"If-Match": etag})[0] == 412  # fmt: skip
    assert call(function_app.delete_export, "DELETE", "exports/high-value",
                **{"If-Match": newer["ETag"]})[0] == 200  # fmt: skip


def test_every_problem_of_a_definition_is_listed_at_once(app: App) -> None:
    broken = {"source": {"container": "Bad_Name", "path": "a/../b"}, "connection": "nope",
              "columns": {"emial": "Mail"}, "mode": "sync", "max_removal_percent": 300}  # fmt: skip
    status, body, _ = call(function_app.put_export, "PUT", "exports/new-one", broken)
    assert (status, body["error"]) == (400, "invalid_definition")
    fields = [p.split(": ")[1] for p in body["problems"]]
    for field in ("source", "audience_id", "connection", "columns", "mode",
                  "max_removal_percent", "data_transfer_acknowledged"):  # fmt: skip
        assert field in fields, body["problems"]
    assert call(function_app.get_export, "GET", "exports/new-one")[0] == 404  # nothing stored


def test_history_says_who_changed_what_and_when(app: App) -> None:
    _, current, headers = call(function_app.get_export, "GET", "exports/high-value")
    document = {**current["definition"], "enabled": False}
    call(function_app.put_export, "PUT", "exports/high-value", document,
         **{"If-Match": headers["ETag"]})  # fmt: skip
    status, history, _ = call(function_app.export_history, "GET", "exports/high-value/history")
    assert status == 200
    newest, oldest = history["versions"]
    assert (newest["version"], newest["action"], newest["definition"]["enabled"]) == (
        2, "replaced", False)  # fmt: skip
    assert newest["changed_by"] == "00000000-0000-4000-8000-00000000000a (local admin)"
    assert newest["changed_at"] >= oldest["changed_at"]
    assert (oldest["version"], oldest["action"], oldest["changed_by"]) == (1, "created", SEEDED_BY)


def test_connections_show_secret_names_never_values_and_stay_while_used(app: App) -> None:
    document = {
        "display_name": "EU ad account",
        "allowed": ["6F1C2B3A-4D5E-6F70-8192-A3B4C5D6E7F8"],
    }
    status, created, _ = call(function_app.put_connection, "PUT", "connections/eu", document)
    assert status == 201, created
    _, shown, _ = call(function_app.get_connection, "GET", "connections/eu")
    # each entry as {"id", "name"} (tests/test_connection_names.py)
    assert shown["definition"]["allowed"] == [
        {"id": "6f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8", "name": ""}
    ]
    assert shown["secrets"] == ["snapchat-eu-client-id", "snapchat-eu-client-secret",
                                "snapchat-eu-refresh-token"]  # fmt: skip
    assert CLIENT_SECRET not in json.dumps(shown)
    _, _main_connection, headers = call(function_app.get_connection, "GET", "connections/main")
    status, body, _ = call(function_app.delete_connection, "DELETE", "connections/main",
                           **{"If-Match": headers["ETag"]})  # fmt: skip
    assert (status, body["error"]) == (409, "in_use")
    assert "high-value" in body["message"]
    assert body["exports"] == ["high-value"]


def test_import_and_export_round_trip_with_prune_and_dry_run(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "exported.json"
    assert main(["definitions", "export", "--output", str(exported)]) == 0
    capsys.readouterr()
    document = json.loads(exported.read_text())
    assert [e["name"] for e in document["exports"]] == ["high-value"]
    document["exports"] = [
        export_definition("lapsed", app.container, "CI/BlobExport/Lapsed", enabled=False)
    ]
    wanted = tmp_path / "wanted.json"
    wanted.write_text(json.dumps(document))

    assert main(["definitions", "import", str(wanted), "--prune", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["create"], plan["delete"], plan["unchanged"]) == (
        ["export lapsed"], ["export high-value"], ["connection main"])  # fmt: skip
    assert app.runtime.definition_store.get("export", "lapsed") is None  # nothing changed yet

    assert main(["definitions", "import", str(wanted)]) == 0  # without --prune: keeps the rest
    assert json.loads(capsys.readouterr().out)["delete"] == []
    assert app.runtime.definition_store.get("export", "high-value") is not None
    assert main(["definitions", "import", str(wanted), "--prune"]) == 0
    capsys.readouterr()
    assert main(["definitions", "import", str(wanted), "--prune"]) == 0  # idempotent
    again = json.loads(capsys.readouterr().out)
    assert (again["create"], again["replace"], again["delete"]) == ([], [], [])
    assert main(["definitions", "export"]) == 0
    assert json.loads(capsys.readouterr().out) == document


def test_an_import_file_with_problems_changes_nothing_and_lists_them(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = export_definition("twin", app.container, "CI/BlobExport/A")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"connections": [{"name": "main"}], "exports": [twin, twin]}))
    assert main(["definitions", "import", str(path), "--prune"]) == 2
    problems = json.loads(capsys.readouterr().err)["problems"]
    assert (
        "export 'twin' (exports[1]): name: used by exports[0], exports[1]; names must be unique"
        in problems
    )
    assert app.runtime.definition_store.get("export", "high-value") is not None


def test_a_new_deployment_is_seeded_once_from_the_exports_file(app: App) -> None:
    history = app.runtime.definition_store.history("export", "high-value")
    assert history[-1].changed_by == SEEDED_BY
    assert app.runtime.definition_store.history("connection", "main")[-1].changed_by == SEEDED_BY


def test_an_export_with_an_active_run_is_not_deleted_and_a_deleted_ones_runs_stay_readable(
    app: App, blob_service: BlobServiceClient
) -> None:
    snapshot(blob_service, app.container, emails(range(5)), day=1)
    queued = call(function_app.start_run, "POST", "exports/high-value/runs")[1]
    _, _, headers = call(function_app.get_export, "GET", "exports/high-value")
    refused = call(function_app.delete_export, "DELETE", "exports/high-value",
                   **{"If-Match": headers["ETag"]})  # fmt: skip
    assert (refused[0], refused[1]["error"]) == (409, "active_run")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    assert call(function_app.delete_export, "DELETE", "exports/high-value",
                **{"If-Match": headers["ETag"]})[0] == 200  # fmt: skip
    status, runs, _ = call(function_app.list_runs, "GET", "exports/high-value/runs")
    assert (status, [r["run_id"] for r in runs["runs"]]) == (200, [queued["run_id"]])
    route = f"exports/high-value/runs/{queued['run_id']}"
    status, record, _ = call(function_app.get_run, "GET", route)
    assert (status, record["status"]) == (200, "succeeded")
    assert call(function_app.list_runs, "GET", "exports/never-was/runs")[0] == 404


def test_the_etag_a_write_returns_is_that_writes_own(app: App) -> None:
    store = app.runtime.definition_store
    current = store.get("export", "high-value")
    assert current is not None
    written = store.put("export", "high-value", {**(current.document or {}), "enabled": False},
                        etag=current.etag, by="test")  # fmt: skip
    assert written.etag == (store.get("export", "high-value") or written).etag
    assert written.version == 2


def test_seeding_happens_once_and_never_brings_back_a_deleted_definition(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = app.runtime.definition_store
    current = store.get("export", "high-value")
    assert current is not None
    store.delete("export", "high-value", etag=current.etag, by="test")
    fresh = runtime.build(Settings.from_env())  # another instance starting: the file is there
    assert fresh.definition_store.get("export", "high-value") is None
    assert [e.name for e in fresh.definitions.exports] == []


def test_a_seed_file_that_is_not_json_seeds_nothing_until_it_is_corrected(
    app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RUNS_TABLE", "freshdeployment")  # a new deployment's empty store
    seed = tmp_path / "seed.json"
    monkeypatch.setenv("EXPORTS_FILE", str(seed))
    seed.write_text('{"connections": [{"name": "main"}], "exports": [')  # cut short
    first = runtime.build(Settings.from_env())
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        first.definitions  # noqa: B018 - reading them seeds the store
    seed.write_text(json.dumps({"connections": [{"name": "main"}], "exports": [
        export_definition("fixed", app.container, "CI/BlobExport/Fixed")]}))  # fmt: skip
    second = runtime.build(Settings.from_env())  # the next start, with the file corrected
    assert [e.name for e in second.definitions.exports] == ["fixed"]
    assert second.definition_store.history("export", "fixed")[0].changed_by == SEEDED_BY
