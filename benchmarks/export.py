"""Benchmark: one Customer Insights export of N profiles, end to end, on loopback.

    python -m benchmarks.export [--profiles 1000000] [--partitions 8] [--repeat 3]
                                [--workers N] [--instance-memory-mb 2048] [--json FILE]
    python -m benchmarks.export --layouts [--profiles 1000000,5000000] [--repeat 1]

Starts Azurite and the Snapchat sandbox (each its own process), writes the export, then in a
fresh process runs it through the queue-worker path, and in another fresh process measures
the floor (download + CSV parse + SHA-256 of the email column in Python, nothing else).
Prints wall time, profiles per second, peak resident memory of the export process, bytes
spilled, requests sent, the sandbox's own busy time, the floor, the ratio export / floor and
the estimated Flex Consumption cost: instance memory x wall time, in GB-seconds per million
profiles (the on-demand meter), and in dollars at ``--price-per-gb-second``. Checks that the
audience holds exactly the expected hashes and exits non-zero if not.

With ``--layouts`` (``LAYOUTS``: 1, 4 and 64 partitions, or ``--layouts 1,4``), one benchmark
per number of profiles (``--profiles`` may list several) and partition layout, each on
servers of its own, then a table of them all: Customer Insights decides the partitioning, and
memory must stay flat whatever it is.

With ``--workers N`` the run is split (``SPLIT_ABOVE_MB`` 0) over N local worker processes
against the same Azurite, as N Flex instances on the queue trigger would take its jobs: the
wall time runs from queueing to the run's end, the peak memory is the busiest worker's, and
the cost counts N instances for the whole time. On this 2-core machine the workers share
two cores, so N workers cannot run faster than two; see the README for what it shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from devtools.ci_export import segment_path, write_export
from devtools.snapchat_sandbox import fingerprint

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = "customer-insights"
AUDIENCE = "bench-audience"
CLIENT = ("bench-client", "bench-client-secret", "bench-refresh-token")
LAYOUTS = (1, 4, 64)  # partitions per snapshot: --layouts


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="1000000",
                        help="profiles; with --layouts, several: 1000000,5000000")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--layouts",
        nargs="?",
        const=",".join(map(str, LAYOUTS)),
        help="one run per partition count (default 1,4,64), then a table",
    )
    parser.add_argument("--repeat", type=int, default=3,
                        help="floor and export runs, alternated; medians are reported")  # fmt: skip
    parser.add_argument("--instance-memory-mb", type=int, default=2048, choices=(512, 2048, 4096),
                        help="the Flex instance size the cost estimate assumes")  # fmt: skip
    parser.add_argument("--price-per-gb-second", type=float, default=0.000026,
                        help="Flex on-demand execution price (check your region's)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0,
                        help="split the run over this many local worker processes")  # fmt: skip
    parser.add_argument("--also-single", action="store_true",
                        help="with --workers: also run on one instance, same data")  # fmt: skip
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.layouts:
        return _layouts(args)
    args.profiles = int(args.profiles)
    with tempfile.TemporaryDirectory() as folder, Azurite() as azurite, _sandbox() as sandbox:
        path = segment_path(segment="BenchSegment")
        exports = Path(folder) / "exports.json"
        exports.write_text(json.dumps(_definitions(path)))
        env = {**os.environ, **_settings(azurite, sandbox, exports)}
        if args.workers:
            env["SPLIT_ABOVE_MB"] = "0"
        print(f"writing {args.profiles:,} profiles in {args.partitions} partitions ...", flush=True)
        started = time.perf_counter()
        with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
            generated = write_export(
                blobs,
                container=CONTAINER,
                path=path,
                profiles=args.profiles,
                partitions=args.partitions,
            )
        print(f"  written in {time.perf_counter() - started:.1f}s", flush=True)
        expected = fingerprint(generated.expected_hex)
        distinct = len(generated.expected)
        del generated  # the orchestrator's memory is not what is measured, but keep it small

        floors, results, singles = [], [], []
        for _ in range(args.repeat):  # alternated, so that both see the same machine
            floors.append(_measure(env, "floor", azurite.connection_string, CONTAINER, path + "/"))
            if args.workers:
                results.append(_measure(env, "split", "bench", str(args.workers)))
                if args.also_single:
                    one = {**env, "SPLIT_ABOVE_MB": str(1 << 30)}
                    singles.append(_measure(one, "export", "bench"))
                    print(f"  one instance {singles[-1]['seconds']:.2f}s "
                          f"({singles[-1]['peak_rss_mb']:.0f} MB)", flush=True)  # fmt: skip
            else:
                results.append(_measure(env, "export", "bench"))
            print(f"  floor {floors[-1]['seconds']:.2f}s ({floors[-1]['peak_rss_mb']:.0f} MB), "
                  f"export {results[-1]['seconds']:.2f}s ({results[-1]['peak_rss_mb']:.0f} MB, "
                  f"spilled {results[-1]['run'].get('spilled_bytes', 0):,} bytes)",
                  flush=True)  # fmt: skip
        floor = _median(floors)
        result = _median(results)
        state = requests.get(f"{sandbox['base_url']}/_sandbox/state", timeout=1800).json()
        held = state["audiences"][AUDIENCE]["EMAIL_SHA256"]
        log = requests.get(f"{sandbox['base_url']}/_sandbox/requests", timeout=600).json()
        uploads = [r for r in log if r["path"].endswith("/users")]
        runs = args.repeat * (2 if singles else 1)  # --also-single: two runs a round
        per_run = len(log) // runs
        run = result["run"]
        # Flex bills an instance's memory for the time it runs: GB-s per million profiles.
        instances = max(1, args.workers)
        gb_seconds = (instances * args.instance_memory_mb / 1024 * result["seconds"]
                      / (args.profiles / 1e6))  # fmt: skip
        figures = {
            "profiles": args.profiles,
            "partitions": args.partitions,
            "workers": args.workers,
            "distinct_identifiers": distinct,
            "export_seconds": round(result["seconds"], 2),
            "profiles_per_second": round(args.profiles / result["seconds"]),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
            "floor_seconds": round(floor["seconds"], 2),
            "floor_peak_rss_mb": round(floor["peak_rss_mb"], 1),
            "ratio_export_to_floor": round(result["seconds"] / floor["seconds"], 2),
            "export_seconds_all": [round(r["seconds"], 2) for r in results],
            "floor_seconds_all": [round(f["seconds"], 2) for f in floors],
            "requests_per_run": per_run,
            "upload_requests_per_run": len(uploads) // runs,
            "sandbox_busy_seconds_per_run": round(
                sum(r.get("seconds", 0.0) for r in uploads) / runs, 2
            ),
            "spilled_bytes": run.get("spilled_bytes", 0),
            "workers_peak_rss_mb": result.get("workers_rss_mb", []),
            **_single(singles, floor["seconds"]),
            "jobs": run.get("jobs", {}),
            "flex_gb_seconds_per_million": round(gb_seconds, 1),
            "flex_dollars_per_million": round(gb_seconds * args.price_per_gb_second, 5),
            "status": run["status"],
            "uploaded": run["uploaded"],
            "exact": held["fingerprint"] == expected and held["count"] == distinct,
        }
        print(json.dumps(figures, indent=2), flush=True)  # before the servers stop
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    ok = figures["exact"] and run["status"] == "succeeded" and run["uploaded"] == distinct
    if not ok:
        print("BENCHMARK FAILED: the audience does not hold exactly the expected identifiers")
    return 0 if ok else 1


def _layouts(args: argparse.Namespace) -> int:
    """One benchmark per number of profiles and partition layout; a table of them all."""
    rows, failed = [], 0
    for profiles in (int(p) for p in str(args.profiles).split(",")):
        for partitions in (int(p) for p in args.layouts.split(",")):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                failed |= main([f"--profiles={profiles}", f"--partitions={partitions}",
                                f"--repeat={args.repeat}", f"--json={out.name}",
                                f"--instance-memory-mb={args.instance_memory_mb}"])  # fmt: skip
                rows.append(json.loads(Path(out.name).read_text()))
    lines = ["| profiles | partitions | export | floor | export / floor | peak RSS | exact |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {r['profiles']:,} | {r['partitions']} | {r['export_seconds']:.2f} s | "
        f"{r['floor_seconds']:.2f} s | {r['ratio_export_to_floor']:.2f} | "
        f"{r['peak_rss_mb']:.0f} MB | {'yes' if r['exact'] else 'NO'} |"
        for r in rows
    ]
    print("\n".join(lines), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


def _single(singles: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    """The same export on one instance (``--also-single``), for comparison."""
    if not singles:
        return {}
    one = _median(singles)
    return {
        "single_export_seconds": round(one["seconds"], 2),
        "single_peak_rss_mb": round(one["peak_rss_mb"], 1),
        "single_ratio_to_floor": round(one["seconds"] / floor, 2),
        "single_exact_uploaded": one["run"]["uploaded"],
        "single_spilled_bytes": one["run"].get("spilled_bytes", 0),
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda run: float(run["seconds"]))[len(runs) // 2]


def _measure(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.measure", *args],
        cwd=ROOT, env=env, check=False, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"benchmarks.measure {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class _sandbox:  # noqa: N801 - used like a function in a with statement
    """The Snapchat sandbox in its own process, so that it does not share the export's CPU."""

    def __enter__(self) -> dict[str, str]:
        client = ":".join(CLIENT)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.snapchat_sandbox", "--port", "0",
             "--client", client, "--audience", AUDIENCE],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        urls: dict[str, str] = json.loads(self.process.stdout.readline())
        return urls

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:  # a sandbox that holds tens of millions of hashes takes a while to let them go
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


def _definitions(path: str) -> dict[str, object]:
    return {
        "connections": [{"name": "bench"}],
        "exports": [
            {
                "name": "bench",
                "source": {"container": CONTAINER, "path": path},
                "audience_id": AUDIENCE,
                "connection": "bench",
                "columns": {"email": "EMail"},
                "data_transfer_acknowledged": True,
            }
        ],
    }


def _settings(azurite: Azurite, sandbox: dict[str, str], exports: Path) -> dict[str, str]:
    client_id, secret, refresh = CLIENT
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "EXPORTS_FILE": str(exports),
        "SNAPCHAT_API_URL": sandbox["api_url"],
        "SNAPCHAT_TOKEN_URL": sandbox["token_url"],
        "SNAPSHOT_SETTLE_SECONDS": "0",
        "SECRET_SNAPCHAT_BENCH_CLIENT_ID": client_id,
        "SECRET_SNAPCHAT_BENCH_CLIENT_SECRET": secret,
        "SECRET_SNAPCHAT_BENCH_REFRESH_TOKEN": refresh,
        "SECRET_EXPORTER_STATE_KEY": os.urandom(32).hex(),  # split runs derive spill keys
    }


if __name__ == "__main__":
    sys.exit(main())
