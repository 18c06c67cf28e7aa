"""``GET /api/segments``: the segments Customer Insights exported into a container, from the
listing and model.json only, in both layouts, bounded, and only for callers who may look."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

import function_app
from devtools import ci_export
from shared.export import discovery
from tests.conftest import App, FastApp, local_request

EXPORT = "CustomerInsights_9f1c/BlobExport"
HIGH = (("CustomerId", "string"), ("EMail", "string"), ("LifetimeValue", "double"))
LAPSED = (("CustomerId", "string"), ("PrimaryEmail", "string"), ("Phone", "string"))
SECRET_CELL = "private.person@example.com"


def model(service: BlobServiceClient, container: str, tables: dict[str, Any]) -> bytes:
    base = f"https://account.blob.core.windows.net/{container}"
    return json.dumps({"name": "CustomerInsights", "version": "1.0", "entities": [
        {"$type": "LocalEntity", "name": table,
         "attributes": [{"name": n, "dataType": t} for n, t in columns],
         "partitions": [{"name": f"{table}_1", "location": f"{base}/{EXPORT}/{table}/x.csv",
                         "fileFormatSettings": {"columnHeaders": True}}]}
        for table, columns in tables.items()]}).encode()  # fmt: skip


def customer_insights(service: BlobServiceClient, container: str) -> None:
    """Two segments in snapshot folders (one with two snapshots, two partitions), one flat."""
    with contextlib.suppress(ResourceExistsError):
        service.create_container(container)
    blobs = {
        f"{EXPORT}/HighValue/2026/11/04/0900/HighValue_1.csv": "CustomerId,EMail\n1,a@b.example\n",
        f"{EXPORT}/HighValue/2026/11/05/1200/HighValue_1.csv": f"CustomerId,EMail\n1,{SECRET_CELL}\n",
        f"{EXPORT}/HighValue/2026/11/05/1200/HighValue_2.csv": "CustomerId,EMail\n2,x@y.example\n",
        f"{EXPORT}/Lapsed/2026/11/05/1200/Lapsed_1.csv": "CustomerId,PrimaryEmail,Phone\n",
        "CustomerInsights_9f1c/Weekly_Newsletter_1762340000.csv": "id,mail\n1,c@d.example\n",
        "CustomerInsights_9f1c/readme.txt": "not a segment",
        f"{EXPORT}/model.json": model(service, container, {"HighValue": HIGH, "Lapsed": LAPSED}),
    }  # fmt: skip
    for name, content in blobs.items():
        data = content if isinstance(content, bytes) else content.encode()
        service.get_blob_client(container, name).upload_blob(data, overwrite=True)


def segments(container: str | None) -> tuple[int, dict[str, Any]]:
    params = {"container": container} if container is not None else {}
    request = local_request("GET", "http://127.0.0.1:7071/api/segments", params=params)
    response = function_app.list_segments(request)
    return response.status_code, json.loads(response.get_body())


def test_both_layouts_with_snapshots_and_attributes(fast_app: FastApp) -> None:
    service = fast_app.storage.blobs(fast_app.runtime.settings.export_storage)
    customer_insights(service, fast_app.container)
    status, body = segments(fast_app.container)
    assert status == 200, body
    assert body["container"] == fast_app.container
    assert body["truncated"] is False
    by_name = {s["name"]: s for s in body["segments"]}
    assert set(by_name) == {"HighValue", "Lapsed", "Weekly_Newsletter"}
    high = by_name["HighValue"]
    assert high["path"] == f"{EXPORT}/HighValue"
    assert high["layout"] == "folders"
    assert high["snapshot"] == {"id": "2026/11/05/1200", "taken_at": "2026-11-05T12:00:00Z",
                                "settled": True, "partitions": 2, "rows": None}  # fmt: skip
    assert high["attributes"] == [{"name": n, "type": t} for n, t in HIGH]
    assert by_name["Lapsed"]["attributes"][1] == {"name": "PrimaryEmail", "type": "string"}
    flat = by_name["Weekly_Newsletter"]
    assert flat["path"] == "CustomerInsights_9f1c/Weekly_Newsletter"
    assert flat["layout"] == "flat"
    assert flat["snapshot"]["id"] == "epoch-1762340000"
    assert flat["attributes"] == []  # no model.json: the file itself is not read
    assert SECRET_CELL not in json.dumps(body)  # metadata only, never a row


def test_a_snapshot_still_being_written_is_not_settled(
    fast_app: FastApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer_insights(fast_app.storage.blobs(fast_app.runtime.settings.export_storage),
                      fast_app.container)  # fmt: skip
    fast_app.rebuild(monkeypatch, SNAPSHOT_SETTLE_SECONDS="3600")
    _, body = segments(fast_app.container)
    high = next(s for s in body["segments"] if s["name"] == "HighValue")
    assert high["snapshot"]["settled"] is False  # every file was written just now


def test_the_listing_is_bounded(fast_app: FastApp, monkeypatch: pytest.MonkeyPatch) -> None:
    customer_insights(fast_app.storage.blobs(fast_app.runtime.settings.export_storage),
                      fast_app.container)  # fmt: skip
    monkeypatch.setattr(discovery, "MAX_BLOBS", 3)
    status, body = segments(fast_app.container)
    assert status == 200
    assert body["truncated"] is True
    assert [s["name"] for s in body["segments"]] == ["HighValue"]  # what it saw, still right
    monkeypatch.setattr(discovery, "MAX_BLOBS", 100)
    monkeypatch.setattr(discovery, "MAX_SEGMENTS", 1)
    assert segments(fast_app.container)[1]["truncated"] is True


def test_bad_or_unknown_containers(fast_app: FastApp) -> None:
    for value, status_wanted in ((None, 400), ("", 400), ("UPPER", 400), ("a_b", 400),
                                 ("x" * 64, 400), ("no-such-container", 404)):  # fmt: skip
        status, body = segments(value)
        assert status == status_wanted, (value, body)
        assert body["error"] in ("bad_request", "not_found")


@pytest.mark.integration
def test_on_azurite_a_generated_export_with_two_segments(app: App) -> None:
    with BlobServiceClient.from_connection_string(app.env["AzureWebJobsStorage"]) as service:
        for segment in ("HighValueSegment", "LapsedSegment"):
            ci_export.write_export(service, container=app.container, partitions=2, profiles=40,
                                   path=f"CustomerInsights_9f1c/Export{segment}/{segment}")  # fmt: skip
    status, body = segments(app.container)
    assert status == 200, body
    found = {s["name"]: s for s in body["segments"]}
    assert set(found) == {"HighValueSegment", "LapsedSegment"}
    for segment in found.values():
        assert segment["snapshot"]["partitions"] == 2
        assert segment["snapshot"]["settled"] is True
        assert [a["name"] for a in segment["attributes"]] == list(ci_export.COLUMNS)
        assert "@" not in json.dumps(segment)
