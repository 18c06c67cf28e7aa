"""Telemetry with OpenTelemetry's real SDK and its in-memory exporters: the metrics, spans
and log properties of a succeeded, a failed, a retried and a given-up run, the timer's
stale-snapshot gauge, and that no identifier, hash, token or secret is in any of them."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.adapters.jobqueue import Job
from shared.adapters.snapchat import TOKEN_ROUTE
from shared.core.endings import EndReason
from shared.core.errors import AuthenticationError, RemovalBlocked
from shared.core.privacy import SECRETS
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import CLIENT_SECRET, REFRESH_TOKEN, App

pytestmark = pytest.mark.integration
PATH = "CustomerInsights_t1/BlobExport/HighValue"

DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
READER = InMemoryMetricReader(preferred_temporality=DELTA)  # type: ignore[arg-type]
SPANS = InMemorySpanExporter()
_providers = TracerProvider()
_providers.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_providers)
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@dataclass
class Point:
    name: str
    attributes: dict[str, Any]
    value: float  # a counter's sum, a histogram's sum
    count: int  # a histogram's count (1 for a counter)


@dataclass
class Captured:
    points: list[Point]
    spans: list[ReadableSpan]
    logs: list[logging.LogRecord]

    def of(self, name: str, **attributes: Any) -> list[Point]:
        return [
            p
            for p in self.points
            if p.name == name and all(p.attributes.get(k) == v for k, v in attributes.items())
        ]

    def total(self, name: str, **attributes: Any) -> float:
        return sum(p.value for p in self.of(name, **attributes))


def collect() -> list[Point]:
    data = READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value, count = point.sum, point.count  # type: ignore[union-attr]
                    else:
                        count = 1
                    found.append(Point(metric.name, dict(point.attributes), value, count))
    return found


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Captured:
    # The SDK's providers are the ones installed here (they can be set once per process).
    assert trace.get_tracer_provider() is _providers
    collect()  # what earlier tests recorded is not this test's
    SPANS.clear()
    caplog.set_level(logging.INFO)
    return Captured([], [], [])


def finish_capture(state: Captured, caplog: pytest.LogCaptureFixture) -> Captured:
    state.points = collect()
    state.spans = list(SPANS.get_finished_spans())
    state.logs = list(caplog.records)
    return state


def run_export(app: App, blob_service: BlobServiceClient) -> tuple[RunRecord, set[str]]:
    """One run of a 300-profile export: its record, and the hashes Snapchat should hold."""
    export = write_export(blob_service, container=app.container, path=PATH, profiles=300)
    queued = service.request_run(app.runtime, "high-value", "http")
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get("high-value", queued.run_id)
    assert record is not None
    return record, export.expected_hex


def test_a_succeeded_run_is_counted_with_its_dimensions_and_spans(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record, hashes = run_export(app, blob_service)
    seen = finish_capture(captured, caplog)
    assert record.status == "succeeded"
    dims = {"export": "high-value", "trigger": "http", "mode": "add", "status": "succeeded"}
    [run] = seen.of("exporter.runs", **dims)
    assert run.value == 1
    assert run.attributes["error_kind"] == ""
    assert seen.total("exporter.rows_read", **dims) == record.rows_read > 0
    assert seen.total("exporter.identifiers.uploaded", **dims) == record.uploaded > 0
    assert seen.total("exporter.identifiers.added", **dims) == record.added
    assert seen.total("exporter.identifiers.invalid", **dims) == record.invalid
    assert seen.total("exporter.identifiers.duplicates", **dims) == record.duplicates
    [duration] = seen.of("exporter.run.duration", **dims)
    assert duration.count == 1
    assert 0 < duration.value < 120
    [size] = seen.of("exporter.audience.size", export="high-value")
    assert size.value == record.approximate_number_users

    uploads = [r for r in sandbox.requests() if r.path.endswith("/users")]
    accepted = seen.total("exporter.snapchat.requests", route="/segments/{id}/users",
                          method="POST", outcome="accepted", connection="main",
                          export="high-value")  # fmt: skip
    assert accepted == len(uploads) == record.batches

    [run_span] = [s for s in seen.spans if s.name == "export run"]
    assert run_span.attributes is not None
    assert run_span.attributes["export"] == "high-value"
    assert run_span.attributes["run_id"] == record.run_id
    assert run_span.attributes["status"] == "succeeded"
    calls = [s for s in seen.spans if s.name == "snapchat POST /segments/{id}/users"]
    assert len(calls) == len(uploads)
    for call in calls:
        assert call.attributes is not None
        assert call.attributes["http.response.status_code"] == 200
        assert call.attributes["url.template"] == "/segments/{id}/users"
        assert call.parent is not None
        assert call.parent.span_id == run_span.context.span_id  # within the run's span

    during = [r for r in seen.logs if getattr(r, "run_id", None) == record.run_id]
    assert during, "no log record carried the run's id"
    assert all(getattr(r, "export", None) == "high-value" for r in during)
    assert any("succeeded" in r.getMessage() for r in during)
    assert_private(seen, hashes)


def test_a_run_whose_credentials_are_refused_is_counted_as_such(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.rebuild(monkeypatch, SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN="revoked-refresh-token-0")
    record, hashes = run_export(app, blob_service)
    seen = finish_capture(captured, caplog)
    assert record.status == "failed"
    assert record.error_kind == "credentials_refused"
    [run] = seen.of("exporter.runs", export="high-value", status="failed")
    assert run.attributes["error_kind"] == "credentials_refused"
    refused = seen.total("exporter.snapchat.requests", route=TOKEN_ROUTE,
                         outcome="refused")  # fmt: skip
    assert refused >= 1
    [run_span] = [s for s in seen.spans if s.name == "export run"]
    assert run_span.status.status_code is trace.StatusCode.ERROR
    assert_private(seen, hashes, "revoked-refresh-token-0")


def test_a_retried_run_counts_its_retries_and_the_requests_sent_again(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100")
    sandbox.inject("500", times=2, path_contains="/users")
    sandbox.inject("429:retry-after=0", times=1, path_contains="/users")
    record, hashes = run_export(app, blob_service)
    seen = finish_capture(captured, caplog)
    assert record.status == "succeeded"
    assert record.retries == 3
    assert seen.total("exporter.retries", export="high-value", status="succeeded") == 3
    users = {"route": "/segments/{id}/users", "method": "POST"}
    assert seen.total("exporter.snapchat.requests", outcome="retried", **users) == 3
    assert seen.total("exporter.snapchat.requests", outcome="accepted", **users) == record.batches
    statuses = sorted(
        s.attributes["http.response.status_code"]
        for s in seen.spans
        if s.name == "snapchat POST /segments/{id}/users" and s.attributes
    )
    assert statuses.count(500) == 2
    assert statuses.count(429) == 1
    assert_private(seen, hashes)


def test_a_job_that_reached_the_poison_queue_is_a_failed_run_that_gave_up(
    app: App,
    blob_service: BlobServiceClient,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=10)
    queued = service.request_run(app.runtime, "high-value", "timer")
    service.give_up(app.runtime, Job(queued.run_id, "high-value", queued.snapshot))
    seen = finish_capture(captured, caplog)
    [run] = seen.of("exporter.runs", export="high-value", trigger="timer", status="failed")
    assert run.attributes["error_kind"] == "gave_up"


def test_the_timer_reports_how_long_a_settled_snapshot_has_waited(
    app: App,
    blob_service: BlobServiceClient,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_export(blob_service, container=app.container, path=PATH, profiles=10)
    later = datetime.now(UTC) + timedelta(hours=7)
    service.schedule(app.runtime, later)  # queues a run; none has succeeded yet
    [waiting] = finish_capture(captured, caplog).of("exporter.snapshot.waiting_hours")
    assert waiting.attributes == {"export": "high-value"}
    assert 6.9 < waiting.value < 7.1

    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    collect()
    service.schedule(app.runtime, later)
    [waiting] = [p for p in collect() if p.name == "exporter.snapshot.waiting_hours"]
    assert waiting.value == 0  # exported: nothing is waiting


def test_a_run_resumed_on_a_later_delivery_is_counted_once(
    app: App,
    blob_service: BlobServiceClient,
    sandbox: SnapchatSandbox,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100", RETRY_ATTEMPTS="1")
    sandbox.inject("503", times=1, path_contains="/users")  # the first delivery gives up
    record, _ = run_export(app, blob_service)
    seen = finish_capture(captured, caplog)
    assert record.status == "succeeded"
    assert record.attempts == 2
    [run] = seen.of("exporter.runs", export="high-value")
    assert run.value == 1
    assert run.attributes["status"] == "succeeded"
    refused = seen.total("exporter.snapchat.requests", route="/segments/{id}/users",
                         outcome="refused")  # fmt: skip
    assert refused == 1  # no retry budget left on that delivery: a final refusal


def test_the_timer_beats_and_counts_the_exports_it_could_not_check(
    app: App,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The export account refuses the app (a wrong key: Azurite answers 403), as it would an
    # identity without Storage Blob Data Reader.
    key = re.search(r"AccountKey=([^;]+)", app.env["AzureWebJobsStorage"])
    assert key is not None
    wrong = app.env["AzureWebJobsStorage"].replace(key.group(1), "d3Jvbmcta2V5" * 8)
    app.rebuild(monkeypatch, EXPORT_STORAGE=wrong)
    service.schedule(app.runtime)
    seen = finish_capture(captured, caplog)
    assert seen.total("exporter.timer.ticks") == 1
    [failed] = seen.of("exporter.timer.check_failed")
    assert failed.attributes == {"export": "high-value"}


def test_error_kinds_name_the_cases_the_alerts_watch() -> None:
    assert EndReason.of(AuthenticationError("refused")) == "credentials_refused"
    assert EndReason.of(RemovalBlocked("removal safeguard: would remove 90%")) == "removal_blocked"


HEX64 = re.compile(r"\b[0-9a-fA-F]{64}\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def assert_private(seen: Captured, hashes: set[str], *more: str) -> None:
    """No attribute of a metric, span or log record holds a hash, an email or a secret."""
    values: list[str] = []
    for point in seen.points:
        values += [str(v) for v in point.attributes.values()]
    for span in seen.spans:
        values += [span.name, *(str(v) for v in (span.attributes or {}).values())]
        for event in span.events:
            values += [str(v) for v in (event.attributes or {}).values()]
    for log_record in seen.logs:
        values += [log_record.getMessage(), str(getattr(log_record, "run_id", ""))]
    text = json.dumps(values)
    assert not HEX64.search(text)
    assert not EMAIL.search(text)
    registered = [*SECRETS._kept, *SECRETS._recent]  # every token the run was given, too
    assert registered
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *more, *registered):
        assert secret not in text
    assert hashes
    assert not any(digest in text.lower() for digest in hashes)
