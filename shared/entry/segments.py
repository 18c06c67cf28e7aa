"""The HTTP API for choosing instead of typing: which segments a container holds
(``GET /api/segments``) and what an unsaved export would read (``POST /api/preview``).

Who may look into which container (fail closed, the role before any lookup):

- Admins: any container of the export storage account;
- Operators: the containers named by exports on connections they may use;
- Readers (and anyone else): none; they create no exports.

A preview reads only containers its caller may discover, and needs the connection its
definition names, as saving it would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from shared.admin import definition_changes
from shared.core.access import Action, Principal, authorize
from shared.core.definition_types import CONTAINER, NAME, Definitions
from shared.core.errors import BadRequest, Forbidden
from shared.core.layout import Snapshot
from shared.entry.api import Reply, json_body
from shared.export import discovery, preview
from shared.runtime import Runtime

PREVIEW_NAME = "preview"  # the name a previewed definition without one is checked under


def list_segments(rt: Runtime, who: Principal, container: str | None) -> Reply:
    """``GET /api/segments?container=…``: the segments, snapshots and attributes found."""
    authorize(who, Action.EDIT_EXPORT)  # the role first: no probing for containers
    name = _container(container)
    _may_read(rt, who, name)
    return Reply(200, discovery.discover(rt.source, name, _settled(rt)))


def preview_export(
    rt: Runtime, who: Principal, body: bytes, content_type: str, query: Mapping[str, str]
) -> Reply:
    """``POST /api/preview``: counts of what a dry run of this definition would read."""
    authorize(who, Action.EDIT_EXPORT)
    document = json_body(body, content_type)
    if not isinstance(document, dict):
        raise BadRequest("the request body must be a JSON object: an export definition")
    name = document.get("name", PREVIEW_NAME)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        name = PREVIEW_NAME  # the check names what is wrong with it
    export = definition_changes.check_export(rt, name, {**document, "name": name})
    current = _current(rt)
    authorize(who, Action.EDIT_EXPORT, current.connection(export.connection))
    for where in export.sources:
        _may_read(rt, who, where.container)
    wanted = query.get("snapshot") or None
    return Reply(200, preview.preview(rt.source, export, _settled(rt), wanted))


def _container(value: str | None) -> str:
    if not value:
        raise BadRequest("container: required (?container=<name>)")
    if not CONTAINER.fullmatch(value):
        raise BadRequest("container: not a Blob Storage container name (3 to 63 of a-z, 0-9, -)")
    return value


def _may_read(rt: Runtime, who: Principal, container: str) -> None:
    """Forbidden unless ``who`` may look into ``container`` (see the module's docstring)."""
    if who.is_admin:
        return
    current = _current(rt)
    usable = {
        where.container
        for export in current.exports
        if who.may_use(current.connection(export.connection))
        for where in export.sources
    }
    if container not in usable:
        raise Forbidden(
            f"{who.label} may not look into container {container!r}: an Operator may look "
            "only into containers that exports on their connections read"
        )


def _current(rt: Runtime) -> Definitions:
    """The definitions as stored this moment: access decisions never use a cached copy."""
    rt.forget_definitions()
    return rt.definitions


def _settled(rt: Runtime) -> Callable[[Snapshot], bool]:
    """Whether a snapshot is complete, by the run's own rule (``SNAPSHOT_SETTLE_SECONDS``)."""
    now = datetime.now(UTC)
    return lambda s: (now - s.last_modified).total_seconds() >= rt.settings.snapshot_settle_seconds
