"""The console's server-side parts, without a browser: the timer's next check, the advice for
a failed run, problems by field, the same-site check and the static pages."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.core import advice, schedule
from shared.core.csvstream import column_cells
from shared.core.endings import EndReason
from shared.core.errors import (
    AudienceNotFound,
    AuthenticationError,
    CrossSiteRequest,
    EmptySnapshot,
    ExportError,
    InvalidExport,
    PermissionDenied,
    RetryableError,
    SecretMissing,
    SourceAccessDenied,
    SourceError,
    SourceMalformed,
    Unauthenticated,
    field_problem,
)
from shared.entry import web
from shared.entry.signin import same_site

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 12, 1, 23, 5, 47, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */15 * * * *", datetime(2026, 12, 1, 23, 15, tzinfo=UTC)),
        ("0 0 * * * *", datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
        ("0 0 3 * * 1", datetime(2026, 12, 7, 3, 0, tzinfo=UTC)),  # Mondays at 03:00
        ("0 0 3 * * 7", datetime(2026, 12, 6, 3, 0, tzinfo=UTC)),  # 7 is Sunday too
        ("30 5 9 1 * *", datetime(2027, 1, 1, 9, 5, 30, tzinfo=UTC)),
        ("*/20 * * * *", datetime(2026, 12, 1, 23, 20, tzinfo=UTC)),  # five fields: second 0
        ("0 0 0 29 2 *", datetime(2028, 2, 29, tzinfo=UTC)),
        (
            "0 0 12 1-7 * 1",
            datetime(2026, 12, 7, 12, tzinfo=UTC),
        ),  # the first Monday: NCRONTAB needs both
        ("0 5,35 8-17/3 * * *", datetime(2026, 12, 2, 8, 5, tzinfo=UTC)),
        ("0 6 23 * * *", datetime(2026, 12, 1, 23, 6, tzinfo=UTC)),  # later this same hour
    ],
)
def test_the_next_check_is_the_next_time_the_schedule_fires(
    expression: str, expected: datetime
) -> None:
    assert schedule.next_run(expression, AT) == expected


@pytest.mark.parametrize(
    "expression", ["", "0 */15 * * *  * *", "0 61 * * * *", "0 0 * * * MON", "0 5-1 * * * *"]
)
def test_a_schedule_that_is_not_understood_has_no_next_check(expression: str) -> None:
    assert schedule.next_run(expression, AT) is None


def test_the_manual_holds_exactly_the_advice_the_console_shows() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text("utf-8")
    assert advice.markdown_table() in text


def error_of(files: dict[str, bytes], column: str = "EMail") -> SourceError:
    """The error the CSV reader raises for these partitions: a real one, not a copy."""
    with pytest.raises(SourceError) as raised:
        list(column_cells(files, lambda name: io.BytesIO(files[name]), column=column, model=None))
    return raised.value


REAL_ERRORS = [
    (lambda: error_of({"p_1.csv": b"CustomerId,Mail\n1,a@example.com\n"}), 0),
    (lambda: error_of({"p_1.csv": b"1,a@example.com\n"}), 0),
    (lambda: error_of({"p_1.csv": b"CustomerId,EMail\n1,caf\xe9@example.com\n"}), 1),
    (lambda: error_of({"p_1.csv": b"CustomerId,EMail\n1,a\x00b@example.com\n"}), 3),
    (lambda: EmptySnapshot("export 'x': snapshot 2026/11/05/1200 holds no data rows; 0 sent"), 2),
    (lambda: SecretMissing("secret 'snapchat-main-client-id': not found in Key Vault v"), 5),
    (lambda: SecretMissing("secret 'snapchat-main-refresh-token': empty in Key Vault v"), 5),
    (lambda: AuthenticationError("refused the credentials of connection 'main'"), 6),
    (lambda: PermissionDenied("HTTP 403; needs Admin or Data Manager"), 7),
    (lambda: AudienceNotFound("HTTP 404; check the export's audience_id"), 8),
    (lambda: RetryableError("Snapchat x: still failing after 5 attempts (HTTP 503)"), 9),
    (lambda: SourceAccessDenied("x: may not read it (grant Storage Blob Data Reader)"), 10),
]


@pytest.mark.parametrize(("make", "row"), REAL_ERRORS)
def test_a_failed_runs_end_reason_finds_its_advice(
    make: Callable[[], ExportError], row: int
) -> None:
    assert advice.for_reason(EndReason.of(make())) is advice.ROWS[row]


def test_a_missing_column_is_a_malformed_source_not_a_missing_snapshot() -> None:
    error = error_of({"p_1.csv": b"CustomerId,Mail\n1,a@example.com\n"})
    assert EndReason.of(error) is EndReason.MISSING_COLUMN
    assert isinstance(error, SourceMalformed)
    assert (error.kind, error.http_status) == ("no_snapshot", 409)  # the API's answer as before
    found = advice.for_reason(EndReason.of(error))
    assert found is not None
    assert found.what_to_do.startswith("fix `columns.email`")


def test_each_end_reason_has_one_row_at_most_and_the_manual_lists_them_all() -> None:
    keyed = [reason for row in advice.ROWS for reason in row.reasons]
    assert len(keyed) == len(set(keyed))
    text = (ROOT / "docs" / "reliability.md").read_text("utf-8")
    listed = text[text.index("Every `error_kind` a run can end with") :]
    assert {reason.value for reason in EndReason} <= set(re.findall(r"`([a-z_]+)`", listed))


def test_a_reason_the_table_does_not_know_has_no_advice() -> None:
    assert advice.for_reason(EndReason.INTERNAL) is None
    assert advice.for_reason("something this version does not know") is None
    assert advice.for_reason("") is None


@pytest.mark.parametrize(
    ("problem", "field", "message"),
    [
        ("export 'x': audience: name: at most 375 characters", "audience.name",
         "at most 375 characters"),
        ("export 'x' (exports[1]): sources[0]: path: empty segments", "sources[0].path",
         "empty segments"),
        ("export 'x': default_country_code: expected 1 to 3 digits, e.g. \"44\"",
         "default_country_code", 'expected 1 to 3 digits, e.g. "44"'),
        ("export 'x': connection: 'nope' is not a declared, valid connection", "connection",
         "'nope' is not a declared, valid connection"),
        ("export 'x': the body must be a JSON object", "", "the body must be a JSON object"),
    ],
)  # fmt: skip
def test_each_problem_names_its_field(problem: str, field: str, message: str) -> None:
    assert field_problem(problem) == {"field": field, "message": message}
    assert InvalidExport([problem]).details()["fields"] == [{"field": field, "message": message}]


URL = "https://exporter.example.net/api/exports/x/runs"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a script with a bearer token: no browser, no cookie
        {"Origin": "https://exporter.example.net"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://exporter.example.net"},
        {"Cookie": "AppServiceAuthSession=x", "X-Requested-With": "XMLHttpRequest"},
    ],
)
def test_a_state_changing_call_from_the_apps_own_pages_passes(headers: dict[str, str]) -> None:
    same_site("POST", headers, URL)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.net"},
        {"Origin": "http://exporter.example.net"},  # another scheme is another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
        {"Cookie": "AppServiceAuthSession=x"},
        {"Cookie": "AppServiceAuthSession=x", "X-Requested-With": "fetch"},
    ],
)
def test_a_state_changing_call_from_elsewhere_is_refused(headers: dict[str, str]) -> None:
    for method in ("POST", "PUT", "DELETE", "patch"):
        with pytest.raises(CrossSiteRequest):
            same_site(method, headers, URL)
    same_site("GET", headers, URL)  # reading changes nothing: the page loads from anywhere


def signed_in() -> object:
    return object()


def test_the_console_files_are_served_with_a_strict_policy() -> None:
    page = web.console_page("", "https://h/api/console/", signed_in)
    assert page.status == 200
    assert page.content_type.startswith("text/html")
    assert b'src="console.js"' in page.body
    assert page.headers["Content-Security-Policy"] == web.CONTENT_SECURITY_POLICY
    script = web.console_page("console.js", "https://h/api/console/console.js", signed_in)
    assert script.content_type.startswith("text/javascript")


def test_the_console_without_its_slash_is_sent_to_it() -> None:
    page = web.console_page("", "https://h/api/console", signed_in)
    assert page.status == 301
    assert page.headers["Location"] == "console/"


@pytest.mark.parametrize("path", ["../host.json", "../../etc/passwd", "x/../../function_app.py",
                                  "index.htm", "/etc/passwd", "console.js/"])  # fmt: skip
def test_nothing_but_the_console_files_is_served(path: str) -> None:
    assert web.console_page(path, f"https://h/api/console/{path}", signed_in).status == 404


def test_the_pages_are_refused_to_a_caller_who_is_not_signed_in() -> None:
    def refuse() -> object:
        raise Unauthenticated("sign in first")

    page = web.console_page("", "https://h/api/console/", refuse)
    assert page.status == 401
    assert b"sign in first" in page.body


def test_the_console_loads_nothing_from_elsewhere_and_runs_no_inline_script() -> None:
    folder = ROOT / "console"
    for path in folder.iterdir():
        text = path.read_text("utf-8")
        assert not re.search(r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]", text), (
            path.name
        )
    html = (folder / "index.html").read_text("utf-8")
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="console.js">']
    assert not re.search(r"\s(on[a-z]+|style)=", html)
    script = (folder / "console.js").read_text("utf-8")
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|\beval\(", script)


def test_when_hosted_a_call_needs_a_token_or_the_consoles_header() -> None:
    with pytest.raises(CrossSiteRequest):
        same_site("POST", {}, URL, hosted=True)
    same_site("POST", {"Authorization": "Bearer t"}, URL, hosted=True)
    same_site("POST", {"X-Requested-With": "XMLHttpRequest"}, URL, hosted=True)


def test_the_public_address_counts_as_the_apps_own_origin() -> None:
    """Behind the platform's front end the request may arrive as http://: browsers send
    the https:// origin they use, which PUBLIC_URL (or WEBSITE_HOSTNAME) names."""
    inside = "http://exporter.example.net/api/exports/x/runs"
    headers = {"Origin": "https://exporter.example.net", "X-Requested-With": "XMLHttpRequest"}
    same_site("POST", headers, inside, public_url="https://exporter.example.net", hosted=True)
    with pytest.raises(CrossSiteRequest):
        same_site("POST", headers, inside, public_url=None, hosted=True)
