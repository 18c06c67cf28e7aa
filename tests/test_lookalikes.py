"""An export's lookalike audience: the field, and creation against the sandbox (exactly once,
only when the seed is targetable, through retried and concurrent runs; refusals recorded)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from shared.adapters.lookalikes import Lookalikes, LookalikeState
from shared.adapters.snapchat import SnapchatClient
from shared.core.definition_types import Lookalike
from shared.core.definitions import parse
from shared.core.errors import SnapchatError
from shared.export.lookalikes import follow_seed, state_of
from tests.conftest import AUDIENCE, App, export_definition, write_definitions
from tests.snapshots import PATH, emails, run, snapshot

WANTED = {"type": "SIMILARITY", "countries": ["US", "GB"], "name": "High value lookalike"}


# ---------------------------------------------------------------------------- the field


def document(lookalike: object) -> dict[str, Any]:
    export = export_definition("high-value", "ci-test", PATH, lookalike=lookalike)
    return {"connections": [{"name": "main"}], "exports": [export]}


def test_the_field_is_read_and_defaults_to_balance() -> None:
    found = parse(document({"countries": ["FR"], "name": "Lookalike"})).exports[0]
    assert found.lookalike == Lookalike("BALANCE", ("FR",), "Lookalike")
    assert parse(document(WANTED)).exports[0].lookalike == Lookalike(
        "SIMILARITY", ("US", "GB"), "High value lookalike")  # fmt: skip
    no_field = export_definition("high-value", "ci-test", PATH)
    assert (
        parse({"connections": [{"name": "main"}], "exports": [no_field]}).exports[0].lookalike
        is None
    )


@pytest.mark.parametrize(
    ("lookalike", "problems"),
    [
        ("US", ["lookalike: expected an object with type, countries and name"]),
        (
            {"type": "WIDE", "countries": [], "colour": 1},
            [
                "lookalike: colour: unknown field (expected one of countries, name, type)",
                "lookalike: type: expected one of BALANCE, SIMILARITY, REACH",
                "lookalike: name: required",
                "lookalike: countries: expected a list of 1 to 50 two-letter country codes",
            ],
        ),
        ({**WANTED, "countries": ["us"]}, ["lookalike: countries: expected a list of 1 to 50"]),
        (
            {**WANTED, "countries": ["US", "US"]},
            ["lookalike: countries: a country is listed twice"],
        ),
        ({**WANTED, "name": "n" * 376}, ["lookalike: name: at most 375 characters"]),
    ],
)
def test_every_problem_of_the_field_is_named(lookalike: object, problems: list[str]) -> None:
    found = parse(document(lookalike))
    assert found.exports == ()
    reported = found.problems
    assert len(reported) == len(problems), reported
    for wanted, problem in zip(problems, reported, strict=True):
        assert problem.startswith("export 'high-value': "), problem
        assert wanted in problem, (wanted, problem)


# ---------------------------------------------------------------------------- against the sandbox


@pytest.fixture
def seeded(app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> App:
    """The export asks for a lookalike, and a run sent 1,000 people to its audience."""
    write_definitions(app.exports_file, [export_definition(
        "high-value", app.container, PATH, lookalike=WANTED)])  # fmt: skip
    app.rebuild(monkeypatch)
    snapshot(blob_service, app.container, emails(range(1000)), day=1)
    assert run(app).status == "succeeded"
    return app


def client_of(app: App) -> SnapchatClient:
    rt = app.runtime
    return rt.snapchat(rt.definitions.connection("main"))


def follow(app: App, seed: dict[str, Any] | None = None) -> LookalikeState | None:
    """What the audience check does: read the seed, then follow it."""
    rt = app.runtime
    export = rt.definitions.require("high-value")
    return follow_seed(rt, export, seed or client_of(app).segment(AUDIENCE))


def lookalikes(sandbox: SnapchatSandbox) -> dict[str, dict[str, object]]:
    return {k: v for k, v in sandbox.segments().items() if v["source_type"] == "LOOKALIKE"}


def creations(sandbox: SnapchatSandbox) -> int:
    return sum(r.method == "POST" and r.path.endswith("/segments") for r in sandbox.requests())


def test_created_once_and_only_when_the_seed_is_targetable(
    seeded: App, sandbox: SnapchatSandbox
) -> None:
    sandbox.configure(processing_seconds=60)  # the seed is NOT_READY
    waiting = follow(seeded)
    assert waiting is not None
    assert (waiting.status, waiting.id) == ("waiting_for_seed", "")
    sandbox.configure(processing_seconds=0, match_share=0.5)  # TOO_FEW_USERS
    assert follow(seeded).status == "waiting_for_seed"  # type: ignore[union-attr]
    assert (lookalikes(sandbox), creations(sandbox)) == ({}, 0)

    sandbox.configure(match_share=1.0, size_rounding=1000)  # READY
    created = follow(seeded)

    assert created is not None
    assert list(lookalikes(sandbox)) == [created.id]
    made = lookalikes(sandbox)[created.id]
    assert made["creation_spec"] == {"seed_segment_id": AUDIENCE, "type": "SIMILARITY",
                                     "countries": ["US", "GB"]}  # fmt: skip
    assert (made["name"], made["ad_account_id"]) == ("High value lookalike", "adacct-1")
    assert (created.status, created.size) == ("active", 200_000)
    assert state_of(seeded.runtime, "high-value") == created
    assert created.as_dict() == {"id": created.id, "status": "active", "size": 200_000,
                                 "created_at": created.created_at, "error": None}  # fmt: skip
    assert follow(seeded) == created
    assert creations(sandbox) == 1


def test_a_pending_lookalike_is_followed_until_active(
    seeded: App, sandbox: SnapchatSandbox
) -> None:
    sandbox.configure(lookalike_seconds=60)
    pending = follow(seeded)
    assert pending is not None
    assert (pending.status, pending.size) == ("pending", None)
    sandbox.configure(lookalike_seconds=0)
    active = follow(seeded)
    assert active is not None
    assert (active.id, active.status, active.size) == (pending.id, "active", 200_000)


def test_a_retried_run_creates_no_second_one(
    seeded: App, sandbox: SnapchatSandbox, blob_service: BlobServiceClient
) -> None:
    first = follow(seeded)
    snapshot(blob_service, seeded.container, emails(range(1200)), day=2)
    assert run(seeded).status == "succeeded"  # the next run, or the same one delivered again
    again = follow(seeded)
    assert first is not None
    assert again is not None
    assert again.id == first.id
    assert (len(lookalikes(sandbox)), creations(sandbox)) == (1, 1)


def test_runs_at_the_same_time_create_one(seeded: App, sandbox: SnapchatSandbox) -> None:
    seed = client_of(seeded).segment(AUDIENCE)
    states: list[LookalikeState | None] = []
    start = threading.Barrier(4)

    def check() -> None:
        start.wait()
        states.append(follow(seeded, seed))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(lookalikes(sandbox)) == 1
    stored = state_of(seeded.runtime, "high-value")
    assert stored is not None
    assert stored.id == next(iter(lookalikes(sandbox)))
    assert {s.id for s in states if s is not None and s.id} == {stored.id}


def test_a_run_that_died_after_creating_it_is_taken_over_without_a_second(
    seeded: App, sandbox: SnapchatSandbox
) -> None:
    made = client_of(seeded).create_lookalike("adacct-1", WANTED["name"], AUDIENCE,  # type: ignore[arg-type]
                                              "SIMILARITY", ["US", "GB"])  # fmt: skip
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    spec = '["SIMILARITY",["US","GB"],"High value lookalike"]'
    Lookalikes(seeded.runtime.runs).insert(
        "high-value", LookalikeState("pending", spec=spec, claimed_at=long_ago)
    )

    taken_over = follow(seeded)

    assert taken_over is not None
    assert taken_over.id == made
    assert list(lookalikes(sandbox)) == [made]


def test_a_fresh_claim_is_left_to_its_run(seeded: App, sandbox: SnapchatSandbox) -> None:
    spec = '["SIMILARITY",["US","GB"],"High value lookalike"]'
    claim = LookalikeState("pending", spec=spec, claimed_at=datetime.now(UTC).isoformat())
    Lookalikes(seeded.runtime.runs).insert("high-value", claim)
    assert follow(seeded) == claim
    assert lookalikes(sandbox) == {}


@pytest.mark.parametrize(
    ("change", "seed_change", "words"),
    [
        ({"audience_cap": 1}, {}, "at most 1 allowed"),
        ({}, {"countries": ["XX"]}, "countries"),
        ({"processing_seconds": 60}, {}, "not READY"),  # Snapchat's word over the app's read
    ],
)
def test_refusals_are_recorded_once_and_fail_nothing_else(
    seeded: App, sandbox: SnapchatSandbox, monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any], seed_change: dict[str, Any], words: str,
) -> None:  # fmt: skip
    seed = client_of(seeded).segment(AUDIENCE)  # READY when read
    if seed_change:
        write_definitions(seeded.exports_file, [export_definition(
            "high-value", seeded.container, PATH, lookalike={**WANTED, **seed_change})])  # fmt: skip
        seeded.rebuild(monkeypatch)
    sandbox.configure(**change)

    failed = follow(seeded, seed)

    assert failed is not None
    assert failed.status == "failed"
    assert words in failed.error
    assert "Bearer" not in failed.error
    assert lookalikes(sandbox) == {}
    assert follow(seeded, seed) == failed  # not asked again for the same field
    assert creations(sandbox) == 1
    latest = seeded.runtime.runs.recent("high-value", limit=1)[0]
    assert latest.status == "succeeded"  # the seed's run is untouched

    sandbox.configure(audience_cap=1000, processing_seconds=0)
    write_definitions(seeded.exports_file, [export_definition(
        "high-value", seeded.container, PATH, lookalike={**WANTED, "countries": ["FR"]})])  # fmt: skip
    seeded.rebuild(monkeypatch)
    fixed = follow(seeded)
    assert fixed is not None
    assert fixed.status == "active"
    assert len(lookalikes(sandbox)) == 1


def test_snapchat_unreachable_leaves_it_for_the_next_check(
    seeded: App, sandbox: SnapchatSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded.rebuild(monkeypatch, RETRY_ATTEMPTS="1")
    sandbox.inject("503", path_contains="/adaccounts/")
    later = follow(seeded)
    assert later is not None
    assert later.status == "waiting_for_seed"
    assert follow(seeded).status == "active"  # type: ignore[union-attr]
    assert len(lookalikes(sandbox)) == 1


def test_the_segment_count_pages_through_the_ad_account(app: App, sandbox: SnapchatSandbox) -> None:
    client = client_of(app)
    for index in range(4):
        client.create_segment("adacct-1", name=f"a{index}", description="", retention_in_days=30)
    sandbox.configure(page_size=2)
    assert client.segment_count("adacct-1") == 5
    assert client.segment_count("adacct-2") == 0
    assert sum(r.path.endswith("/adaccounts/adacct-1/segments") and r.method == "GET"
               for r in sandbox.requests()) == 3  # fmt: skip
    with pytest.raises(SnapchatError):
        client.segment_count("bad/account")
