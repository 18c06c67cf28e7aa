"""Phone numbers and mobile ad IDs go to Snapchat in requests of their own schema."""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from tests.conftest import AUDIENCE, App, export_definition, write_definitions
from tests.snapshots import (
    PATH,
    run,
    sha,
    snapshot,
)


def test_phone_and_mobile_ad_ids_go_in_their_own_requests(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    write_definitions(app.exports_file, [export_definition(
        "high-value", app.container, PATH, default_country_code="44",
        columns={"email": "EMail", "phone": "Mobile", "mobile_ad_id": "DeviceId"})])  # fmt: skip
    app.rebuild(monkeypatch)
    idfa = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    rows = [
        {
            "CustomerId": "1",
            "EMail": "A@Example.com",
            "Mobile": "+44 (0)20 7946 0958",
            "DeviceId": idfa,
        },
        {"CustomerId": "2", "EMail": "", "Mobile": "020 7946 0959", "DeviceId": ""},
        {
            "CustomerId": "3",
            "EMail": "b@example.com",
            "Mobile": "0044 20 7946 0958",
            "DeviceId": "nope",
        },
        {"CustomerId": "4", "EMail": "bad", "Mobile": "12", "DeviceId": idfa.lower()},
    ]
    snapshot(blob_service, app.container, rows, day=1)
    record = run(app)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE, "EMAIL_SHA256") == {
        sha("a@example.com"),
        sha("b@example.com"),
    }
    assert sandbox.identifiers(AUDIENCE, "PHONE_SHA256") == {
        sha("442079460958"),
        sha("442079460959"),
    }
    assert sandbox.identifiers(AUDIENCE, "MOBILE_AD_ID_SHA256") == {sha(idfa.lower())}
    schemas = [r.schema for r in sandbox.requests() if r.path.endswith("/users")]
    assert schemas == ["EMAIL_SHA256", "PHONE_SHA256", "MOBILE_AD_ID_SHA256"]
    assert record.by_type["PHONE_SHA256"] == {
        "rows": 4, "empty": 0, "invalid": 1, "prehashed": 0, "duplicates": 1, "added": 2,
        "reasons": {"too_short": 1}}  # fmt: skip
    assert record.by_type["MOBILE_AD_ID_SHA256"]["invalid"] == 1
    assert (record.rows_read, record.uploaded) == (4, 5)
