"""A strict stand-in for the Snap Marketing API, served over real HTTP on loopback.

The exporter's tests, the local demo and the benchmark point the Snapchat client at this
sandbox instead of ``adsapi.snapchat.com`` / ``accounts.snapchat.com``. It speaks the same
contract (the team's notes in ``snapchat-marketing-api.md``) and is deliberately stricter than
the real service: any body that deviates from the documented shape is refused with a 400, and a
refused request changes nothing.

What it offers:

- the OAuth token endpoint (refresh-token and authorization-code grants, optional rotation of
  refresh tokens) and the browser ``authorize`` redirect;
- bearer-token checks on every ``/v1`` call, with expiry after ``token_lifetime`` seconds;
- audience segments: create, list (paged), get, add users, remove users, remove all users;
- Snapchat's timing and matching as knobs (``Knobs``, constructor keywords or ``configure``):
  ``upload_status`` is PROCESSING for ``processing_seconds`` after a segment's last upload, then
  COMPLETE; ``approximate_number_users`` is absent until then, and is ``match_share`` of the
  distinct identifiers (exactly, rounded down), rounded down to a multiple of
  ``size_rounding``; ``targetable_status`` is NOT_READY until COMPLETE, then TOO_FEW_USERS
  under ``target_minimum`` matched, else READY; at most ``audience_cap`` segments per ad
  account;
- lookalikes (``source_type: LOOKALIKE`` with a ``creation_spec``), validated strictly: a type
  of BALANCE, SIMILARITY or REACH, ISO 3166-1 alpha-2 countries, a READY seed in the same ad
  account, retention at most 180 days; PENDING for ``lookalike_seconds``, then ACTIVE with a
  size of its own (per country, by type: ``LOOKALIKE_SIZE_PER_COUNTRY``);
- faults on demand (``inject``) or at random (``chaos``): 429, 500, 503, 401, slow answers,
  dropped connections and a 200 whose sub-request failed;
- a log of every request, and inspection helpers for the identifiers each audience holds.

In process::

    with SnapchatSandbox() as snap:
        snap.add_client("id", "secret", "refresh")
        snap.add_audience("seg-1")
        ...  # point the client at snap.api_url and snap.token_url

Out of process (prints one JSON line with the URLs, then serves until SIGTERM/SIGINT)::

    python -m devtools.snapchat_sandbox --port 0 --client ID:SECRET:REFRESH --audience SEG

Other processes steer it through the unauthenticated ``/_sandbox/`` control endpoints
(``state``, ``requests``, ``faults``, ``reset``, ``expire_tokens``, ``configure``), which are
neither logged nor faulted.

Behaviour worth knowing:

- Faults are chosen when a request arrives, before authentication: an injected fault (oldest
  matching first) wins over chaos. ``sub_request_failed`` only ever matches the users endpoints;
  the request is then authenticated and validated as usual, but nothing is recorded.
- Status faults answer with the Snap error body, on the token endpoint too.
- A known path called with the wrong method answers 405; an unknown path 404 (E3003).
- ``reset()`` also hands every client its registered refresh token back.
- Error codes other than E3003 (not found) are placeholders chosen for the sandbox.

Only the standard library is used, so the module runs anywhere the project runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import gc
import hashlib
import json
import math
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, NoReturn, Self, cast
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

SCHEMAS = ("EMAIL_SHA256", "PHONE_SHA256", "MOBILE_AD_ID_SHA256")
SCOPE = "snapchat-marketing-api"
MAX_IDENTIFIERS_PER_REQUEST = 100_000
MAX_SEGMENT_NAME = 375
MAX_SEGMENTS_PER_AD_ACCOUNT = 1000
TARGETABLE_MINIMUM = 1000
FAULT_KINDS = ("429", "500", "503", "401", "403", "307", "slow", "drop", "sub_request_failed")

_HOST = "127.0.0.1"
_MAX_BODY_BYTES = 64 * 1024 * 1024
_DEFAULT_SLOW_SECONDS = 2.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_DIGITS = b"0123456789abcdef"
_USERS_PATH = re.compile(r"/v1/segments/[^/]+/users")
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"

# Error codes: E3003 (not found) is documented by Snap; the others only need to be stable.
_E_NOT_FOUND = "E3003"
_E_INVALID = "E1001"
_E_UNAUTHORIZED = "E1002"
_E_RATE_LIMIT = "E1003"
_E_INTERNAL = "E1004"
_E_UNAVAILABLE = "E1005"
_E_METHOD = "E1006"
_E_MEDIA_TYPE = "E1007"
_E_TOO_LARGE = "E1008"
_E_LIMIT = "E1009"
_E_PERMISSION = "E3002"  # documented: no permission on the ad account or segment


def fingerprint(identifiers: Iterable[str]) -> str:
    """SHA-256 hex of the sorted identifiers joined by newlines (of ``""`` when empty)."""
    return hashlib.sha256("\n".join(sorted(identifiers)).encode()).hexdigest()


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str  # without the query string
    status: int  # status answered, 0 when the connection was dropped
    token: str | None  # bearer access token presented, if any
    identifiers: int  # identifiers in an accepted users request, else 0
    fault: str | None  # kind of the fault applied, if any ("429", "slow", ...)
    schema: str | None  # schema(s) of an accepted users request, comma-separated
    seconds: float = 0.0  # time spent answering, from arrival of the whole body to the answer
    content: str | None = None  # an accepted users request's identifiers, in order, fingerprinted


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # ask the client to drop the keep-alive connection
    identifiers: int = 0  # for the request log
    schema: str | None = None  # for the request log
    content: str | None = None  # for the request log


def _json_response(status: int, payload: object, **extra: Any) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Response(status, body, (("Content-Type", _JSON),), **extra)


def _request_id() -> str:
    return uuid.uuid4().hex


def _api_error_response(status: int, code: str, message: str, **extra: Any) -> _Response:
    payload = {
        "request_status": "ERROR",
        "request_id": _request_id(),
        "debug_message": message,
        "display_message": message,
        "error_code": code,
    }
    return _json_response(status, payload, **extra)


def _oauth_error_response(status: int, error: str, description: str) -> _Response:
    return _json_response(status, {"error": error, "error_description": description})


class _Reject(Exception):  # noqa: N818 - control flow: "reject the request with this answer"
    """Raised by request handlers to answer with ``response`` instead of success."""

    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response


def _bad_request(message: str, code: str = _E_INVALID) -> _Reject:
    return _Reject(_api_error_response(400, code, message))


def _not_found(message: str) -> _Reject:
    return _Reject(_api_error_response(404, _E_NOT_FOUND, message))


def _oauth_reject(status: int, error: str, description: str) -> _Reject:
    return _Reject(_oauth_error_response(status, error, description))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise _bad_request(f"body is not valid UTF-8 JSON: {error}") from None


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class _FaultSpec:
    kind: str
    seconds: float = 0.0  # for "slow"
    retry_after: int | None = None  # for "429"
    location: str = ""  # for "307": where the answer redirects to

    def applies_to(self, method: str, path: str) -> bool:
        """A failed sub-request only makes sense on the users endpoints."""
        if self.kind != "sub_request_failed":
            return True
        return method in ("POST", "DELETE") and _USERS_PATH.fullmatch(path) is not None


def _parse_fault(text: str, *, slow_seconds: float = _DEFAULT_SLOW_SECONDS) -> _FaultSpec:
    """Read ``"429"``, ``"429:retry-after=N"``, ``"slow"``, ``"slow:SECONDS"`` or another kind."""
    kind, _, argument = text.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {text!r}; expected one of {', '.join(FAULT_KINDS)}")
    if kind == "slow":
        seconds = float(argument) if argument else slow_seconds
        if not 0 <= seconds < math.inf:
            raise ValueError(f"the delay in fault {text!r} must be a finite number >= 0")
        return _FaultSpec(kind, seconds=seconds)
    if kind == "429" and argument:
        name, _, value = argument.partition("=")
        if name != "retry-after" or not value.isdigit():
            raise ValueError(f"malformed fault {text!r}; use '429:retry-after=SECONDS'")
        return _FaultSpec(kind, retry_after=int(value))
    if kind == "307":
        name, _, value = argument.partition("=")
        if name != "location" or not value.startswith("/"):
            raise ValueError(f"malformed fault {text!r}; use '307:location=/PATH'")
        return _FaultSpec(kind, location=value)
    if argument:
        raise ValueError(f"fault {kind!r} takes no argument")
    return _FaultSpec(kind)


@dataclass(eq=False)
class _Injected:
    spec: _FaultSpec
    remaining: int
    path_contains: str | None
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        return self.spec.applies_to(method, path)


class _Faults:
    """Injected faults (FIFO, counted) and random chaos; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Injected] = []
        self._share = 0.0
        self._rng = random.Random(0)
        self._chaos: tuple[_FaultSpec, ...] = ()

    def inject(
        self, spec: _FaultSpec, times: int, path_contains: str | None, method: str | None
    ) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        entry = _Injected(spec, times, path_contains, method.upper() if method else None)
        with self._lock:
            self._queue.append(entry)

    def chaos(self, share: float, seed: int, specs: tuple[_FaultSpec, ...]) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be between 0 and 1")
        if share > 0 and not specs:
            raise ValueError("chaos needs at least one fault")
        with self._lock:
            self._share = share
            self._rng = random.Random(seed)
            self._chaos = specs

    def take(self, method: str, path: str) -> _FaultSpec | None:
        """The fault to apply to this request: the oldest matching injection, else chaos."""
        with self._lock:
            for entry in self._queue:
                if entry.matches(method, path):
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._queue.remove(entry)
                    return entry.spec
            return self._roll_chaos(method, path)

    def _roll_chaos(self, method: str, path: str) -> _FaultSpec | None:
        if self._share <= 0 or self._rng.random() >= self._share:
            return None
        candidates = [spec for spec in self._chaos if spec.applies_to(method, path)]
        return self._rng.choice(candidates) if candidates else None

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._share = 0.0
            self._chaos = ()


