"""The exceptions the app raises, grouped by what the caller should do about them.

Every message is written for an operator and names *where* something went wrong (an export,
a setting, a blob, a column) but never carries a data value: no email, phone number, hash,
token or secret ever goes into an exception text.

- ``ConfigurationError``: a setting or an export definition is wrong. Stop and tell the operator.
- ``SourceError``: the Customer Insights export in Blob Storage cannot be read as expected
  (missing column, malformed CSV, missing partition). The run fails; other exports carry on.
- ``AuthenticationError``: Snapchat refused the credentials even after one token refresh.
- ``PermissionDenied``: the credentials work but may not touch the ad account or audience.
- ``RetryableError``: a transient fault (429, 5xx, timeout) outlived the bounded retries.
- ``RequestRejected``: Snapchat refused a request for a reason retrying cannot change.
- ``StorageError``: the app's own storage (run log, queue) failed.
- ``RunActive``, ``RunBusy``, ``LeaseLost``: another run or worker holds the export.
- ``RecordChanged``: a run record was written by another writer meanwhile; read it again.
- ``RemovalBlocked``: the removal safeguard refused a mirror run; the operator must decide.

``RETRY_LATER`` names the failures after which the queue worker asks for the job again (the
run resumes from its last accepted batch); every other error fails the run at once.
"""

from __future__ import annotations


class ExportError(Exception):
    """Base class of every error the app raises on purpose."""


class ConfigurationError(ExportError):
    """A setting, a secret or an export definition is missing or malformed."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class InvalidExport(ConfigurationError):  # noqa: N818
    """The export's definition failed validation; it cannot run until it is fixed."""


class NotFound(ExportError):  # noqa: N818 - reads as the condition, like FileNotFoundError's stem
    """A named thing (export, run, snapshot) does not exist."""


class ExportDisabled(ExportError):  # noqa: N818
    """The export exists but is switched off."""


class SourceError(ExportError):
    """The segment export in Blob Storage cannot be read as expected."""


class SnapchatError(ExportError):
    """Base class of failures reported by the Snap Marketing API or its token endpoint."""


class AuthenticationError(SnapchatError):
    """Snapchat refused the client credentials or the refresh token."""


class PermissionDenied(SnapchatError):  # noqa: N818
    """The authorised user may not act on the ad account or audience."""


class RetryableError(SnapchatError):
    """A transient fault that lasted longer than the retry budget."""


class RequestRejected(SnapchatError):  # noqa: N818
    """Snapchat refused a request; sending it again would not help."""


class RemovalBlocked(ExportError):  # noqa: N818
    """A mirror run would remove more of the audience than the export allows."""


class StorageError(ExportError):
    """The app's own Table or Queue storage failed."""


class RunActive(ExportError):  # noqa: N818
    """Another run of the export is queued or running."""

    def __init__(self, message: str, active_run_id: str) -> None:
        super().__init__(message)
        self.active_run_id = active_run_id


class RunBusy(ExportError):  # noqa: N818
    """Another worker is still on this very run (a duplicate delivery): try again later."""


class LeaseLost(ExportError):  # noqa: N818
    """This worker's hold on the export expired and another worker took over."""


class RecordChanged(ExportError):  # noqa: N818
    """A run record was written by someone else since it was read: read it again."""


class LeaseUncertain(StorageError):  # noqa: N818
    """This worker could not confirm its hold on the export in time: stop, retry later."""


# Failures worth another delivery of the same job: the run resumes from its checkpoint.
RETRY_LATER: tuple[type[ExportError], ...] = (RetryableError, StorageError, RunBusy)
