"""The HTTP API as plain functions: request values in, a status, JSON body and headers out.

``function_app`` only converts between these and the Functions HTTP types. Error bodies are
``{"error": <kind>, "message": <text>}``; no message ever quotes identifier values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from shared.adapters.connection_status import TokenRefreshes
from shared.adapters.definition_store import DefinitionType, Entry
from shared.admin import definition_changes, purge
from shared.connections import browser
from shared.core import advice, schedule
from shared.core.access import Action, Principal, Role, authorize, may
from shared.core.definitions import Connection, Definitions, Export, parse_allowed
from shared.core.endings import EndReason
from shared.core.errors import (
    BadRequest,
    BodyTooLarge,
    ExportError,
    Forbidden,
    NotFound,
    UnsupportedMediaType,
)
from shared.core.runrecord import RunRecord, Trigger, is_run_id
from shared.entry import signin, web
from shared.entry.run_filters import run_filters
from shared.export import lookalikes
from shared.runs import service
from shared.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_LIST_LIMIT = 100
RUN_FLAGS = ("dry_run", "allow_large_removal")  # the body of POST /api/exports/{name}/runs
RUN_OPTIONS = (*RUN_FLAGS, "snapshot")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def _error(status: int, kind: str, message: str, **extra: Any) -> Reply:
    return Reply(status, {"error": kind, "message": message, **extra})


def handle_errors(call: Any) -> Reply:
    """Turn the app's exceptions into HTTP answers (used around every route): each error
    class says its own status and kind (see ``shared.core.errors``)."""
    try:
        reply: Reply = call()
    except ExportError as exc:
        if exc.http_status >= 500:
            log.error("Request failed: %s", exc)
        return _error(exc.http_status, exc.kind, str(exc), **exc.details())
    return reply


def start_run(  # noqa: PLR0917 - the route's values, in the order the trigger has them
    rt: Runtime, who: Principal, name: str, body: bytes, base_url: str, content_type: str
) -> Reply:
    authorize(who, Action.RUN)  # the role before any lookup: no probing for names
    current = _fresh(rt)
    export = current.require(name)
    authorize(who, Action.RUN, current.connection(export.connection))
    options = _run_options(body, content_type)
    if isinstance(options, Reply):
        return options
    record = service.request_run(
        rt,
        name,
        Trigger.HTTP,
        requested_by=who.label,
        dry_run=options.get("dry_run", False),
        allow_large_removal=options.get("allow_large_removal", False),
        snapshot=options.get("snapshot") or None,
    )
    status_url = f"{base_url.rstrip('/')}/api/exports/{name}/runs/{record.run_id}"
    return Reply(
        202,
        {"run_id": record.run_id, "status_url": status_url, "run": _run(record, export)},
        {"Location": status_url},
    )


def _run_options(body: bytes, content_type: str) -> dict[str, Any] | Reply:
    """The options of ``POST …/runs``, or the 4xx answer naming what is wrong with them."""
    problems: list[str] = []
    if not body.strip():
        return {}
    options = json_body(body, content_type)
    if not isinstance(options, dict):
        return _error(400, "bad_request", "the request body must be a JSON object")
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        problems.append(
            f"unknown option(s): {', '.join(unknown)} (known: {', '.join(RUN_OPTIONS)})"
        )
    problems += [
        f"{key}: must be true or false"
        for key in RUN_FLAGS
        if not isinstance(options.get(key, False), bool)
    ]
    if not isinstance(options.get("snapshot", ""), str):
        problems.append("snapshot: must be a snapshot id, e.g. 2026/11/05/1200")
    if problems:
        return _error(400, "bad_request", "; ".join(problems), problems=problems)
    return options


def json_body(body: bytes, content_type: str) -> object:
    """A request body as JSON: over MAX_BODY_BYTES is 413, another media type than
    ``application/json`` is 415, and what does not parse is None (the caller says what it
    expected)."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"the request body must be sent as Content-Type: application/json, not "
            f"{media_type[:80] or 'without a Content-Type'}"
        )
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None


def get_run(rt: Runtime, who: Principal, name: str, run_id: str) -> Reply:
    authorize(who, Action.READ)
    _known_export(rt, name)
    record = rt.runs.get(name, run_id)
    if record is None:
        return _error(404, "not_found", f"export {name!r} has no run {run_id!r}")
    return Reply(200, _run(record, rt.definitions.export(name)))


