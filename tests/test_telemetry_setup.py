"""When telemetry is switched on, and the run's IDs on log records (no server needed)."""

from __future__ import annotations

import logging

import pytest

from shared.adapters import telemetry
from shared.core.runrecord import RunRecord


def test_nothing_is_exported_without_a_connection_string() -> None:
    assert telemetry.configure({}) is False
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is False


def test_the_python_worker_may_have_configured_it_already() -> None:
    env = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-0",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
    }
    assert telemetry.configure(env) is True  # and the distribution is not configured twice


def test_log_records_made_during_a_run_carry_its_ids(caplog: pytest.LogCaptureFixture) -> None:
    telemetry.install_log_properties()
    caplog.set_level(logging.INFO)
    record = RunRecord(run_id="20261201T000000000Z-abc123", export="high-value",
                       trigger="http", snapshot="2026/12/01/0000")  # fmt: skip
    with telemetry.run_context(record):
        logging.getLogger("shared.pipeline").info("inside")
    logging.getLogger("shared.pipeline").info("outside")
    inside, outside = caplog.records[-2:]
    assert (inside.run_id, inside.export) == (record.run_id, "high-value")  # type: ignore[attr-defined]
    assert not hasattr(outside, "run_id")
