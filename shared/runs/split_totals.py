"""A split run's counts: what its jobs did, added up into the run's one ``Progress``.

Each job of a split run (``shared.runs.split_job``) keeps its own counts in its entity of the
split log: the read jobs their rows and digests read, the judge its changes and the removal
safeguard's decision, the send jobs their requests and distinct digests. The run's record
shows their sum, written as jobs finish and when the run ends (``shared.runs.split``).
"""

from __future__ import annotations

from shared.adapters.split_log import Entry, SplitLog
from shared.core.runrecord import Progress, RunRecord
from shared.export.read import add_reasons
from shared.runs.split_job import JUDGE, READ, SEND


def total(splits: SplitLog, record: RunRecord) -> Progress:
    """The run's progress: its jobs' counts, added up."""
    total = Progress(source_version=record.progress.source_version, jobs=dict(record.jobs))
    planned = splits.get("plan")
    reads = [e for e in splits.entries(f"{READ}-") if e.done]
    sends = splits.entries(f"{SEND}-")
    judge = splits.get(JUDGE)
    read = _add_reads(total, reads, several=bool(planned and planned.result["segments"] > 1))
    distinct = _add_sends(total, sends)
    if judge is not None:
        total.safeguard = judge.result.get("safeguard", {})
        total.spilled_bytes += judge.result.get("spilled", 0)
        for schema, counts in judge.result.get("kinds", {}).items():
            distinct[schema] = counts["distinct"]
            total.by_type.setdefault(schema, {})["unchanged"] = counts["unchanged"]
            total.unchanged += counts["unchanged"]
    known = judge is not None or (len(sends) > 0 and all(e.done for e in sends))
    for schema, kind in total.by_type.items():
        for name in ("empty", "invalid", "prehashed"):
            setattr(total, name, getattr(total, name) + kind.get(name, 0))
        if known and schema in distinct:
            kind["duplicates"] = read.get(schema, 0) - distinct[schema]
            total.duplicates += kind["duplicates"]
    total.jobs.update({f"{READ}_done": len(reads), SEND: len(sends),
                       f"{SEND}_done": sum(e.done for e in sends)})  # fmt: skip
    return total


def _add_reads(total: Progress, reads: list[Entry], *, several: bool) -> dict[str, int]:
    """The read jobs' counts; how many digests of each kind they read."""
    read: dict[str, int] = {}
    segments: dict[str, int] = {}
    for entry in reads:
        result = entry.result
        total.rows_read += result["rows"]
        total.spilled_bytes += result["spilled"]
        segments[result["segment"]] = segments.get(result["segment"], 0) + result["rows"]
        for schema, counts in result["kinds"].items():
            kind = total.by_type.setdefault(schema, {})
            for name in ("rows", "empty", "invalid", "prehashed"):
                kind[name] = kind.get(name, 0) + counts[name]
            add_reasons(kind.setdefault("reasons", {}), counts.get("reasons", {}))
            kind["reasons"] = dict(sorted(kind["reasons"].items()))
            read[schema] = read.get(schema, 0) + counts["read"]
    total.rows_scanned = total.rows_read
    if several:
        total.by_segment = {label: {"rows": rows} for label, rows in segments.items()}
    return read


def _add_sends(total: Progress, sends: list[Entry]) -> dict[str, int]:
    """The send jobs' counts; how many distinct digests of each kind they sent (add mode)."""
    distinct: dict[str, int] = {}
    for entry in sends:
        progress = entry.progress
        for name in ("batches", "uploaded", "resumed", "added", "removed"):
            setattr(total, name, getattr(total, name) + progress.get(name, 0))
        for schema, counts in progress.get("by_type", {}).items():
            kind = total.by_type.setdefault(schema, {})
            for name in ("added", "removed"):
                kind[name] = kind.get(name, 0) + counts.get(name, 0)
        for schema, count in entry.result.get("distinct", {}).items():
            distinct[schema] = distinct.get(schema, 0) + count
    return distinct


def requests_made(splits: SplitLog) -> tuple[int, int]:
    """How many requests (and retries) the send jobs made."""
    requests = retries = 0
    for entry in splits.entries(f"{SEND}-"):
        made = entry.result.get("requests", [0, 0])
        requests, retries = requests + made[0], retries + made[1]
    return requests, retries
