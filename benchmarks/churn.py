"""Requests sent by a refresh with 1% churn, mirror mode versus add mode.

    python -m benchmarks.churn [--profiles 1000000] [--churn 0.01]

For each mode: export a segment of N distinct emails, then a newer snapshot in which the first
``churn`` share left and as many new ones joined, and count the users requests the second run
sends (and the time it takes). Checks the audience equals the second segment in mirror mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from devtools.snapchat_sandbox import SnapchatSandbox

CONTAINER = "customer-insights"
PATH = "CustomerInsights_churn/BlobExport/Segment"
CLIENT = ("churn-client", "churn-client-secret", "churn-refresh-token")


def write_snapshot(blobs: BlobServiceClient, first: int, count: int, day: int) -> None:
    lines = (f"{i},person{i}@example.com\n" for i in range(first, first + count))
    data = ("CustomerId,EMail\n" + "".join(lines)).encode()
    blobs.get_blob_client(CONTAINER, f"{PATH}/2026/11/{day:02d}/0600/Segment_1.csv").upload_blob(
        data, overwrite=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args(argv)
    moved = int(args.profiles * args.churn)
    figures: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as folder, Azurite() as azurite, SnapchatSandbox() as snap:
        snap.add_client(*CLIENT)
        exports = Path(folder) / "exports.json"
        definitions = {"connections": [{"name": "churn"}], "exports": [
            {"name": mode, "source": {"container": CONTAINER, "path": PATH},
             "audience_id": f"audience-{mode}", "connection": "churn", "mode": mode,
             "columns": {"email": "EMail"}, "data_transfer_acknowledged": True}
            for mode in ("add", "mirror")]}  # fmt: skip
        exports.write_text(json.dumps(definitions))
        os.environ.update({
            "AzureWebJobsStorage": azurite.connection_string, "EXPORTS_FILE": str(exports),
            "SNAPCHAT_API_URL": snap.api_url, "SNAPCHAT_TOKEN_URL": snap.token_url,
            "SECRET_SNAPCHAT_CHURN_CLIENT_ID": CLIENT[0],
            "SECRET_SNAPCHAT_CHURN_CLIENT_SECRET": CLIENT[1],
            "SECRET_SNAPCHAT_CHURN_REFRESH_TOKEN": CLIENT[2],
            "SECRET_EXPORTER_STATE_KEY": os.urandom(32).hex(),
            "SNAPSHOT_SETTLE_SECONDS": "0",
        })  # fmt: skip
        from shared import runtime  # noqa: PLC0415 - after the settings exist
        from shared.runs import service  # noqa: PLC0415

        rt = runtime.current()
        with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
            blobs.create_container(CONTAINER)
            write_snapshot(blobs, 0, args.profiles, day=1)
            for mode in ("add", "mirror"):
                snap.add_audience(f"audience-{mode}")
                assert service.run_now(rt, mode).status == "succeeded"
            write_snapshot(blobs, moved, args.profiles, day=2)
            for mode in ("add", "mirror"):
                before = len(snap.requests())
                started = time.perf_counter()
                record = service.run_now(rt, mode)
                seconds = time.perf_counter() - started
                sent = [r for r in snap.requests()[before:] if r.path.endswith("/users")]
                figures[mode] = {
                    "status": record.status,
                    "users_requests": len(sent),
                    "identifiers_sent": sum(r.identifiers for r in sent),
                    "added": record.added,
                    "removed": record.removed,
                    "unchanged": record.unchanged,
                    "seconds": round(seconds, 2),
                }
        expected = {
            hashlib.sha256(f"person{i}@example.com".encode()).hexdigest()
            for i in range(moved, moved + args.profiles)
        }
        exact = snap.identifiers("audience-mirror") == expected
    print(json.dumps({"profiles": args.profiles, "churn": args.churn, "second_run": figures,
                      "mirror_audience_exact": exact}, indent=2))  # fmt: skip
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
