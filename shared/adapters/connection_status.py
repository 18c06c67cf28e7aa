"""Adapter for what the console shows of a connection besides its definition, and for the
browser's Connect Snapchat flows in progress. Entities in the run table:

- partition ``~tokens``, one per connection: when the app last got an access token with the
  connection's refresh token (a run, or a Connect);
- partition ``~connect``, one per flow started and not yet finished: keyed by the SHA-256 of
  its ``state`` (the flow's ID; the state itself is never stored), with who started it,
  until when it may finish, and its PKCE code verifier, sealed. Finishing marks it taken, on
  the condition that nobody did first, then deletes it; starting a flow deletes those whose
  time ran out.

The verifier is random (``shared.connections.terminal.pkce_pair``) and kept only here, as an
AES-256-GCM box under a key derived (HKDF-SHA-256, info ``ci2snap connect pkce verifier``) from the
mirror-state key, with a random 96-bit nonce and the flow's ID, connection and starter as
associated data: the table never holds it in clear, and a box moved to another flow does
not open. A verifier that does not open (the state key changed meanwhile, or an entity
written by an older version) reads as "" and the flow cannot finish.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.adapters import tables
from shared.adapters.runlog import RunLog, table_failure
from shared.adapters.sealing import Seal, SealError, derive_key, label
from shared.core.errors import StorageError
from shared.core.runrecord import now

log = logging.getLogger(__name__)

TOKENS_PARTITION = tables.TOKEN_REFRESHES
CONNECT_PARTITION = tables.CONNECT_FLOWS


class TokenRefreshes(tables.TableAdapter):
    def record(self, connection: str) -> None:
        entity = {"PartitionKey": TOKENS_PARTITION, "RowKey": connection, "at": now()}
        try:
            tables.upsert(self._table(), entity)
        except AzureError as exc:
            raise table_failure(f"record the token refresh of {connection}", exc) from None

    def last(self) -> dict[str, str]:
        """When each connection last got an access token, by connection name."""
        try:
            found = self._table().query_entities(f"PartitionKey eq '{TOKENS_PARTITION}'")
            return {str(e["RowKey"]): str(e.get("at", "")) for e in found}
        except AzureError as exc:
            raise table_failure("read the token refreshes", exc) from None


@dataclass(frozen=True)
class PendingConnect:
    connection: str
    started_by: str  # the object ID of the principal who started it
    redirect_uri: str
    expires_at: str  # ISO 8601, UTC
    verifier: str = field(default="", repr=False)  # PKCE; "" when it could not be opened
    etag: str = ""


def _key(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


_VERIFIER_LABEL = label("ci2snap connect pkce verifier")


def verifier_key(state_key: bytes) -> bytes:
    """The key that seals the flows' verifiers: of their own, derived from the state key."""
    return derive_key(state_key, _VERIFIER_LABEL)


def _associated(flow_id: str, flow: PendingConnect) -> bytes:
    return label("ci2snap connect", flow_id, flow.connection, flow.started_by)


class PendingConnects(tables.TableAdapter):
    """``state_key``: the mirror-state key, from which the key sealing verifiers is derived."""

    def __init__(self, runs: RunLog, state_key: bytes) -> None:
        super().__init__(runs)
        self._seal = Seal(verifier_key(state_key))

    def start(self, state: str, flow: PendingConnect) -> None:
        flow_id = _key(state)
        sealed = self._seal.seal_with_nonce(flow.verifier.encode(), _associated(flow_id, flow))
        entity = {
            "PartitionKey": CONNECT_PARTITION,
            "RowKey": flow_id,
            "connection": flow.connection,
            "started_by": flow.started_by,
            "redirect_uri": flow.redirect_uri,
            "expires_at": flow.expires_at,
            "verifier_sealed": base64.b64encode(sealed).decode(),
        }
        try:
            tables.insert(self._table(), entity)
        except AzureError as exc:
            raise table_failure(f"record a Connect of {flow.connection}", exc) from None
        except tables.Conflict:  # the row key is 32 random bytes: met twice, start again
            raise StorageError("a Connect flow with this state exists already") from None

    def find(self, state: str) -> PendingConnect | None:
        """The flow this state started, if it is still pending."""
        try:
            entity = self._table().get_entity(CONNECT_PARTITION, _key(state))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure("read a Connect flow", exc) from None
        if entity.get("taken"):
            return None  # finished, or being finished, by another call
        flow = PendingConnect(
            connection=str(entity.get("connection", "")),
            started_by=str(entity.get("started_by", "")),
            redirect_uri=str(entity.get("redirect_uri", "")),
            expires_at=str(entity.get("expires_at", "")),
            etag=str(entity.metadata["etag"]),
        )
        sealed = str(entity.get("verifier_sealed") or "")
        return dataclasses.replace(flow, verifier=self._open(_key(state), flow, sealed))

    def _open(self, flow_id: str, flow: PendingConnect, sealed: str) -> str:
        try:
            raw = base64.b64decode(sealed, validate=True)
            plain = self._seal.open_with_nonce(raw, _associated(flow_id, flow))
            return plain.decode("ascii")
        except (binascii.Error, SealError, ValueError):
            log.warning("A Connect flow of %s: its PKCE verifier does not open", flow.connection)
            return ""

    def take(self, state: str, flow: PendingConnect) -> bool:
        """Mark the flow taken, on the condition that it is as read, then remove it: False
        when another call took it first, so that a flow is used once. (A conditional
        replace, not a delete: a delete that finds nothing cannot say who removed it; the
        replace's write ID tells this call's own applied write from another's.)"""
        table = self._table()
        try:
            entity = table.get_entity(CONNECT_PARTITION, _key(state))  # replaced whole
            tables.replace(table, {**entity, "taken": True}, flow.etag)
        except (ResourceNotFoundError, tables.Conflict):
            return False
        except AzureError as exc:
            raise table_failure("finish a Connect flow", exc) from None
        with contextlib.suppress(AzureError):  # taken already; forget_expired removes it later
            tables.delete(table, CONNECT_PARTITION, _key(state))
        return True

    def forget_expired(self, now: str) -> int:
        """Delete the flows whose time is up (nobody finished them); how many."""
        table = self._table()
        try:
            expired = list(
                table.query_entities(
                    "PartitionKey eq @p and expires_at lt @now",
                    parameters={"p": CONNECT_PARTITION, "now": now},
                )
            )
            for entity in expired:
                tables.delete(table, CONNECT_PARTITION, entity["RowKey"])
        except AzureError as exc:
            raise table_failure("forget expired Connect flows", exc) from None
        return len(expired)
