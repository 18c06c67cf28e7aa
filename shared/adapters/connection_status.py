"""Adapter for what the console shows of a connection besides its definition, and for the
browser's Connect Snapchat flows in progress. Entities in the run table:

- partition ``~tokens``, one per connection: when the app last got an access token with the
  connection's refresh token (a run, or a Connect);
- partition ``~connect``, one per flow started and not yet finished: keyed by the SHA-256 of
  its ``state`` (the state itself is never stored), with who started it and until when it
  may finish. Finishing marks it taken, on the condition that nobody did first, then
  deletes it; starting a flow deletes those whose time ran out.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.runlog import RunLog, table_failure
from shared.core.runrecord import now

TOKENS_PARTITION = "~tokens"
CONNECT_PARTITION = "~connect"


class TokenRefreshes:
    def __init__(self, runs: RunLog) -> None:
        self._runs = runs

    def record(self, connection: str) -> None:
        entity = {"PartitionKey": TOKENS_PARTITION, "RowKey": connection, "at": now()}
        try:
            self._runs.table().upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise table_failure(f"record the token refresh of {connection}", exc) from None

    def last(self) -> dict[str, str]:
        """When each connection last got an access token, by connection name."""
        try:
            found = self._runs.table().query_entities(f"PartitionKey eq '{TOKENS_PARTITION}'")
            return {str(e["RowKey"]): str(e.get("at", "")) for e in found}
        except AzureError as exc:
            raise table_failure("read the token refreshes", exc) from None


@dataclass(frozen=True)
class PendingConnect:
    connection: str
    started_by: str  # the object ID of the principal who started it
    redirect_uri: str
    expires_at: str  # ISO 8601, UTC
    etag: str = ""


def _key(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


class PendingConnects:
    def __init__(self, runs: RunLog) -> None:
        self._runs = runs

    def start(self, state: str, flow: PendingConnect) -> None:
        entity = {
            "PartitionKey": CONNECT_PARTITION,
            "RowKey": _key(state),
            "connection": flow.connection,
            "started_by": flow.started_by,
            "redirect_uri": flow.redirect_uri,
            "expires_at": flow.expires_at,
        }
        try:
            self._runs.table().create_entity(entity)
        except AzureError as exc:
            raise table_failure(f"record a Connect of {flow.connection}", exc) from None

    def find(self, state: str) -> PendingConnect | None:
        """The flow this state started, if it is still pending."""
        try:
            entity = self._runs.table().get_entity(CONNECT_PARTITION, _key(state))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise table_failure("read a Connect flow", exc) from None
        if entity.get("taken"):
            return None  # finished, or being finished, by another call
        return PendingConnect(
            connection=str(entity.get("connection", "")),
            started_by=str(entity.get("started_by", "")),
            redirect_uri=str(entity.get("redirect_uri", "")),
            expires_at=str(entity.get("expires_at", "")),
            etag=str(entity.metadata["etag"]),
        )

    def take(self, state: str, flow: PendingConnect) -> bool:
        """Mark the flow taken, on the condition that it is as read, then remove it: False
        when another call took it first, so that a flow is used once. (A conditional
        update, not a delete: the SDK reports no error for deleting what is gone.)"""
        table = self._runs.table()
        mark = {"PartitionKey": CONNECT_PARTITION, "RowKey": _key(state), "taken": True}
        try:
            table.update_entity(
                mark,
                mode=UpdateMode.MERGE,
                etag=flow.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 412:
                return False
            raise table_failure("finish a Connect flow", exc) from None
        with contextlib.suppress(AzureError):  # taken already; forget_expired removes it later
            table.delete_entity(CONNECT_PARTITION, _key(state))
        return True

    def forget_expired(self, now: str) -> int:
        """Delete the flows whose time is up (nobody finished them); how many."""
        table = self._runs.table()
        try:
            expired = list(
                table.query_entities(
                    "PartitionKey eq @p and expires_at lt @now",
                    parameters={"p": CONNECT_PARTITION, "now": now},
                )
            )
            for entity in expired:
                table.delete_entity(CONNECT_PARTITION, entity["RowKey"])
        except AzureError as exc:
            raise table_failure("forget expired Connect flows", exc) from None
        return len(expired)
