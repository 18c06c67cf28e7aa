"""The benchmark script, CI-sized: it must run end to end and find the audience exact.

Correctness only; times are the benchmark's business, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import latency
from benchmarks.export import main

pytestmark = pytest.mark.integration  # it starts Azurite and the sandbox


def test_benchmark_runs_and_checks_the_exact_set(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    assert main(["--profiles", "20000", "--partitions", "3", "--repeat", "1",
                 "--json", str(figures_file)]) == 0  # fmt: skip
    figures = json.loads(figures_file.read_text())
    assert figures["exact"] is True
    assert figures["status"] == "succeeded"
    assert figures["uploaded"] == figures["distinct_identifiers"] > 18_000
    assert figures["upload_requests_per_run"] == 1


def test_benchmark_splits_a_run_over_worker_processes(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    assert main(["--profiles", "20000", "--partitions", "3", "--repeat", "1",
                 "--workers", "2", "--json", str(figures_file)]) == 0  # fmt: skip
    figures = json.loads(figures_file.read_text())
    assert figures["exact"] is True
    assert figures["status"] == "succeeded"
    assert figures["jobs"]["read_done"] == 3
    assert len(figures["workers_peak_rss_mb"]) == 2


def test_the_latency_benchmark_measures_both_paths_and_checks_the_exact_set(
    tmp_path: Path,
) -> None:
    figures_file = tmp_path / "latency.json"
    assert latency.main(["--profiles", "20000", "--partitions", "3",
                         "--max-polling-seconds", "1", "--json", str(figures_file)]) == 0  # fmt: skip
    figures = json.loads(figures_file.read_text())
    events, timer = figures["events"], figures["timer"]
    assert events["exact"] is timer["exact"] is True
    assert (events["trigger"], timer["trigger"]) == ("event", "timer")  # each path started it
    assert events["uploaded"] == events["distinct"] > 18_000
    assert timer["tick_wait_longest_seconds"] == 900.0  # the default schedule: every 15 minutes
    assert timer["worst_seconds"] > timer["mean_seconds"] > timer["landed_to_audience_seconds"]


def test_the_layouts_are_one_exact_run_each(tmp_path: Path) -> None:
    figures_file = tmp_path / "layouts.json"
    assert main(["--layouts", "1,2", "--profiles", "5000", "--repeat", "1",
                 "--json", str(figures_file)]) == 0  # fmt: skip
    rows = json.loads(figures_file.read_text())
    assert [(r["partitions"], r["exact"]) for r in rows] == [(1, True), (2, True)]
