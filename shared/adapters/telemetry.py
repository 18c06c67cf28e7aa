"""Adapter for Azure Monitor: the metrics, spans and log properties the app emits, through
OpenTelemetry's API, and the switch that sends them to Application Insights.

``configure`` turns on Microsoft's distribution (``azure-monitor-opentelemetry``) when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, as it is in Azure, with the app's managed
identity (the component accepts no key). Elsewhere nothing is configured: the API's
default providers drop everything, and the tests install the SDK's in-memory readers.

What is recorded carries names, IDs, counts and statuses only: never a body, a token, an
identifier or a hash. Dimensions of a run's metrics: ``export``, ``trigger``, ``mode``,
``status``, ``dry_run`` and ``error_kind`` (for a failed run, why: an ``EndReason`` such as
``credentials_refused``, ``removal_blocked``, ``gave_up``; see ``shared.core.endings``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.core.endings import EndReason
from shared.core.privacy import SecretFilter, install_log_filter
from shared.core.runrecord import RunRecord

log = logging.getLogger(__name__)

NAME = "ci_snapchat_export"
_meter = metrics.get_meter(NAME)
_tracer = trace.get_tracer(NAME)

# A run's totals, recorded once when it ends (names as Application Insights shows them).
RUNS = _meter.create_counter("exporter.runs", unit="{run}", description="Runs that ended")
ROWS_READ = _meter.create_counter("exporter.rows_read", unit="{row}")
UPLOADED = _meter.create_counter("exporter.identifiers.uploaded", unit="{identifier}")
ADDED = _meter.create_counter("exporter.identifiers.added", unit="{identifier}")
REMOVED = _meter.create_counter("exporter.identifiers.removed", unit="{identifier}")
INVALID = _meter.create_counter("exporter.identifiers.invalid", unit="{identifier}")
DUPLICATES = _meter.create_counter("exporter.identifiers.duplicates", unit="{identifier}")
RETRIES = _meter.create_counter("exporter.retries", unit="{request}")
DURATION = _meter.create_histogram("exporter.run.duration", unit="s")
# Data landed → audience updated: from a snapshot's completion to its run's successful end.
# The latency alert watches it.
LATENCY = _meter.create_histogram(
    "exporter.run.latency", unit="s", description="Snapshot complete to audience updated"
)
AUDIENCE_SIZE = _meter.create_histogram(
    "exporter.audience.size", unit="{user}", description="Audience size Snapchat reported"
)
# Every request to Snapchat, by outcome: accepted, retried (to be sent again) or refused.
SNAPCHAT_REQUESTS = _meter.create_counter("exporter.snapchat.requests", unit="{request}")
# The timer's view of each enabled export: how long its newest settled snapshot has waited
# for a successful run (0 when it has one). The stale-audience alert watches it.
SNAPSHOT_WAITING = _meter.create_histogram("exporter.snapshot.waiting_hours", unit="h")
# The timer's heartbeat, and the exports it could not look at (their staleness is unknown).
TIMER_TICKS = _meter.create_counter("exporter.timer.ticks", unit="{tick}")
TIMER_CHECK_FAILED = _meter.create_counter("exporter.timer.check_failed", unit="{check}")
# An audience check's warning (shared.core.audience_health): the code only, never a figure.
AUDIENCE_WARNINGS = _meter.create_counter("exporter.audience.warnings", unit="{warning}")

_HTTP_INSTRUMENTATIONS = ("requests", "urllib", "urllib3", "httpx")
# The run being handled: its IDs (for log records and request metrics) and its span.
_RUN: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("run", default=None)
_RUN_SPAN: contextvars.ContextVar[trace.Span | None] = contextvars.ContextVar("span", default=None)


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Send telemetry to Application Insights when the app is configured for it (True)."""
    env = os.environ if env is None else env
    install_log_properties()
    connection_string = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection_string:
        return False
    if env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").lower() == "true":
        # As Microsoft documents it for Python Functions (and the template sets): the worker
        # configures the distribution itself, with the identity the exporter reads from
        # APPLICATIONINSIGHTS_AUTHENTICATION_STRING and the generic HTTP instrumentations
        # off (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS); configuring it again would double it.
        return True
    from azure.identity import ManagedIdentityCredential  # noqa: PLC0415 - only in Azure
    from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415

    client_id = env.get("AzureWebJobsStorage__clientId") or None
    try:
        configure_azure_monitor(
            connection_string=connection_string,
            credential=ManagedIdentityCredential(client_id=client_id),
            logger_name="",  # the root logger: the app's records, through its privacy filter
            enable_live_metrics=False,
            # Our own spans describe Snapchat requests by route template; the generic HTTP
            # instrumentations would record full URLs.
            instrumentation_options={name: {"enabled": False} for name in _HTTP_INSTRUMENTATIONS},
        )
    except Exception as exc:  # noqa: BLE001 - telemetry never takes the app down
        log.error(
            "Telemetry is off: Azure Monitor could not be configured (%s)", type(exc).__name__
        )
        return False
    install_log_filter()  # the distribution's log handler is new: it gets the filter too
    return True


