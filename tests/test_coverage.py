"""Coverage by reason on the run record: why each identifier kind's rows were not sent,
counted against a CSV written by hand, in a run on one instance and in a split run (the fast
tier: the storage fakes and the Snapchat sandbox answering in process)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError

from shared.core import coverage
from shared.runs import service
from tests.conftest import FAST_PATH, FastApp, export_definition, sync_definitions

IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
HASHED = hashlib.sha256(b"b@example.com").hexdigest()
ZEROS = "00000000-0000-0000-0000-000000000000"

# One row per line: email, phone (no default country code), mobile ad ID; what each cell is.
ROWS = [
    ("a@example.com", "+44 20 7946 0958", IDFA),  # valid, valid, valid
    ("A@Example.com", "0044 20 7946 0958", IDFA.lower()),  # repeats of row 1
    ("", "", ZEROS),  # empty, empty, tracking off
    ("not-an-email", "call me", "not-an-id"),  # not an address, not a number, not a UUID
    ("Ann <ann@example.com>", "1234", ""),  # not an address, too short, empty
    ("a@1.2.3.4", "+1234567890123456", HASHED),  # numeric domain, too long, prehashed
    ("x\u2009y@example.com", "020 7946 0958", IDFA.replace("-", "")),  # unusual; no code; no UUID
    ("x" * 65 + "@example.com", "", GAID),  # too long, empty, valid
    (HASHED, "+44 (0)20 7946 0958", ""),  # prehashed (a repeat of b), a repeat, empty
    ("b@example.com", "07911 123456", ZEROS),  # valid, no country code, tracking off
    ("  ", "n/a", "x"),  # empty, not a number, not a UUID
    ("c@example.com", "+1 202 555 0143", " " + GAID.upper()),  # valid, valid, a repeat
]

# Counted by hand from the rows above.
EXPECTED: dict[str, dict[str, Any]] = {
    "EMAIL_SHA256": {
        "rows": 12, "empty": 2, "invalid": 5, "prehashed": 1, "duplicates": 2,
        "reasons": {"not_an_address": 2, "numeric_domain": 1, "too_long": 1,
                    "unusual_character": 1},
    },
    "PHONE_SHA256": {
        "rows": 12, "empty": 2, "invalid": 6, "prehashed": 0, "duplicates": 2,
        "reasons": {"no_country_code": 2, "not_a_number": 2, "too_long": 1, "too_short": 1},
    },
    "MOBILE_AD_ID_SHA256": {
        "rows": 12, "empty": 2, "invalid": 5, "prehashed": 1, "duplicates": 2,
        "reasons": {"not_a_uuid": 3, "tracking_off": 2},
    },
}  # fmt: skip


def write_rows(fast_app: FastApp, partitions: int) -> None:
    blobs = fast_app.storage.blobs(fast_app.runtime.settings.export_storage)
    with contextlib.suppress(ResourceExistsError):
        blobs.create_container(fast_app.container)
    for part in range(partitions):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["CustomerId", "EMail", "Phone", "MAID"])
        writer.writerows((i, *row) for i, row in enumerate(ROWS) if i % partitions == part)
        blobs.get_blob_client(
            fast_app.container, f"{FAST_PATH}/2026/11/05/1200/HighValue_{part + 1}.csv"
        ).upload_blob(text.getvalue().encode(), overwrite=True)


@pytest.mark.parametrize("split", [False, True], ids=["one-instance", "split"])
def test_coverage_by_reason_equals_the_hand_count(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch, split: bool
) -> None:
    exports_file = Path(fast_app.env["EXPORTS_FILE"])
    columns = {"email": "EMail", "phone": "Phone", "mobile_ad_id": "MAID"}
    definition = export_definition("high-value", fast_app.container, FAST_PATH, columns=columns)
    exports_file.write_text(json.dumps({"connections": [{"name": "main"}],
                                        "exports": [definition]}))  # fmt: skip
    changes = {"SPLIT_ABOVE_MB": "0", "SPILL_MEMORY_MB": "0"} if split else {}
    rt = fast_app.rebuild(monkeypatch, **changes)
    sync_definitions(rt, exports_file)
    write_rows(fast_app, partitions=3 if split else 1)
    queued = service.request_run(rt, "high-value", "http")
    fast_app.deliver()
    record = rt.runs.get("high-value", queued.run_id)
    assert record is not None
    assert record.status == "succeeded", (record.status, record.error)
    assert bool(record.jobs) is split
    for schema, expected in EXPECTED.items():
        found = {name: record.by_type[schema].get(name) for name in expected}
        assert found == expected, schema
        assert sum(expected["reasons"].values()) == expected["invalid"]
        assert set(expected["reasons"]) <= {str(reason) for reason in coverage.REASONS}
    assert (record.empty, record.invalid) == (6, 16)
