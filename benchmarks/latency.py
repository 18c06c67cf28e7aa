"""Benchmark: from the last blob Customer Insights writes to the audience holding every identifier.

    python -m benchmarks.latency [--profiles 1000000] [--partitions 8] [--paths events,timer]
                                 [--max-polling-seconds S] [--json FILE]

Starts Azurite and the Snapchat sandbox (each its own process), then for each path, in a
fresh process playing a warm Functions host (``host``): a thread plays the queue trigger,
delivering jobs to the real ``function_app.export_worker`` with the host's documented polling
(100 ms after a message, then 200 ms doubling up to ``maxPollingInterval``: host.json's, or
the platform's default of one minute; without the host's random jitter), while the export is
written as Customer Insights writes it: the partitions, then ``model.json``.

- ``events``: after each blob is written, Event Grid's ``Microsoft.Storage.BlobCreated`` event
  for it, in Microsoft's documented schema, is handed to the real ``function_app.blob_created``
  on a thread of its own, in order, as the platform pushes them (Event Grid's own delivery
  delay, typically well under a second, is not included).
- ``timer``: nothing happens until the timer fires. Its tick is not waited for: the real
  ``function_app.find_new_snapshots`` is called as the last blob is written (the best case,
  measured), and the wait for the tick is added from the schedule (``EXPORT_SCHEDULE``, its
  default unless set): on average half the interval between ticks, at worst all of it, since
  Customer Insights finishes at any moment.

The latency of a path is from the moment the last blob was written to the moment the run's
record says it succeeded (every request accepted: the audience holds every identifier); the
benchmark fails unless the sandbox's audience then holds exactly the expected hashes and the
run uploaded each distinct one. The app's own settings are their defaults
(``SNAPSHOT_SETTLE_SECONDS``, ``SNAPSHOT_RECHECK_SECONDS``) unless set in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from benchmarks import export as bench
from devtools.azurite import Azurite
from devtools.ci_export import segment_path, write_export
from devtools.snapchat_sandbox import fingerprint

ROOT = bench.ROOT
PATHS = ("events", "timer")
DEFAULT_MAX_POLLING = 60.0  # the queue trigger's maxPollingInterval when host.json sets none


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--paths", default=",".join(PATHS), help="events, timer or both")
    parser.add_argument(
        "--max-polling-seconds",
        type=float,
        default=None,
        help="the queue trigger's maxPollingInterval (default: host.json's)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    polling = args.max_polling_seconds or host_max_polling_seconds()
    figures: dict[str, Any] = {"profiles": args.profiles, "partitions": args.partitions,
                               "max_polling_seconds": polling}  # fmt: skip
    ok = True
    for path in args.paths.split(","):
        if path not in PATHS:
            raise SystemExit(f"--paths: {path!r} is neither events nor timer")
        result = _one_path(path, args, polling)
        figures[path] = result
        ok = ok and result["exact"]
        print(json.dumps({path: result}, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if not ok:
        print("BENCHMARK FAILED: the audience does not hold exactly the expected identifiers")
    return 0 if ok else 1


def _one_path(path: str, args: argparse.Namespace, polling: float) -> dict[str, Any]:
    """One path on servers of its own: an empty audience, a queue with nothing else."""
    with tempfile.TemporaryDirectory() as folder, Azurite() as azurite, bench._sandbox() as box:
        segment = segment_path(segment="BenchSegment")
        exports = Path(folder) / "exports.json"
        exports.write_text(json.dumps(bench._definitions(segment)))
        env = {**os.environ, **bench._settings(azurite, box, exports)}
        for name in ("SNAPSHOT_SETTLE_SECONDS", "SNAPSHOT_RECHECK_SECONDS"):  # the defaults
            env.pop(name, None)
            if name in os.environ:
                env[name] = os.environ[name]
        print(f"{path}: {args.profiles:,} profiles in {args.partitions} partitions ...",
              flush=True)  # fmt: skip
        command = [sys.executable, "-m", "benchmarks.latency", "host", path, segment,
                   str(args.profiles), str(args.partitions), str(polling)]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True,
                              text=True)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"benchmarks.latency host {path} failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        state = requests.get(f"{box['base_url']}/_sandbox/state", timeout=600).json()
        held = state["audiences"][bench.AUDIENCE]["EMAIL_SHA256"]
        expected = result.pop("expected_fingerprint")
        same = held["count"] == result["distinct"] == result["uploaded"]
        result["exact"] = held["fingerprint"] == expected and same
    return result


def host_max_polling_seconds() -> float:
    """host.json's ``maxPollingInterval`` for queues (``hh:mm:ss``), or the platform's default."""
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    value = host.get("extensions", {}).get("queues", {}).get("maxPollingInterval")
    if not value:
        return DEFAULT_MAX_POLLING
    hours, minutes, seconds = (float(part) for part in str(value).split(":"))
    return hours * 3600 + minutes * 60 + seconds


def tick_wait_seconds(expression: str, at: datetime) -> tuple[float, float]:
    """The mean and the longest wait for the schedule's next tick, for a snapshot completed at
    a moment spread evenly over a day of ticks from ``at``'s next one: the intervals' squares
    over twice the day (a longer interval is more likely to hold the moment), and the longest
    interval."""
    from shared.core.schedule import next_run  # noqa: PLC0415 - only the host process needs it

    first = next_run(expression, at)
    if first is None:
        return 0.0, 0.0
    moment, end, intervals = first, first + timedelta(days=1), []
    while moment < end:
        following = next_run(expression, moment)
        if following is None:
            break
        intervals.append((following - moment).total_seconds())
        moment = following
    whole = sum(intervals) or 1.0
    return sum(i * i for i in intervals) / (2 * whole), max(intervals, default=0.0)


# -- the measured process ------------------------------------------------------------------


class _Queue:
    """The queue trigger as the host runs it: one delivery at a time, polled 100 ms after a
    message was found, else 200 ms doubling up to ``maxPollingInterval``."""

    def __init__(self, connection_string: str, name: str, max_polling: float) -> None:
        self._connection, self._name, self._max = connection_string, name, max_polling
        self.stop = threading.Event()
        self.deliveries = 0

    def run(self) -> None:
        import function_app  # noqa: PLC0415 - the real handlers, as the host loads them
        from shared.entry import localworker  # noqa: PLC0415

        wait = 0.2
        while not self.stop.is_set():
            delivered = localworker.drain(self._connection, self._name,
                                          handle=function_app.export_worker,
                                          give_up=function_app.export_gave_up,
                                          max_deliveries=1)  # fmt: skip
            self.deliveries += delivered
            wait = 0.1 if delivered else min(self._max, 0.2 if wait <= 0.1 else wait * 2)
            self.stop.wait(wait)


class _Notifying:
    """A BlobServiceClient whose container clients call ``written`` after each upload."""

    def __init__(self, service: BlobServiceClient, written: Any) -> None:
        self._service, self._written = service, written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def get_container_client(self, container: str) -> Any:
        return _NotifyingContainer(self._service.get_container_client(container), self._written)


class _NotifyingContainer:
    def __init__(self, client: Any, written: Any) -> None:
        self._client, self._written = client, written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_blob(self, name: str, data: Any, **options: Any) -> Any:
        uploaded = self._client.upload_blob(name, data, **options)
        self._written(self._client.container_name, name, self._client.url)
        return uploaded


def blob_created(container: str, name: str, container_url: str) -> Any:
    """Event Grid's event for a blob written, in Microsoft's documented schema."""
    import azure.functions as func  # noqa: PLC0415

    return func.EventGridEvent(
        id=str(uuid.uuid4()),
        data={"api": "PutBlockList", "clientRequestId": str(uuid.uuid4()),
              "requestId": str(uuid.uuid4()), "eTag": "0x8D0000000000000",
              "contentType": "text/csv", "contentLength": 0, "blobType": "BlockBlob",
              "url": f"{container_url}/{name}", "sequencer": "0" * 32,
              "storageDiagnostics": {"batchId": str(uuid.uuid4())}},
        topic="/subscriptions/bench/resourceGroups/bench/providers/"
              "Microsoft.Storage/storageAccounts/devstoreaccount1",
        subject=f"/blobServices/default/containers/{container}/blobs/{name}",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=datetime.now(UTC),
        data_version="",
    )  # fmt: skip


def host(path: str, segment: str, profiles: int, partitions: int, polling: float) -> dict[str, Any]:
    """Write the export as Customer Insights does, let the path start its run; the latency."""
    import queue as queues  # noqa: PLC0415

    from azure.functions.timer import TimerRequest  # noqa: PLC0415

    import function_app  # noqa: PLC0415 - loaded before anything is written, as a warm host
    from shared import runtime  # noqa: PLC0415

    rt = runtime.current()
    storage = rt.settings.app_storage.connection_string or ""
    trigger = _Queue(storage, rt.settings.jobs_queue, polling)
    threading.Thread(target=trigger.run, name="queue-trigger", daemon=True).start()
    events: queues.Queue[Any] = queues.Queue()

    def push() -> None:  # Event Grid: each event delivered in turn to the handler
        while (event := events.get()) is not None:
            function_app.blob_created(event)

    pusher = threading.Thread(target=push, name="event-grid", daemon=True)
    pusher.start()

    def written(container: str, name: str, url: str) -> None:
        if path == "events":
            events.put(blob_created(container, name, url))

    with BlobServiceClient.from_connection_string(rt.settings.app_storage.connection_string
                                                  or "") as service:  # fmt: skip
        generated = write_export(_Notifying(service, written),  # type: ignore[arg-type]
                                 container=bench.CONTAINER, path=segment,
                                 profiles=profiles, partitions=partitions)  # fmt: skip
    landed = datetime.now(UTC)
    started = time.perf_counter()
    if path == "timer":  # the tick, at once: the best case
        function_app.find_new_snapshots(TimerRequest(past_due=False))
    while not (done := _succeeded(rt, generated.snapshot)):
        time.sleep(0.05)
    observed = time.perf_counter() - started
    trigger.stop.set()
    events.put(None)
    finished = datetime.fromisoformat(done.finished_at)
    seconds = max((finished - landed).total_seconds(), 0.0)
    result: dict[str, Any] = {
        "landed_to_audience_seconds": round(seconds, 2),
        "observed_seconds": round(observed, 2),
        "run_seconds": _run_seconds(done),
        "deliveries": trigger.deliveries,
        "trigger": done.trigger,
        "distinct": len(generated.expected),
        "uploaded": done.uploaded,
        "expected_fingerprint": fingerprint(generated.expected_hex),
    }
    if path == "timer":
        mean, longest = tick_wait_seconds(rt.settings.export_schedule or "0 */15 * * * *",
                                          landed)  # fmt: skip
        result.update(tick_wait_mean_seconds=round(mean, 1),
                      tick_wait_longest_seconds=round(longest, 1),
                      mean_seconds=round(mean + seconds, 1),
                      worst_seconds=round(longest + seconds, 1))  # fmt: skip
    return result


def _succeeded(rt: Any, snapshot: str) -> Any:
    for record in rt.runs.for_snapshot("bench", snapshot):
        if record.status == "succeeded":
            return record
        if not record.active:
            raise SystemExit(f"run {record.run_id} ended {record.status}: {record.error}")
    return None


def _run_seconds(record: Any) -> float | None:
    if not (record.started_at and record.finished_at):
        return None
    started = datetime.fromisoformat(record.started_at)
    return round((datetime.fromisoformat(record.finished_at) - started).total_seconds(), 2)


if __name__ == "__main__":
    if sys.argv[1:2] == ["host"]:
        _, _, which, where, count, parts, poll = sys.argv
        print(json.dumps(host(which, where, int(count), int(parts), float(poll))))
        sys.exit(0)
    sys.exit(main())