def _fault_response(spec: _FaultSpec) -> _Response | None:  # noqa: PLR0911 - one per kind
    """The answer a status-code fault replaces the real one with (None for other kinds)."""
    if spec.kind == "429":
        headers = (("Retry-After", str(spec.retry_after)),) if spec.retry_after is not None else ()
        response = _api_error_response(429, _E_RATE_LIMIT, "Too many requests (sandbox fault)")
        return dataclasses.replace(response, headers=response.headers + headers)
    if spec.kind == "500":
        return _api_error_response(500, _E_INTERNAL, "Internal error (sandbox fault)")
    if spec.kind == "503":
        return _api_error_response(503, _E_UNAVAILABLE, "Service unavailable (sandbox fault)")
    if spec.kind == "401":
        return _api_error_response(401, _E_UNAUTHORIZED, "Unauthorized (sandbox fault)")
    if spec.kind == "403":
        return _api_error_response(403, _E_PERMISSION, "No permission on the segment (fault)")
    if spec.kind == "307":  # a redirect that keeps the method and the body
        return _Response(307, headers=(("Location", spec.location),))
    return None


# --------------------------------------------------------------------------- OAuth


@dataclass
class _Client:
    secret: str
    registered_refresh_token: str
    refresh_token: str


_PKCE = re.compile(r"[A-Za-z0-9_-]{43}")
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636, 4.1: unreserved characters


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 code challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str = ""  # PKCE: the S256 code challenge the authorize request carried


