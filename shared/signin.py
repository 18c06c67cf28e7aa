"""Who is calling an HTTP route: the principal the platform's sign-in passes, or, in local
development on loopback only, the developer's.

In Azure the app trusts ``X-MS-CLIENT-PRINCIPAL`` only while the platform's built-in
authentication is on (the platform sets ``WEBSITE_AUTH_ENABLED`` and strips the header from
outside requests); otherwise it refuses every call, so that a misconfiguration never opens
the API. Hosted means any of ``HOSTED_MARKERS`` is set. Otherwise every call is refused too,
unless the developer turns the local mode on with ``LOCAL_PRINCIPAL``: it answers loopback
requests only, taking the principal from that header, as the platform would send it, or
from ``LOCAL_PRINCIPAL``.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from urllib.parse import urlparse

from shared.core.access import Principal, Role, from_client_principal
from shared.core.errors import SignInNotEnabled, Unauthenticated
from shared.core.settings import LOCAL_PRINCIPALS, Settings

PRINCIPAL_HEADER = "x-ms-client-principal"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LOCAL_ROLES = {"admin": Role.ADMIN, "operator": Role.OPERATOR, "reader": Role.READER}


def caller(settings: Settings, headers: Mapping[str, str], url: str) -> Principal:
    header = next((v for k, v in headers.items() if k.lower() == PRINCIPAL_HEADER), "")
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
    # its Host header, so this is no proof of loopback; being opt-in, and refused when hosted,
    # is what keeps the mode local.
    host = (urlparse(url).hostname or "").lower()
    if host not in _LOOPBACK:
        raise Unauthenticated(
            f"local mode answers requests to loopback only, not to {host or 'this host'}"
        )
    if header:
        return from_client_principal(header)
    if settings.local_principal != "header":
        return local_principal(settings.local_principal)
    raise Unauthenticated(
        "no signed-in principal: send X-MS-CLIENT-PRINCIPAL as the platform does, or set "
        "LOCAL_PRINCIPAL to admin, operator or reader"
    )


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
