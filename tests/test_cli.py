"""The command line runs the same pipeline outside the Functions host."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from shared.entry.cli import main
from tests.conftest import AUDIENCE, App

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
    assert json.loads(capsys.readouterr().out)["deliveries"] == 1
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
