"""What every storage fake shares: the SDK's exceptions for a refusal, strictness, a clock."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from typing import NoReturn

from azure.core.exceptions import HttpResponseError


def refused(kind: type[HttpResponseError], status: int, code: str, index: int = 0) -> Exception:
    """The SDK's exception for a refused request, as the service's answer would make it."""
    error = kind(message=f"{index}:{code} (fake storage)")
    error.status_code, error.reason = status, code
    setattr(error, "error_code", code)  # noqa: B010 - the storage SDKs' own attribute
    return error


class Strict:
    """An operation the fake does not implement raises, naming it."""

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotImplementedError(f"{type(self).__name__}.{name}: not in the storage fake")


class Clock:
    """The fakes' time: the machine's, plus however far a test moved it on."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


_ETAGS = itertools.count(1)


def new_etag(at: datetime) -> str:
    return f"W/\"datetime'{at.strftime('%Y-%m-%dT%H:%M:%S.%f')}{next(_ETAGS):04d}Z'\""
