"""Reading raw setting values, collecting every problem rather than stopping at the first;
``shared.core.settings`` says which settings there are and what each means. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Reader:
    """Reads raw values, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], defaults: Mapping[str, str | None]) -> None:
        self.env = env
        self._defaults = defaults
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or self._defaults[name]

    def text(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.problems.append(f"{name}: required")
            return ""
        return value

    def url(self, name: str, *, https: bool = False, secure: bool = False) -> str | None:
        """``https``: only an HTTPS URL; ``secure``: HTTPS, or HTTP on loopback (the sandbox)."""
        value = self.optional(name)
        if value is None:
            return None
        parsed = urlparse(value)
        schemes = ("https",) if https else ("http", "https")
        if secure and parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
            self.problems.append(
                f"{name}: {shown_url(value)!r} is plain HTTP to a host other than this "
                "machine; secrets and tokens go there, so it must be an https URL"
            )
            return None
        if parsed.scheme not in schemes or not parsed.netloc:
            self.problems.append(
                f"{name}: {shown_url(value)!r} is not an {' or '.join(schemes)} URL"
            )
            return None
        return value.rstrip("/")

    def name(self, name: str, *, table: bool = False) -> str:
        value = self.text(name)
        ok = value.isalnum() if table else all(c.isalnum() or c == "-" for c in value)
        if not (ok and 3 <= len(value) <= 63 and value[0].isalpha()):
            kind = "letters and digits" if table else "lowercase letters, digits and '-'"
            self.problems.append(
                f"{name}: {shown(value)!r} is not 3-63 {kind}, starting with a letter"
            )
        return value.lower() if not table else value

    def number(self, name: str, low: float, high: float) -> float:
        return self._bounded(name, float, "a number", low, high)

    def integer(self, name: str, low: int, high: int) -> int:
        return int(self._bounded(name, int, "a whole number", low, high))

    def minutes(self, name: str) -> tuple[int, ...]:
        """Rising whole minutes, comma-separated, each at most 7 days (the queue's delay)."""
        raw = self.text(name)
        parts = raw.replace(" ", "").split(",")
        if all(p.isdigit() for p in parts) and parts == sorted(parts, key=int):
            found = tuple(int(p) for p in parts)
            if found[0] > 0 and found[-1] <= 10080 and len(set(found)) == len(found):
                return found
        self.problems.append(f"{name}: {shown(raw)!r} is not rising minutes such as 5,15,60")
        return (5, 15, 60)

    def _bounded(
        self, name: str, parse: type[float] | type[int], what: str, low: float, high: float
    ) -> float:
        """The setting as ``parse`` reads it, from ``low`` to ``high``; else a problem."""
        number = "{:g}".format if parse is float else str
        raw = self.text(name)
        try:
            value = parse(raw)
        except ValueError:
            self.problems.append(
                f"{name}: {shown(raw)!r} is not {what}; expected one from {number(low)} to "
                f"{number(high)}"
            )
            return low
        if not low <= value <= high:
            outside = f"{number(value)} is outside {number(low)} to {number(high)}"
            self.problems.append(f"{name}: {outside}")
        return value


def shown_url(value: str) -> str:
    """A URL as an error quotes it: scheme, host and path only. A query or fragment could
    carry a SAS token, and ``user:password@`` a password."""
    kept = value.split("?", 1)[0].split("#", 1)[0]
    scheme, separator, rest = kept.rpartition("://")
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return shown(f"{scheme}{separator}{host}{slash}{path}")


def shown(value: str) -> str:
    """A setting's value as an error quotes it: settings hold no personal data or secrets
    (secrets live in Key Vault, connection strings are never quoted), but keep it short."""
    return value if len(value) <= 80 else value[:77] + "..."
