"""Local runs without Key Vault: secrets the app stores itself survive the process."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.adapters.secretstore import EnvironmentSecrets
from shared.connections import terminal
from shared.core.definitions import default_connection
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, App
from tests.leaks import assert_no_leaks
from tests.snapshots import emails, hashes, snapshot
from tests.test_connect import browser


def export(app: App) -> RunRecord:
    queued = service.request_run(app.runtime, "high-value", "cli")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None
    return record


def secrets_file(app: App) -> Path:
    return Path(app.env["LOCAL_SECRETS_FILE"])


def test_a_rotated_refresh_token_is_kept_for_the_next_process(
    app: App, rotating_sandbox: SnapchatSandbox, blob_service: BlobServiceClient,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    snapshot(blob_service, app.container, emails(range(20)), day=1)
    first = export(app)
    assert first.status == "succeeded", first.error
    rotated = rotating_sandbox.current_refresh_token(CLIENT_ID)
    assert rotated != REFRESH_TOKEN  # the variable's token is retired now

    # A new process: its SECRET_* variable holds the token it was configured with, retired now.
    app.rebuild(monkeypatch, SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN=REFRESH_TOKEN)
    snapshot(blob_service, app.container, emails(range(25)), day=2)
    second = export(app)
    assert second.status == "succeeded", second.error
    assert rotating_sandbox.identifiers(AUDIENCE) == hashes(range(25))

    file = secrets_file(app)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert_no_leaks("log", caplog.text, {REFRESH_TOKEN, rotated, CLIENT_SECRET})
    assert_no_leaks("run records", repr([first, second]), {rotated, CLIENT_SECRET})


def test_a_secret_variable_the_operator_changed_wins_over_the_file(tmp_path: Path) -> None:
    env = {"SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN": "first-token-value"}
    store = EnvironmentSecrets(env, tmp_path / "s" / "secrets.json")
    store.set("snapchat-main-refresh-token", "rotated-token-value")
    assert store.get("snapchat-main-refresh-token") == "rotated-token-value"
    # a new process with the same variable still gets the rotated one
    again = EnvironmentSecrets(dict(env), tmp_path / "s" / "secrets.json")
    assert again.get("snapchat-main-refresh-token") == "rotated-token-value"
    # the operator pasted a new token into the variable: that one counts now
    changed = {"SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN": "pasted-token-value"}
    assert (
        EnvironmentSecrets(changed, tmp_path / "s" / "secrets.json").get(
            "snapchat-main-refresh-token"
        )
        == "pasted-token-value"
    )


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = EnvironmentSecrets({}, tmp_path / "secrets.json")
    store.set("snapchat-main-client-id", "id-value")
    (tmp_path / "secrets.json").chmod(0o644)
    with pytest.raises(Exception, match=r"readable by others; run chmod 600") as caught:
        store.get("snapchat-main-client-id")
    assert "id-value" not in str(caught.value)


def test_connect_without_a_vault_stores_locally_and_the_next_run_uses_it(
    app: App, sandbox: SnapchatSandbox, blob_service: BlobServiceClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name in ("CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN"):
        monkeypatch.delenv(f"SECRET_SNAPCHAT_MAIN_{name}")
    app.rebuild(monkeypatch)
    assert isinstance(app.runtime.secrets, EnvironmentSecrets)
    with requests.Session() as session:
        terminal.connect(
            app.runtime.secrets, default_connection("main"), client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET, token_url=sandbox.token_url, session=session,
            show=browser(), listener=terminal.CallbackListener(),
            authorize_base=sandbox.authorize_url,
        )  # fmt: skip
    app.rebuild(monkeypatch)
    snapshot(blob_service, app.container, emails(range(5)), day=1)
    record = export(app)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == hashes(range(5))
