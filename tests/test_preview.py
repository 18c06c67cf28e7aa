"""``POST /api/preview``: an unsaved definition's dry-run plan on a snapshot, counts of a
bounded sample per identifier kind, the reasons from ``shared.core.coverage``; and that
classifier held to the run's column rules so the two never disagree."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import function_app
from shared.core import coverage, identifiers
from shared.core.coverage import Outcome
from shared.core.identifiers import IdentifierType, Rejection
from shared.export import preview
from tests.conftest import AUDIENCE, FAST_PATH, FastApp, local_request
from tests.test_identifiers import KNOWN_ANSWERS


def the_rules_say(kind: IdentifierType, raw: str, country: str | None) -> str:
    found = identifiers.digest(kind, raw, country)
    if isinstance(found, bytes):
        return "prehashed" if len(raw.strip()) == 64 and not isinstance(
            identifiers.normalise(kind, raw, country), str) else "valid"  # fmt: skip
    return "empty" if found is Rejection.EMPTY else "invalid"


def the_classifier_says(kind: IdentifierType, raw: str, country: str | None) -> str:
    outcome = coverage.classify(kind, raw, country)
    return (
        outcome.value if outcome in (Outcome.VALID, Outcome.EMPTY, Outcome.PREHASHED) else "invalid"
    )


@pytest.mark.parametrize(("kind", "raw", "country", "expected"), KNOWN_ANSWERS)
def test_the_classifier_agrees_with_the_column_rules_on_the_known_answers(
    kind: IdentifierType, raw: str, country: str | None, expected: object
) -> None:
    assert the_classifier_says(kind, raw, country) == the_rules_say(kind, raw, country)


def test_the_classifier_agrees_with_the_column_rules_on_mutated_values() -> None:
    """Thousands of near misses of the known answers: one character added, dropped or
    changed at a time, with and without a default country code."""
    rng = random.Random(24)
    alphabet = [*"ab.@-+0123456789 ()/_x\u00e9\u00d7\u2009Z0", "(0)", "00", "\u0301"]
    disagree = []
    for kind in IdentifierType:
        seeds = [raw for k, raw, _, _ in KNOWN_ANSWERS if k is kind]
        for country in (None, "44"):
            for _ in range(600):
                cells = list(rng.choice(seeds))
                for _ in range(rng.randint(0, 3)):
                    at = rng.randint(0, len(cells))
                    if rng.random() < 0.5 or not cells:
                        cells.insert(at, rng.choice(alphabet))
                    else:
                        cells[min(at, len(cells) - 1)] = rng.choice(alphabet)
                raw = "".join(cells)
                if the_classifier_says(kind, raw, country) != the_rules_say(kind, raw, country):
                    disagree.append((kind.name, raw, country))
    assert disagree == []


def test_every_reason_has_words_and_the_examples_their_reason() -> None:
    reasons = set(Outcome) - {Outcome.VALID, Outcome.EMPTY, Outcome.PREHASHED}
    assert set(coverage.REASONS) == reasons
    email, phone, maid = IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.MOBILE_AD_ID
    assert coverage.classify(email, "no-at-sign.example.com") is Outcome.NOT_AN_ADDRESS
    assert coverage.classify(email, "a@example.123") is Outcome.NUMERIC_DOMAIN
    assert coverage.classify(email, "a\u00d7b@example.com") is Outcome.UNUSUAL_CHARACTER
    assert coverage.classify(email, "x" * 65 + "@example.com") is Outcome.TOO_LONG
    assert coverage.classify(phone, "020 7946 0958") is Outcome.NO_COUNTRY_CODE
    assert coverage.classify(phone, "020 7946 0958", "44") is Outcome.VALID
    assert coverage.classify(phone, "1234", "44") is Outcome.TOO_SHORT
    assert coverage.classify(phone, "call me", "44") is Outcome.NOT_A_NUMBER
    assert coverage.classify(maid, "not-an-id") is Outcome.NOT_A_UUID
    assert coverage.classify(maid, "00000000-0000-0000-0000-000000000000") is Outcome.TRACKING_OFF


# -- the route --------------------------------------------------------------------------------

HASHED = "b375b7bbddb3de3298fbc7641063d9f03a38e118aa4480c8ab9f58740982e8bd"
CELLS = ([f"person{i}@example.com" for i in range(40)]
         + ["", "  ", "no-at-sign.example.com", "a@example.123", HASHED])  # fmt: skip


def definition(**changes: Any) -> dict[str, Any]:
    return {"source": {"container": "ci-fast", "path": FAST_PATH}, "audience_id": AUDIENCE,
            "connection": "main", "columns": {"email": "EMail"},
            "data_transfer_acknowledged": True, **changes}  # fmt: skip


def write_model(fast_app: FastApp) -> None:
    blobs = fast_app.storage.blobs(fast_app.runtime.settings.export_storage)
    document = {"name": "CI", "version": "1.0", "entities": [{
        "$type": "LocalEntity", "name": "HighValue",
        "attributes": [{"name": "CustomerId", "dataType": "string"},
                       {"name": "EMail", "dataType": "string"}],
        "partitions": [{"name": "HighValue_1", "fileFormatSettings": {"columnHeaders": True},
                        "location": "https://a.blob.core.windows.net/ci-fast/"
                                    f"{FAST_PATH}/2026/11/05/1200/HighValue_1.csv"}]}]}  # fmt: skip
    name = FAST_PATH.rsplit("/", 1)[0] + "/model.json"
    blobs.get_blob_client("ci-fast", name).upload_blob(json.dumps(document).encode())


def post(body: object, query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    raw = json.dumps(body).encode()
    request = local_request("POST", "http://127.0.0.1:7071/api/preview", body=raw,
                            params=query or {})  # fmt: skip
    response = function_app.preview_export(request)
    return response.status_code, json.loads(response.get_body())


def test_a_preview_counts_the_sample_by_kind_and_reason(fast_app: FastApp) -> None:
    fast_app.write_snapshot(CELLS)
    before = fast_app.runtime.definition_store.current("export")
    status, body = post(definition(name="not-saved"))
    assert status == 200, body
    assert body == {
        "snapshot": "2026/11/05/1200", "rows_read": 45, "sampled": False,
        "kinds": {"EMAIL_SHA256": {"column": "EMail", "valid": 40, "empty": 2, "prehashed": 1,
                                   "invalid": 2, "reasons": {"not_an_address": 1,
                                                             "numeric_domain": 1}}},
    }  # fmt: skip
    assert fast_app.runtime.definition_store.current("export") == before  # nothing saved
    assert fast_app.runtime.runs.recent("not-saved") == []  # and nothing run
    assert "@" not in json.dumps(body)
    assert HASHED not in json.dumps(body)


def test_a_preview_reads_a_bounded_sample(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_app.write_snapshot(CELLS, partitions=3)
    monkeypatch.setattr(preview, "MAX_ROWS", 10)
    status, body = post(definition())
    assert status == 200, body
    assert body["rows_read"] == 10
    assert body["sampled"] is True
    kind = body["kinds"]["EMAIL_SHA256"]
    assert kind["valid"] + kind["empty"] + kind["invalid"] + kind["prehashed"] == 10


def test_a_wrong_column_is_caught_with_the_snapshots_columns(fast_app: FastApp) -> None:
    fast_app.write_snapshot(CELLS)
    write_model(fast_app)
    status, body = post(definition(columns={"email": "Mail"}))
    assert status == 409, body
    assert body["error"] == "missing_column"
    assert body["columns"] == ["CustomerId", "EMail"]
    assert "no column named 'Mail'" in body["message"]


def test_an_invalid_definition_is_a_400_with_every_problem(fast_app: FastApp) -> None:
    fast_app.write_snapshot(CELLS)
    status, body = post(definition(columns={"email": ""}, mode="sometimes"))
    assert status == 400
    assert body["error"] == "invalid_definition"
    assert len(body["problems"]) >= 2
    assert {f["field"] for f in body["fields"]} >= {"mode"}
    assert post(["not", "an", "object"])[0] == 400
    assert post(definition(), {"snapshot": "2020/01/01/0000"})[0] == 409  # no such snapshot