class _Auth:
    """OAuth clients, issued access tokens and authorization codes; thread-safe."""

    def __init__(self, token_lifetime: int, rotate_refresh_tokens: bool) -> None:
        self._lock = threading.Lock()
        self._lifetime = token_lifetime
        self._rotate = rotate_refresh_tokens
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._codes: dict[str, _Code] = {}
        self._redeemed: list[tuple[str, str]] = []  # (challenge, verifier) of redeemed codes

    def add_client(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        with self._lock:
            self._clients[client_id] = _Client(client_secret, refresh_token, refresh_token)

    def has_client(self, client_id: str) -> bool:
        with self._lock:
            return client_id in self._clients

    def current_refresh_token(self, client_id: str) -> str:
        with self._lock:
            return self._clients[client_id].refresh_token

    def issue_code(self, client_id: str, redirect_uri: str, challenge: str = "") -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client {client_id!r}")
            self._codes[code] = _Code(client_id, redirect_uri, challenge)
        return code

    def expire_all(self) -> None:
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = float("-inf")

    def reset(self) -> None:
        """Forget tokens and codes; every client gets its registered refresh token back."""
        with self._lock:
            self._tokens.clear()
            self._codes.clear()
            self._redeemed.clear()
            for client in self._clients.values():
                client.refresh_token = client.registered_refresh_token

    def check(self, token: str | None) -> None:
        """Raise a 401 unless ``token`` is an issued access token that has not expired."""
        if token is None:
            raise _Reject(_api_error_response(401, _E_UNAUTHORIZED, "Missing bearer token"))
        with self._lock:
            expires_at = self._tokens.get(token)
        if expires_at is None:
            raise _Reject(_api_error_response(401, _E_UNAUTHORIZED, "Unknown access token"))
        if expires_at <= time.monotonic():
            raise _Reject(_api_error_response(401, _E_UNAUTHORIZED, "Access token expired"))

    def grant(self, form: Mapping[str, str]) -> dict[str, object]:
        """Answer a token request whose form fields were already parsed."""
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            fields = _require_fields(form, ("client_id", "client_secret", "refresh_token"))
            with self._lock:
                client = self._authenticate(fields["client_id"], fields["client_secret"])
                refresh_token = self._use_refresh_token(client, fields["refresh_token"])
                return self._issue(refresh_token)
        if grant_type == "authorization_code":
            names = ("client_id", "client_secret", "code", "redirect_uri")
            fields = _require_fields(form, names)
            with self._lock:
                client = self._authenticate(fields["client_id"], fields["client_secret"])
                self._use_code(fields["client_id"], fields["code"], fields["redirect_uri"],
                               form.get("code_verifier"))  # fmt: skip
                return self._issue(client.refresh_token)
        if grant_type is None:
            raise _oauth_reject(400, "invalid_request", "grant_type is missing")
        raise _oauth_reject(400, "unsupported_grant_type", f"grant_type {grant_type!r}")

    def _authenticate(self, client_id: str, client_secret: str) -> _Client:
        client = self._clients.get(client_id)
        if client is None or not _same(client.secret, client_secret):
            raise _oauth_reject(401, "invalid_client", "Client authentication failed")
        return client

    def _use_refresh_token(self, client: _Client, presented: str) -> str:
        if not _same(client.refresh_token, presented):
            raise _oauth_reject(400, "invalid_grant", "Invalid refresh token")
        if self._rotate:
            client.refresh_token = secrets.token_urlsafe(32)
        return client.refresh_token

    def _use_code(self, client_id: str, code: str, redirect_uri: str, verifier: str | None) -> None:
        issued = self._codes.get(code)
        if issued is None or issued.client_id != client_id:
            raise _oauth_reject(400, "invalid_grant", "Invalid or already used code")
        if issued.redirect_uri != redirect_uri:
            raise _oauth_reject(400, "invalid_grant", "redirect_uri does not match the code")
        pkce = issued.challenge or verifier is not None  # RFC 7636, S256 only
        if pkce and (not verifier or not _VERIFIER.fullmatch(verifier)):
            raise _oauth_reject(400, "invalid_grant", "code_verifier: expected 43 to 128 "
                                "unreserved characters")  # fmt: skip
        if pkce and (not verifier or not _same(pkce_challenge(verifier), issued.challenge)):
            raise _oauth_reject(400, "invalid_grant", "code_verifier does not match")
        del self._codes[code]
        if pkce and verifier:
            self._redeemed.append((issued.challenge, verifier))

    def redeemed_pkce(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._redeemed)

    def _issue(self, refresh_token: str) -> dict[str, object]:
        access_token = secrets.token_urlsafe(32)
        self._tokens[access_token] = time.monotonic() + self._lifetime
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self._lifetime,
            "refresh_token": refresh_token,
            "scope": SCOPE,
        }