def list_runs(
    rt: Runtime,
    who: Principal,
    name: str,
    limit: str | None,
    query: Mapping[str, str] | None = None,
) -> Reply:
    """``GET …/runs``: a page of the export's runs, newest first, filtered by ``status``,
    ``trigger``, ``mode`` and ``dry_run``; ``continuation`` (from the previous page's
    answer) continues after that page."""
    authorize(who, Action.READ)
    _known_export(rt, name)
    count, query = _limit(limit), query or {}
    after = query.get("continuation") or ""
    if after and not is_run_id(after):
        raise BadRequest("continuation: not a token this API gave (send the last answer's)")
    runs, more = rt.runs.page(name, count, after=after, where=run_filters(query))
    export = rt.definitions.export(name)
    body = {"export": name, "runs": [_run(r, export) for r in runs], "continuation": more or None}
    return Reply(200, body)


def list_exports(rt: Runtime, who: Principal) -> Reply:
    authorize(who, Action.READ)
    return Reply(
        200,
        {
            "exports": [
                {
                    **describe(status.export, status.last_run),
                    "last_run": status.last_run and _run(status.last_run, status.export),
                    "audience_health": status.audience_health,
                    "lookalike": _lookalike(rt, status.export.name),
                }
                for status in service.exports_overview(rt)
            ],
            "invalid": [
                {"name": broken.name, "problems": list(broken.problems)}
                for broken in rt.definitions.broken
            ],
            "problems": list(rt.definitions.other_problems),
            "schedule": rt.settings.export_schedule,
            "next_check": _next_check(rt.settings.export_schedule),
        },
    )


def _next_check(expression: str) -> str | None:
    """When the timer looks for new snapshots next (UTC), or None if the schedule is not
    understood here."""
    found = schedule.next_run(expression, datetime.now(UTC))
    return found.isoformat().replace("+00:00", "Z") if found else None


def describe(export: Export, last_run: RunRecord | None = None) -> dict[str, Any]:
    audience: dict[str, Any] = {"id": export.audience_id or (last_run and last_run.audience_id)}
    if export.new_audience is not None:
        audience.update(
            ad_account_id=export.new_audience.ad_account_id,
            name=export.new_audience.name,
            retention_in_days=export.new_audience.retention_in_days,
        )
    if last_run is not None and last_run.audience_name and export.new_audience is None:
        audience["name"] = last_run.audience_name
    if last_run is not None and last_run.approximate_number_users is not None:
        audience.update(
            approximate_number_users=last_run.approximate_number_users,
            upload_status=last_run.upload_status,
            targetable_status=last_run.targetable_status,
            as_of=last_run.finished_at,
        )
    return {
        "name": export.name,
        "enabled": export.enabled,
        "mode": export.mode,
        "source": {"container": export.container, "path": export.path},
        "sources": [{"container": s.container, "path": s.path} for s in export.sources],
        "audience": audience,
        "connection": export.connection,
        "columns": {kind.column_key: column for kind, column in export.columns},
        "default_country_code": export.default_country_code,
    }


def _run(record: RunRecord, export: Export | None = None) -> dict[str, Any]:
    """A run as the API answers it: the record, and for a failed run the advice of the
    *When a run fails* table for why it ended (its ``error_kind``) as plain text, the
    definition field it points at (``advice_field``) and, for a missing column, the
    snapshot's columns when model.json named them (``columns``)."""
    found = advice.for_reason(record.error_kind) if record.error else None
    body = {
        **record.as_dict(),
        "latency_seconds": record.latency_seconds,  # data landed → audience updated
        "advice": advice.plain(found.what_to_do) if found else "",
        "advice_field": found.field if found else "",
    }
    if found is not None and record.error_kind == EndReason.MISSING_COLUMN:
        column, columns = advice.missing_column(record.error)
        kinds = [kind for kind, name in (export.columns if export else ()) if name == column]
        body["advice_field"] = f"columns.{kinds[0].column_key}" if kinds else found.field
        if columns:
            body["columns"] = list(columns)
    return body


# -- definitions: /api/exports/{name}, /api/connections/{name} ------------------------------


def get_definition(rt: Runtime, who: Principal, kind: DefinitionType, name: str) -> Reply:
    authorize(who, Action.READ)
    entry = rt.definition_store.get(kind, name)
    if entry is None:
        raise NotFound(f"no {kind} named {name!r}")
    body = _definition(rt, entry)
    if kind == "export":  # what Snapchat made of its runs (None for an invalid definition)
        export = rt.definitions.export(name)
        body["audience_health"] = export and service.export_status(rt, export).audience_health
        body["lookalike"] = _lookalike(rt, name)
    return Reply(200, body, {"ETag": entry.etag})


