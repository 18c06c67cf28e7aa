"""Audience status after a run, and audiences the app creates by name."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient

import function_app
from devtools.snapchat_sandbox import SnapchatSandbox
from tests.conftest import App, export_definition, local_request, write_definitions
from tests.snapshots import (
    PATH,
    emails,
    hashes,
    run,
    snapshot,
)


def test_audience_status_is_recorded_and_listed(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox
) -> None:
    snapshot(blob_service, app.container, emails(range(30)), day=1)
    record = run(app)
    assert (record.approximate_number_users, record.upload_status, record.targetable_status) == (
        30, "COMPLETE", "TOO_FEW_USERS")  # fmt: skip
    request = local_request("GET", "http://127.0.0.1:7071/api/exports", body=b"")
    listed = json.loads(function_app.list_exports(request).get_body())["exports"][0]
    assert listed["audience"]["approximate_number_users"] == 30
    assert listed["audience"]["targetable_status"] == "TOO_FEW_USERS"


def test_an_audience_named_instead_of_given_is_created_once(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    definition = export_definition("high-value", app.container, PATH)
    del definition["audience_id"]
    definition["audience"] = {
        "ad_account_id": "adacct-1",
        "name": "CI high value",
        "retention_in_days": 180,
    }
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch)
    snapshot(blob_service, app.container, emails(range(10)), day=1)
    before = set(sandbox.segments())
    first = run(app)
    assert first.status == "succeeded", first.error
    created = set(sandbox.segments()) - before
    assert created == {first.audience_id}
    segment = sandbox.segments()[first.audience_id]
    assert (segment["name"], segment["retention_in_days"], segment["source_type"]) == (
        "CI high value", 180, "FIRST_PARTY")  # fmt: skip
    assert sandbox.identifiers(first.audience_id) == hashes(range(10))
    snapshot(blob_service, app.container, emails(range(12)), day=2)
    second = run(app)
    assert second.audience_id == first.audience_id
    assert set(sandbox.segments()) - before == created
