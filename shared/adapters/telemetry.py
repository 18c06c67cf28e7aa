"""Adapter for Azure Monitor: the metrics, spans and log properties the app emits, through
OpenTelemetry's API, and the switch that sends them to Application Insights.

``configure`` turns on Microsoft's distribution (``azure-monitor-opentelemetry``) when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, as it is in Azure, with the app's managed
identity (the component accepts no key). Elsewhere nothing is configured: the API's
default providers drop everything, and the tests install the SDK's in-memory readers.

What is recorded carries names, IDs, counts and statuses only: never a body, a token, an
identifier or a hash. Dimensions of a run's metrics: ``export``, ``trigger``, ``mode``,
``status``, ``dry_run`` and ``error_kind`` (for a failed run: ``credentials_refused``,
``removal_blocked``, ``gave_up``, … see ``shared.attempts``).
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

from shared.core.privacy import install_log_filter
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
AUDIENCE_SIZE = _meter.create_histogram(
    "exporter.audience.size", unit="{user}", description="Audience size Snapchat reported"
)
# Every request to Snapchat, by outcome: accepted, retried (to be sent again) or refused.
SNAPCHAT_REQUESTS = _meter.create_counter("exporter.snapchat.requests", unit="{request}")
# The timer's view of each enabled export: how long its newest settled snapshot has waited
# for a successful run (0 when it has one). The stale-audience alert watches it.
SNAPSHOT_WAITING = _meter.create_histogram("exporter.snapshot.waiting_hours", unit="h")

_HTTP_INSTRUMENTATIONS = ("requests", "urllib", "urllib3", "httpx")
_RUN: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("run", default=None)


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Send telemetry to Application Insights when the app is configured for it (True)."""
    env = os.environ if env is None else env
    install_log_properties()
    if not env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        return False
    if env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").lower() == "true":
        return True  # the Python worker configured the distribution itself
    from azure.identity import ManagedIdentityCredential  # noqa: PLC0415 - only in Azure
    from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415

    client_id = env.get("AzureWebJobsStorage__clientId") or None
    try:
        configure_azure_monitor(
            credential=ManagedIdentityCredential(client_id=client_id),
            logger_name="",  # the root logger: the app's records, through its privacy filter
            enable_live_metrics=False,
            # Our own spans describe Snapchat requests by route template; the generic HTTP
            # instrumentations would record full URLs.
            instrumentation_options={name: {"enabled": False} for name in _HTTP_INSTRUMENTATIONS},
        )
    except ValueError as exc:  # a malformed connection string: run on, without telemetry
        log.error("Telemetry is off: APPLICATIONINSIGHTS_CONNECTION_STRING %s", exc)
        return False
    install_log_filter()  # the distribution's log handler is new: it gets the filter too
    return True


# -- log records: run_id and export as properties ------------------------------------------


@functools.cache
def install_log_properties() -> None:
    """Every log record made while a run is handled carries ``run_id`` and ``export`` as
    attributes (Application Insights shows them as custom dimensions). Once per process."""
    make = logging.getLogRecordFactory()

    def with_run(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        current = _RUN.get()
        if current is not None:
            record.run_id, record.export = current
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
            yield span
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


def run_ended(record: RunRecord, error_kind: str = "") -> None:
    """Record the totals of a run that ended (succeeded or failed), once."""
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
    if record.approximate_number_users is not None:
        AUDIENCE_SIZE.record(record.approximate_number_users, {"export": record.export})
    span = trace.get_current_span()
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
        call = SnapchatCall(span, {"method": method, "route": route, "connection": connection})
        try:
            yield call
        finally:
            SNAPCHAT_REQUESTS.add(1, {**call._dims, "outcome": call.outcome or "refused"})
