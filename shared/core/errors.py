"""The exceptions the app raises, grouped by what the caller should do about them.

Every message is written for an operator and names *where* something went wrong (an export,
a setting, a blob, a column) but never carries a data value: no email, phone number, hash,
token or secret ever goes into an exception text.

Each class carries its own answer: ``kind`` and ``http_status`` for the HTTP API, ``exit_code``
for the command line, ``end_reason`` for a run it ends (``shared.core.endings``), and whether
it is ``Transient`` (the queue worker asks for the job again and the run resumes from its last
accepted batch) or not (the run fails at once). The API, the command line and the run records
read these attributes; no other table maps errors to answers.

- ``ConfigurationError``: a setting or an export definition is wrong. Stop and tell the operator.
- ``SourceError``: the Customer Insights export in Blob Storage cannot be read as expected:
  no snapshot, or an empty one (``EmptySnapshot``), or a damaged one (``SourceMalformed``:
  ``MissingColumn``, ``NulByte``).
- ``SnapchatError`` and its kinds: Snapchat refused, or kept failing.
- ``Transient``: a fault that may pass (Snapchat's 429 and 5xx, storage, a busy or uncertain
  worker): try again later.
- ``RunActive``, ``LeaseLost``, ``RecordChanged``: another run, worker or writer has the export
  or the record now.
- ``RemovalBlocked``: the removal safeguard refused a mirror run; the operator must decide.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from shared.core.endings import EndReason


class ExportError(Exception):
    """Base class of every error the app raises on purpose."""

    kind: ClassVar[str] = "error"  # the ``error`` field of an HTTP error body
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1  # command line: 1 the run or request failed
    end_reason: ClassVar[EndReason] = EndReason.OTHER  # why a run it ends failed

    def details(self) -> dict[str, Any]:
        """Fields an HTTP error body carries besides ``error`` and ``message``."""
        return {}


class Transient(ExportError):  # noqa: N818 - an adjective, like the other classes
    """A fault that may pass: the queue delivers the job again, and the run resumes."""

    kind = "unavailable"
    http_status = 503
    end_reason = EndReason.UNAVAILABLE


class ConfigurationError(ExportError):
    """A setting, a secret or an export definition is missing or malformed."""

    kind = "configuration"
    exit_code = 2
    end_reason = EndReason.CONFIGURATION

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def details(self) -> dict[str, Any]:
        return {"problems": self.problems}


class SettingsInvalid(ConfigurationError):  # noqa: N818 - reads as the condition
    """The app's settings are missing or malformed: nothing can be served until an operator
    fixes them, so an HTTP caller hears 503 with every problem (settings hold no secrets)."""

    http_status = 503


class UnsupportedMediaType(ExportError):  # noqa: N818
    """A request body that is not ``application/json``."""

    kind = "unsupported_media_type"
    http_status = 415


class SignInNotEnabled(ConfigurationError):  # noqa: N818
    """The app runs in Azure without the platform's sign-in: every call is refused."""

    kind = "sign_in_not_enabled"
    http_status = 503


class InvalidExport(ConfigurationError):  # noqa: N818
    """The export's definition failed validation; it cannot run until it is fixed."""

    kind = "invalid_definition"
    http_status = 400
    end_reason = EndReason.INVALID_DEFINITION

    def details(self) -> dict[str, Any]:
        """Besides ``problems``, each problem split into the field it is about (a dotted
        path such as ``audience.name`` or ``sources[1].path``; "" for the whole definition)
        and what is wrong, so that a form can show each one next to its field."""
        return {**super().details(), "fields": [field_problem(p) for p in self.problems]}


_DEFINITION = re.compile(r"^(?:export|connection) '[^']*'(?: \([^)]*\))?: |^\w+\[\d+\]: ")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(?:\[\d+\])?$")


def field_problem(problem: str) -> dict[str, str]:
    """``export 'x': audience: name: at most 375 characters`` is about field
    ``audience.name``: the path is the leading names, the message the rest."""
    rest = _DEFINITION.sub("", problem, count=1)
    path: list[str] = []
    parts = rest.split(": ")
    while len(parts) > 1 and _FIELD.fullmatch(parts[0]):
        path.append(parts.pop(0))
    return {"field": ".".join(path), "message": ": ".join(parts)}


class BadRequest(ExportError):  # noqa: N818
    """An HTTP request's parameters or body are malformed."""

    kind = "bad_request"
    http_status = 400


class BodyTooLarge(BadRequest):
    """A request body over the API's limit."""

    http_status = 413


class Unauthenticated(ExportError):  # noqa: N818
    """No signed-in principal came with the request."""

    kind = "unauthenticated"
    http_status = 401


class Forbidden(ExportError):  # noqa: N818
    """The caller lacks the app role, or the connection, that the action needs."""

    kind = "forbidden"
    http_status = 403


class CrossSiteRequest(Forbidden):
    """A state-changing request that did not come from the app's own pages."""

    kind = "cross_site_request"


