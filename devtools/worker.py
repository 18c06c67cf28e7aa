"""Plays the Functions host's part for the queue triggers, outside Azure.

Receives job messages from the (Azurite) queue and hands each one, as a ``func.QueueMessage``,
to the real decorated ``export_worker`` handler: the same path a deployed app takes. Like the
host, a message whose handler raised is delivered again, and after ``maxDequeueCount``
deliveries (from host.json) it moves to ``<queue>-poison`` and the ``export_gave_up`` handler
gets it. Redelivery here is immediate rather than after the visibility timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import (
    QueueClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

log = logging.getLogger(__name__)
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def max_dequeue_count() -> int:
    settings = json.loads(HOST_JSON.read_text())["extensions"]["queues"]
    return int(settings.get("maxDequeueCount", 5))


def drain(
    connection_string: str,
    queue_name: str,
    *,
    max_deliveries: int = 1000,
    visibility_timeout: int = 600,
) -> int:
    """Deliver queued jobs until the queue is empty; returns the number of deliveries."""
    import function_app  # noqa: PLC0415 - imported late: it builds the app on import

    limit = max_dequeue_count()
    queue = QueueClient.from_connection_string(
        connection_string, queue_name, message_decode_policy=TextBase64DecodePolicy()
    )
    deliveries = 0
    with queue:
        while deliveries < max_deliveries:
            messages = list(
                queue.receive_messages(max_messages=1, visibility_timeout=visibility_timeout)
            )
            if not messages:
                return deliveries
            message = messages[0]
            deliveries += 1
            body = str(message.content)
            try:
                function_app.export_worker(func.QueueMessage(id=message.id, body=body.encode()))
            except Exception as exc:  # the host logs the failure and delivers again
                log.warning("Delivery %d of message %s failed: %s", message.dequeue_count,
                            message.id, type(exc).__name__)  # fmt: skip
                if (message.dequeue_count or 0) >= limit:
                    _to_poison(connection_string, queue_name, body)
                    queue.delete_message(message)
                    function_app.export_gave_up(
                        func.QueueMessage(id=message.id, body=body.encode())
                    )
                else:
                    queue.update_message(
                        message.id, pop_receipt=message.pop_receipt, visibility_timeout=0
                    )
                continue
            queue.delete_message(message)
    return deliveries


def _to_poison(connection_string: str, queue_name: str, body: str) -> None:
    with QueueClient.from_connection_string(
        connection_string, f"{queue_name}-poison", message_encode_policy=TextBase64EncodePolicy()
    ) as poison:
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(body)


def main() -> int:
    """``python -m devtools.worker``: drain JOBS_QUEUE once, with settings from the environment."""
    import argparse  # noqa: PLC0415

    from shared.settings import Settings  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="Deliver queued export jobs to the worker")
    parser.add_argument("--visibility-timeout", type=int, default=600)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    settings = Settings.from_env()
    assert settings.app_storage.connection_string, "the local worker needs a connection string"
    drain(
        settings.app_storage.connection_string,
        settings.jobs_queue,
        visibility_timeout=args.visibility_timeout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
