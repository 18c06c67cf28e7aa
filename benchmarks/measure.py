"""The measured process: one export through the queue worker, or the floor, in a fresh process.

Run by ``benchmarks.export`` as a subprocess so that peak resident memory belongs to this work
alone. Settings come from the environment; prints one JSON line with the measurements.

- ``export``: queue a run of the export and deliver it to the real queue-worker handler;
- ``split``: queue a run of the export split over ``N`` local worker processes (each a
  ``worker``, as Flex Consumption instances on the queue trigger), and wait for it to end;
- ``worker``: one of those: process the queue until it stays empty; print its peak memory;
- ``floor``: only stream-download the snapshot's partitions, CSV-parse them and SHA-256 the
  email column, with nothing else: the least any exporter of this data must spend here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

import function_app  # noqa: F401 - loaded before timing, as the host loads it before a message
from devtools.worker import drain
from shared import runtime
from shared.core.csvstream import ChunkReader
from shared.entry import localworker
from shared.runs import service

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM). Unlike getrusage's ru_maxrss, it
    does not carry over the parent's high-water mark across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export(name: str) -> dict[str, object]:
    rt = runtime.current()
    started = time.perf_counter()
    queued = service.request_run(rt, name, "cli")
    drain(rt.settings.app_storage.connection_string or "", rt.settings.jobs_queue)
    seconds = time.perf_counter() - started
    record = rt.runs.get(name, queued.run_id)
    assert record is not None
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "run": record.as_dict()}


def split(name: str, workers: int) -> dict[str, object]:
    """The run over ``workers`` processes: wall time from queueing to the run's end; peak
    memory of the busiest worker (each is an instance of its own)."""
    rt = runtime.current()
    command = [sys.executable, "-m", "benchmarks.measure", "worker"]
    processes = [subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                                  text=True) for _ in range(workers)]  # fmt: skip
    time.sleep(3.0)  # the workers load the app, as instances would before a message comes
    started = time.perf_counter()
    queued = service.request_run(rt, name, "cli")
    while True:
        record = rt.runs.get(name, queued.run_id)
        assert record is not None
        if not record.active:
            break
        if all(process.poll() is not None for process in processes):
            raise SystemExit(f"every worker stopped before run {queued.run_id} ended")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    found = []
    for process in processes:
        output, _ = process.communicate(timeout=600)
        found.append(json.loads(output.strip().splitlines()[-1]))
    return {
        "seconds": seconds,
        "peak_rss_mb": max(w["peak_rss_mb"] for w in found),
        "workers_rss_mb": [w["peak_rss_mb"] for w in found],
        "workers_deliveries": [w["deliveries"] for w in found],
        "run": record.as_dict(),
    }


def worker() -> dict[str, object]:
    import function_app as app  # noqa: PLC0415 - the handlers, as the host would load them

    rt = runtime.current()
    deliveries = localworker.work(
        rt.settings.app_storage.connection_string or "",
        rt.settings.jobs_queue,
        handle=app.export_worker,
        give_up=app.export_gave_up,
        once=False,
        poll_seconds=0.05,
        idle_seconds=6.0,
    )
    return {"peak_rss_mb": peak_rss_mb(), "deliveries": deliveries}


def floor(connection_string: str, container: str, prefix: str) -> dict[str, object]:
    started = time.perf_counter()
    rows = 0
    sha256 = hashlib.sha256
    with BlobServiceClient.from_connection_string(connection_string) as service:
        client = service.get_container_client(container)
        names = sorted(b.name for b in client.list_blobs(name_starts_with=prefix)
                       if b.name.endswith(".csv"))  # fmt: skip
        for name in names:
            stream = client.download_blob(name)
            raw = io.BufferedReader(ChunkReader(stream.chunks()), 1 << 20)
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
            header = next(reader)
            column = header.index("EMail")
            for row in reader:
                sha256(row[column].strip().lower().encode()).digest()
                rows += 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rows": rows}


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    mode = sys.argv[1]
    if mode == "export":
        result = export(sys.argv[2])
    elif mode == "split":
        result = split(sys.argv[2], int(sys.argv[3]))
    elif mode == "worker":
        result = worker()
    else:
        result = floor(sys.argv[2], sys.argv[3], sys.argv[4])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