class NotFound(ExportError):  # noqa: N818 - reads as the condition, like FileNotFoundError's stem
    """A named thing (export, run, snapshot) does not exist."""

    kind = "not_found"
    http_status = 404
    exit_code = 3
    end_reason = EndReason.NOT_FOUND


class ExportDisabled(ExportError):  # noqa: N818
    """The export exists but is switched off."""

    kind = "disabled"
    http_status = 400
    exit_code = 4  # command line: no run was made (not "the run failed")
    end_reason = EndReason.DISABLED


class SourceError(ExportError):
    """The segment export in Blob Storage cannot be read as expected (or has no complete
    snapshot yet, which is what an HTTP caller hears about: 409)."""

    kind = "no_snapshot"
    http_status = 409
    end_reason = EndReason.NO_SNAPSHOT


class SnapshotSettling(SourceError):  # noqa: N818
    """A segment's newest snapshot is still being written (its files are too recent)."""


class EmptySnapshot(SourceError):  # noqa: N818 - reads as the condition
    """A segment's snapshot holds no data rows (an empty export is treated as a fault)."""

    end_reason = EndReason.EMPTY_SNAPSHOT


class SourceMalformed(SourceError):  # noqa: N818
    """A snapshot's files cannot be read: model.json, a CSV file or its text is damaged.
    (The HTTP API still answers ``no_snapshot``: there is no snapshot it can export.)"""

    end_reason = EndReason.SOURCE_MALFORMED


class MissingColumn(SourceMalformed):
    """The export's identifier column is not among the files' columns."""

    end_reason = EndReason.MISSING_COLUMN


class NulByte(SourceMalformed):
    """A partition holds a NUL byte (Customer Insights never writes one)."""

    end_reason = EndReason.NUL_BYTE


class SourceAccessDenied(ConfigurationError):  # noqa: N818
    """The app's identity may not read the export's blobs (a role assignment is missing)."""

    end_reason = EndReason.SOURCE_ACCESS_DENIED


class SecretMissing(ConfigurationError):  # noqa: N818
    """A secret the app needs is not set, not found, or empty."""

    end_reason = EndReason.SECRET_MISSING


class RemovalBlocked(ExportError):  # noqa: N818
    """A mirror run would remove more of the audience than the export allows."""

    kind = "removal_blocked"
    http_status = 409
    end_reason = EndReason.REMOVAL_BLOCKED


class SnapchatError(ExportError):
    """Base class of failures reported by the Snap Marketing API or its token endpoint."""

    kind = "snapchat"
    http_status = 502
    end_reason = EndReason.SNAPCHAT


class RedirectRefused(ConfigurationError):  # noqa: N818 - reads as what happened
    """An endpoint that is sent a secret answered a redirect, which was not followed."""


class AuthenticationError(SnapchatError):
    """Snapchat refused the client credentials or the refresh token."""

    end_reason = EndReason.CREDENTIALS_REFUSED


class PermissionDenied(SnapchatError):  # noqa: N818
    """The authorised user may not act on the ad account or audience."""

    end_reason = EndReason.PERMISSION_DENIED


class RequestRejected(SnapchatError):  # noqa: N818
    """Snapchat refused a request; sending it again would not help."""


class AudienceNotFound(RequestRejected):
    """Snapchat does not know the export's audience in its ad account."""

    end_reason = EndReason.AUDIENCE_NOT_FOUND


class RetryableError(SnapchatError, Transient):
    """A transient Snapchat fault that lasted longer than the retry budget."""

    kind = "unavailable"
    http_status = 503
    end_reason = EndReason.UNAVAILABLE


class StorageError(Transient):
    """The app's own Table or Queue storage (or Key Vault) failed."""

    kind = "storage"
    end_reason = EndReason.STORAGE


class RunActive(ExportError):  # noqa: N818
    """Another run of the export is queued or running."""

    kind = "active_run"
    http_status = 409
    end_reason = EndReason.ACTIVE_RUN

    def __init__(self, message: str, active_run_id: str) -> None:
        super().__init__(message)
        self.active_run_id = active_run_id

    def details(self) -> dict[str, Any]:
        return {"active_run_id": self.active_run_id}


class RunBusy(Transient):
    """Another worker is still on this very run (a duplicate delivery): try again later."""


class LeaseUncertain(Transient):
    """This worker could not confirm its hold on the export in time: stop, retry later."""


class LeaseLost(ExportError):  # noqa: N818
    """This worker's hold on the export expired and another worker took over."""


class PreconditionFailed(ExportError):  # noqa: N818
    """A definition changed since the caller read it (or exists, or does not): read again."""

    kind = "precondition_failed"
    http_status = 412


class InUse(ExportError):  # noqa: N818
    """The definition cannot be deleted while something depends on it."""

    kind = "in_use"
    http_status = 409

    def __init__(self, message: str, exports: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.exports = exports  # the exports that use it, by name

    def details(self) -> dict[str, Any]:
        return {"exports": list(self.exports)} if self.exports else {}


class RecordChanged(ExportError):  # noqa: N818
    """A run record was written by someone else since it was read: read it again."""
