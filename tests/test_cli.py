"""The command line runs the same pipeline outside the Functions host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from shared.cli import main
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
    assert "export 'x': source: expected an object with container and path" in problems
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
