"""The command line runs the same pipeline outside the Functions host."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from shared import runtime
from shared.entry.cli import main
from tests.conftest import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    App,
    export_definition,
    sync_definitions,
    write_definitions,
)

PATH = "CustomerInsights_t1/BlobExport/HighValue"


def test_validate_accepts_good_definitions(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    assert json.loads(capsys.readouterr().out)["exports"] == 1


def test_validate_names_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "exports.json"
    path.write_text(json.dumps({"connections": [{"name": "main"}], "exports": [{"name": "x"}]}))
    assert main(["validate", "--exports", str(path)]) == 2
    problems = json.loads(capsys.readouterr().err)["problems"]
    assert (
        "export 'x': source: give either source (one segment: container and path) or sources (a list of them)"
        in problems
    )
    assert any(p.startswith("export 'x': audience_id: give either") for p in problems)


def test_run_exports_in_process_and_runs_lists_it(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    export = write_export(blob_service, container=app.container, path=PATH, profiles=500)
    assert main(["run", "high-value"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["trigger"], record["status"]) == ("cli", "succeeded")
    assert sandbox.identifiers(AUDIENCE) == export.expected_hex
    assert main(["runs", "high-value"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["run_id"] == record["run_id"]


def test_unknown_export_exits_3(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nope"]) == 3
    assert "no export named 'nope'" in capsys.readouterr().err


def test_settings_file_values_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exports = tmp_path / "mine.json"
    exports.write_text(json.dumps({"connections": [{"name": "c"}], "exports": []}))
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"EXPORTS_FILE": str(exports)}}))
    monkeypatch.setenv("EXPORTS_FILE", "")  # so that the value main() sets is undone afterwards
    monkeypatch.delenv("EXPORTS_FILE")
    assert main(["--settings", str(settings), "validate"]) == 0
    assert json.loads(capsys.readouterr().out)["connections"] == ["c"]


def test_a_run_queued_without_the_host_is_processed_by_work(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    export = write_export(blob_service, container=app.container, path=PATH, profiles=300)
    assert main(["enqueue", "high-value"]) == 0
    queued = json.loads(capsys.readouterr().out)
    assert queued["status"] == "queued"
    # While it waits, an inline run is refused, and told how to get the queue processed.
    assert main(["run", "high-value"]) == 1
    refused = json.loads(capsys.readouterr().err)["message"]
    assert f"active run {queued['run_id']}: queued" in refused
    assert "python -m shared work --once" in refused

    assert main(["work", "--once"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deliveries"] == 1
    # It says what became of each run it was handed, not only how many jobs it delivered.
    [run] = report["runs"]
    assert (run["run_id"], run["status"], run["error_kind"]) == (queued["run_id"], "succeeded", "")
    record = app.runtime.runs.get("high-value", queued["run_id"])
    assert record is not None
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == export.expected_hex
    assert main(["run", "high-value"]) == 0  # the export is free again


def test_exports_are_put_into_local_storage_generated_or_copied_from_disk(
    app: App, sandbox: SnapchatSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from devtools import ci_export  # noqa: PLC0415

    generate = ["generate", "--profiles", "500", "--container", app.container, "--path", PATH]
    assert ci_export.main(generate) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["source"] == {"container": app.container, "path": PATH}
    assert main(["run", "high-value"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["uploaded"] == made["distinct_valid"] == len(sandbox.identifiers(AUDIENCE))

    # A folder as downloaded from the Customer Insights storage account.
    folder = tmp_path / "download"
    snapshot_folder = folder / PATH / "2099/01/01/0000"
    snapshot_folder.mkdir(parents=True)
    (snapshot_folder / "HighValue_1.csv").write_text("CustomerId,EMail\n1,copied@example.com\n")
    (folder / PATH).parent.joinpath("model.json").write_text(json.dumps({"entities": [{
        "name": "HighValue", "attributes": [{"name": "CustomerId"}, {"name": "EMail"}],
        "partitions": [{"location": f"https://ci.blob.core.windows.net/{app.container}/{PATH}"
                                    "/2099/01/01/0000/HighValue_1.csv",
                        "fileFormatSettings": {"columnHeaders": True}}]}]}))  # fmt: skip
    assert ci_export.main(["upload", str(folder), "--container", app.container]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"] == 2
    assert main(["run", "high-value"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["snapshot"], second["uploaded"]) == ("2099/01/01/0000", 1)


def test_the_readmes_command_line_examples_name_exports_the_shipped_file_declares() -> None:
    from shared.core import definitions  # noqa: PLC0415
    from shared.core.settings import APP_ROOT  # noqa: PLC0415

    readme = (APP_ROOT / "docs" / "command-line.md").read_text("utf-8")
    named = set(re.findall(r"-m shared .*?\b(?:run|enqueue|runs) ([a-z0-9-]+)", readme))
    assert named, "the manual shows no command line example"
    shipped = {e.name for e in definitions.load(APP_ROOT / "exports.json").exports}
    assert named <= shipped


def test_every_documented_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("validate", "exports", "run", "enqueue", "work", "runs", "connect"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "usage: python -m shared" in capsys.readouterr().out


# -------------------------------------------------------- the first hour, as a new user tried it


def put_csv(blob_service: BlobServiceClient, container: str, text: str) -> None:
    """One partition of one snapshot, without model.json (the header names the columns)."""
    client = blob_service.get_container_client(container)
    if not client.exists():
        client.create_container()
    client.upload_blob(f"{PATH}/2099/01/01/0000/HighValue_1.csv", text.encode(), overwrite=True)


@pytest.mark.parametrize(
    ("csv_text", "kind"),
    [
        ("CustomerId,EMail\n1,a@example.com\n2,b@example.com,extra\n", "source_malformed"),
        ("CustomerId,Mail\n1,a@example.com\n", "missing_column"),
    ],
)
def test_a_failed_run_says_why_and_what_to_do(
    app: App, blob_service: BlobServiceClient, capsys: pytest.CaptureFixture[str],
    csv_text: str, kind: str,
) -> None:  # fmt: skip
    put_csv(blob_service, app.container, csv_text)
    assert main(["run", "high-value"]) == 1
    record = json.loads(capsys.readouterr().out)
    assert (record["status"], record["error_kind"]) == ("failed", kind)  # not no_snapshot
    assert record["advice"], "the command line shows the advice the console shows"
    # The same run from the queue: the worker says it failed, and why.
    assert main(["enqueue", "high-value"]) == 0
    capsys.readouterr()
    assert main(["work", "--once"]) == 1
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert (run["status"], run["error_kind"]) == ("failed", kind)
    assert run["advice"]


def test_a_disabled_export_is_not_a_failed_run(
    app: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_definitions(
        app.exports_file, [export_definition("high-value", app.container, PATH, enabled=False)]
    )
    sync_definitions(app.runtime, app.exports_file)
    for command in ("run", "enqueue"):
        assert main([command, "high-value"]) == 4
        assert json.loads(capsys.readouterr().err)["message"].startswith(
            "export 'high-value' is disabled"
        )
    assert app.runtime.runs.recent("high-value") == []  # no run was made


def test_purge_of_a_misspelt_name_says_nothing_matched(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "high-valeu"]) == 3
    assert "no export named 'high-valeu'" in json.loads(capsys.readouterr().err)["message"]
    assert main(["purge", "high-value"]) == 0  # a defined export with nothing stored yet
    assert json.loads(capsys.readouterr().out)["deleted"] == []


def test_connect_sends_the_browser_to_the_authorize_url_of_the_settings(
    app: App, sandbox: SnapchatSandbox, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    app.rebuild(monkeypatch, SNAPCHAT_AUTHORIZE_URL=sandbox.authorize_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CLIENT_SECRET}\n"))

    def browser(_: str = "") -> str:  # opens the address shown, returns where it was sent
        shown = re.search(r"^  (\S+)$", capsys.readouterr().out, flags=re.MULTILINE)
        assert shown, "no authorize address shown"
        assert shown[1].startswith(sandbox.authorize_url + "?")
        sent = requests.get(shown[1], allow_redirects=False, timeout=10)
        return sent.headers["Location"]

    monkeypatch.setattr("builtins.input", browser)
    redirect = "https://example.invalid/callback"
    argv = ["connect", "main", "--client-id", CLIENT_ID, "--paste", "--redirect-uri", redirect]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["connection"] == "main"
    assert app.runtime.secrets.get("snapchat-main-refresh-token") == REFRESH_TOKEN


def test_without_azurite_the_error_names_the_endpoint_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = base64.b64encode(b"k" * 32).decode()
    endpoints = ";".join(
        f"{kind}Endpoint=http://127.0.0.1:{port}/devstoreaccount1?sv=x&sig=y"
        for kind in ("Blob", "Queue", "Table")
    )
    connection = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
    monkeypatch.setenv("AzureWebJobsStorage", connection + endpoints)
    monkeypatch.setenv("EXPORTS_FILE", str(Path(__file__).parent.parent / "exports.json"))
    runtime.install(None)
    try:
        assert main(["runs", "high-value-customers"]) == 1
    finally:
        runtime.install(None)
    message = json.loads(capsys.readouterr().err)["message"]
    assert f"nothing answers at http://127.0.0.1:{port}/devstoreaccount1;" in message
    assert "start Azurite (npx azurite" in message
    assert key not in message
    assert "sig=" not in message


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    root = Path(__file__).parent.parent
    command = [sys.executable, "-m", "shared", "validate", "--exports", "exports.json"]
    with subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        child.stdout.close()  # as `| head` does once it has its lines
        errors = child.stderr.read().decode()
        assert child.wait(timeout=60) == 141
    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors


def test_a_long_field_in_a_column_the_export_does_not_read_is_exported(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    long_note = "x" * (130 * 1024)  # over the CSV field limit (128 KiB)
    put_csv(blob_service, app.container, f"CustomerId,EMail,Notes\n1,a@example.com,{long_note}\n")
    assert main(["run", "high-value"]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"] == 1
    # In the identifier column the same length fails the run, naming the line.
    put_csv(blob_service, app.container, f"CustomerId,EMail,Notes\n1,{long_note},a\n")
    assert main(["run", "high-value", "--snapshot", "2099/01/01/0000"]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["error_kind"] == "source_malformed", record["error"]
