"""When telemetry is switched on, how, and what every log record gets (no server needed)."""

from __future__ import annotations

import logging
from typing import Any

import azure.monitor.opentelemetry
import pytest
from azure.identity import ManagedIdentityCredential

from shared.adapters import telemetry
from shared.core.privacy import SECRETS
from shared.core.runrecord import RunRecord

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x/"


@pytest.fixture
def distro(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls to the distribution's configure_azure_monitor, recorded instead of made."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(azure.monitor.opentelemetry, "configure_azure_monitor",
                        lambda **kwargs: calls.append(kwargs))  # fmt: skip
    return calls


def test_nothing_is_exported_without_a_connection_string(distro: list[dict[str, Any]]) -> None:
    assert telemetry.configure({}) is False
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is False
    assert distro == []


def test_the_app_configures_the_distribution_with_its_managed_identity(
    distro: list[dict[str, Any]],
) -> None:
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
           "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555"}  # fmt: skip
    assert telemetry.configure(env) is True
    [call] = distro
    assert call["connection_string"] == CONNECTION
    assert isinstance(call["credential"], ManagedIdentityCredential)
    assert call["logger_name"] == ""
    disabled = {name for name, option in call["instrumentation_options"].items()
                if option == {"enabled": False}}  # fmt: skip
    assert {"requests", "urllib3", "urllib"} <= disabled


def test_when_the_worker_configures_it_the_app_does_not_again(
    distro: list[dict[str, Any]],
) -> None:
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
           "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}  # fmt: skip
    assert telemetry.configure(env) is True
    assert distro == []


def test_a_distribution_that_fails_leaves_the_app_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("exporter import failed")

    monkeypatch.setattr(azure.monitor.opentelemetry, "configure_azure_monitor", broken)
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}) is False
    assert "Telemetry is off" in caplog.text


def test_log_records_made_during_a_run_carry_its_ids(caplog: pytest.LogCaptureFixture) -> None:
    telemetry.install_log_properties()
    caplog.set_level(logging.INFO)
    record = RunRecord(run_id="20261201T000000000Z-abc123", export="high-value",
                       trigger="http", snapshot="2026/12/01/0000")  # fmt: skip
    with telemetry.run_context(record):
        logging.getLogger("shared.export.pipeline").info("inside")
    logging.getLogger("shared.export.pipeline").info("outside")
    inside, outside = caplog.records[-2:]
    assert (inside.run_id, inside.export) == (record.run_id, "high-value")  # type: ignore[attr-defined]
    assert not hasattr(outside, "run_id")


def test_every_record_loses_its_secrets_as_it_is_made(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever handler gets it, one added later included (the distribution's)."""
    telemetry.install_log_properties()
    SECRETS.add("tok3n-value-8f7e6d5c4b")
    caplog.set_level(logging.INFO)
    logging.getLogger("shared.adapters.snapchat").info("refreshed %s", "tok3n-value-8f7e6d5c4b")
    assert caplog.records[-1].getMessage() == "refreshed [secret]"


def test_a_record_whose_arguments_do_not_fit_is_still_made() -> None:
    telemetry.install_log_properties()
    record = logging.getLogger("shared").makeRecord("shared", logging.INFO, "f", 1,
                                                     "%d rows", ("many",), None)  # fmt: skip
    assert record.args == ("many",)  # left for the handler to report, not raised here
