"""Plays the Functions host's part for the queue triggers on a machine without the host.

Receives job messages from the jobs queue and hands each one, as a ``func.QueueMessage``, to
the queue handlers it is given (the CLI and the tests give it ``function_app``'s real
decorated ``export_worker`` and ``export_gave_up``): the path a deployed app takes. Like the
host, a message whose handler raised is delivered again, and after ``maxDequeueCount``
deliveries (from host.json) it moves to ``<queue>-poison`` and the poison handler gets it.
Unlike the host, a failed message is delivered again at once rather than after the
visibility timeout, and one message is handled at a time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable

import azure.functions as func
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters.jobqueue import CHECK, Job
from shared.core.errors import StorageError
from shared.core.settings import APP_ROOT

log = logging.getLogger(__name__)

Handler = Callable[[func.QueueMessage], None]


def max_dequeue_count() -> int:
    """How often the host delivers a message before it moves it to the poison queue."""
    host = json.loads((APP_ROOT / "host.json").read_text(encoding="utf-8"))
    return int(host["extensions"]["queues"].get("maxDequeueCount", 5))


def drain(
    connection_string: str,
    queue_name: str,
    *,
    handle: Handler,
    give_up: Handler,
    max_deliveries: int = 1000,
    visibility_timeout: int = 600,
    open_queue: Callable[[str], QueueClient] | None = None,
) -> int:
    """Deliver queued jobs until the queue is empty; returns the number of deliveries.
    ``open_queue``: a queue's client by name (the fast tier's fakes), instead of one from
    ``connection_string``."""
    limit = max_dequeue_count()
    opened = open_queue or functools.partial(_opened, connection_string)
    queue = opened(queue_name)
    deliveries = 0
    with queue:
        while deliveries < max_deliveries:
            try:
                messages = list(
                    queue.receive_messages(max_messages=1, visibility_timeout=visibility_timeout)
                )
            except ResourceNotFoundError:
                return deliveries  # no queue yet: nothing was ever queued
            except AzureError as exc:
                raise StorageError(
                    f"job queue {queue_name}: cannot be read ({type(exc).__name__})"
                ) from None
            if not messages:
                return deliveries
            message = messages[0]
            deliveries += 1
            body = str(message.content)
            try:
                handle(func.QueueMessage(id=message.id, body=body.encode()))
            except Exception as exc:  # noqa: BLE001 - the host logs the failure and delivers again
                log.warning("Delivery %d of message %s failed: %s", message.dequeue_count,
                            message.id, type(exc).__name__)  # fmt: skip
                if (message.dequeue_count or 0) >= limit:
                    _to_poison(opened, queue_name, body)
                    _settle(queue.delete_message, message)
                    give_up(func.QueueMessage(id=message.id, body=body.encode()))
                else:
                    _settle(queue.update_message, message.id, pop_receipt=message.pop_receipt,
                            visibility_timeout=0)  # fmt: skip
                continue
            _settle(queue.delete_message, message)
    return deliveries


def work(
    connection_string: str,
    queue_name: str,
    *,
    handle: Handler,
    give_up: Handler,
    once: bool,
    poll_seconds: float = 5.0,
    visibility_timeout: int = 600,
    idle_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Deliver jobs as they arrive (until interrupted); with ``once``, until the queue is
    empty; with ``idle_seconds``, until it has stayed empty that long (one of several
    workers on a split run, whose next jobs are queued while others finish theirs).
    Returns the number of deliveries."""
    total = 0
    idle_since = time.monotonic()
    while True:
        delivered = drain(
            connection_string,
            queue_name,
            handle=handle,
            give_up=give_up,
            visibility_timeout=visibility_timeout,
        )
        total += delivered
        if once:
            return total
        if delivered:
            idle_since = time.monotonic()
        elif idle_seconds is not None and time.monotonic() - idle_since >= idle_seconds:
            return total
        sleep(poll_seconds)


def noting(handler: Handler, seen: dict[tuple[str, str], None]) -> Handler:
    """``handler``, noting in ``seen`` the (export, run ID) of each job it is handed, so that
    the caller can report what became of those runs."""

    def deliver(message: func.QueueMessage) -> None:
        try:
            job = Job.from_json(message.get_body().decode("utf-8", errors="replace"))
        except ValueError:
            pass  # not a job: the handler logs and drops it
        else:
            if job.run_id != CHECK:  # a snapshot check is no run; the run it queues is
                seen[job.export, job.run_id] = None
        handler(message)

    return deliver


def _settle(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Delete or release a handled message; if its visibility timeout ran out while it was
    handled, another worker has it now (as with the host) and it is left to them."""
    try:
        call(*args, **kwargs)
    except ResourceNotFoundError:
        log.warning("A handled message was delivered to another worker meanwhile; left to it")
    except HttpResponseError as exc:
        if getattr(exc, "error_code", None) != "PopReceiptMismatch":
            raise
        log.warning("A handled message was delivered to another worker meanwhile; left to it")


def _opened(connection_string: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        connection_string, name, message_decode_policy=TextBase64DecodePolicy(),
        message_encode_policy=TextBase64EncodePolicy(),
    )  # fmt: skip


def _to_poison(opened: Callable[[str], QueueClient], queue_name: str, body: str) -> None:
    with opened(f"{queue_name}-poison") as poison:
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(body)
