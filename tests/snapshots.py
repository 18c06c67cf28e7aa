"""Small Customer Insights snapshots written straight into Azurite, and the helpers the
tests use to run them and read what the sandbox received."""

from __future__ import annotations

import hashlib

import requests
from azure.storage.blob import BlobServiceClient

from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.core.runrecord import RunRecord
from shared.runs import service
from tests.conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, App

PATH = "CustomerInsights_t1/BlobExport/HighValue"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def snapshot(blob_service: BlobServiceClient, container: str, rows: list[dict[str, str]],
             day: int, path: str = PATH) -> None:  # fmt: skip
    """One snapshot folder of the segment at ``path`` with the given rows (columns from the
    first row), header included."""
    if not blob_service.get_container_client(container).exists():
        blob_service.create_container(container)
    columns = list(rows[0])
    text = (
        ",".join(columns)
        + "\n"
        + "".join(",".join(f'"{row[c]}"' for c in columns) + "\n" for row in rows)
    )
    folder = f"{path}/2026/11/{day:02d}/0600"
    table = path.rsplit("/", 1)[-1]
    blob_service.get_blob_client(container, f"{folder}/{table}_1.csv").upload_blob(
        text.encode(), overwrite=True
    )


def emails(names: range) -> list[dict[str, str]]:
    return [{"CustomerId": str(i), "EMail": f"person{i}@example.com"} for i in names]


def hashes(names: range) -> set[str]:
    return {sha(f"person{i}@example.com") for i in names}


def run(app: App, name: str = "high-value", *, dry_run: bool = False) -> RunRecord:
    queued = service.request_run(app.runtime, name, "http", dry_run=dry_run)
    drain(app.env["AzureWebJobsStorage"], app.env["JOBS_QUEUE"])
    record = app.runtime.runs.get(name, queued.run_id)
    assert record is not None
    return record


def sent(sandbox: SnapchatSandbox, method: str) -> list[int]:
    return [r.identifiers for r in sandbox.requests()
            if r.method == method and r.path.endswith("/users") and r.status == 200]  # fmt: skip


def outside_identifier(sandbox: SnapchatSandbox) -> str:
    """Someone else's identifier in the audience, added straight through the API."""
    token = requests.post(sandbox.token_url, data={
        "grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN}, timeout=10).json()["access_token"]  # fmt: skip
    outsider = sha("outsider@example.com")
    body = {"users": [{"schema": ["EMAIL_SHA256"], "data": [[outsider]]}]}
    answer = requests.post(f"{sandbox.api_url}/segments/{AUDIENCE}/users", json=body,
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
    assert answer.status_code == 200
    return outsider
