"""What to do about a failed run: the table of docs/reliability.md ("When a run fails"), as
data, so that the console shows the same advice next to a run's error. Pure.

Each row is keyed on why the run ended (``EndReason``, the record's ``error_kind``), never on
the wording of its error; the second cell only shows the operator what such an error says
(``…`` stands for any text, ``N`` or ``B`` for a number). The test suite checks that the
document's table is exactly ``ROWS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.core.endings import EndReason


@dataclass(frozen=True)
class Advice:
    reasons: tuple[EndReason, ...]  # the end reasons it is the advice for
    error_says: str  # what such a run's error says, as the document shows it
    what_to_do: str
    alerts: str = "`run-failed`"  # the Azure Monitor alerts that fire (infra/app/alerts.bicep)
    field: str = ""  # the definition field it points at (the console links to it), or ""


ROWS = (
    Advice(
        (EndReason.MISSING_COLUMN,),
        "`no column named …`, `first row is not a header`",
        "fix `columns.email` in the definition, or the export's attributes in Customer Insights",
        field="columns",
    ),
    Advice(
        (EndReason.SOURCE_MALFORMED,),
        "`model.json: …`, `lists partition …`, `line N …`, "
        "`not valid UTF-8 text: … on line N (byte B)`",
        "the export in Blob Storage is damaged: re-run the Customer Insights export, then "
        "`POST …/runs`",
    ),
    Advice(
        (EndReason.EMPTY_SNAPSHOT,),
        "`holds no data rows`",
        "the segment export is empty; check the segment in Customer Insights",
    ),
    Advice(
        (EndReason.NUL_BYTE,),
        "`holds a NUL byte`",
        "the file is damaged (Customer Insights never writes NUL): export the segment again",
    ),
    Advice(
        (EndReason.REMOVAL_BLOCKED,),
        "`removal safeguard: would remove …`",
        "a mirror run would remove more than the export allows, or its snapshot holds no valid "
        "identifier of a kind: check `columns` and the snapshot; if intended, `POST …/runs` "
        'with `{"allow_large_removal": true}` (or `--allow-large-removal`) once, or raise '
        "`max_removal_percent`",
        "`run-failed`, `removal-safeguard`",
        field="max_removal_percent",
    ),
    Advice(
        (EndReason.SECRET_MISSING,),
        "`secret '…': not set / not found / empty`",
        "add the secret to Key Vault (see [Deploy](deploy.md))",
    ),
    Advice(
        (EndReason.CREDENTIALS_REFUSED,),
        "`refused the credentials of connection '<name>'`",
        "the refresh token was revoked or expired: run `connect <name>` again (or **Connect "
        "Snapchat** in the console); the error names the secret to renew (and the "
        "client-secret secret, if the Snapchat app's secret changed)",
        "`run-failed`, `credentials-refused`",
        field="connection",
    ),
    Advice(
        (EndReason.PERMISSION_DENIED,),
        "`needs Admin or Data Manager`",
        "give the connected Snapchat user that role on the ad account",
    ),
    Advice(
        (EndReason.AUDIENCE_NOT_FOUND,),
        "`check the export's audience_id`",
        "the audience does not exist in that ad account",
        field="audience_id",
    ),
    Advice(
        (EndReason.GAVE_UP, EndReason.UNAVAILABLE),
        "`gave up after N attempt(s)`, `still failing after`",
        "Snapchat or storage was unavailable for a long time; `POST …/runs` once it is back",
        "`run-failed` (`gave up`: the job reached the poison queue)",
    ),
    Advice(
        (EndReason.SOURCE_ACCESS_DENIED,),
        "`may not read it (grant Storage Blob Data Reader)`",
        "give the app's identity read access to the export container",
        "`run-failed`; when the timer meets it, `timer-check-failed`",
        field="source.container",
    ),
)


_BY_REASON = {reason: row for row in ROWS for reason in row.reasons}


def for_reason(reason: str) -> Advice | None:
    """The advice for a run that ended for ``reason`` (its ``error_kind``), or None."""
    try:
        return _BY_REASON.get(EndReason(reason))
    except ValueError:  # no reason (a run that succeeded), or one this version does not know
        return None


_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_COLUMN_SAID = re.compile(r"not a header naming column '([^']*)'")
_COLUMNS_SAID = re.compile(r"no column named '([^']*)'; model\.json's columns are ([^(]*)")


def plain(text: str) -> str:
    """A cell of the table as plain text, for a page or a terminal: no backticks, bold or
    link targets (``[Deploy](deploy.md)`` becomes ``Deploy``)."""
    return _LINK.sub(r"\1", text).replace("**", "").replace("`", "")


def missing_column(error: str) -> tuple[str, tuple[str, ...]]:
    """The column a missing-column error names, and the snapshot's columns it lists (both
    only when model.json gave them: ``shared.core.csvstream`` writes the error so); else
    ``("", ())``."""
    found = _COLUMNS_SAID.search(error)
    if found is None:
        named = _COLUMN_SAID.search(error)
        return (named[1] if named else ""), ()
    return found[1], tuple(c.strip() for c in found[2].split(",") if c.strip())


def markdown_table() -> str:
    """The table as docs/reliability.md holds it."""
    lines = [
        "| `error_kind` | the `error` says | what to do | alerts |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {', '.join(f'`{reason}`' for reason in row.reasons)} | {row.error_says} "
        f"| {row.what_to_do} | {row.alerts} |"
        for row in ROWS
    ]
    return "\n".join(lines)
