"""Run history through ``GET /api/exports/{name}/runs``: pages past the last 100 runs with a
continuation token, and filters by status, trigger, mode and dry run (the fast tier)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import function_app
from shared.core.runrecord import RunRecord, new_run_id
from tests.conftest import FastApp, local_request

START = datetime(2026, 11, 1, tzinfo=UTC)


def seed(fast_app: FastApp, count: int) -> list[str]:
    """``count`` runs of export high-value, one a minute, oldest first: every third a
    dry run, every fifth failed, every seventh by the timer. Their run IDs, newest first."""
    ids = []
    for n in range(count):
        record = RunRecord(
            run_id=new_run_id(START + timedelta(minutes=n)),
            export="high-value",
            trigger="timer" if n % 7 == 0 else "http",
            snapshot="2026/11/05/1200",
            status="failed" if n % 5 == 0 else "succeeded",
            dry_run=n % 3 == 0,
        )
        fast_app.runtime.runs.save(record)
        ids.append(record.run_id)
    return ids[::-1]


def runs(query: str) -> tuple[int, dict[str, Any]]:
    request = local_request(
        "GET", f"http://127.0.0.1:7071/api/exports/high-value/runs?{query}",
        route_params={"name": "high-value"},
        params=dict(p.split("=", 1) for p in query.split("&") if p),
    )  # fmt: skip
    response = function_app.list_runs(request)
    return response.status_code, json.loads(response.get_body())


def test_pages_walk_every_run_once_newest_first(fast_app: FastApp) -> None:
    ids = seed(fast_app, 130)
    seen: list[str] = []
    token = ""
    pages = 0
    while pages < 10:
        status, body = runs(f"limit=50&continuation={token}" if token else "limit=50")
        assert status == 200, body
        seen += [r["run_id"] for r in body["runs"]]
        pages += 1
        if body["continuation"] is None:
            break
        token = body["continuation"]
    assert pages == 3
    assert seen == ids  # all 130, each once, newest first
    status, last = runs("limit=30")
    assert [r["run_id"] for r in last["runs"]] == ids[:30]
    status, exact = runs("limit=100&continuation=" + ids[29])
    assert [r["run_id"] for r in exact["runs"]] == ids[30:]
    assert exact["continuation"] is None  # exactly the rest: no empty page after it


def test_filters_combine_and_page(fast_app: FastApp) -> None:
    ids = seed(fast_app, 60)
    n_of = {run_id: 59 - i for i, run_id in enumerate(ids)}
    status, body = runs("status=failed&dry_run=true&limit=3")
    assert status == 200
    wanted = [i for i in ids if n_of[i] % 5 == 0 and n_of[i] % 3 == 0]  # 45, 30, 15, 0
    assert [r["run_id"] for r in body["runs"]] == wanted[:3]
    status, rest = runs(f"status=failed&dry_run=true&limit=3&continuation={body['continuation']}")
    assert [r["run_id"] for r in rest["runs"]] == wanted[3:]
    assert rest["continuation"] is None
    status, timer = runs("trigger=timer&limit=100")
    assert [r["run_id"] for r in timer["runs"]] == [i for i in ids if n_of[i] % 7 == 0]
    status, real = runs("dry_run=false&mode=add&limit=100")
    assert len(real["runs"]) == 40
    assert not any(r["dry_run"] for r in real["runs"])
    status, mirror = runs("mode=mirror")
    assert mirror["runs"] == []
    assert mirror["continuation"] is None


def test_bad_paging_or_filters_are_a_clear_400(fast_app: FastApp) -> None:
    seed(fast_app, 3)
    for query, says in (
        ("status=done", "status: one of queued, running, succeeded, failed"),
        ("dry_run=yes", "dry_run: one of true, false"),
        (
            "trigger=cron&mode=sync",
            "trigger: one of timer, http, cli, event; mode: one of add, mirror",
        ),
        ("continuation=abc", "continuation: not a token"),
        ("limit=101", "limit must be a whole number from 1 to 100"),
        ("limit=0", "limit must be"),
    ):
        status, body = runs(query)
        assert status == 400, query
        assert body["error"] == "bad_request"
        assert says in body["message"], (query, body["message"])
