"""The export's lookalike audience: created once its audience (the seed) is targetable, then
followed until Snapchat reports it active, with its size.

``follow_seed`` is called where the audience check reads the seed, with the seed as Snapchat
described it. Exactly one lookalike per export, whatever runs retry or overlap: the export's
entity in ``Lookalikes`` is claimed on an ETag condition before Snapchat is asked, and a claim
left by a run that died before it recorded an ID is taken over only after ``STALE_CLAIM``, by
looking the lookalike up by name first. Nothing here fails the seed's run: Snapchat's refusals
(a bad type or country, a seed not ready, the ad account's cap) are recorded as ``failed`` with
Snapchat's reason, and anything that may pass is tried again at the next check.

The lookalike follows the field it was created with: changing ``lookalike`` afterwards
creates no second one (a failed one is tried again once the field changes); deleting the
export leaves it in Snapchat, where it follows its seed as long as that exists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters import tables
from shared.adapters.lookalikes import Lookalikes, LookalikeState
from shared.adapters.snapchat import SnapchatClient
from shared.core.definition_types import Export, Lookalike
from shared.core.errors import (
    AudienceNotFound,
    ExportError,
    RetryableError,
    SnapchatError,
    StorageError,
)
from shared.core.runrecord import now
from shared.runtime import Runtime

log = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=10)  # a claim with no ID this old was left by a run that died
_Client = Callable[[], SnapchatClient]


def follow_seed(
    rt: Runtime,
    export: Export,
    seed: Mapping[str, Any],
    *,
    client: SnapchatClient | None = None,
) -> LookalikeState | None:
    """Create the export's lookalike when due, else refresh what is known of it; its state
    (None for an export that asks for none, or when it could not be read this time).

    ``seed``: the export's audience as ``SnapchatClient.segment`` answered it (its ``id``,
    ``ad_account_id`` and ``targetable_status`` are used). ``client``: one for the export's
    connection, if the caller has it (else one is made when Snapchat must be asked)."""
    wanted = export.lookalike
    if wanted is None:
        return None
    made: list[SnapchatClient] = [client] if client is not None else []

    def snapchat() -> SnapchatClient:
        if not made:
            made.append(rt.snapchat(rt.definitions.connection(export.connection)))
        return made[0]

    try:
        return _follow(Lookalikes(rt.runs), export.name, wanted, seed, snapchat)
    except ExportError as exc:  # storage or Snapchat: the next check tries again
        log.warning("Export %s: the lookalike was not followed this time: %s", export.name, exc)
        return None


def state_of(rt: Runtime, export: str) -> LookalikeState | None:
    """What the app knows of the export's lookalike (for the API), without asking Snapchat."""
    found = Lookalikes(rt.runs).get(export)
    return found[0] if found is not None else None


def _follow(
    store: Lookalikes, name: str, wanted: Lookalike, seed: Mapping[str, Any], client: _Client
) -> LookalikeState:
    spec = _spec(wanted)
    found = store.get(name)
    if found is None:
        waiting = LookalikeState("waiting_for_seed", spec=spec)
        try:
            found = waiting, store.insert(name, waiting)
        except tables.Conflict:  # another run wrote it first: go on from theirs
            found = _require(store, name)
    state, etag = found
    if state.id:
        return _refresh(store, name, state, etag, client)
    if state.status == "failed" and state.spec == spec:
        return state  # Snapchat refused it: changing the field tries again
    if state.status == "pending" and not _stale(state.claimed_at):
        return state  # another run is creating it now
    if seed.get("targetable_status") != "READY":
        waiting = LookalikeState("waiting_for_seed", spec=spec)
        return _written(store, name, waiting, etag) if waiting != state else state
    return _create(store, name, wanted, seed, (state, etag), client=client)


def _create(
    store: Lookalikes,
    name: str,
    wanted: Lookalike,
    seed: Mapping[str, Any],
    found: tuple[LookalikeState, str],
    *,
    client: _Client,
) -> LookalikeState:
    """Claim the entity, then ask Snapchat (once per claim) and record the ID."""
    state, etag = found
    spec = _spec(wanted)
    claim = LookalikeState("pending", spec=spec, claimed_at=now())
    try:
        etag = store.replace(name, claim, etag)
    except tables.Conflict:  # another run claimed it first
        return _require(store, name)[0]
    account, seed_id = str(seed.get("ad_account_id") or ""), str(seed.get("id") or "")
    try:
        # A stale claim's run may have created it before it died: look it up by name first.
        known = client().find_segment(account, wanted.name) if state.status == "pending" else None
        created = known or client().create_lookalike(
            account, wanted.name, seed_id, wanted.type, wanted.countries
        )
    except RetryableError as exc:  # may pass: give the claim back for the next check
        log.warning("Export %s: lookalike not created yet: %s", name, exc)
        return _written(store, name, LookalikeState("waiting_for_seed", spec=spec), etag)
    except SnapchatError as exc:  # refused: the operator must change something
        log.warning("Export %s: Snapchat refused the lookalike: %s", name, exc)
        failed = LookalikeState("failed", error=str(exc)[:1000], spec=spec)
        return _written(store, name, failed, etag)
    log.info("Export %s: created lookalike %s of audience %s (%s, %s)", name, created,
             seed_id, wanted.type, ",".join(wanted.countries))  # fmt: skip
    recorded = dataclasses.replace(claim, id=created, created_at=now())
    etag = store.replace(name, recorded, etag)
    return _refresh(store, name, recorded, etag, client)


def _refresh(
    store: Lookalikes, name: str, state: LookalikeState, etag: str, client: _Client
) -> LookalikeState:
    """Ask Snapchat for the lookalike's status and size; record them if they changed."""
    try:
        segment = client().segment(state.id)
    except AudienceNotFound:
        gone = "Snapchat no longer knows this lookalike (deleted there?); the app creates no other"
        fresh = dataclasses.replace(state, status="failed", error=gone)
    except SnapchatError as exc:
        log.warning("Export %s: could not read lookalike %s: %s", name, state.id, exc)
        return state
    else:
        size = segment.get("approximate_number_users")
        fresh = dataclasses.replace(
            state,
            status="active" if segment.get("status") == "ACTIVE" else "pending",
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            error="",
        )
    return _written(store, name, fresh, etag) if fresh != state else state


def _written(store: Lookalikes, name: str, state: LookalikeState, etag: str) -> LookalikeState:
    """``state``, recorded over the entity read with ``etag``; another run's if it won."""
    try:
        store.replace(name, state, etag)
    except tables.Conflict:
        return _require(store, name)[0]
    return state


def _require(store: Lookalikes, name: str) -> tuple[LookalikeState, str]:
    found = store.get(name)
    if found is None:  # deleted in between (by hand): nothing to go on this time
        raise StorageError(f"the lookalike entity of export {name} vanished; tried again later")
    return found


def _spec(wanted: Lookalike) -> str:
    return json.dumps([wanted.type, list(wanted.countries), wanted.name], separators=(",", ":"))


def _stale(claimed_at: str) -> bool:
    try:
        claimed = datetime.fromisoformat(claimed_at.replace("Z", "+00:00"))
    except ValueError:
        return True
    return datetime.now(UTC) - claimed > STALE_CLAIM
