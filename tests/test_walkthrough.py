"""docs/command-line.md's local walkthrough, run as written: its commands are read from the
page and run here, against Azurite and the Snapchat sandbox, so that the page cannot rot.

The session's Azurite stands in for the one the page starts (the test does not own ports
10000-10002), and the sandbox is started from the page's own arguments on a free port; both
replacements are made the way the page says a variable you set wins over local.settings.json.
Every other command is run as the page writes it: the same arguments, the same example files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from devtools import ci_export
from devtools.snapchat_sandbox import SnapchatSandbox
from shared import runtime
from shared.entry import cli
from tests.conftest import App

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ".venv/bin/python"


def walkthrough() -> list[list[str]]:
    """The commands of the walkthrough's first code block, as argument lists (continuation
    lines joined, comments and a trailing ``&`` dropped)."""
    page = (ROOT / "docs" / "command-line.md").read_text("utf-8")
    section = page.split("## A local walkthrough", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block, "the walkthrough shows no commands"
    commands = []
    for line in block[1].replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[-1] == "&":
            words.pop()
        if words:
            commands.append(words)
    return commands


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / name).read_text("utf-8"))
    return loaded


@pytest.fixture
def clean_container(blob_service: BlobServiceClient) -> Iterator[str]:
    """The container the example export reads, empty before and removed after."""
    name = example("local.exports.json.example")["exports"][0]["source"]["container"]
    client = blob_service.get_container_client(name)
    if client.exists():
        client.delete_container()
    yield name
    if client.exists():
        client.delete_container()


def test_the_local_walkthrough_runs_as_written(
    app: App,
    clean_container: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = walkthrough()
    settings = example("local.settings.json.example")["Values"]
    assert settings["SNAPSHOT_SETTLE_SECONDS"] == "0", "the first run would wait for the snapshot"
    started: list[SnapchatSandbox] = []
    outputs: list[tuple[list[str], Any]] = []
    monkeypatch.chdir(tmp_path)  # the files the walkthrough makes are made here
    for name, value in settings.items():  # what --settings would set, undone after the test
        if name not in os.environ:
            monkeypatch.setenv(name, value)
    try:
        for words in commands:
            answer = run(words, settings, app, tmp_path, started, monkeypatch, capsys)
            if answer is not None:
                outputs.append((words, answer))
    finally:
        for sandbox in started:
            sandbox.__exit__(None, None, None)
        runtime.install(None)
    assert started, "the walkthrough starts no Snapchat sandbox"
    check_outcome(outputs, started[0])


def run(
    words: list[str], settings: dict[str, str], app: App, here: Path,
    started: list[SnapchatSandbox], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:  # fmt: skip
    """One command of the page: run (or, for Azurite and the sandbox, stand in for) it, and
    return what it printed (parsed), or None for a command that prints nothing to check."""
    if words[0] == "cp":
        shutil.copy(ROOT / words[1], here / words[2])
        return None
    if words[0] == "sleep":
        return None
    if words[:2] == ["npx", "azurite"]:
        # The session's Azurite instead; the page's settings must mean Azurite's defaults.
        assert settings["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
        return None
    assert words[:2] == [PYTHON, "-m"], f"the walkthrough runs {words!r}, which the test cannot"
    module, argv = words[2], words[3:]
    if module == "devtools.snapchat_sandbox":
        start_sandbox(argv, settings, app, started, monkeypatch)
        return None
    if "--settings" in argv:  # the copy the page made, in the folder it made it in
        at = argv.index("--settings") + 1
        assert (here / argv[at]).exists(), f"{argv[at]} was never made"
        argv[at] = str(here / argv[at])
    if module == "shared" and "import" in argv:
        argv[-1] = str(here / argv[-1])
    mains = {"shared": cli.main, "devtools.ci_export": ci_export.main}
    assert module in mains, f"the walkthrough runs python -m {module}, which the test cannot"
    runtime.install(None)  # each command is a process of its own, with its own runtime
    code = mains[module](argv)
    printed = capsys.readouterr()
    assert code == 0, f"{' '.join(words)} exited {code}: {printed.err}"
    return json.loads(printed.out)


def start_sandbox(
    argv: list[str], settings: dict[str, str], app: App, started: list[SnapchatSandbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The sandbox with the page's clients and audiences; its port must be the one the
    example settings name, but the test serves it on a free one."""
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    assert urlsplit(settings["SNAPCHAT_API_URL"]).port == int(options["--port"])
    assert urlsplit(settings["SNAPCHAT_TOKEN_URL"]).port == int(options["--port"])
    client_id, secret, refresh_token = options["--client"].split(":")
    assert (client_id, secret, refresh_token) == (
        settings["SECRET_SNAPCHAT_MAIN_CLIENT_ID"],
        settings["SECRET_SNAPCHAT_MAIN_CLIENT_SECRET"],
        settings["SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN"],
    ), "the sandbox's client is not the one the example settings hold"
    audience = options["--audience"]
    assert audience == example("local.exports.json.example")["exports"][0]["audience_id"]
    sandbox = SnapchatSandbox().__enter__()
    started.append(sandbox)
    sandbox.add_client(client_id, secret, refresh_token)
    sandbox.add_audience(audience)
    # The variables the test sets win over the settings file, as the page says.
    for name in ("SECRET_SNAPCHAT_MAIN_CLIENT_ID", "SECRET_SNAPCHAT_MAIN_CLIENT_SECRET",
                 "SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN"):  # fmt: skip
        monkeypatch.setenv(name, settings[name])
    monkeypatch.setenv("SNAPCHAT_API_URL", sandbox.api_url)
    monkeypatch.setenv("SNAPCHAT_TOKEN_URL", sandbox.token_url)
    monkeypatch.setenv("SNAPCHAT_AUTHORIZE_URL", sandbox.authorize_url)
    monkeypatch.setenv("EXPORTS_FILE", str(Path.cwd() / settings["EXPORTS_FILE"]))
    monkeypatch.setenv("SNAPSHOT_SETTLE_SECONDS", settings["SNAPSHOT_SETTLE_SECONDS"])


def check_outcome(outputs: list[tuple[list[str], Any]], sandbox: SnapchatSandbox) -> None:
    """What the walkthrough promises: the dry run sends nothing, the run and the queued run
    succeed, the worker says so, and the audience holds the segment's valid addresses."""
    by_command = {" ".join(words[5:7]): answer for words, answer in outputs if len(words) > 6}
    generated = next(a for w, a in outputs if "generate" in w)
    dry = next(a for w, a in outputs if "--dry-run" in w)
    assert (dry["status"], dry["dry_run"], dry["uploaded"]) == ("succeeded", True, 0)
    ran = next(a for w, a in outputs if w[-2:] == ["run", "high-value-customers"])
    assert ran["status"] == "succeeded", ran.get("advice")
    assert ran["uploaded"] == generated["distinct_valid"]
    worked = by_command["work --once"]
    assert [run["status"] for run in worked["runs"]] == ["succeeded"]
    listed = next(a for w, a in outputs if "runs" in w[5:6])
    assert len(listed["runs"]) == 3
    assert len(sandbox.identifiers(ran["audience_id"])) == generated["distinct_valid"]