def _lookalike(rt: Runtime, export: str) -> dict[str, Any] | None:
    """What the app knows of the export's lookalike audience (never asking Snapchat)."""
    found = lookalikes.state_of(rt, export)
    return found.as_dict() if found else None


def list_connections(rt: Runtime, who: Principal) -> Reply:
    """Every connection with whether each of its secrets is present (never their values)
    and when the app last got an access token with it."""
    authorize(who, Action.READ)
    entries = rt.definition_store.current("connection")
    refreshed = TokenRefreshes(rt.runs).last()
    found = []
    for entry in entries:
        body = _definition(rt, entry)
        body["secrets_present"] = {n: rt.secrets.present(n) for n in body.get("secrets", [])}
        body["token_refreshed_at"] = refreshed.get(entry.name) or None
        found.append(body)
    return Reply(200, {"connections": found})


def purge_export(rt: Runtime, who: Principal, name: str, body: bytes, content_type: str) -> Reply:
    """``POST /api/exports/{name}/purge``: erase the export's stored digests (all of them, or
    ``{"audience_id": ...}``'s); Admins only. Also for an export deleted meanwhile."""
    authorize(who, Action.PURGE)
    document = json_body(body, content_type) if body.strip() else {}
    if not isinstance(document, dict) or set(document) - {"audience_id"}:
        raise BadRequest('the request body must be {} or {"audience_id": "<audience ID>"}')
    audience = document.get("audience_id")
    if audience is not None and not isinstance(audience, str):
        raise BadRequest("audience_id must be a string")
    return Reply(200, purge.purge(rt, name, audience=audience, by=who.label))


def start_connect(rt: Runtime, who: Principal, name: str, base_url: str) -> Reply:
    """``POST /api/connections/{name}/connect``: where the browser goes to consent."""
    authorize(who, Action.EDIT_CONNECTION)  # the role before any lookup
    return Reply(200, browser.start(rt, who, name, base_url))


def put_definition(
    rt: Runtime,
    who: Principal,
    kind: DefinitionType,
    name: str,
    body: bytes,
    *,
    if_match: str | None,
    content_type: str,
) -> Reply:
    """Create (no ``If-Match``) or replace (``If-Match``: the ETag read) a definition."""
    authorize(who, _EDIT[kind])  # the role before the body or any lookup
    document = json_body(body, content_type)
    _may_change(rt, who, kind, name, document)
    if not isinstance(document, dict):
        return _error(400, "bad_request", "the request body must be a JSON object")
    etag = _etag(rt, kind, name, if_match)
    entry = definition_changes.put(rt, kind, name, document, etag=etag, by=who.label)
    location = f"/api/{kind}s/{name}"
    status = 201 if etag is None else 200
    return Reply(status, _definition(rt, entry), {"ETag": entry.etag, "Location": location})


def delete_definition(
    rt: Runtime, who: Principal, kind: DefinitionType, name: str, *, if_match: str | None
) -> Reply:
    _may_change(rt, who, kind, name, None)
    if not if_match:
        advice = f"send If-Match with the {kind}'s ETag (GET /api/{kind}s/{name})"
        return _error(428, "precondition_required", advice)
    etag = _etag(rt, kind, name, if_match)
    assert etag is not None
    erase = may(who, Action.PURGE)  # erasing stored digests is the purge right's
    deleted = definition_changes.delete(rt, kind, name, etag=etag, by=who.label, erase_state=erase)
    return Reply(200, deleted)


def me(rt: Runtime, who: Principal) -> Reply:
    """The caller, their roles, and the connections whose exports they may change and run."""
    may_run = bool(who.roles & {Role.OPERATOR, Role.ADMIN})
    usable = [c.name for c in rt.definitions.connections if may_run and who.may_use(c)]
    return Reply(200, {**who.as_dict(), "connections": usable})


_EDIT = {"export": Action.EDIT_EXPORT, "connection": Action.EDIT_CONNECTION}


