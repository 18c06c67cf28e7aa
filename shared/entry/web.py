"""The console's pages: static files packaged with the app (folder ``console/``), served
with headers that let them load nothing but themselves and call nothing but the app.

The console is plain HTML, CSS and JavaScript with no build step; nothing comes from another
site, and no script runs inline, so the Content-Security-Policy can allow ``'self'`` only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from shared.core.errors import ExportError
from shared.core.settings import APP_ROOT
from shared.entry.signin import LOCAL_TOKEN_COOKIE, LOCAL_TOKEN_QUERY, local_token_of

CONSOLE_FOLDER = APP_ROOT / "console"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Browsers heed HSTS only on answers that came over HTTPS (and ignore it on http://localhost),
# so every answer can carry it: in Azure, where the site is HTTPS-only, all of them do.
HSTS = {"Strict-Transport-Security": "max-age=31536000; includeSubDomains"}
SECURITY_HEADERS = {
    **HSTS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
API_HEADERS = {  # JSON answers: never rendered as a page, never framed, never cached
    **HSTS,
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Page:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=lambda: dict(SECURITY_HEADERS))


@functools.cache
def _files() -> dict[str, Path]:
    """The console's files by their path under ``console/``: the only paths served."""
    return {
        path.relative_to(CONSOLE_FOLDER).as_posix(): path
        for path in CONSOLE_FOLDER.rglob("*")
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


def console_page(path: str, url: str, signed_in: Callable[[], object]) -> Page:
    """The console file at ``path`` for a signed-in caller (``signed_in`` raises when the
    caller is not: the pages are refused like the API, so a misconfiguration shows).

    In local mode the address ``scripts/console`` prints carries the local token; it is
    turned into a cookie that only the app's own pages and calls carry, and the browser is
    sent on to the address without it (out of the history and the address bar)."""
    try:
        signed_in()
    except ExportError as exc:
        return text_page(exc.http_status, f"The console is not available: {exc}")
    parsed = urlparse(url)
    if LOCAL_TOKEN_QUERY in parse_qs(parsed.query):
        token = local_token_of({}, url)
        cookie = f"{LOCAL_TOKEN_COOKIE}={token}; Path=/api/; HttpOnly; SameSite=Lax"
        location = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
        return Page(302, b"", "text/plain", {**SECURITY_HEADERS, "Location": location,
                                             "Set-Cookie": cookie})  # fmt: skip
    if not path and not parsed.path.endswith("/"):
        return Page(301, b"", "text/plain", {**SECURITY_HEADERS, "Location": "console/"})
    found = _files().get(path or "index.html")
    if found is None:
        return text_page(404, "No such page in the console.")
    return Page(200, found.read_bytes(), CONTENT_TYPES[found.suffix])


def text_page(status: int, message: str) -> Page:
    return Page(status, message.encode("utf-8"), "text/plain; charset=utf-8")


def redirect(location: str) -> Page:
    return Page(302, b"", "text/plain", {**SECURITY_HEADERS, "Location": location})
