"""Errors say what to do by their class: HTTP status and kind, exit code, retry or not."""

from __future__ import annotations

import pytest

from shared.core import errors
from shared.core.endings import EndReason
from shared.core.errors import ExportError, Transient
from shared.entry import api

# (error, HTTP status, kind, exit code, delivered again by the queue)
TABLE: list[tuple[ExportError, int, str, int, bool]] = [
    (errors.ConfigurationError(["a: required", "b: bad"]), 500, "configuration", 2, False),
    (
        errors.RedirectRefused("the token endpoint answered a redirect"),
        500,
        "configuration",
        2,
        False,
    ),
    (errors.InvalidExport(["export 'x': mode: bad"]), 400, "invalid_definition", 2, False),
    (errors.NotFound("no export named 'x'"), 404, "not_found", 3, False),
    (errors.BadRequest("limit must be a whole number"), 400, "bad_request", 1, False),
    (errors.Unauthenticated("no principal"), 401, "unauthenticated", 1, False),
    (errors.Forbidden("needs Exporter.Operator"), 403, "forbidden", 1, False),
    (errors.CrossSiteRequest("refused: a cross-site request"), 403, "cross_site_request", 1, False),
    (errors.SignInNotEnabled(["sign-in is off"]), 503, "sign_in_not_enabled", 2, False),
    (errors.SettingsInvalid(["LOCAL_PRINCIPAL: hosted"]), 503, "configuration", 2, False),
    (errors.BodyTooLarge("request body over 16384 bytes"), 413, "bad_request", 1, False),
    (errors.UnsupportedMediaType("not JSON"), 415, "unsupported_media_type", 1, False),
    (errors.ExportDisabled("export 'x' is disabled"), 400, "disabled", 4, False),
    (errors.SourceError("no snapshot found"), 409, "no_snapshot", 1, False),
    (errors.SnapshotSettling("still being written"), 409, "no_snapshot", 1, False),
    (errors.EmptySnapshot("holds no data rows"), 409, "no_snapshot", 1, False),
    (errors.SourceMalformed("model.json: not valid JSON"), 409, "no_snapshot", 1, False),
    (errors.MissingColumn("no column named 'EMail'"), 409, "no_snapshot", 1, False),
    (errors.NulByte("holds a NUL byte"), 409, "no_snapshot", 1, False),
    (errors.SourceAccessDenied("may not read it"), 500, "configuration", 2, False),
    (errors.SecretMissing("secret 'x': not set"), 500, "configuration", 2, False),
    (errors.RemovalBlocked("removal safeguard: ..."), 409, "removal_blocked", 1, False),
    (errors.RunActive("export 'x' has an active run r1", "r1"), 409, "active_run", 1, False),
    (errors.AuthenticationError("refused"), 502, "snapchat", 1, False),
    (errors.PermissionDenied("needs Admin"), 502, "snapchat", 1, False),
    (errors.RequestRejected("HTTP 400"), 502, "snapchat", 1, False),
    (errors.AudienceNotFound("HTTP 404"), 502, "snapchat", 1, False),
    (errors.RetryableError("still failing"), 503, "unavailable", 1, True),
    (errors.StorageError("run log: could not save"), 503, "storage", 1, True),
    (errors.RunBusy("another worker"), 503, "unavailable", 1, True),
    (errors.LeaseUncertain("not renewed"), 503, "unavailable", 1, True),
    (errors.LeaseLost("taken over"), 500, "error", 1, False),
    (errors.RecordChanged("changed"), 500, "error", 1, False),
    (errors.PreconditionFailed("changed since read"), 412, "precondition_failed", 1, False),
    (errors.InUse("used by export 'x'"), 409, "in_use", 1, False),
]


@pytest.mark.parametrize(("error", "status", "kind", "exit_code", "transient"), TABLE)
def test_each_error_class_carries_its_answers(
    error: ExportError, status: int, kind: str, exit_code: int, transient: bool
) -> None:
    assert (error.http_status, error.kind, error.exit_code) == (status, kind, exit_code)
    assert isinstance(error, Transient) == transient

    def fail() -> api.Reply:
        raise error

    reply = api.handle_errors(fail)
    assert (reply.status, reply.body["error"], reply.body["message"]) == (status, kind, str(error))
    assert {k: v for k, v in reply.body.items() if k not in ("error", "message")} == (
        error.details()
    )


def test_every_error_class_is_in_the_table() -> None:
    classes = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, ExportError)
    }
    listed = {type(error) for error, *_ in TABLE}
    assert classes - listed == {ExportError, Transient, errors.SnapchatError}


# Why a run that the error ends failed: the record's error_kind, which telemetry, the alerts
# and the advice key on (each class declares it; a subclass inherits its parent's).
END_REASONS: dict[type[ExportError], EndReason] = {
    ExportError: EndReason.OTHER,
    errors.ConfigurationError: EndReason.CONFIGURATION,
    errors.RedirectRefused: EndReason.CONFIGURATION,
    errors.InvalidExport: EndReason.INVALID_DEFINITION,
    errors.SecretMissing: EndReason.SECRET_MISSING,
    errors.SourceAccessDenied: EndReason.SOURCE_ACCESS_DENIED,
    errors.NotFound: EndReason.NOT_FOUND,
    errors.ExportDisabled: EndReason.DISABLED,
    errors.SourceError: EndReason.NO_SNAPSHOT,
    errors.SnapshotSettling: EndReason.NO_SNAPSHOT,
    errors.EmptySnapshot: EndReason.EMPTY_SNAPSHOT,
    errors.SourceMalformed: EndReason.SOURCE_MALFORMED,
    errors.MissingColumn: EndReason.MISSING_COLUMN,
    errors.NulByte: EndReason.NUL_BYTE,
    errors.RemovalBlocked: EndReason.REMOVAL_BLOCKED,
    errors.SnapchatError: EndReason.SNAPCHAT,
    errors.RequestRejected: EndReason.SNAPCHAT,
    errors.AuthenticationError: EndReason.CREDENTIALS_REFUSED,
    errors.PermissionDenied: EndReason.PERMISSION_DENIED,
    errors.AudienceNotFound: EndReason.AUDIENCE_NOT_FOUND,
    errors.RetryableError: EndReason.UNAVAILABLE,
    errors.RunBusy: EndReason.UNAVAILABLE,
    errors.LeaseUncertain: EndReason.UNAVAILABLE,
    errors.StorageError: EndReason.STORAGE,
    errors.RunActive: EndReason.ACTIVE_RUN,
}


@pytest.mark.parametrize(("error", "status", "kind", "exit_code", "transient"), TABLE)
def test_each_error_ends_a_run_with_the_reason_its_class_declares(
    error: ExportError, status: int, kind: str, exit_code: int, transient: bool
) -> None:
    reason = next(END_REASONS[cls] for cls in type(error).__mro__ if cls in END_REASONS)
    assert EndReason.of(error) is reason


def test_end_reasons_keep_the_values_already_stored_and_alerted_on() -> None:
    kept = {"internal", "interrupted", "abandoned", "superseded", "gave_up", "no_snapshot",
            "credentials_refused", "configuration", "removal_blocked", "snapchat",
            "unavailable", "storage"}  # fmt: skip
    assert kept <= {reason.value for reason in EndReason}
