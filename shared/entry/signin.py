"""Who is calling an HTTP route: the principal the platform's sign-in passes, or, in local
development, the developer's.

In Azure the app trusts ``X-MS-CLIENT-PRINCIPAL`` only while the platform's built-in
authentication is on (the platform sets ``WEBSITE_AUTH_ENABLED`` and strips the header from
outside requests); otherwise it refuses every call, so that a misconfiguration never opens
the API. Hosted means any of ``HOSTED_MARKERS`` is set. Otherwise every call is refused too,
unless the developer turns the local mode on with ``LOCAL_PRINCIPAL``. Local mode trusts a
request only when it presents the local token (``shared.adapters.local_token``: a random
value in a file only the developer can read) and is addressed to loopback; the principal is
then the one in that header, as the platform would send it, or ``LOCAL_PRINCIPAL``. The
token is what makes the mode safe on a host that listens beyond loopback (older Functions
Core Tools do), and against pages of other sites, which cannot read it.
"""

from __future__ import annotations

import contextlib
import getpass
import hmac
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlparse

from shared.adapters import local_token
from shared.core.access import Principal, Role, from_client_principal
from shared.core.errors import CrossSiteRequest, SignInNotEnabled, Unauthenticated
from shared.core.settings import LOCAL_PRINCIPALS, Settings

PRINCIPAL_HEADER = "x-ms-client-principal"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LOCAL_ROLES = {"admin": Role.ADMIN, "operator": Role.OPERATOR, "reader": Role.READER}


# Where a request in local mode carries the local token (names, not secrets):
LOCAL_TOKEN_HEADER = "x-local-token"  # noqa: S105 - a script's calls
LOCAL_TOKEN_COOKIE = "exporter-local-token"  # noqa: S105 - the console's pages and calls
LOCAL_TOKEN_QUERY = "local_token"  # noqa: S105 - the console's printed address, made a cookie


def caller(
    settings: Settings,
    headers: Mapping[str, str],
    url: str,
    method: str = "GET",
    *,
    token_in_query: bool = False,
) -> Principal:
    """The signed-in principal of a request; a state-changing request must also come from
    the app's own pages (``same_site``). ``token_in_query``: local mode also takes its token
    from the address (the console's pages only, which then set it as a cookie)."""
    who = _principal(settings, headers, url, token_in_query)
    same_site(method, headers, url, public_url=settings.public_url, hosted=settings.in_azure)
    return who


def _principal(
    settings: Settings, headers: Mapping[str, str], url: str, token_in_query: bool
) -> Principal:
    header = _header(headers, PRINCIPAL_HEADER)
    if settings.in_azure:
        if not settings.platform_sign_in:
            raise SignInNotEnabled(
                "the app is hosted without the platform's sign-in (App Service "
                "Authentication is off): every call is refused until it is on"
            )
        if not header:
            raise Unauthenticated("sign in first: the request carries no signed-in principal")
        return from_client_principal(header)
    if settings.local_principal is None:
        raise SignInNotEnabled(
            "no sign-in: the app is not hosted with the platform's sign-in, and local mode is "
            "off; for local development set LOCAL_PRINCIPAL (admin, operator, reader or header)"
        )
    # Local mode, which the developer turned on. The host is taken from the request line and
    # its Host header, so this is no proof of loopback; the local token is the proof that
    # the caller can read the developer's files.
    host = (urlparse(url).hostname or "").lower()
    if host not in _LOOPBACK:
        raise Unauthenticated(
            f"local mode answers requests to loopback only, not to {host or 'this host'}"
        )
    presented = local_token_of(headers, url if token_in_query else "")
    expected = local_token.read_or_create(settings.local_token_file)
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthenticated(
            "local mode: the request does not carry the local token; open the console at "
            "the address scripts/console or `python -m shared local-token` prints, or send "
            f"the token as {LOCAL_TOKEN_HEADER.title()}"
        )
    if header:
        return from_client_principal(header)
    if settings.local_principal != "header":
        return local_principal(settings.local_principal)
    raise Unauthenticated(
        "no signed-in principal: send X-MS-CLIENT-PRINCIPAL as the platform does, or set "
        "LOCAL_PRINCIPAL to admin, operator or reader"
    )


def local_token_of(headers: Mapping[str, str], url: str = "") -> str:
    """The local token a request presents: its header, the console's cookie, or (``url``
    given) the address's ``local_token``; "" when none."""
    if found := _header(headers, LOCAL_TOKEN_HEADER):
        return found.strip()
    cookies: SimpleCookie = SimpleCookie()
    with contextlib.suppress(CookieError):  # a cookie header we cannot read holds no token
        cookies.load(_header(headers, "cookie"))
    if morsel := cookies.get(LOCAL_TOKEN_COOKIE):
        return morsel.value
    query = parse_qs(urlparse(url).query) if url else {}
    return (query.get(LOCAL_TOKEN_QUERY) or [""])[0]


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CONSOLE_HEADER = ("x-requested-with", "XMLHttpRequest")  # what the console's calls carry


def same_site(
    method: str,
    headers: Mapping[str, str],
    url: str,
    *,
    public_url: str | None = None,
    hosted: bool = False,
) -> None:
    """Refuse a cross-site request forgery: a state-changing request sent by a browser from
    another site, riding on the platform's session cookie (or, locally, on the local mode).

    A browser tells where a request comes from (``Sec-Fetch-Site``, ``Origin``); either,
    when present, must say this app: the request's own origin, or ``public_url`` (the
    address browsers use, which a front end may not pass on as the request's). And a
    request must carry the header the console's calls send, which another site's page
    cannot add without a CORS preflight that the app never grants, when it carries cookies,
    and when hosted unless it carries a token (``Authorization``): no browser sends a
    script's token for it.
    """
    if method.upper() in SAFE_METHODS:
        return
    fetch_site = _header(headers, "sec-fetch-site").lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        raise CrossSiteRequest(f"refused: a {fetch_site} request may not change anything")
    origin = _header(headers, "origin").rstrip("/").lower()
    if origin and origin not in {_origin(url), _origin(public_url or url)}:
        raise CrossSiteRequest("refused: the request comes from another site (Origin)")
    name, value = CONSOLE_HEADER
    needs_header = bool(_header(headers, "cookie")) or (
        hosted and not _header(headers, "authorization")
    )
    if needs_header and _header(headers, name) != value:
        raise CrossSiteRequest(
            f"refused: a browser's request must carry {name.title()}: {value} "
            "(the console sends it); a script sends its token (Authorization)"
        )


def _origin(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}".lower()


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "")


def command_line() -> Principal:
    """Who the command line acts as: whoever can run it reaches the app's storage and
    secrets directly, so it may do what an admin may; its changes say ``cli (<user>)``."""
    return Principal(object_id="cli", name=getpass.getuser(), roles=frozenset({Role.ADMIN}))


def local_principal(name: str) -> Principal:
    """One of the local development principals (``LOCAL_PRINCIPAL``)."""
    return Principal(
        object_id=LOCAL_PRINCIPALS[name],
        name=f"local {name}",
        roles=frozenset({_LOCAL_ROLES[name]}),
    )
