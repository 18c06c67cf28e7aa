"""A fake ``QueueClient``: messages with visibility, pop receipts and dequeue counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueMessage

from devtools.storage_fakes.service import Strict, refused

if TYPE_CHECKING:
    from devtools.storage_fakes import FakeStorage


@dataclass
class Message:
    id: str
    content: str
    visible_at: float
    pop_receipt: str = ""
    dequeue_count: int = 0


class FakeQueue(Strict):
    """The ``QueueClient`` surface the job queue and the local worker use."""

    def __init__(self, storage: FakeStorage, name: str) -> None:
        self.queue_name = name
        self._storage, self._lock = storage, storage.lock

    def __enter__(self) -> FakeQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _messages(self) -> list[Message]:
        found = self._storage.queues.get(self.queue_name)
        if found is None:
            raise refused(ResourceNotFoundError, 404, "QueueNotFound")
        return found

    def create_queue(self) -> None:
        with self._lock:
            if self.queue_name in self._storage.queues:
                raise refused(ResourceExistsError, 409, "QueueAlreadyExists")
            self._storage.queues[self.queue_name] = []

    def send_message(self, content: str, *, visibility_timeout: int | None = None) -> QueueMessage:
        with self._lock:
            message = Message(str(uuid.uuid4()), str(content),
                               self._storage.clock() + (visibility_timeout or 0))  # fmt: skip
            self._messages().append(message)
            return self._answer(message, content=None)

    def receive_messages(self, *, max_messages: int = 1,
                         visibility_timeout: int = 30) -> list[QueueMessage]:  # fmt: skip
        """Up to ``max_messages`` visible messages, hidden for ``visibility_timeout`` s,
        each with a new pop receipt and one more delivery counted."""
        with self._lock:
            now = self._storage.clock()
            taken = [m for m in self._messages() if m.visible_at <= now][:max_messages]
            for message in taken:
                message.visible_at = now + visibility_timeout
                message.pop_receipt = uuid.uuid4().hex
                message.dequeue_count += 1
            return [self._answer(message, content=message.content) for message in taken]

    def delete_message(self, message: QueueMessage | str, pop_receipt: str | None = None) -> None:
        with self._lock:
            found = self._held(message, pop_receipt)
            self._messages().remove(found)

    def update_message(self, message: QueueMessage | str, pop_receipt: str | None = None, *,
                       visibility_timeout: int = 0) -> QueueMessage:  # fmt: skip
        with self._lock:
            found = self._held(message, pop_receipt)
            found.visible_at = self._storage.clock() + visibility_timeout
            found.pop_receipt = uuid.uuid4().hex
            return self._answer(found, content=None)

    def _held(self, message: QueueMessage | str, pop_receipt: str | None) -> Message:
        """The message, if ``pop_receipt`` is still its receipt."""
        if isinstance(message, QueueMessage):
            pop_receipt = pop_receipt or message.pop_receipt
        wanted = message.id if isinstance(message, QueueMessage) else message
        found = next((m for m in self._messages() if m.id == wanted), None)
        if found is None:
            raise refused(ResourceNotFoundError, 404, "MessageNotFound")
        if found.pop_receipt != pop_receipt:
            raise refused(HttpResponseError, 400, "PopReceiptMismatch")
        return found

    def _answer(self, message: Message, *, content: str | None) -> QueueMessage:
        visible = datetime.fromtimestamp(message.visible_at, UTC)
        return QueueMessage(content, id=message.id, pop_receipt=message.pop_receipt or None,
                            dequeue_count=message.dequeue_count or None,
                            next_visible_on=visible)  # fmt: skip
