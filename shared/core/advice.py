"""What to do about a failed run: the table of docs/reliability.md ("When a run fails"), as
data, so that the console shows the same advice next to a run's error. Pure.

Each row's left cell lists, in backticks, fragments a run's ``error`` starts with or
contains; ``…`` stands for any text and a lone ``N`` or ``B`` for a number. The test suite
checks that the document's table is exactly ``ROWS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    matches: str  # the left cell, as the document shows it
    what_to_do: str
    alerts: str = "`run-failed`"  # the Azure Monitor alerts that fire (infra/app/alerts.bicep)

    @property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        fragments = re.findall(r"`([^`]+)`", self.matches)
        return tuple(_pattern(text) for fragment in fragments for text in _spelled_out(fragment))


ROWS = (
    Advice(
        "`no column named …`, `first row is not a header`",
        "fix `columns.email` in the definition, or the export's attributes in Customer Insights",
    ),
    Advice(
        "`model.json: …`, `lists partition …`, `line N …`, "
        "`not valid UTF-8 text: … on line N (byte B)`",
        "the export in Blob Storage is damaged: re-run the Customer Insights export, then "
        "`POST …/runs`",
    ),
    Advice(
        "`holds no data rows`",
        "the segment export is empty; check the segment in Customer Insights",
    ),
    Advice(
        "`holds a NUL byte`",
        "the file is damaged (Customer Insights never writes NUL): export the segment again",
    ),
    Advice(
        "`removal safeguard: would remove …`",
        "a mirror run would remove more than the export allows, or its snapshot holds no valid "
        "identifier of a kind: check `columns` and the snapshot; if intended, `POST …/runs` "
        'with `{"allow_large_removal": true}` (or `--allow-large-removal`) once, or raise '
        "`max_removal_percent`",
        "`run-failed`, `removal-safeguard`",
    ),
    Advice(
        "`secret '…': not set / not found / empty`",
        "add the secret to Key Vault (see [Deploy](deploy.md))",
    ),
    Advice(
        "`refused the credentials of connection '<name>'`",
        "the refresh token was revoked or expired: run `connect <name>` again (or **Connect "
        "Snapchat** in the console); the error names the secret to renew (and the "
        "client-secret secret, if the Snapchat app's secret changed)",
        "`run-failed`, `credentials-refused`",
    ),
    Advice(
        "`needs Admin or Data Manager`",
        "give the connected Snapchat user that role on the ad account",
    ),
    Advice(
        "`check the export's audience_id`",
        "the audience does not exist in that ad account",
    ),
    Advice(
        "`gave up after N attempt(s)`, `still failing after`",
        "Snapchat or storage was unavailable for a long time; `POST …/runs` once it is back",
        "`run-failed` (`gave up`: the job reached the poison queue)",
    ),
    Advice(
        "`may not read it (grant Storage Blob Data Reader)`",
        "give the app's identity read access to the export container",
        "`run-failed`; when the timer meets it, `timer-check-failed`",
    ),
)


def _spelled_out(fragment: str) -> list[str]:
    """``secret '…': not set / not found / empty`` is three fragments with one beginning."""
    first, *others = fragment.split(" / ")
    beginning = first.rsplit(": ", 1)[0] + ": " if others else ""
    return [first, *(beginning + other for other in others)]


def _pattern(fragment: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(…|<name>|\bN\b|\bB\b)", fragment):
        if piece == "…":
            parts.append(".*?")
        elif piece == "<name>":
            parts.append(".+?")
        elif piece in ("N", "B"):
            parts.append(r"\d+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def for_error(error: str) -> Advice | None:
    """The row with the longest fragment the error contains (the most specific: ``holds a
    NUL byte`` rather than ``line N …``), or None."""
    best: tuple[int, Advice] | None = None
    for row in ROWS:
        for pattern in row.patterns:
            found = pattern.search(error)
            if found and (best is None or len(found.group()) > best[0]):
                best = (len(found.group()), row)
    return best[1] if best else None


def markdown_table() -> str:
    """The table as docs/reliability.md holds it."""
    lines = ["| `error` starts with / contains | what to do | alerts |", "|---|---|---|"]
    lines += [f"| {row.matches} | {row.what_to_do} | {row.alerts} |" for row in ROWS]
    return "\n".join(lines)
