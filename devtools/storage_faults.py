"""Storage faults on purpose, for the tests: a transport under the SDK's own retry policy.

``FaultyTransport`` is the HTTP transport of a Table or Queue client (``transport=``): it
sends each request to Azurite as the SDK's ordinary transport does, except those a
``Fault`` matches, for which it plays a real failure the SDK sees as a connection error:

- ``LOST_REPLY``: the request reaches storage and is applied, then the connection resets
  before the reply (``ServiceResponseError``, so the SDK retries a PUT or DELETE itself);
- ``REFUSED``: the connection is refused, nothing reaches storage (``ServiceRequestError``).

Being the transport, it sits below the retry policy, so a repeated send is seen (and can be
matched) like the first one; its ``sleep`` (the SDK's backoff between sends) returns at once.
Deterministic: the n-th matching request fails, whatever the timing.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import HttpRequest, HttpResponse, RequestsTransport


class Effect(enum.StrEnum):
    LOST_REPLY = "lost_reply"
    REFUSED = "refused"


@dataclass
class Fault:
    """Fail the matching requests number ``after`` + 1 to ``after`` + ``times``."""

    method: str
    path_contains: str  # in the URL's path and query, percent-decoded
    effect: Effect = Effect.LOST_REPLY
    body_contains: str = ""
    after: int = 0  # matching requests let through before the first failure
    times: int = 1
    seen: int = 0  # matching requests so far
    fired: int = 0  # failures played so far

    def matches(self, request: HttpRequest) -> bool:
        if request.method.upper() != self.method.upper():
            return False
        if self.path_contains not in unquote(request.url):
            return False
        return not self.body_contains or self.body_contains in _text(request.body)


class FaultyTransport(RequestsTransport):  # type: ignore[misc] # the SDK's class is untyped
    """A requests transport that plays ``faults`` (see the module docstring);
    ``on_fault`` is called with each fault as it is played."""

    def __init__(self, *faults: Fault, on_fault: Callable[[Fault], None] | None = None) -> None:
        super().__init__()
        self.faults = list(faults)
        self.on_fault = on_fault
        self._lock = threading.Lock()

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        fault = self._due(request)
        if fault is not None and fault.effect is Effect.REFUSED:
            raise ServiceRequestError("connection refused (injected)")
        response: HttpResponse = super().send(request, **kwargs)
        if fault is not None:
            raise ServiceResponseError("connection reset before the reply (injected)")
        return response

    def sleep(self, duration: float) -> None:
        """The SDK's backoff between sends: none here, so that faults cost no time."""

    def _due(self, request: HttpRequest) -> Fault | None:
        """The first fault due for this request (each matching fault counts it)."""
        due: Fault | None = None
        with self._lock:
            for fault in self.faults:
                if not fault.matches(request):
                    continue
                fault.seen += 1
                if due is None and fault.after < fault.seen <= fault.after + fault.times:
                    due = fault
            if due is not None:
                due.fired += 1
                if self.on_fault is not None:
                    self.on_fault(due)
        return due


def _text(body: Any) -> str:
    if isinstance(body, bytes | bytearray):
        return body.decode("utf-8", "replace")
    return "" if body is None else str(body)