def _may_change(
    rt: Runtime, who: Principal, kind: DefinitionType, name: str, document: object
) -> None:
    """Authorize a change: connections are admins' business; an export change needs the
    connection it names now and the one it is to name."""
    if kind == "connection":
        authorize(who, Action.EDIT_CONNECTION)
        return
    authorize(who, Action.EDIT_EXPORT)  # the role first
    named = []
    stored = rt.definition_store.get("export", name)
    if stored is not None and isinstance(stored.document, dict):
        named.append(stored.document.get("connection"))
    if isinstance(document, dict):
        named.append(document.get("connection"))
    names = sorted({n for n in named if isinstance(n, str)})  # others: validation says so
    known = {c.name: c for c in _fresh(rt).connections}
    unknown = [n for n in names if n not in known]
    if unknown and not who.is_admin:
        raise Forbidden(
            f"{who.label} may not use connection {unknown[0]!r}: there is none by that name "
            f"(an {Role.ADMIN} creates connections)"
        )
    authorize(who, Action.EDIT_EXPORT, *(known[n] for n in names if n in known))


def _known_export(rt: Runtime, name: str) -> None:
    """An export that exists, or existed: a deleted export's runs can still be read."""
    try:
        rt.definitions.require(name)
    except NotFound:
        if not rt.definition_store.history("export", name, limit=1):
            raise


def _fresh(rt: Runtime) -> Definitions:
    """The definitions as stored this moment: access decisions never use a cached copy."""
    rt.forget_definitions()
    return rt.definitions


def definition_history(
    rt: Runtime, who: Principal, kind: DefinitionType, name: str, limit: str | None
) -> Reply:
    authorize(who, Action.READ)
    count = _limit(limit)
    versions = rt.definition_store.history(kind, name, limit=count)
    if not versions:
        raise NotFound(f"no {kind} named {name!r}, now or before")
    return Reply(200, {kind: name, "versions": [v.as_dict() for v in versions]})


def _limit(value: str | None) -> int:
    """A ``limit`` query parameter: 1 to MAX_LIST_LIMIT, 20 when absent."""
    try:
        count = int(value) if value else 20
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_LIST_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return count


def _etag(rt: Runtime, kind: DefinitionType, name: str, if_match: str | None) -> str | None:
    """The ETag a write is conditional on: ``If-Match`` as sent, ``*`` for whatever is
    stored now, None for a create."""
    if not if_match:
        return None
    if if_match.strip() == "*":
        entry = rt.definition_store.get(kind, name)
        if entry is None:
            raise NotFound(f"no {kind} named {name!r}")
        return entry.etag
    return if_match.strip()


def _definition(rt: Runtime, entry: Entry) -> dict[str, Any]:
    body = {**entry.as_dict(), "etag": entry.etag}
    if entry.kind == "connection":  # the secrets' names (fixed by its name), never their values
        body["secrets"] = list(Connection(entry.name).secret_names)
        body["problems"] = rt.definitions.connection_problems(entry.name)
        _named_allowed(body)
    return body


def _named_allowed(body: dict[str, Any]) -> None:
    """A connection's ``allowed`` as ``{"id", "name"}`` each (stored as an ID or as such an
    object; the name is the one the admin chose, "" when none): for a valid entry only."""
    document = body.get("definition")
    if not isinstance(document, dict) or body["problems"]:
        return
    raw = document.get("allowed") or []
    allowed, names = parse_allowed(raw if isinstance(raw, list) else [], "", [])
    named = Connection("-", allowed=allowed, allowed_names=names).allowed_as_named()
    body["definition"] = {**document, "allowed": named}


def finish_connect(
    runtime: Callable[[], Runtime], headers: Mapping[str, str], url: str, query: dict[str, str]
) -> web.Page:
    """``GET /api/oauth/snapchat/callback``: finish a Connect and send the browser back to
    the console's connections with the outcome as a fixed code (what went wrong is logged)."""
    try:
        rt = runtime()
        who = signin.caller(rt.settings, headers, url)
    except ExportError as exc:
        return web.text_page(exc.http_status, f"The Connect cannot finish: {exc}")
    try:
        name = browser.finish(rt, who, query)
    except browser.NotConnected as exc:
        log.warning("A Connect did not finish (%s): %s", exc.reason, exc)
        outcome = {"connect": "failed", "reason": exc.reason}
    except Exception as exc:  # noqa: BLE001 - the browser gets the console, not a stack trace
        log.error("A Connect failed: %s", type(exc).__name__)
        outcome = {"connect": "failed", "reason": "error"}
    else:
        outcome = {"connect": "ok", "connection": name}
    return web.redirect(f"{CONSOLE_PATH}#/connections?{urlencode(outcome)}")


CONSOLE_PATH = "/api/console/"
