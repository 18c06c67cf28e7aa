"""The local demo: a 100,000-profile Customer Insights export, end to end, on loopback.

Starts Azurite and the Snapchat sandbox, writes the export into Azurite, queues a run the way
the HTTP API does, lets the real queue-worker handler process it, prints the run record and
what the sandbox holds, checks both against the expected result, and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from devtools.ci_export import segment_path, write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain

CONTAINER = "customer-insights"
AUDIENCE = "demo-audience-0001"
CLIENT = ("demo-client", "demo-client-secret-value", "demo-refresh-token-value")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder, Azurite() as azurite, SnapchatSandbox() as snap:
        snap.add_client(*CLIENT)
        snap.add_audience(AUDIENCE, name="Demo high-value customers")
        path = segment_path()
        exports = Path(folder) / "exports.json"
        exports.write_text(json.dumps(_definitions(path), indent=2))
        os.environ.update(_settings(azurite, snap, exports))

        print(f"Writing a Customer Insights export of {args.profiles:,} profiles to Azurite ...")
        with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
            export = write_export(
                blobs,
                container=CONTAINER,
                path=path,
                profiles=args.profiles,
                partitions=args.partitions,
            )
        print(
            f"  {len(export.partitions)} partitions + model.json; {export.empty} empty, "
            f"{export.invalid} invalid, {export.duplicates} repeated and {export.prehashed} "
            f"already hashed emails; {len(export.expected):,} distinct valid identifiers"
        )

        from shared import runtime  # noqa: PLC0415 - after the settings exist
        from shared.runs import service  # noqa: PLC0415

        queued = service.request_run(runtime.current(), "demo-high-value", "cli")
        print(f"Queued run {queued.run_id}; the queue worker takes it ...")
        started = time.monotonic()
        drain(azurite.connection_string, os.environ["JOBS_QUEUE"])
        took = time.monotonic() - started
        record = runtime.current().runs.get("demo-high-value", queued.run_id)
        assert record is not None
        print(json.dumps(record.as_dict(), indent=2))
        held = snap.identifiers(AUDIENCE)
        print(f"The sandbox audience {AUDIENCE} holds {len(held):,} identifiers ({took:.1f}s).")
        runtime.current().http.close()
        exact = held == export.expected_hex and record.uploaded == len(export.expected)
        if record.status != "succeeded" or not exact:
            print("DEMO FAILED: the audience does not hold exactly the expected identifiers")
            return 1
        print("OK: the audience holds exactly the SHA-256 hashes of the valid emails.")
        return 0


def _definitions(path: str) -> dict[str, object]:
    return {
        "connections": [{"name": "demo"}],
        "exports": [
            {
                "name": "demo-high-value",
                "description": "Demo: the high-value segment to a Snapchat customer list",
                "source": {"container": CONTAINER, "path": path},
                "audience_id": AUDIENCE,
                "connection": "demo",
                "columns": {"email": "EMail"},
                "enabled": True,
                "data_transfer_acknowledged": True,
            }
        ],
    }


def _settings(azurite: Azurite, snap: SnapchatSandbox, exports: Path) -> dict[str, str]:
    client_id, secret, refresh = CLIENT
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "EXPORTS_FILE": str(exports),
        "SNAPCHAT_API_URL": snap.api_url,
        "SNAPCHAT_TOKEN_URL": snap.token_url,
        "SECRET_SNAPCHAT_DEMO_CLIENT_ID": client_id,
        "SECRET_SNAPCHAT_DEMO_CLIENT_SECRET": secret,
        "SECRET_SNAPCHAT_DEMO_REFRESH_TOKEN": refresh,
        "JOBS_QUEUE": "export-jobs",
        "SNAPSHOT_SETTLE_SECONDS": "0",  # the export was written a moment ago, on purpose
        "RUNS_TABLE": "exportruns",
        # the demo's sandbox is new each time: so is the file of secrets the app stores
        "LOCAL_SECRETS_FILE": str(exports.parent / "secrets.json"),
    }


if __name__ == "__main__":
    sys.exit(main())