def _same(expected: str, presented: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII input."""
    return secrets.compare_digest(expected.encode(), presented.encode())


def _require_fields(form: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    missing = [name for name in names if not form.get(name)]
    if missing:
        raise _oauth_reject(400, "invalid_request", f"missing {', '.join(missing)}")
    return {name: form[name] for name in names}


def _parse_form(body: bytes) -> dict[str, str]:
    """Strict form decoding: UTF-8, every field at most once."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        raise _oauth_reject(400, "invalid_request", "malformed form body") from None
    repeated = sorted(name for name, values in pairs.items() if len(values) > 1)
    if repeated:
        raise _oauth_reject(400, "invalid_request", f"repeated {', '.join(repeated)}")
    return {name: values[0] for name, values in pairs.items()}


# --------------------------------------------------------------------------- audiences


@dataclass
class Knobs:
    """How the sandbox models Snapchat's timing and matching (constructor keywords, and
    ``configure`` on a running sandbox). The defaults answer at once and match everyone."""

    processing_seconds: float = 0.0  # upload_status PROCESSING this long after the last upload
    match_share: float = 1.0  # share of a segment's distinct identifiers that match
    size_rounding: int = 0  # approximate_number_users rounded down to a multiple (0: exact)
    target_minimum: int = TARGETABLE_MINIMUM  # matched users needed for READY
    audience_cap: int = MAX_SEGMENTS_PER_AD_ACCOUNT  # segments per ad account
    lookalike_seconds: float = 0.0  # a lookalike is PENDING this long, then ACTIVE
    page_size: int = 1000  # segments per page of a list (paging.next_link beyond)

    def check(self) -> None:
        problems = []
        if not 0.0 <= self.processing_seconds < math.inf:
            problems.append("processing_seconds must be a finite number >= 0")
        if not 0.0 <= self.match_share <= 1.0:
            problems.append("match_share must be between 0 and 1")
        if self.size_rounding < 0:
            problems.append("size_rounding must be 0 or more")
        if self.target_minimum < 0 or self.audience_cap < 0:
            problems.append("target_minimum and audience_cap must be 0 or more")
        if not 0.0 <= self.lookalike_seconds < math.inf:
            problems.append("lookalike_seconds must be a finite number >= 0")
        if self.page_size < 1:
            problems.append("page_size must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))

    def rounded(self, count: int) -> int:
        return count - count % self.size_rounding if self.size_rounding else count


LOOKALIKE_TYPES = ("BALANCE", "SIMILARITY", "REACH")
LOOKALIKE_MAX_RETENTION = 180
# A lookalike's size per country it covers, by type (the sandbox's own figures).
LOOKALIKE_SIZE_PER_COUNTRY = {"SIMILARITY": 100_000, "BALANCE": 500_000, "REACH": 1_000_000}
# ISO 3166-1 alpha-2, the officially assigned codes.
_COUNTRY_CODES = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM
BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK
DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT
GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ
TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"""
COUNTRIES = frozenset(_COUNTRY_CODES.split())


@dataclass(frozen=True)
class _LookalikeSpec:
    seed_segment_id: str
    type: str
    countries: tuple[str, ...]

    def view(self) -> dict[str, object]:
        return {
            "seed_segment_id": self.seed_segment_id,
            "type": self.type,
            "countries": list(self.countries),
        }


@dataclass
class _Segment:
    id: str
    name: str
    description: str
    ad_account_id: str
    retention_in_days: int
    created_at: str
    updated_at: str
    uploaded: bool = False
    members: dict[str, set[str]] = field(
        default_factory=lambda: {schema: set() for schema in SCHEMAS}
    )
    changed_at: float = 0.0  # time.monotonic() of the last users upload (add or remove)
    created_monotonic: float = field(default_factory=time.monotonic)
    lookalike: _LookalikeSpec | None = None  # set for a LOOKALIKE segment

    def size(self) -> int:
        return sum(len(members) for members in self.members.values())

    def matched(self, knobs: Knobs) -> int:
        """How many of the distinct identifiers match: ``match_share`` of them, exactly
        (rounded down), whichever they are."""
        return math.floor(self.size() * knobs.match_share + 1e-9)

    def upload_status(self, knobs: Knobs, now: float) -> str:
        if not self.uploaded:
            return "NO_UPLOAD"
        return "PROCESSING" if now - self.changed_at < knobs.processing_seconds else "COMPLETE"

    def view(self, knobs: Knobs, now: float | None = None) -> dict[str, object]:
        now = time.monotonic() if now is None else now
        result: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "ad_account_id": self.ad_account_id,
            "source_type": "FIRST_PARTY" if self.lookalike is None else "LOOKALIKE",
            "retention_in_days": self.retention_in_days,
        }
        if self.lookalike is not None:
            result.update(self._lookalike_view(self.lookalike, knobs, now))
        else:
            result.update(self._status_view(knobs, now))
        result.update(created_at=self.created_at, updated_at=self.updated_at)
        return result

    def _status_view(self, knobs: Knobs, now: float) -> dict[str, object]:
        upload = self.upload_status(knobs, now)
        status: dict[str, object] = {"status": "ACTIVE", "upload_status": upload}
        if upload != "COMPLETE":
            status["targetable_status"] = "NOT_READY"
            return status
        matched = self.matched(knobs)
        status["approximate_number_users"] = knobs.rounded(matched)
        ready = matched >= knobs.target_minimum
        status["targetable_status"] = "READY" if ready else "TOO_FEW_USERS"
        return status

    def _lookalike_view(self, spec: _LookalikeSpec, knobs: Knobs, now: float) -> dict[str, object]:
        pending = now - self.created_monotonic < knobs.lookalike_seconds
        view: dict[str, object] = {"creation_spec": spec.view()}
        if pending:
            view.update(status="PENDING", targetable_status="NOT_READY")
            return view
        size = LOOKALIKE_SIZE_PER_COUNTRY[spec.type] * len(spec.countries)
        view.update(status="ACTIVE", targetable_status="READY",
                    approximate_number_users=knobs.rounded(size))  # fmt: skip
        return view

    def ready(self, knobs: Knobs) -> bool:
        return self._status_view(knobs, time.monotonic())["targetable_status"] == "READY"


@dataclass(frozen=True)
class _NewSegment:
    name: str
    description: str
    retention_in_days: int
    lookalike: _LookalikeSpec | None = None


_Batch = tuple[str, list[str]]  # (schema, identifiers) from one users[] entry


class _Store:
    """Audience segments and the identifiers they hold; thread-safe."""

    def __init__(self, knobs: Knobs) -> None:
        self._lock = threading.Lock()
        self._segments: dict[str, _Segment] = {}
        self.knobs = knobs

    def configure(self, **knobs: Any) -> None:
        with self._lock:
            changed = dataclasses.replace(self.knobs, **knobs)
            changed.check()
            self.knobs = changed

    def add(self, segment_id: str, ad_account_id: str, name: str) -> None:
        now = _now_iso()
        segment = _Segment(segment_id, name, "", ad_account_id, 9999, now, now)
        with self._lock:
            self._segments[segment_id] = segment

    def create(self, ad_account_id: str, entries: list[_NewSegment]) -> list[dict[str, object]]:
        now = _now_iso()
        with self._lock:
            existing = sum(s.ad_account_id == ad_account_id for s in self._segments.values())
            if existing + len(entries) > self.knobs.audience_cap:
                raise _bad_request(
                    f"the ad account holds {existing} audiences; at most "
                    f"{self.knobs.audience_cap} allowed",
                    _E_LIMIT,
                )
            for index, entry in enumerate(entries):
                if entry.lookalike is not None:
                    self._check_seed(index, entry.lookalike, ad_account_id)
            created = []
            for entry in entries:
                segment = _Segment(
                    str(uuid.uuid4()),
                    entry.name,
                    entry.description,
                    ad_account_id,
                    entry.retention_in_days,
                    now,
                    now,
                    lookalike=entry.lookalike,
                )
                self._segments[segment.id] = segment
                created.append(segment.view(self.knobs))
            return created

    def _check_seed(self, index: int, spec: _LookalikeSpec, ad_account_id: str) -> None:
        where = f"segments[{index}].creation_spec.seed_segment_id"
        seed = self._segments.get(spec.seed_segment_id)
        if seed is None or seed.ad_account_id != ad_account_id:
            raise _bad_request(f"{where}: no such segment in this ad account")
        if seed.lookalike is not None:
            raise _bad_request(f"{where}: a lookalike cannot be a seed")
        if not seed.ready(self.knobs):
            raise _bad_request(f"{where}: the seed segment is not READY (targetable)")

    def exists(self, segment_id: str) -> bool:
        with self._lock:
            return segment_id in self._segments

    def view(self, segment_id: str) -> dict[str, object]:
        with self._lock:
            return self._require(segment_id).view(self.knobs)

    def views(self, ad_account_id: str | None = None) -> dict[str, dict[str, object]]:
        with self._lock:
            return {
                segment.id: segment.view(self.knobs)
                for segment in self._segments.values()
                if ad_account_id is None or segment.ad_account_id == ad_account_id
            }

    def change(self, segment_id: str, batches: list[_Batch], *, remove: bool) -> None:
        with self._lock:
            segment = self._require(segment_id)
            if segment.lookalike is not None:
                raise _bad_request(f"Segment {segment_id} is a lookalike: it takes no users")
            for schema, identifiers in batches:
                if remove:
                    segment.members[schema].difference_update(identifiers)
                else:
                    segment.members[schema].update(identifiers)
            segment.uploaded = segment.uploaded or not remove
            segment.changed_at = time.monotonic()
            segment.updated_at = _now_iso()

    def clear(self, segment_id: str) -> dict[str, object]:
        with self._lock:
            segment = self._require(segment_id)
            for members in segment.members.values():
                members.clear()
            segment.changed_at = time.monotonic()
            segment.updated_at = _now_iso()
            return segment.view(self.knobs)

    def identifiers(self, segment_id: str, schema: str) -> set[str]:
        if schema not in SCHEMAS:
            raise ValueError(f"unknown schema {schema!r}")
        with self._lock:
            return set(self._segments[segment_id].members[schema])

    def snapshot(self) -> dict[str, dict[str, set[str]]]:
        with self._lock:
            return {
                segment.id: {schema: set(ids) for schema, ids in segment.members.items()}
                for segment in self._segments.values()
            }

    def reset(self) -> None:
        with self._lock:
            for segment in self._segments.values():
                for members in segment.members.values():
                    members.clear()
                segment.uploaded = False

    def _require(self, segment_id: str) -> _Segment:
        segment = self._segments.get(segment_id)
        if segment is None:
            raise _not_found(f"Segment {segment_id} not found")
        return segment


# --------------------------------------------------------------------------- body validation


class _GcPause:
    """Hold the cyclic garbage collector off while large JSON bodies are parsed.

    ``json.loads`` of a 100,000-identifier body creates 100,000 small lists, and the collector
    would run over and over while they are built (and walk every big identifier set each time
    it reaches the oldest generation). Parsing makes no reference cycles, so pausing it is safe.
    Nested and concurrent pauses are counted; the collector is switched back on by the last
    one out, and only if it was on when the first one came in.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                gc.enable()


_gc_paused = _GcPause()


def _parse_users_body(body: bytes) -> list[_Batch]:
    """Validate a whole users body before anything is applied (all or nothing)."""
    with _gc_paused:
        return _parse_users_document(_load_json(body))


def _parse_users_document(document: object) -> list[_Batch]:
    if not isinstance(document, dict) or set(document) != {"users"}:
        raise _bad_request("body must be an object with exactly the key 'users'")
    users = document["users"]
    if not isinstance(users, list) or not users:
        raise _bad_request("'users' must be a non-empty list")
    shapes = [_users_entry(index, entry) for index, entry in enumerate(users)]
    total = sum(len(data) for _, data in shapes)
    if total > MAX_IDENTIFIERS_PER_REQUEST:
        raise _bad_request(
            f"{total} identifiers in one request; at most {MAX_IDENTIFIERS_PER_REQUEST} allowed"
        )
    return [(schema, _hashes(index, data)) for index, (schema, data) in enumerate(shapes)]


def _users_entry(index: int, entry: object) -> tuple[str, list[object]]:
    if not isinstance(entry, dict) or set(entry) != {"schema", "data"}:
        raise _bad_request(f"users[{index}] must be an object with exactly 'schema' and 'data'")
    schema = entry["schema"]
    if not isinstance(schema, list) or len(schema) != 1 or schema[0] not in SCHEMAS:
        raise _bad_request(f"users[{index}].schema must be one of {list(SCHEMAS)} in a list")
    data = entry["data"]
    if not isinstance(data, list) or not data:
        raise _bad_request(f"users[{index}].data must be a non-empty list")
    return schema[0], data


def _hashes(index: int, data: list[object]) -> list[str]:
    hashes = _hashes_fast(data)
    if hashes is None:
        _reject_first_bad_item(index, data)
    return hashes


def _hashes_fast(data: list[object]) -> list[str] | None:
    """Prove that every item is ``[<64 lowercase hex>]`` using whole-list checks, or give up.

    Running the per-item regex over 100,000 items costs about as much as parsing the JSON, so
    valid bodies are confirmed in bulk; anything doubtful goes to the item-by-item check, which
    is the authority and names the first offending item.
    """
    if set(map(type, data)) != {list}:
        return None
    items = cast(list[list[object]], data)
    if set(map(len, items)) != {1}:
        return None
    values = [item[0] for item in items]
    if set(map(type, values)) != {str}:
        return None
    hashes = cast(list[str], values)
    if set(map(len, hashes)) != {64}:
        return None
    try:
        joined = "".join(hashes).encode("ascii")
    except UnicodeEncodeError:
        return None
    return None if joined.translate(None, _HEX_DIGITS) else hashes


def _reject_first_bad_item(index: int, data: list[object]) -> NoReturn:
    for position, item in enumerate(data):
        where = f"users[{index}].data[{position}]"
        if not isinstance(item, list) or len(item) != 1:
            raise _bad_request(f"{where} must be a one-element list")
        value = item[0]
        if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
            raise _bad_request(f"{where} must hold a lowercase hex SHA-256 digest")
    raise AssertionError("the bulk check refused data the item-by-item check accepts")


_SEGMENT_REQUIRED = frozenset({"name", "source_type", "retention_in_days", "ad_account_id"})
_SEGMENT_ALLOWED = _SEGMENT_REQUIRED | {"description"}
_LOOKALIKE_ALLOWED = _SEGMENT_ALLOWED | {"creation_spec"}
_SPEC_REQUIRED = frozenset({"seed_segment_id", "countries"})
_SPEC_ALLOWED = _SPEC_REQUIRED | {"type"}


def _parse_segments_body(body: bytes, ad_account_id: str) -> list[_NewSegment]:
    document = _load_json(body)
    if not isinstance(document, dict) or set(document) != {"segments"}:
        raise _bad_request("body must be an object with exactly the key 'segments'")
    segments = document["segments"]
    if not isinstance(segments, list) or not segments:
        raise _bad_request("'segments' must be a non-empty list")
    return [_new_segment(i, entry, ad_account_id) for i, entry in enumerate(segments)]


def _new_segment(index: int, entry: object, ad_account_id: str) -> _NewSegment:
    where = f"segments[{index}]"
    if not isinstance(entry, dict):
        raise _bad_request(f"{where} must be an object")
    lookalike = entry.get("source_type") == "LOOKALIKE"
    keys, allowed = set(entry), _LOOKALIKE_ALLOWED if lookalike else _SEGMENT_ALLOWED
    required = _SEGMENT_REQUIRED | {"creation_spec"} if lookalike else _SEGMENT_REQUIRED
    if not required <= keys <= allowed:
        raise _bad_request(f"{where} needs {sorted(required)} and may add 'description' only")
    name, description = entry["name"], entry.get("description", "")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_SEGMENT_NAME:
        raise _bad_request(f"{where}.name must be 1 to {MAX_SEGMENT_NAME} characters")
    if not isinstance(description, str):
        raise _bad_request(f"{where}.description must be a string")
    if entry["source_type"] not in ("FIRST_PARTY", "LOOKALIKE"):
        raise _bad_request(f"{where}.source_type must be FIRST_PARTY (or LOOKALIKE)")
    if entry["ad_account_id"] != ad_account_id:
        raise _bad_request(f"{where}.ad_account_id must match the ad account in the path")
    retention = entry["retention_in_days"]
    longest = LOOKALIKE_MAX_RETENTION if lookalike else 9999
    if (
        isinstance(retention, bool)
        or not isinstance(retention, int)
        or not 1 <= retention <= longest
    ):
        raise _bad_request(f"{where}.retention_in_days must be an integer from 1 to {longest}")
    spec = _lookalike_spec(where, entry["creation_spec"]) if lookalike else None
    return _NewSegment(name, description, retention, spec)


def _lookalike_spec(where: str, raw: object) -> _LookalikeSpec:
    where = f"{where}.creation_spec"
    if not isinstance(raw, dict) or not _SPEC_REQUIRED <= set(raw) <= _SPEC_ALLOWED:
        raise _bad_request(
            f"{where} must be an object with seed_segment_id, countries and optionally type"
        )
    seed, kind, countries = raw["seed_segment_id"], raw.get("type", "BALANCE"), raw["countries"]
    if not isinstance(seed, str) or not seed:
        raise _bad_request(f"{where}.seed_segment_id must be a segment ID")
    if kind not in LOOKALIKE_TYPES:
        raise _bad_request(f"{where}.type must be one of {', '.join(LOOKALIKE_TYPES)}")
    if (
        not isinstance(countries, list)
        or not countries
        or not all(isinstance(c, str) and c in COUNTRIES for c in countries)
        or len(set(countries)) != len(countries)
    ):
        raise _bad_request(
            f"{where}.countries must be a non-empty list of distinct ISO 3166-1 alpha-2 "
            "country codes (upper case)"
        )
    return _LookalikeSpec(seed, kind, tuple(countries))


def _segments_payload(views: Iterable[dict[str, object]]) -> dict[str, object]:
    return {
        "request_status": "SUCCESS",
        "request_id": _request_id(),
        "segments": [{"sub_request_status": "SUCCESS", "segment": view} for view in views],
    }


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: str
    content_type: str  # media type only, lowercase
    body: bytes
    token: str | None
    unreadable: _Response | None = None  # set when the body could not be read
    fail_sub_request: bool = False  # a sub_request_failed fault applies


_Endpoint = Callable[[_Request, dict[str, str]], _Response]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: _Endpoint


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _require_media_type(request: _Request, expected: str) -> None:
    if request.content_type != expected:
        message = f"Content-Type must be {expected}"
        raise _Reject(_api_error_response(415, _E_MEDIA_TYPE, message))


class SnapchatSandbox:
    """A loopback HTTP server imitating the Snap Marketing API; see the module docstring."""

    def __init__(
        self,
        *,
        token_lifetime: int = 1800,
        rotate_refresh_tokens: bool = False,
        port: int = 0,
        **knobs: Any,
    ) -> None:
        """``knobs``: the fields of ``Knobs`` (processing_seconds, match_share, size_rounding,
        target_minimum, audience_cap, lookalike_seconds, page_size)."""
        self._port = port
        self._auth = _Auth(token_lifetime, rotate_refresh_tokens)
        self._store = _Store(Knobs())
        self._store.configure(**knobs)
        self._faults = _Faults()
        self._log_lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()
        self._control = self._build_control_routes()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind 127.0.0.1 (a free port unless one was given) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._stopping.clear()
        server = _Server((_HOST, self._port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how quickly stop() is noticed
            name="snapchat-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and cut short any slow fault."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"http://{_HOST}:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/login/oauth2/access_token"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/login/oauth2/authorize"

    # ----------------------------------------------------------------- setup and inspection

    def add_client(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        self._auth.add_client(client_id, client_secret, refresh_token)

    def add_audience(
        self, segment_id: str, *, ad_account_id: str = "adacct-1", name: str = "Audience"
    ) -> None:
        self._store.add(segment_id, ad_account_id, name)

    def issue_code(self, client_id: str, redirect_uri: str, challenge: str = "") -> str:
        """A single-use authorization code, as the consent page would hand out."""
        return self._auth.issue_code(client_id, redirect_uri, challenge)

    def identifiers(self, segment_id: str, schema: str = "EMAIL_SHA256") -> set[str]:
        """A copy of the identifiers the segment holds now (KeyError for an unknown segment)."""
        return self._store.identifiers(segment_id, schema)

    def configure(self, **knobs: Any) -> None:
        """Change knobs (the fields of ``Knobs``) of a running sandbox; the others stay.
        An unknown knob is a TypeError, a value out of range a ValueError."""
        self._store.configure(**knobs)

    @property
    def knobs(self) -> Knobs:
        return self._store.knobs

    def segments(self) -> dict[str, dict[str, object]]:
        """Every segment as GET /v1/segments/{id} would describe it, keyed by id."""
        return self._store.views()

    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, in arrival order (control requests excluded)."""
        with self._log_lock:
            return sorted(self._log, key=lambda record: record.at)

    def current_refresh_token(self, client_id: str) -> str:
        return self._auth.current_refresh_token(client_id)

    def redeemed_pkce(self) -> list[tuple[str, str]]:
        """The PKCE code challenge and code verifier of each code redeemed, in order (each
        verifier matched its challenge, or the code was refused)."""
        return self._auth.redeemed_pkce()

    def expire_tokens(self) -> None:
        """Every access token issued so far is refused from now on."""
        self._auth.expire_all()

    def inject(
        self,
        fault: str,
        *,
        times: int = 1,
        path_contains: str | None = None,
        method: str | None = None,
    ) -> None:
        """Queue ``fault`` for the next ``times`` requests matching path and method."""
        self._faults.inject(_parse_fault(fault), times, path_contains, method)

    def chaos(
        self,
        share: float,
        *,
        seed: int = 0,
        faults: Sequence[str] = ("429", "500", "503", "slow", "drop"),
        slow_seconds: float = _DEFAULT_SLOW_SECONDS,
    ) -> None:
        """Give a random ``share`` of all requests a random fault; ``share=0`` turns it off."""
        specs = tuple(_parse_fault(fault, slow_seconds=slow_seconds) for fault in faults)
        self._faults.chaos(share, seed, specs)

    def reset(self) -> None:
        """Forget identifiers, the log, faults, tokens and codes; keep clients and audiences."""
        self._store.reset()
        self._faults.reset()
        self._auth.reset()
        with self._log_lock:
            self._log.clear()

    def state(self) -> dict[str, object]:
        """Count and fingerprint of every (segment, schema), as GET /_sandbox/state answers."""
        audiences = {
            segment_id: {
                schema: {"count": len(ids), "fingerprint": fingerprint(ids)}
                for schema, ids in sets.items()
            }
            for segment_id, sets in self._store.snapshot().items()
        }
        return {"audiences": audiences}

    # ----------------------------------------------------------------- request handling

    def _answer(self, request: _Request) -> _Response | None:
        """Answer one request; None means: drop the connection without answering."""
        if request.path.startswith("/_sandbox/"):
            return self._answer_control(request)
        arrived = time.monotonic()
        if request.unreadable is not None:
            return self._logged(request, arrived, request.unreadable, None)
        fault = self._faults.take(request.method, request.path)
        if fault is None:
            return self._logged(request, arrived, self._route(request), None)
        return self._answer_with_fault(request, arrived, fault)

    def _answer_with_fault(
        self, request: _Request, arrived: float, fault: _FaultSpec
    ) -> _Response | None:
        if fault.kind == "drop":
            self._record(request, arrived, _Response(0), fault)
            return None
        if fault.kind == "slow":
            self._stopping.wait(fault.seconds)  # stop() cuts the delay short
        if fault.kind == "sub_request_failed":
            request = dataclasses.replace(request, fail_sub_request=True)
        response = _fault_response(fault) or self._route(request)
        return self._logged(request, arrived, response, fault)

    def _logged(
        self, request: _Request, arrived: float, response: _Response, fault: _FaultSpec | None
    ) -> _Response:
        self._record(request, arrived, response, fault)
        return response

    def _record(
        self, request: _Request, arrived: float, response: _Response, fault: _FaultSpec | None
    ) -> None:
        record = RequestRecord(
            at=arrived,
            method=request.method,
            path=request.path,
            status=response.status,
            token=request.token,
            identifiers=response.identifiers,
            fault=fault.kind if fault is not None else None,
            schema=response.schema,
            seconds=time.monotonic() - arrived,
            content=response.content,
        )
        with self._log_lock:
            self._log.append(record)

    def _route(self, request: _Request) -> _Response:
        """Find the endpoint for method and path and run it."""
        known_path = False
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            known_path = True
            if route.method == request.method:
                params = {name: unquote(value) for name, value in match.groupdict().items()}
                return self._run(route.endpoint, request, params)
        if known_path:
            return _api_error_response(405, _E_METHOD, f"{request.method} not allowed here")
        return _api_error_response(404, _E_NOT_FOUND, f"No such resource: {request.path}")

    def _run(self, endpoint: _Endpoint, request: _Request, params: dict[str, str]) -> _Response:
        try:
            if request.path.startswith("/v1/"):
                self._auth.check(request.token)
            return endpoint(request, params)
        except _Reject as rejection:
            return rejection.response
        except Exception as error:  # a sandbox bug: answer 500 rather than hang the client
            return _api_error_response(500, _E_INTERNAL, f"sandbox error: {error!r}")

    def _build_routes(self) -> list[_Route]:
        segment = r"/v1/segments/(?P<segment>[^/]+)"
        account = r"/v1/adaccounts/(?P<account>[^/]+)/segments"
        table: list[tuple[str, str, _Endpoint]] = [
            ("POST", r"/login/oauth2/access_token", self._token),
            ("GET", r"/login/oauth2/authorize", self._authorize),
            ("POST", segment + "/users", self._add_users),
            ("DELETE", segment + "/users", self._remove_users),
            ("DELETE", segment + "/all_users", self._remove_all_users),
            ("GET", segment, self._get_segment),
            ("POST", account, self._create_segments),
            ("GET", account, self._list_segments),
        ]
        return [_Route(method, re.compile(path), endpoint) for method, path, endpoint in table]

    # ----------------------------------------------------------------- OAuth endpoints

    def _token(self, request: _Request, params: dict[str, str]) -> _Response:
        if request.content_type != _FORM:
            raise _oauth_reject(400, "invalid_request", f"Content-Type must be {_FORM}")
        return _json_response(200, self._auth.grant(_parse_form(request.body)))

    def _authorize(self, request: _Request, params: dict[str, str]) -> _Response:
        query = _parse_form(request.query.encode())
        client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
        if not self._auth.has_client(client_id):
            raise _oauth_reject(400, "invalid_client", "unknown client_id")
        if not redirect_uri.startswith(("http://", "https://")):
            raise _oauth_reject(400, "invalid_request", "redirect_uri must be an http(s) URL")
        if query.get("response_type") != "code":
            raise _oauth_reject(400, "unsupported_response_type", "response_type must be code")
        if query.get("scope") != SCOPE:
            raise _oauth_reject(400, "invalid_scope", f"scope must be {SCOPE}")
        challenge = query.get("code_challenge", "")
        if (challenge or "code_challenge_method" in query) and (
            query.get("code_challenge_method") != "S256" or not _PKCE.fullmatch(challenge)
        ):
            raise _oauth_reject(400, "invalid_request", "PKCE: code_challenge_method must be "
                                "S256, with a 43-character code_challenge")  # fmt: skip
        code = self._auth.issue_code(client_id, redirect_uri, challenge)
        location = _with_query(redirect_uri, code=code, state=query.get("state"))
        return _Response(302, headers=(("Location", location),))

    # ----------------------------------------------------------------- audience endpoints

    def _add_users(self, request: _Request, params: dict[str, str]) -> _Response:
        return self._change_users(request, params, remove=False)

    def _remove_users(self, request: _Request, params: dict[str, str]) -> _Response:
        return self._change_users(request, params, remove=True)

    def _change_users(
        self, request: _Request, params: dict[str, str], *, remove: bool
    ) -> _Response:
        segment_id = params["segment"]
        if not self._store.exists(segment_id):
            raise _not_found(f"Segment {segment_id} not found")
        _require_media_type(request, _JSON)
        batches = _parse_users_body(request.body)
        if request.fail_sub_request:
            return _json_response(200, _failed_users_payload(len(batches)))
        self._store.change(segment_id, batches, remove=remove)
        payload = _users_payload(batches)
        total = sum(len(hashes) for _, hashes in batches)
        schema = ",".join(dict.fromkeys(schema for schema, _ in batches))
        content = hashlib.sha256("\n".join(h for _, hashes in batches for h in hashes).encode())
        return _json_response(200, payload, identifiers=total, schema=schema,
                              content=content.hexdigest()[:32])  # fmt: skip

    def _remove_all_users(self, request: _Request, params: dict[str, str]) -> _Response:
        if request.body:
            raise _bad_request("DELETE all_users takes no body")
        return _json_response(200, _segments_payload([self._store.clear(params["segment"])]))

    def _get_segment(self, request: _Request, params: dict[str, str]) -> _Response:
        return _json_response(200, _segments_payload([self._store.view(params["segment"])]))

    def _create_segments(self, request: _Request, params: dict[str, str]) -> _Response:
        _require_media_type(request, _JSON)
        entries = _parse_segments_body(request.body, params["account"])
        return _json_response(
            200, _segments_payload(self._store.create(params["account"], entries))
        )

    def _list_segments(self, request: _Request, params: dict[str, str]) -> _Response:
        cursor = _parse_form(request.query.encode()).get("cursor", "0")
        if not cursor.isdigit():
            raise _bad_request("cursor: not one this sandbox handed out")
        start, size = int(cursor), self._store.knobs.page_size
        views = list(self._store.views(params["account"]).values())
        payload = _segments_payload(views[start : start + size])
        payload["paging"] = {}
        if start + size < len(views):
            account = params["account"]
            link = f"{self.api_url}/adaccounts/{account}/segments?cursor={start + size}"
            payload["paging"] = {"next_link": link}
        return _json_response(200, payload)

    # ----------------------------------------------------------------- control endpoints

    def _build_control_routes(self) -> dict[tuple[str, str], Callable[[_Request], _Response]]:
        return {
            ("GET", "/_sandbox/state"): lambda _: _json_response(200, self.state()),
            ("GET", "/_sandbox/requests"): self._control_requests,
            ("POST", "/_sandbox/faults"): self._control_faults,
            ("POST", "/_sandbox/reset"): self._control_reset,
            ("POST", "/_sandbox/expire_tokens"): self._control_expire,
            ("POST", "/_sandbox/configure"): self._control_configure,
        }

    def _answer_control(self, request: _Request) -> _Response:
        if request.unreadable is not None:
            return request.unreadable
        handler = self._control.get((request.method, request.path))
        if handler is None:
            return _api_error_response(404, _E_NOT_FOUND, f"No such control: {request.path}")
        try:
            return handler(request)
        except _Reject as rejection:
            return rejection.response
        except (KeyError, TypeError, ValueError) as error:
            return _api_error_response(400, _E_INVALID, f"bad control request: {error}")

    def _control_requests(self, request: _Request) -> _Response:
        return _json_response(200, [dataclasses.asdict(r) for r in self.requests()])

    def _control_faults(self, request: _Request) -> _Response:
        document = _load_json(request.body)
        if not isinstance(document, dict):
            raise TypeError("expected a JSON object")
        if "chaos" in document:
            options = {k: document[k] for k in ("faults", "slow_seconds") if k in document}
            self.chaos(float(document["chaos"]), seed=int(document.get("seed", 0)), **options)
        else:
            self.inject(
                str(document["fault"]),
                times=int(document.get("times", 1)),
                path_contains=_optional_str(document, "path_contains"),
                method=_optional_str(document, "method"),
            )
        return _json_response(200, {"ok": True})

    def _control_reset(self, request: _Request) -> _Response:
        self.reset()
        return _json_response(200, {"ok": True})

    def _control_configure(self, request: _Request) -> _Response:
        document = _load_json(request.body)
        if not isinstance(document, dict):
            raise TypeError("expected a JSON object of knobs")
        self.configure(**document)
        return _json_response(200, {"ok": True, "knobs": dataclasses.asdict(self.knobs)})

    def _control_expire(self, request: _Request) -> _Response:
        self.expire_tokens()
        return _json_response(200, {"ok": True})


def _optional_str(document: dict[str, object], key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string or null")
    return value


def _users_payload(batches: list[_Batch]) -> dict[str, object]:
    return {
        "request_status": "SUCCESS",
        "request_id": _request_id(),
        "users": [
            {"sub_request_status": "SUCCESS", "user": {"number_uploaded_users": len(hashes)}}
            for _, hashes in batches
        ],
    }


def _failed_users_payload(entries: int) -> dict[str, object]:
    failed = {
        "sub_request_status": "FAILED",
        "sub_request_error_reason": "Upload failed (sandbox fault)",
        "user": {"number_uploaded_users": 0},
    }
    return {
        "request_status": "SUCCESS",
        "request_id": _request_id(),
        "users": [dict(failed) for _ in range(entries)],
    }


def _with_query(url: str, **extra: str | None) -> str:
    parts = urlsplit(url)
    added = urlencode({name: value for name, value in extra.items() if value is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query))


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: SnapchatSandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-request are normal here; keep stderr quiet."""


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer may have closed it already
        connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120  # seconds an idle keep-alive connection may wait for its next request
    disable_nagle_algorithm = True  # no 40 ms stall between the headers and the body

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default one-line-per-request stderr log."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        body, unreadable = self._read_body()
        request = _Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            content_type=_media_type(self.headers.get("Content-Type")),
            body=body,
            token=_bearer(self.headers.get("Authorization")),
            unreadable=unreadable,
        )
        try:
            response = self.server.sandbox._answer(request)
        except Exception as error:  # a sandbox bug: answer rather than leave the client hanging
            response = _api_error_response(500, _E_INTERNAL, f"sandbox error: {error!r}")
        if response is None:
            self.close_connection = True
            _shutdown(self.connection)
        else:
            self._send(response)

    def _read_body(self) -> tuple[bytes, _Response | None]:
        """Read exactly Content-Length bytes, so keep-alive stays in step."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return b"", _api_error_response(411, _E_INVALID, "send a Content-Length", close=True)
        raw = self.headers.get("Content-Length", "0")
        if not raw.strip().isdigit():
            return b"", _api_error_response(400, _E_INVALID, "bad Content-Length", close=True)
        length = int(raw)
        if length > _MAX_BODY_BYTES:
            return b"", _api_error_response(413, _E_TOO_LARGE, "body too large", close=True)
        return self.rfile.read(length), None

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if response.close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)


# --------------------------------------------------------------------------- command line


def _client_argument(text: str) -> tuple[str, str, str]:
    client_id, _, rest = text.partition(":")
    secret, _, refresh_token = rest.partition(":")
    if not (client_id and secret and refresh_token):
        raise argparse.ArgumentTypeError("expected ID:SECRET:REFRESH_TOKEN")
    return client_id, secret, refresh_token


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.snapchat_sandbox",
        description="Serve a loopback imitation of the Snap Marketing API.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--client", type=_client_argument, action="append", default=[], metavar="ID:SECRET:REFRESH"
    )
    parser.add_argument("--audience", action="append", default=[], metavar="SEGMENT_ID")
    parser.add_argument("--ad-account", default="adacct-1", help="ad account of --audience")
    parser.add_argument("--token-lifetime", type=int, default=1800, metavar="SECONDS")
    parser.add_argument("--rotate-refresh-tokens", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run in the foreground: print the URLs as one JSON line, serve until SIGTERM/SIGINT."""
    options = _argument_parser().parse_args(argv)
    sandbox = SnapchatSandbox(
        token_lifetime=options.token_lifetime,
        rotate_refresh_tokens=options.rotate_refresh_tokens,
        port=options.port,
    )
    for client_id, secret, refresh_token in options.client:
        sandbox.add_client(client_id, secret, refresh_token)
    for segment_id in options.audience:
        sandbox.add_audience(segment_id, ad_account_id=options.ad_account)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with sandbox:
        urls = {"base_url": sandbox.base_url, "api_url": sandbox.api_url}
        urls["token_url"] = sandbox.token_url
        sys.stdout.write(json.dumps(urls) + "\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
