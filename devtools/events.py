"""Event Grid for local runs: Azurite emits no events, so this posts Microsoft's documented
``Microsoft.Storage.BlobCreated`` events (Event Grid schema) for blobs that exist to the real
handler, ``function_app.blob_created``, in process and decoded as the Functions worker
decodes them. The checks it queues are delivered by ``python -m shared work`` as the host
would. The tests build their events here too.

    python -m devtools.events --settings local.settings.json <container> [<prefix>]
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

ACCOUNT = "devstoreaccount1"
_TOPIC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
          "Microsoft.Storage/storageAccounts/")  # fmt: skip


def blob_created(
    container: str, name: str, *, size: int = 0, etag: str = "", account: str = ACCOUNT
) -> dict[str, Any]:
    """One BlobCreated event as Event Grid delivers it (Event Grid schema)."""
    return {
        "topic": _TOPIC + account,
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "id": str(uuid.uuid4()),
        "data": {
            "api": "PutBlockList",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": etag or "0x8D4BCC2E4835CD0",
            "contentType": "application/json" if name.endswith(".json") else "text/csv",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": f"https://{account}.blob.core.windows.net/{container}/{name}",
            "sequencer": f"{uuid.uuid4().int % 10**32:032d}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def decoded(event: dict[str, Any]) -> func.EventGridEvent:
    """The event as the Python worker hands it to a function (its own converter)."""
    body = Datum(json.dumps(event), "json")
    found = EventGridEventInConverter.decode(body, trigger_metadata=None)
    if not isinstance(found, func.EventGridEvent):
        raise TypeError("not an Event Grid schema event")
    return found


def post(handler: Callable[[func.EventGridEvent], None], event: dict[str, Any]) -> None:
    """Deliver one event to an Event Grid triggered function, as the platform would."""
    handler(decoded(event))


def main(argv: Sequence[str] | None = None) -> int:
    from shared.entry.cli import load_local_settings  # noqa: PLC0415 - after argument errors

    parser = argparse.ArgumentParser(
        prog="python -m devtools.events",
        description="Post a BlobCreated event for each blob under PREFIX in CONTAINER (the "
        "export account) to the app's Event Grid handler; then `python -m shared work` runs "
        "the checks and runs it queued.",
    )
    parser.add_argument("--settings", help="a local.settings.json whose Values to use")
    parser.add_argument("container")
    parser.add_argument("prefix", nargs="?", default="")
    args = parser.parse_args(argv)
    if args.settings:
        load_local_settings(Path(args.settings))
    import function_app  # noqa: PLC0415 - builds the app with the settings loaded
    from shared.runtime import current  # noqa: PLC0415

    blobs = current().source.list(args.container, args.prefix)
    for blob in blobs:
        post(function_app.blob_created, blob_created(args.container, blob.name, size=blob.size))
    print(json.dumps({"container": args.container, "events": len(blobs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
