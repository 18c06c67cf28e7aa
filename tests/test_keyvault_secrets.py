"""Credentials from Key Vault: the real SecretClient against the loopback HTTPS fake."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.keyvault_fake import KeyVaultFake, secret_client
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared import runtime
from shared.adapters.secretstore import KeyVaultSecrets
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, App

PATH = "CustomerInsights_t1/BlobExport/HighValue"


@pytest.fixture
def vault() -> Iterator[KeyVaultFake]:
    with KeyVaultFake() as fake:
        yield fake


@pytest.fixture
def vault_app(app: App, vault: KeyVaultFake, monkeypatch: pytest.MonkeyPatch) -> App:
    """The test app, with its secrets in Key Vault and none in the environment."""
    for name in list(app.env):
        if name.startswith("SECRET_"):
            monkeypatch.delenv(name)
    client = secret_client(vault, retry_total=0)
    app.runtime.secrets = KeyVaultSecrets(client)
    runtime.install(app.runtime)
    return app


def store_credentials(vault: KeyVaultFake, *, refresh_token: str | None = REFRESH_TOKEN) -> None:
    vault.set_secret("snapchat-main-client-id", CLIENT_ID)
    vault.set_secret("snapchat-main-client-secret", CLIENT_SECRET)
    if refresh_token is not None:
        vault.set_secret("snapchat-main-refresh-token", refresh_token)


def export_once(app: App, blob_service: BlobServiceClient, *, fresh: bool = True) -> RunRecord:
    if fresh:
        blob_service.create_container(app.container)
        blob_service.get_blob_client(
            app.container, f"{PATH}/2026/11/05/1200/HighValue_1.csv"
        ).upload_blob(b"CustomerId,EMail\n1,kv@example.com\n")
    queued = service.request_run(app.runtime, "high-value", "http")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None
    return record


def test_a_run_reads_its_credentials_from_key_vault(
    vault_app: App, vault: KeyVaultFake, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    store_credentials(vault)
    record = export_once(vault_app, blob_service)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == {hashlib.sha256(b"kv@example.com").hexdigest()}
    paths = {path for _, path, status in vault.requests() if status == 200}
    assert {
        "/secrets/snapchat-main-client-secret/",
        "/secrets/snapchat-main-refresh-token/",
    } <= paths


@pytest.mark.parametrize("value", [None, "   "])
def test_a_missing_or_empty_secret_fails_the_run_and_names_it(
    vault_app: App, vault: KeyVaultFake, blob_service: BlobServiceClient, value: str | None
) -> None:
    store_credentials(vault, refresh_token=value)
    record = export_once(vault_app, blob_service)
    assert record.status == "failed"
    assert "secret 'snapchat-main-refresh-token'" in record.error
    assert ("not found" if value is None else "empty") in record.error


def test_a_rotated_refresh_token_is_stored_as_a_new_version_and_used_next_time(
    rotating_sandbox: SnapchatSandbox,
    vault_app: App,
    vault: KeyVaultFake,
    blob_service: BlobServiceClient,
) -> None:
    store_credentials(vault)
    first = export_once(vault_app, blob_service)
    assert first.status == "succeeded", first.error
    versions = vault.versions("snapchat-main-refresh-token")
    assert versions[0] == REFRESH_TOKEN
    assert len(versions) == 2
    assert versions[-1] == rotating_sandbox.current_refresh_token(CLIENT_ID) != REFRESH_TOKEN

    second = export_once(vault_app, blob_service, fresh=False)
    assert second.status == "succeeded", second.error  # the old token no longer works
    assert len(vault.versions("snapchat-main-refresh-token")) == 3


def test_a_failed_write_of_a_rotated_token_is_reported(
    rotating_sandbox: SnapchatSandbox,
    vault_app: App,
    vault: KeyVaultFake,
    blob_service: BlobServiceClient,
) -> None:
    store_credentials(vault)
    vault.fail_writes = True
    record = export_once(vault_app, blob_service)
    assert record.status == "failed"
    assert "write secret 'snapchat-main-refresh-token'" in record.error
    assert rotating_sandbox.identifiers(AUDIENCE) == set()


def test_a_run_refused_an_old_refresh_token_uses_the_one_another_run_stored(
    rotating_sandbox: SnapchatSandbox, vault_app: App, vault: KeyVaultFake
) -> None:
    store_credentials(vault)
    connection = vault_app.runtime.definitions.connection("main")
    first = vault_app.runtime.snapchat(connection)
    second = vault_app.runtime.snapchat(connection)  # both read the same refresh token
    assert first.get_segment(AUDIENCE)["id"] == AUDIENCE  # rotates and stores a new one
    assert second.get_segment(AUDIENCE)["id"] == AUDIENCE  # refused, re-reads, succeeds
    grants = [r.status for r in rotating_sandbox.requests() if r.path.endswith("/access_token")]
    assert grants == [200, 400, 200]
    assert len(vault.versions("snapchat-main-refresh-token")) == 3


def test_whether_a_secret_is_present_comes_from_its_metadata(vault: KeyVaultFake) -> None:
    store = KeyVaultSecrets(secret_client(vault, retry_total=0))
    vault.set_secret("snapchat-main-client-id", CLIENT_ID)
    assert store.present("snapchat-main-client-id") is True
    assert store.present("snapchat-main-refresh-token") is False
    paths = [path for method, path, _ in vault.requests() if method == "GET"]
    assert paths  # it asked the vault
    assert all(path.split("?")[0].endswith("/versions") for path in paths)  # never a value
