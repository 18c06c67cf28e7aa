"""Who is calling, and what they may do. Pure.

The caller is a ``Principal``: an Entra ID user or service principal as the platform's
built-in authentication describes it in the ``X-MS-CLIENT-PRINCIPAL`` header (Base64 JSON
with ``claims``), with the app roles of the app registration:

- ``Exporter.Admin``: everything: connections, every export, every run;
- ``Exporter.Operator``: create, change, delete, run and dry-run exports on the connections
  they may use; read the rest;
- ``Exporter.Reader``: read exports, runs, connections and history.

A connection's ``allowed`` list names the users and groups (Entra object IDs) who may use it;
admins always may.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.core.definitions import Connection
from shared.core.errors import Forbidden, Unauthenticated


class Role(enum.StrEnum):
    ADMIN = "Exporter.Admin"
    OPERATOR = "Exporter.Operator"
    READER = "Exporter.Reader"


_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_NAME_CLAIMS = ("name", "preferred_username", "appid", "azp")
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_GROUP_CLAIMS = ("groups",)


@dataclass(frozen=True)
class Principal:
    object_id: str
    name: str
    roles: frozenset[str]
    groups: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """Who, as run records and definition history say it: object ID and display name."""
        return f"{self.object_id} ({self.name})" if self.name else self.object_id

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    def may_use(self, connection: Connection) -> bool:
        if self.is_admin:
            return True
        allowed = set(connection.allowed)
        return self.object_id in allowed or bool(self.groups & allowed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "name": self.name,
            "roles": sorted(r for r in self.roles if r in set(Role)),
        }


MAX_PRINCIPAL_HEADER = 64 * 1024  # Base64 characters: far above a principal with 200 groups


def from_client_principal(header: str) -> Principal:
    """The caller the platform describes in ``X-MS-CLIENT-PRINCIPAL``: every claim a pair
    of strings, or the header is refused as a whole (never a principal made of the parts
    that happened to parse)."""
    if len(header) > MAX_PRINCIPAL_HEADER:
        raise Unauthenticated(
            f"the X-MS-CLIENT-PRINCIPAL header is over {MAX_PRINCIPAL_HEADER} characters"
        )
    try:
        document = json.loads(base64.b64decode(header, validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise Unauthenticated("the X-MS-CLIENT-PRINCIPAL header is not Base64 JSON") from None
    claims = document.get("claims") if isinstance(document, dict) else None
    if not isinstance(claims, list):
        raise Unauthenticated("the X-MS-CLIENT-PRINCIPAL header has no claims")
    if not all(_is_claim(c) for c in claims):
        raise Unauthenticated(
            "the X-MS-CLIENT-PRINCIPAL header is malformed: every claim must be an object "
            "whose typ and val are strings"
        )
    role_typ, name_typ = document.get("role_typ") or "roles", document.get("name_typ") or "name"
    if not isinstance(role_typ, str) or not isinstance(name_typ, str):
        raise Unauthenticated(
            "the X-MS-CLIENT-PRINCIPAL header is malformed: role_typ and name_typ must be strings"
        )
    role_types = {*_ROLE_CLAIMS, role_typ}
    name_types = (name_typ, *_NAME_CLAIMS)

    def values(types: tuple[str, ...] | set[str]) -> list[str]:
        return [c["val"] for c in claims if c["typ"] in types and c["val"]]

    object_ids = values(_OBJECT_ID_CLAIMS)
    if not object_ids:
        raise Unauthenticated("the signed-in principal has no object ID claim")
    names = values(name_types)
    return Principal(
        object_id=object_ids[0].lower(),
        name=names[0] if names else "",
        roles=frozenset(values(role_types)),
        groups=frozenset(g.lower() for g in values(_GROUP_CLAIMS)),
    )


def _is_claim(claim: object) -> bool:
    return (
        isinstance(claim, dict)
        and isinstance(claim.get("typ"), str)
        and isinstance(claim.get("val"), str)
    )


def client_principal_header(
    object_id: str, name: str, roles: Sequence[str], groups: Sequence[str] = ()
) -> str:
    """The header the platform would send for such a caller (local mode and tests)."""
    claims = [
        {"typ": _OBJECT_ID_CLAIMS[0], "val": object_id},
        {"typ": "name", "val": name},
        *({"typ": "roles", "val": role} for role in roles),
        *({"typ": "groups", "val": group} for group in groups),
    ]
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


class Action(enum.Enum):
    READ = "read exports, runs, connections and history"
    RUN = "run or dry-run this export"
    EDIT_EXPORT = "create, change or delete exports"
    EDIT_CONNECTION = "create, change or delete connections"
    PURGE = "erase an export's stored digests"


_NEEDS = {
    Action.READ: (Role.READER, Role.OPERATOR, Role.ADMIN),
    Action.RUN: (Role.OPERATOR, Role.ADMIN),
    Action.EDIT_EXPORT: (Role.OPERATOR, Role.ADMIN),
    Action.EDIT_CONNECTION: (Role.ADMIN,),
    Action.PURGE: (Role.ADMIN,),
}


def may(principal: Principal, action: Action) -> bool:
    """Whether ``principal`` has a role that ``action`` needs (connections aside)."""
    return bool(principal.roles & set(_NEEDS[action]))


def authorize(principal: Principal, action: Action, *connections: Connection) -> None:
    """Raise Forbidden, saying which role or connection is missing, unless ``principal``
    may do ``action`` (on exports of ``connections``, where it concerns exports)."""
    needed = _NEEDS[action]
    if not principal.roles & set(needed):
        raise Forbidden(
            f"{principal.label} may not {action.value}: that needs the app role "
            f"{' or '.join(needed)}"
        )
    for connection in connections:
        if action in (Action.RUN, Action.EDIT_EXPORT) and not principal.may_use(connection):
            raise Forbidden(
                f"{principal.label} may not use connection {connection.name!r}: ask an "
                f"{Role.ADMIN} to add you (or a group of yours) to its allowed list"
            )
