"""Why a run ended as failed: ``EndReason``, the one vocabulary of a run's end. Pure.

A run's record keeps it as ``error_kind`` (stored, and a telemetry dimension), and the
alerts (``infra/app/alerts.bicep``), the advice table (``shared.core.advice``) and
telemetry key on it, never on the wording of an error. An error ends a run with the reason
its class declares (``end_reason``, beside ``kind`` and ``http_status``; see
``shared.core.errors``); the other reasons are the run's own (abandoned, superseded, gave
up, interrupted, internal). docs/reliability.md lists them all.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.core.errors import ExportError


class EndReason(enum.StrEnum):
    """Why a run failed; the values are stored and are telemetry's ``error_kind``."""

    # the run's own endings
    INTERNAL = "internal"  # an unexpected exception (a bug): see the function log
    INTERRUPTED = "interrupted"  # the process was stopped (a command line run)
    ABANDONED = "abandoned"  # its hold on the export lapsed: its worker vanished
    SUPERSEDED = "superseded"  # another run of the export took over before it started
    GAVE_UP = "gave_up"  # its job reached the poison queue
    # configuration
    CONFIGURATION = "configuration"  # a setting or a definition is wrong
    INVALID_DEFINITION = "invalid_definition"  # the export's definition fails validation
    SECRET_MISSING = "secret_missing"  # noqa: S105 - a secret is not set, not found or empty
    SOURCE_ACCESS_DENIED = "source_access_denied"  # the app may not read the export's blobs
    NOT_FOUND = "not_found"  # the export (or the run's snapshot) is gone
    DISABLED = "disabled"  # the export is switched off
    # the export in Blob Storage
    NO_SNAPSHOT = "no_snapshot"  # no complete snapshot (none yet, gone, or changed)
    EMPTY_SNAPSHOT = "empty_snapshot"  # the snapshot holds no data rows
    SOURCE_MALFORMED = "source_malformed"  # model.json, a CSV file or UTF-8 text is damaged
    MISSING_COLUMN = "missing_column"  # the identifier column is not in the files
    NUL_BYTE = "nul_byte"  # a file holds a NUL byte
    # the audience and Snapchat
    REMOVAL_BLOCKED = "removal_blocked"  # the removal safeguard stopped a mirror run
    SNAPCHAT = "snapchat"  # Snapchat refused a request
    CREDENTIALS_REFUSED = "credentials_refused"  # Snapchat refused the connection's tokens
    PERMISSION_DENIED = "permission_denied"  # the connected user lacks a role on the account
    AUDIENCE_NOT_FOUND = "audience_not_found"  # the audience is not in the ad account
    # faults that may pass
    UNAVAILABLE = "unavailable"  # Snapchat (or a worker) kept failing past the retries
    STORAGE = "storage"  # the app's own storage failed
    # anything else
    ACTIVE_RUN = "active_run"  # another run holds the export
    OTHER = "error"  # an error with no reason of its own

    @classmethod
    def of(cls, exc: ExportError) -> EndReason:
        """The reason a run ends with when ``exc`` ends it: what its class declares."""
        return exc.end_reason
