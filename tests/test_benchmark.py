"""The benchmark script, CI-sized: it must run end to end and find the audience exact.

Correctness only; times are the benchmark's business, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
