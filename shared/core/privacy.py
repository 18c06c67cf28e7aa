"""Keeping personal data and secrets out of logs, errors and run records.

``scrub`` removes anything that looks like an email address, a hash or a long token from text
that came from outside (an API's error message); ``SecretFilter`` is a logging filter that
replaces the values of secrets the app has loaded wherever they would appear in a log line.
"""

from __future__ import annotations

import logging
import re
import threading

_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+")
_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_TOKENISH = re.compile(r"\b[A-Za-z0-9_\-.~+/=]{40,}")
_PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
_MAX_EXTERNAL_TEXT = 300


def scrub(text: str) -> str:
    """External text made safe to log or store: personal data and token-like runs removed."""
    text = _EMAIL.sub("[email]", text)
    text = _HEX.sub("[hex]", text)
    text = _TOKENISH.sub("[token]", text)
    text = _PHONE.sub("[number]", text)
    text = SECRETS.redact(text)
    return text if len(text) <= _MAX_EXTERNAL_TEXT else text[:_MAX_EXTERNAL_TEXT] + "…"


class SecretRegistry:
    """The secret values in use by this process, so that they can be redacted anywhere.

    Long-lived secrets (client secrets, refresh tokens, keys) are kept; short-lived ones
    (access tokens) are bounded: the oldest make way for new ones.
    """

    _LIMIT = 256

    def __init__(self) -> None:
        self._kept: set[str] = set()
        self._recent: dict[str, None] = {}
        self._lock = threading.Lock()

    def add(self, *values: str, short_lived: bool = False) -> None:
        with self._lock:
            for value in values:
                if len(value) < 6:
                    continue
                if not short_lived:
                    self._kept.add(value)
                    continue
                self._recent.pop(value, None)
                self._recent[value] = None
            while len(self._recent) > self._LIMIT:
                del self._recent[next(iter(self._recent))]

    def redact(self, text: str) -> str:
        with self._lock:
            values = [*self._kept, *self._recent]
        for value in values:
            if value in text:
                text = text.replace(value, "[secret]")
        return text


SECRETS = SecretRegistry()


class SecretFilter(logging.Filter):
    """Replaces registered secret values in a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = SECRETS.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
