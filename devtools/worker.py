"""Plays the Functions host's part for the queue worker, outside Azure.

Receives job messages from the (Azurite) queue and hands each one, as a ``func.QueueMessage``,
to the real decorated ``export_worker`` handler: the same path a deployed app takes.
"""

from __future__ import annotations

import azure.functions as func
from azure.storage.queue import QueueClient, TextBase64DecodePolicy


def drain(connection_string: str, queue_name: str, *, max_messages: int = 100) -> int:
    """Deliver queued jobs to the worker until the queue is empty; returns how many ran."""
    import function_app  # noqa: PLC0415 - imported late: it builds the app on import

    queue = QueueClient.from_connection_string(
        connection_string, queue_name, message_decode_policy=TextBase64DecodePolicy()
    )
    handled = 0
    with queue:
        while handled < max_messages:
            messages = list(queue.receive_messages(max_messages=1, visibility_timeout=600))
            if not messages:
                return handled
            for message in messages:
                body = str(message.content).encode()
                function_app.export_worker(func.QueueMessage(id=message.id, body=body))
                queue.delete_message(message)
                handled += 1
    return handled
