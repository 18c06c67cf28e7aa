"""Settings: read once, every problem named, secrets kept out of repr, docs in step."""

from __future__ import annotations

import json
import re

import pytest

from shared.core.errors import ConfigurationError
from shared.core.settings import APP_ROOT, SETTINGS, Settings

CONNECTION = "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=c2VjcmV0a2V5;"


def test_defaults_apply_when_only_storage_is_set() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": CONNECTION})
    assert settings.upload_batch_size == 100_000
    assert settings.snapchat_api_url == "https://adsapi.snapchat.com/v1"
    assert settings.jobs_queue == "export-jobs"
    assert settings.key_vault_url is None
    assert settings.export_storage == settings.app_storage
    assert settings.exports_file == APP_ROOT / "exports.json"


def test_managed_identity_endpoints_replace_the_connection_string() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage__blobServiceUri": "https://app.blob.core.windows.net",
            "AzureWebJobsStorage__queueServiceUri": "https://app.queue.core.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://app.table.core.windows.net",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
            "EXPORT_STORAGE__blobServiceUri": "https://ci.blob.core.windows.net/",
            "KEY_VAULT_URL": "https://kv-demo.vault.azure.net/",
        }
    )
    assert settings.app_storage.connection_string is None
    assert settings.export_storage.blob_url == "https://ci.blob.core.windows.net"
    assert settings.export_storage.client_id == "11111111-2222-3333-4444-555555555555"
    assert settings.key_vault_url == "https://kv-demo.vault.azure.net"


def test_every_problem_is_named_in_one_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(
            {
                "UPLOAD_BATCH_SIZE": "100001",
                "HTTP_TIMEOUT_SECONDS": "soon",
                "KEY_VAULT_URL": "http://kv.example",
                "JOBS_QUEUE": "Bad_Queue",
            }
        )
    names = [p.split(":")[0] for p in caught.value.problems]
    assert names == [
        "AzureWebJobsStorage",
        "JOBS_QUEUE",
        "KEY_VAULT_URL",
        "UPLOAD_BATCH_SIZE",
        "HTTP_TIMEOUT_SECONDS",
    ]


def test_each_problem_quotes_the_bad_value_but_never_a_connection_string() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(
            {
                "AzureWebJobsStorage": CONNECTION,
                "UPLOAD_BATCH_SIZE": "abc",
                "HTTP_TIMEOUT_SECONDS": "soon",
                "RUNS_TABLE": "bad-table",
                "KEY_VAULT_URL": "http://kv.example/?sig=c2lnbmF0dXJl",
                "SNAPCHAT_API_URL": "acct.example/v1?sv=1&sig=c2lnbmF0dXJl",
                "SNAPCHAT_TOKEN_URL": "ftp://user:cGFzc3dvcmQ@host.example/token#c2lnbmF0dXJl",
            }
        )
    problems = caught.value.problems
    assert (
        "UPLOAD_BATCH_SIZE: 'abc' is not a whole number; expected one from 1 to 100000" in problems
    )
    assert "HTTP_TIMEOUT_SECONDS: 'soon' is not a number; expected one from 0.1 to 600" in problems
    assert any(p.startswith("RUNS_TABLE: 'bad-table' is not 3-63 letters") for p in problems)
    assert "KEY_VAULT_URL: 'http://kv.example/' is not an https URL" in problems
    assert "SNAPCHAT_API_URL: 'acct.example/v1' is not an http or https URL" in problems
    assert "SNAPCHAT_TOKEN_URL: 'ftp://host.example/token' is not an http or https URL" in problems
    text = str(caught.value)
    assert "c2VjcmV0a2V5" not in text
    assert "c2lnbmF0dXJl" not in text
    assert "cGFzc3dvcmQ" not in text


def test_the_development_storage_shorthand_means_azurite_on_its_default_ports() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    connection = settings.app_storage.connection_string or ""
    assert "AccountName=devstoreaccount1" in connection
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in connection


def test_repr_never_shows_a_connection_string() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": CONNECTION})
    assert "c2VjcmV0a2V5" not in repr(settings)
    assert "AccountKey" not in repr(settings)


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (APP_ROOT / "docs" / "configuration.md").read_text()
    table = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    assert {s.name for s in SETTINGS} <= table


def test_local_settings_example_sets_every_setting() -> None:
    values = json.loads((APP_ROOT / "local.settings.json.example").read_text())["Values"]
    assert {s.name for s in SETTINGS if s.name not in values} <= {
        s.name for s in SETTINGS if s.default is None
    }
    Settings.from_env(values)  # and it is valid


def test_the_public_address_defaults_to_the_platforms_host_name_when_hosted() -> None:
    storage = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    hosted = {**storage, "WEBSITE_INSTANCE_ID": "1", "WEBSITE_HOSTNAME": "ex.azurewebsites.net"}
    assert Settings.from_env(hosted).public_url == "https://ex.azurewebsites.net"
    custom = {**hosted, "PUBLIC_URL": "https://exports.contoso.com"}
    assert Settings.from_env(custom).public_url == "https://exports.contoso.com"
    # func start sets WEBSITE_HOSTNAME too (localhost:7071): not hosted, so not used.
    local = {**storage, "WEBSITE_HOSTNAME": "localhost:7071"}
    assert Settings.from_env(local).public_url is None
    with pytest.raises(ConfigurationError, match="PUBLIC_URL"):
        Settings.from_env({**hosted, "PUBLIC_URL": "https://exports.contoso.com/app"})
    with pytest.raises(ConfigurationError, match="PUBLIC_URL"):
        Settings.from_env({**hosted, "PUBLIC_URL": "http://exports.contoso.com"})


@pytest.mark.parametrize(
    "name", ["SNAPCHAT_TOKEN_URL", "SNAPCHAT_API_URL", "SNAPCHAT_AUTHORIZE_URL"]
)
def test_snapchat_urls_must_be_https_unless_on_this_machine(name: str) -> None:
    base = {"AzureWebJobsStorage": CONNECTION}
    with pytest.raises(ConfigurationError, match=f"{name}: .*plain HTTP"):
        Settings.from_env({**base, name: "http://tokens.example.com/oauth"})
    for url in ("http://127.0.0.1:8080/x", "http://localhost:9/x", "https://tokens.example.com/x"):
        Settings.from_env({**base, name: url})