# -- log records: run_id and export as properties ------------------------------------------


@functools.cache
def install_log_properties() -> None:
    """Every log record made while a run is handled carries ``run_id`` and ``export`` as
    attributes (Application Insights shows them as custom dimensions), and every record has
    the registered secrets taken out of its message as it is made, whichever handler gets
    it, even one added later (such as the distribution's). Once per process."""
    make = logging.getLogRecordFactory()
    redact = SecretFilter()

    def with_run(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        current = _RUN.get()
        if current is not None:
            record.run_id, record.export = current
        # Arguments that do not fit the message are reported by the handler, as logging does.
        with contextlib.suppress(TypeError, ValueError):
            redact.filter(record)
        return record

    logging.setLogRecordFactory(with_run)


@contextlib.contextmanager
def run_context(record: RunRecord) -> Iterator[trace.Span]:
    """While one attempt of a run is handled: its span, and its IDs on every log record."""
    token = _RUN.set((record.run_id, record.export))
    try:
        with _tracer.start_as_current_span(
            "export run", kind=SpanKind.INTERNAL, attributes=_run_attributes(record)
        ) as span:
            span_token = _RUN_SPAN.set(span)
            try:
                yield span
            finally:
                _RUN_SPAN.reset(span_token)
    finally:
        _RUN.reset(token)


def _run_attributes(record: RunRecord) -> dict[str, str | bool]:
    return {
        "export": record.export,
        "run_id": record.run_id,
        "trigger": str(record.trigger),
        "mode": str(record.mode),
        "dry_run": record.dry_run,
    }


# -- a run's metrics ---------------------------------------------------------------------


def run_ended(record: RunRecord, reason: EndReason | None = None) -> None:
    """Record the totals of a run that ended (succeeded or failed, and why), once."""
    error_kind = str(reason or "")
    dims: dict[str, str | bool] = {
        "export": record.export,
        "trigger": str(record.trigger),
        "mode": str(record.mode),
        "status": str(record.status),
        "dry_run": record.dry_run,
        "error_kind": error_kind,
    }
    RUNS.add(1, dims)
    for counter, value in (
        (ROWS_READ, record.rows_read),
        (UPLOADED, record.uploaded),
        (ADDED, record.added),
        (REMOVED, record.removed),
        (INVALID, record.invalid),
        (DUPLICATES, record.duplicates),
        (RETRIES, record.retries),
    ):
        counter.add(value, dims)
    took = _seconds(record.started_at or record.queued_at, record.finished_at)
    if took is not None:
        DURATION.record(took, dims)
    if (latency := record.latency_seconds) is not None and not record.dry_run:
        LATENCY.record(latency, {"export": record.export, "trigger": str(record.trigger)})
    if record.approximate_number_users is not None:
        AUDIENCE_SIZE.record(record.approximate_number_users, {"export": record.export})
    span = _RUN_SPAN.get()  # only the run's own span: a run ended elsewhere has none
    if span is not None:
        span.set_attribute("status", str(record.status))
        if record.status == "failed":
            span.set_status(Status(StatusCode.ERROR, error_kind or "failed"))


def _seconds(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def snapshot_waiting(export: str, hours: float) -> None:
    SNAPSHOT_WAITING.record(max(0.0, hours), {"export": export})


def timer_ticked() -> None:
    TIMER_TICKS.add(1)


def timer_check_failed(export: str) -> None:
    TIMER_CHECK_FAILED.add(1, {"export": export})


def audience_warning(export: str, code: str) -> None:
    AUDIENCE_WARNINGS.add(1, {"export": export, "code": code})


# -- Snapchat requests -------------------------------------------------------------------


class SnapchatCall:
    """One HTTP request to Snapchat, as a span and a count by outcome."""

    def __init__(self, span: trace.Span, dims: dict[str, str]) -> None:
        self._span, self._dims = span, dims
        self.outcome = ""
        self.status: int | None = None

    def answered(self, status: int | None, outcome: str) -> None:
        """``outcome``: ``accepted``; ``retried``: a transient failure (429, 5xx, no answer,
        an expired token), which the client sends again while its retry budget lasts; or
        ``refused``: a final refusal."""
        self.outcome, self.status = outcome, status
        if status is not None:
            self._span.set_attribute("http.response.status_code", status)
        self._span.set_attribute("snapchat.outcome", outcome)
        if outcome != "accepted":
            self._span.set_status(Status(StatusCode.ERROR, outcome))


@contextlib.contextmanager
def snapchat_request(method: str, route: str, connection: str) -> Iterator[SnapchatCall]:
    """``route`` is the path's template (``/segments/{id}/users``), never the path itself."""
    attributes = {"http.request.method": method, "url.template": route, "connection": connection}
    with _tracer.start_as_current_span(
        f"snapchat {method} {route}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        current = _RUN.get()
        dims = {"method": method, "route": route, "connection": connection,
                "export": current[1] if current else ""}  # fmt: skip
        call = SnapchatCall(span, dims)
        try:
            yield call
        finally:
            SNAPCHAT_REQUESTS.add(1, {**call._dims, "outcome": call.outcome or "refused"})
