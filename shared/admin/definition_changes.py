"""Changing the definitions at run time: each change validated, stored with its history and
who made it, picked up by the next timer tick and the next run without a restart.

The store (``shared.adapters.definition_store``) is the source of truth. A new deployment's
empty store is seeded once from ``EXPORTS_FILE`` (the shipped ``exports.json``); after that,
changes go through the HTTP API or ``python -m shared definitions import``, and the file is
only an exchange format for people who keep definitions in git.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from shared.adapters.definition_store import DefinitionType, Entry
from shared.adapters.statestore import delete_state
from shared.core import definitions
from shared.core.access import Role
from shared.core.definitions import Export
from shared.core.errors import (
    ConfigurationError,
    InUse,
    InvalidExport,
    NotFound,
    PreconditionFailed,
)
from shared.runs import locking
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def put(
    rt: Runtime, kind: DefinitionType, name: str, document: object, *, etag: str | None, by: str
) -> Entry:
    """Create (no ``etag``) or replace a definition, after checking it; every problem is
    reported at once (InvalidExport)."""
    checked = _checked(rt, kind, name, document)
    entry = rt.definition_store.put(kind, name, checked, etag=etag, by=by)
    rt.forget_definitions()
    log.info("%s %s %s by %s (version %d)", kind.capitalize(), name,
             "created" if entry.version == 1 else "changed", by, entry.version)  # fmt: skip
    return entry


def delete(
    rt: Runtime, kind: DefinitionType, name: str, *, etag: str, by: str, erase_state: bool
) -> dict[str, Any]:
    """Delete a definition. An export's run history stays; its mirror state (the encrypted
    digests of its audiences) goes with it when ``erase_state`` (the caller may purge:
    erasing stored digests is an Admin's right, whichever route does it), else it stays for
    a purge or the timer's ``STATE_RETENTION_DAYS``. A connection still in use stays."""
    stored = rt.definition_store.get(kind, name)
    if stored is None:
        raise NotFound(f"no {kind} named {name!r}")
    if stored.etag != etag:
        raise PreconditionFailed(f"{kind} {name!r} changed since it was read; read it again")
    state: dict[str, Any] = {"deleted_state_files": 0}
    if kind == "connection":
        using = [e.name for e in rt.definition_store.current("export")
                 if (e.document or {}).get("connection") == name]  # fmt: skip
        if using:
            message = f"connection {name!r} is used by export(s) {', '.join(using)}"
            raise InUse(message, tuple(using))
        entry = rt.definition_store.delete(kind, name, etag=etag, by=by)
    else:
        entry, removed = _delete_export(rt, name, etag=etag, by=by, erase_state=erase_state)
        state = {"deleted_state_files": removed}
        if not erase_state:
            state["state"] = (
                f"kept: an {Role.ADMIN} erases it with POST /api/exports/{name}/purge, or "
                f"the timer does {rt.settings.state_retention_days} days after its last use"
            )
    rt.forget_definitions()
    log.info("%s %s deleted by %s", kind.capitalize(), name, by)
    return {**entry.as_dict(), **state}


def _delete_export(
    rt: Runtime, name: str, *, etag: str, by: str, erase_state: bool
) -> tuple[Entry, int]:
    """Hold the export's lock while deleting, so that no run starts meanwhile (a run queued
    from a copy of the definitions read before finds the export gone when it starts); the
    state goes first, so that a failure leaves the definition to delete again."""
    removed_state = 0
    with locking.hold(rt, name, "deleting", _DELETE_HOLD_SECONDS):
        # Disabled first (with the caller's ETag): should anything fail after the state is
        # gone, the export stays, but off, rather than mirroring again without its state.
        stored = rt.definition_store.get("export", name)
        document = {**((stored.document if stored else None) or {}), "enabled": False}
        disabled = rt.definition_store.put("export", name, document, etag=etag, by=by)
        if erase_state:
            removed_state = delete_state(rt.state_container, name)
        entry = rt.definition_store.delete("export", name, etag=disabled.etag, by=by)
    return entry, removed_state


_DELETE_HOLD_SECONDS = 300.0


def check_export(rt: Runtime, name: str, document: object) -> Export:
    """An export definition as PUT would store it, checked the same way (InvalidExport with
    every problem), but not stored: what a preview plans."""
    checked = _checked(rt, "export", name, document)
    connections = [e.document for e in rt.definition_store.current("connection") if e.document]
    parsed = definitions.parse({"connections": connections, "exports": [checked]})
    return parsed.require(name)


def _checked(rt: Runtime, kind: DefinitionType, name: str, document: object) -> dict[str, Any]:
    where = f"{kind} {name!r}"
    if not isinstance(document, dict):
        raise InvalidExport([f"{where}: the body must be a JSON object"])
    if document.get("name", name) != name:
        raise InvalidExport([f"{where}: name: {document.get('name')!r} differs from the URL's"])
    document = {"name": name, **{k: v for k, v in document.items() if k != "name"}}
    stored = rt.definition_store
    connections = [e.document for e in stored.current("connection") if e.document]
    if kind == "connection":
        others = [c for c in connections if c.get("name") != name]
        parsed = definitions.parse({"connections": [*others, document], "exports": []})
        problems = [*parsed.connection_problems(name),
                    *(p for p in parsed.problems if p.startswith("connections"))]  # fmt: skip
    else:
        parsed = definitions.parse(
            {"connections": connections, "exports": [document]}, allow_empty=True
        )
        broken = parsed.broken_export(name) or (parsed.broken[0] if parsed.broken else None)
        problems = list(broken.problems) if broken else []
        if not connections:
            problems.append(f"export {name!r}: connection: no connection is defined yet")
    if problems:
        raise InvalidExport(problems)
    return document


def import_file(
    rt: Runtime, path: Path, *, prune: bool, dry_run: bool, by: str
) -> dict[str, list[str]]:
    """Make the store hold the file's definitions (and, with ``prune``, only those): what
    changed, by name. Idempotent; refuses a file with any problem, listing them all."""
    loaded = definitions.load(path)
    if loaded.problems:
        raise ConfigurationError(loaded.problems)
    document = json.loads(path.read_text("utf-8"))
    plan: dict[str, list[str]] = {"create": [], "replace": [], "delete": [], "unchanged": []}
    steps: list[tuple[str, DefinitionType, str, dict[str, Any] | None, Entry | None]] = []
    for kind, key in (("connection", "connections"), ("export", "exports")):
        wanted = {entry["name"]: entry for entry in document.get(key, [])}
        stored = {e.name: e for e in rt.definition_store.current(kind)}  # type: ignore[arg-type]
        for name, entry in wanted.items():
            have = stored.get(name)
            if have is None:
                steps.append(("create", kind, name, entry, None))  # type: ignore[arg-type]
            elif have.document != entry:
                steps.append(("replace", kind, name, entry, have))  # type: ignore[arg-type]
            else:
                plan["unchanged"].append(f"{kind} {name}")
        if prune:
            for name in sorted(set(stored) - set(wanted)):
                steps.append(("delete", kind, name, None, stored[name]))  # type: ignore[arg-type]
    # Connections before the exports that use them; exports deleted before their connections.
    steps.sort(key=lambda s: (s[0] == "delete", (s[1] == "connection") == (s[0] == "delete")))
    for action, kind, name, entry, have in steps:
        plan[action].append(f"{kind} {name}")
        if dry_run:
            continue
        if action == "delete":
            assert have is not None
            delete(rt, kind, name, etag=have.etag, by=by, erase_state=True)  # the CLI: an admin
        else:
            put(rt, kind, name, entry, etag=have.etag if have else None, by=by)
    return plan


def export_document(rt: Runtime) -> dict[str, Any]:
    """The stored definitions as one ``exports.json`` document."""
    return rt.definition_store.document()
