"""The console in a real headless Chromium (Debian's package, driven by Playwright), served by
the app's real HTTP handlers on loopback (``devtools.localhost``) with the data
``scripts/console`` shows: Azurite, the Snapchat sandbox, the demo exports run once.

Each role signs in as the platform would sign it in: the browser sends
``X-MS-CLIENT-PRINCIPAL`` for an Admin, an Operator (of connection ``demo`` only) or a Reader.
Every page a test opens must leave the browser's console free of errors.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import sync_playwright

from devtools import console as demo_console
from devtools.azurite import Azurite
from devtools.ci_export import segment_path
from devtools.localhost import LocalHost
from devtools.snapchat_sandbox import SnapchatSandbox
from shared import runtime
from shared.admin import definition_changes
from shared.core.access import client_principal_header
from shared.core.runrecord import Progress, RunRecord, new_run_id
from shared.core.settings import HOSTED_MARKERS, LOCAL_PRINCIPALS, Settings
from tests.conftest import local_token

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
HIGH_VALUE, LAPSED = demo_console.EXPORTS
ROLES = {
    "admin": ("Exporter.Admin",),
    "operator": ("Exporter.Operator",),
    "reader": ("Exporter.Reader",),
    "no role": (),
}
NO_ROLE_ID = "0e000000-0000-4000-8000-000000000005"  # signed in, but given no app role


@dataclass
class Site:
    url: str
    sandbox: SnapchatSandbox
    demo: demo_console.Site
    rt: runtime.Runtime

    def api(self, path: str) -> Any:
        answer = requests.get(f"{self.url}/api{path}", headers=principal("admin"), timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()


def principal(role: str) -> dict[str, str]:
    """Who the browser is (the platform's header, as local mode in ``header`` takes it), with
    local mode's token."""
    object_id = LOCAL_PRINCIPALS.get(role, NO_ROLE_ID)
    header = client_principal_header(object_id, f"test {role}", ROLES[role])
    return {"X-MS-CLIENT-PRINCIPAL": header, **local_token()}


@pytest.fixture(scope="module")
def site(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("console")
    with pytest.MonkeyPatch.context() as patch, SnapchatSandbox() as sandbox:
        demo = demo_console.prepare(
            azurite, sandbox, folder, profiles=30_000, suffix=f"-{secrets.token_hex(3)}"
        )
        for name in ("KEY_VAULT_URL", "EXPORT_STORAGE", "WEBSITE_AUTH_ENABLED", *HOSTED_MARKERS):
            patch.delenv(name, raising=False)
        # Local mode as the platform's header only: the browser says who it is, per test.
        env = {**demo.env, "LOCAL_PRINCIPAL": "header", "UPLOAD_BATCH_SIZE": "2000"}
        for name, value in env.items():
            patch.setenv(name, value)
        rt = runtime.build(Settings.from_env())
        runtime.install(rt)
        demo_console.run_once(env)
        with LocalHost(env["AzureWebJobsStorage"], env["JOBS_QUEUE"]) as host:
            yield Site(url=host.url, sandbox=sandbox, demo=demo, rt=rt)
        rt.http.close()
        runtime.install(None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("no chromium on PATH: apt-get install -y chromium chromium-driver")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class Tab:
    page: Any
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # expected refusals, e.g. "status of 412"

    def open(self, site: Site, fragment: str) -> Any:
        self.page.goto("about:blank")  # a fresh load, even of the page already open
        self.page.goto(f"{site.url}/api/console/{fragment}")
        self.page.wait_for_function("(f) => document.querySelector('main').dataset.ready === f",
                                    arg=fragment)  # fmt: skip
        return self.page


@pytest.fixture
def tab(browser: Any) -> Iterator[Callable[[str], Tab]]:
    """``tab(role)``: a fresh browser context signed in as that role."""
    opened: list[tuple[Any, Tab]] = []

    def open_as(role: str, **options: Any) -> Tab:
        context = browser.new_context(
            extra_http_headers=principal(role),
            **{"viewport": {"width": 1360, "height": 900}, **options},
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        state = Tab(page)
        page.on("console", lambda m: m.type == "error" and state.errors.append(m.text))
        page.on("pageerror", lambda e: state.errors.append(f"uncaught: {e}"))
        opened.append((context, state))
        return state

    yield open_as
    for context, state in opened:
        context.close()
        unexpected = [e for e in state.errors if not any(a in e for a in state.allowed)]
        assert not unexpected, f"errors in the browser console: {unexpected}"


def rows_of(page: Any, table: str) -> dict[str, Any]:
    return {
        row.get_attribute("data-export"): row
        for row in page.locator(f"#{table} tbody tr[data-export]").all()
    }


# -- what each role sees -----------------------------------------------------------------


def test_the_exports_page_shows_the_demo_run_and_the_failed_export(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    browser_tab = tab("reader")
    with browser_tab.page.expect_response(lambda r: r.url.endswith("/api/exports")) as answer:
        page = browser_tab.open(site, "#/exports")
    next_check = answer.value.json()["next_check"]  # what the page drew, not a later answer
    rows = rows_of(page, "exports")
    assert set(rows) == {HIGH_VALUE, LAPSED}
    high_value = rows[HIGH_VALUE].inner_text()
    expected = len(site.demo.export.expected)
    assert "succeeded" in high_value
    assert f"{expected:,} / {expected:,} / 0" in high_value  # uploaded / added / removed
    assert "Demo high-value customers" in high_value  # the audience's name, from Snapchat
    assert "READY" in high_value  # the sandbox's targetable_status
    assert "failed" in rows[LAPSED].inner_text()
    assert "failed" in (rows[LAPSED].get_attribute("class") or "")  # failed rows stand out
    assert page.locator("#failed-count").inner_text() == "1 failed"
    assert f"every 15 minutes · next {next_check[11:16]} your time" in high_value  # in words
    assert "last synced" in high_value

    page.select_option("#status-filter", "failed")
    page.wait_for_function(
        "(f) => document.querySelector('main').dataset.ready === f", arg="#/exports?status=failed"
    )
    assert set(rows_of(page, "exports")) == {LAPSED}


@pytest.mark.parametrize("role", ["admin", "operator", "reader"])
def test_each_role_sees_only_the_actions_it_may_take(
    site: Site, tab: Callable[[str], Tab], role: str
) -> None:
    may_run = {"admin": {HIGH_VALUE, LAPSED}, "operator": {HIGH_VALUE}, "reader": set()}[role]
    browser_tab = tab(role)
    page = browser_tab.open(site, "#/exports")
    assert page.locator("text=New export").count() == (0 if role == "reader" else 1)
    for name in (HIGH_VALUE, LAPSED):
        page = browser_tab.open(site, f"#/exports/{name}")
        page.wait_for_selector("#definition")
        allowed = name in may_run
        assert page.locator("#run-now").count() == int(allowed)
        assert page.locator("#dry-run").count() == int(allowed)
        assert page.locator("#save").count() == int(allowed)
        assert page.locator("#field-description").is_disabled() is (not allowed)
    page = browser_tab.open(site, "#/connections")
    page.wait_for_selector("#connections")
    connections = page.locator("#connections tbody tr").count()
    assert page.locator("[data-connect]").count() == (connections if role == "admin" else 0)
    assert page.locator("#add-connection").count() == (1 if role == "admin" else 0)


def test_someone_signed_in_without_a_role_is_told_whom_to_ask(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    page = tab("no role").page
    page.goto(f"{site.url}/api/console/#/exports")
    page.wait_for_function("() => document.querySelector('main').dataset.ready === 'no-role'")
    assert page.locator("h1").inner_text() == "No access yet"
    text = page.locator("main").inner_text()
    assert "Exporter.Reader" in text
    assert NO_ROLE_ID in text  # what to quote when asking
    assert page.locator("#exports").count() == 0
    answer = requests.get(f"{site.url}/api/exports", headers=principal("no role"), timeout=30)
    assert answer.status_code == 403


@pytest.mark.parametrize(
    ("role", "export", "status"),
    [("reader", HIGH_VALUE, 403), ("operator", LAPSED, 403), ("operator", HIGH_VALUE, 202)],
)
def test_the_api_refuses_what_the_page_hides(
    site: Site, tab: Callable[[str], Tab], role: str, export: str, status: int
) -> None:
    """Hiding a button is not the protection: the same call from the page is refused."""
    browser_tab = tab(role)
    browser_tab.allowed.append("status of 403")
    page = browser_tab.open(site, "#/exports")
    answer = page.evaluate(
        """async (name) => {
            const r = await fetch(`/api/exports/${name}/runs`, {method: "POST",
              headers: {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"},
              body: JSON.stringify({dry_run: true})});
            return {status: r.status, body: await r.json()};
        }""",
        export,
    )
    assert answer["status"] == status, answer
    if status == 202:
        wait_for_run(site, export, answer["body"]["run_id"])


def wait_for_run(site: Site, export: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = site.api(f"/exports/{export}/runs/{run_id}")
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end")


# -- runs --------------------------------------------------------------------------------


def test_run_now_shows_live_progress_until_it_succeeds(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    expected = len(site.demo.export.expected)
    # Slow each upload a little, so that the run takes a few seconds and progress shows.
    batches = -(-expected // 2000)
    site.sandbox.inject("slow:0.35", times=batches, path_contains="/users", method="POST")
    page = tab("operator").open(site, f"#/exports/{HIGH_VALUE}")
    before = len(site.api(f"/exports/{HIGH_VALUE}/runs")["runs"])
    page.click("#run-now")
    page.wait_for_selector("#run-progress")
    seen: list[tuple[int, int]] = []  # (rows read, identifiers sent)
    percents: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not page.locator("#notice.ok").count():
        # Both read at once: the page may redraw between two separate reads.
        rows, sent = page.locator("#run-progress").evaluate(
            "bar => [bar.dataset.rowsRead ?? null, bar.dataset.sent ?? null]"
        )
        if rows is not None and sent is not None:
            seen.append((int(rows), int(sent)))
        percents.add(page.locator("#run-percent").inner_text())
        time.sleep(0.1)
    notice = page.locator("#notice").inner_text()
    assert f"Run succeeded: {expected:,} uploaded, {expected:,} added, 0 removed" in notice
    # The snapshot is read first, then sent: the bar moves while the batches go out.
    moving = sorted({sent for _, sent in seen if 0 < sent < expected})
    assert len(moving) >= 2, f"the progress bar did not move: {sorted(set(seen))}"
    assert any(re.search(r"^\d{1,2}% done · about .+ left$", p) for p in percents), percents
    assert seen == sorted(seen), "progress went backwards"
    assert all(rows == site.demo.export.rows for rows, sent in seen if sent), "sent before read"
    runs = site.api(f"/exports/{HIGH_VALUE}/runs")["runs"]
    assert seen[-1][0] <= runs[0]["rows_scanned"] == site.demo.export.rows
    assert len(runs) == before + 1
    assert runs[0]["requested_by"].endswith("(test operator)")
    assert site.sandbox.identifiers("demo-audience-0001") == site.demo.export.expected_hex


def test_a_dry_run_shows_what_would_change_and_sends_nothing(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    expected = len(site.demo.export.expected)
    uploads = len([r for r in site.sandbox.requests() if "/users" in r.path])
    page = tab("admin").open(site, f"#/exports/{HIGH_VALUE}")
    page.click("#dry-run")
    page.wait_for_selector("#notice.ok", timeout=60_000)
    notice = page.locator("#notice").inner_text()
    assert f"Dry run succeeded: would add {expected:,}, would remove 0" in notice
    assert len([r for r in site.sandbox.requests() if "/users" in r.path]) == uploads
    page.click("text=the run's details")
    page.wait_for_selector("#run-facts")
    headers = page.locator("#run-totals th").all_inner_texts()
    assert "Would add" in headers
    assert "Would remove" in headers
    assert "dry run: nothing was sent" in page.locator("#run-facts").inner_text()


def test_a_run_page_shows_counts_by_kind_who_started_it_and_advice(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    failed = site.api(f"/exports/{LAPSED}/runs")["runs"][-1]  # the oldest: scripts/console's
    page = tab("reader").open(site, f"#/exports/{LAPSED}/runs/{failed['run_id']}")
    facts = page.locator("#run-facts").inner_text()
    assert "scripts/console" in facts
    assert "failed" in facts
    assert "no column named 'EMail'" in page.locator("#run-error").inner_text()
    advice = page.locator("#run-advice").inner_text()
    assert "fix columns.email" in advice
    assert "`" not in advice  # text, not Markdown
    assert page.locator("#by-kind tbody tr").first.inner_text().startswith("EMAIL_SHA256")

    run = site.api(f"/exports/{HIGH_VALUE}/runs")["runs"][-1]
    page = tab("reader").open(site, f"#/exports/{HIGH_VALUE}/runs/{run['run_id']}")
    cells = page.locator("#by-kind tbody tr").first.locator("td").all_inner_texts()
    counts = run["by_type"]["EMAIL_SHA256"]
    assert cells[0] == "EMAIL_SHA256"
    assert cells[1:6] == [f"{counts[k]:,}" for k in ("rows", "empty", "invalid", "prehashed",
                                                    "duplicates")]  # fmt: skip


def test_the_chart_draws_every_finished_run(site: Site, tab: Callable[[str], Tab]) -> None:
    runs = site.api(f"/exports/{HIGH_VALUE}/runs?limit=50")["runs"]
    finished = [r for r in runs if r["finished_at"]]
    page = tab("reader").open(site, f"#/exports/{HIGH_VALUE}")
    chart = page.locator("#run-chart")
    assert chart.get_attribute("data-runs") == str(len(finished))
    groups = chart.locator("g.run")
    assert groups.count() == len(finished)
    drawn = [g.get_attribute("data-run") for g in groups.all()]
    assert drawn == [r["run_id"] for r in reversed(finished)]  # oldest on the left
    tallest = max(r["uploaded"] for r in finished)
    for group, run in zip(groups.all(), reversed(finished), strict=True):
        height = float(group.locator("rect.s-uploaded").get_attribute("height") or 0)
        assert height == pytest.approx(run["uploaded"] / tallest * 188, abs=0.5)
    assert chart.locator("polyline.duration").count() == 1
    assert page.locator("#runs tbody tr").count() == len(runs)


# -- editing -----------------------------------------------------------------------------


def test_a_bad_field_is_shown_next_to_it_and_nothing_is_saved(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    before = site.api(f"/exports/{HIGH_VALUE}")
    browser_tab = tab("admin")
    browser_tab.allowed.append("status of 400")
    page = browser_tab.open(site, f"#/exports/{HIGH_VALUE}")
    page.fill("#field-default_country_code", "abc")
    page.fill("#field-max_removal_percent", "150")
    page.uncheck("#field-data_transfer_acknowledged")
    page.click("#save")
    page.wait_for_selector("#field-default_country_code[aria-invalid=true]")
    assert "1 to 3 digits" in page.locator("#field-default_country_code-problem").inner_text()
    assert "0 to 100" in page.locator("#field-max_removal_percent-problem").inner_text()
    assert "must be true" in page.locator("#field-data_transfer_acknowledged-problem").inner_text()
    assert page.locator("#field-description[aria-invalid]").count() == 0
    assert "fix the fields marked below" in page.locator("#form-problems").inner_text()
    after = site.api(f"/exports/{HIGH_VALUE}")
    assert after["version"] == before["version"]
    assert after["definition"] == before["definition"]


def test_a_stale_edit_is_refused_with_a_clear_message(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    browser_tab = tab("admin")
    browser_tab.allowed.append("status of 412")
    page = browser_tab.open(site, f"#/exports/{HIGH_VALUE}")
    stored = site.rt.definition_store.get("export", HIGH_VALUE)
    assert stored is not None
    changed = {**stored.document, "description": "changed elsewhere meanwhile"}
    definition_changes.put(site.rt, "export", HIGH_VALUE, changed, etag=stored.etag, by="other")
    page.fill("#field-description", "my edit")
    page.click("#save")
    page.wait_for_selector("#form-problems:has-text('someone changed this export')")
    assert site.api(f"/exports/{HIGH_VALUE}")["definition"]["description"] == (
        "changed elsewhere meanwhile"
    )

    page = browser_tab.open(site, f"#/exports/{HIGH_VALUE}")  # reloaded: saving works again
    page.fill("#field-description", "my edit, on the current version")
    page.click("#save")
    page.wait_for_selector("#notice.ok:has-text('Saved')")
    assert site.api(f"/exports/{HIGH_VALUE}")["definition"]["description"] == (
        "my edit, on the current version"
    )


def test_the_main_actions_work_from_the_keyboard(site: Site, tab: Callable[[str], Tab]) -> None:
    page = tab("admin").open(site, "#/exports")

    def tab_to(matches: Callable[[dict[str, str]], bool], limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            focused = page.evaluate(
                "() => ({tag: document.activeElement.tagName, "
                "text: document.activeElement.textContent.trim(), id: document.activeElement.id})"
            )
            if matches(focused):
                return
        raise AssertionError("never reached by Tab")

    tab_to(lambda f: f["tag"] == "A" and f["text"] == HIGH_VALUE)
    page.keyboard.press("Enter")
    page.wait_for_selector("#run-now")
    tab_to(lambda f: f["id"] == "dry-run")
    page.keyboard.press("Enter")
    page.wait_for_selector("#notice.ok:has-text('Dry run succeeded')", timeout=60_000)
    tab_to(lambda f: f["id"] == "field-description")
    page.keyboard.type(" (edited with the keyboard)")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector("#notice.ok:has-text('Saved')")
    assert site.api(f"/exports/{HIGH_VALUE}")["definition"]["description"].endswith(
        "(edited with the keyboard)"
    )


# -- connections -------------------------------------------------------------------------


def test_connect_snapchat_stores_a_new_refresh_token_without_showing_it(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    secret = "snapchat-demo-refresh-token"
    site.rt.secrets.set(secret, "revoked-refresh-token-0000")  # as if it no longer worked
    page = tab("admin").open(site, "#/connections")
    page.click("[data-connect='demo']")  # to Snapchat's consent page, and back
    page.wait_for_selector("#notice.ok:has-text('Connected')")
    client_id = demo_console.CLIENTS["demo"][0]
    assert site.rt.secrets.get(secret) == site.sandbox.current_refresh_token(client_id)
    row = page.locator("tr[data-connection='demo']").inner_text()
    assert "s ago" in row  # the token was refreshed just now
    content = page.content()
    for value in (*demo_console.CLIENTS["demo"][1:], site.rt.secrets.get(secret)):
        assert value not in content


def connect_outcome(page: Any) -> str:
    page.wait_for_selector("#notice.ok, #notice.error")
    text: str = page.locator("#notice").inner_text()
    return text


def test_a_connect_callback_with_an_unknown_state_stores_nothing(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    secret = "snapchat-brand-b-refresh-token"
    before = site.rt.secrets.get(secret)
    page = tab("admin").page
    page.goto(f"{site.url}/api/oauth/snapchat/callback?code=forged-code&state=forged-state")
    assert "Connect did not finish: this Connect is unknown" in connect_outcome(page)
    assert site.rt.secrets.get(secret) == before


def start_connect(site: Site, name: str) -> tuple[str, str]:
    """Start a Connect as the admin; the authorize URL and the state in it."""
    started = requests.post(
        f"{site.url}/api/connections/{name}/connect",
        headers={**principal("admin"), "X-Requested-With": "XMLHttpRequest"},
        timeout=30,
    )
    assert started.status_code == 200, started.text
    url = started.json()["authorize_url"]
    state = parse_qs(urlsplit(url).query)["state"][0]
    return url, state


def test_only_who_started_a_connect_may_finish_it_and_only_once(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    url, state = start_connect(site, "brand-b")
    other = client_principal_header("00000000-0000-4000-8000-0000000000ff", "other", ROLES["admin"])
    answer = requests.get(
        f"{site.url}/api/oauth/snapchat/callback",
        params={"code": "any", "state": state},
        headers={"X-MS-CLIENT-PRINCIPAL": other, **local_token()},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("connect=failed&reason=someone_else")

    page = tab("admin").page  # the starter, still in time: the flow was left to them
    page.goto(url)  # the sandbox approves at once and sends the browser back
    assert "Connected: the refresh token of brand-b is stored" in connect_outcome(page)
    assert "code=" not in page.url  # the code never stays in the address bar

    again = requests.get(
        f"{site.url}/api/oauth/snapchat/callback",
        params={"code": "any", "state": state},
        headers=principal("admin"),
        allow_redirects=False,
        timeout=30,
    )
    assert again.headers["Location"].endswith("connect=failed&reason=unknown")


def test_a_connect_that_took_too_long_or_was_refused_stores_nothing(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    secret = "snapchat-brand-b-refresh-token"
    before = site.rt.secrets.get(secret)
    _, state = start_connect(site, "brand-b")
    flows = site.rt.runs.table()
    [entity] = [e for e in flows.query_entities("PartitionKey eq '~connect'") if not e.get("taken")]
    flows.update_entity({**entity, "expires_at": "2020-01-01T00:00:00+00:00"})
    page = tab("admin").page
    page.goto(f"{site.url}/api/oauth/snapchat/callback?code=late&state={state}")
    assert "took longer than 10 minutes" in connect_outcome(page)

    _, state = start_connect(site, "brand-b")
    page.goto(f"{site.url}/api/oauth/snapchat/callback?error=access_denied&state={state}")
    assert "Snapchat refused the authorization" in connect_outcome(page)
    assert site.rt.secrets.get(secret) == before


def test_a_link_cannot_make_the_connections_page_say_what_it_likes(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    page = tab("admin").open(
        site, "#/connections?connect=ok&connection=Your%20account%20is%20hacked"
    )
    assert page.locator("#notice").inner_text() == ""
    page = tab("admin").open(site, "#/connections?connect=failed&reason=Call%20555-0100")
    notice = page.locator("#notice").inner_text()
    assert "555" not in notice
    assert "something went wrong" in notice


# -- the page's own protections ----------------------------------------------------------


def test_pages_carry_a_strict_content_security_policy(site: Site) -> None:
    answer = requests.get(f"{site.url}/api/console/", headers=principal("reader"), timeout=30)
    assert answer.status_code == 200
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in policy
    for name in ("index.html", "console.js", "console.css"):
        text = (ROOT / "console" / name).read_text("utf-8")
        assert "://" not in re.sub(r'"http://www.w3.org/2000/svg"', "", text), name  # no CDN
    html = (ROOT / "console" / "index.html").read_text("utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert not re.search(r"\sstyle=", html), "inline style"


@pytest.mark.parametrize(
    "path", ["../host.json", "%2e%2e/host.json", "..%2fhost.json", "nothing.js", "console.py"]
)
def test_only_the_console_files_are_served(site: Site, path: str) -> None:
    answer = requests.get(f"{site.url}/api/console/{path}", headers=principal("reader"), timeout=30)
    assert answer.status_code == 404
    assert "extensionBundle" not in answer.text


def test_the_console_is_refused_without_a_signed_in_principal(site: Site) -> None:
    answer = requests.get(f"{site.url}/api/console/", timeout=30)
    assert answer.status_code == 401
    assert "<script" not in answer.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Cookie": "AppServiceAuthSession=abc"},  # a browser's cookie, without the header
        {"Origin": "null"},
    ],
)
def test_a_state_changing_call_from_another_site_is_refused(
    site: Site, headers: dict[str, str]
) -> None:
    before = len(site.api(f"/exports/{HIGH_VALUE}/runs")["runs"])
    answer = requests.post(
        f"{site.url}/api/exports/{HIGH_VALUE}/runs",
        headers={**principal("admin"), **headers},
        json={"dry_run": True},
        timeout=30,
    )
    assert answer.status_code == 403
    assert answer.json()["error"] == "cross_site_request"
    assert len(site.api(f"/exports/{HIGH_VALUE}/runs")["runs"]) == before


def test_a_page_on_another_origin_cannot_start_a_run(site: Site, tab: Callable[[str], Tab]) -> None:
    """A real cross-site forgery: a page on another origin (the sandbox's port) posts to
    the app with the browser's credentials; the browser says where it comes from."""
    before = len(site.api(f"/exports/{HIGH_VALUE}/runs")["runs"])
    browser_tab = tab("admin")
    browser_tab.allowed += ["status of 403", "status of 404"]  # the refusal; the page itself
    page = browser_tab.page
    page.goto(f"{site.sandbox.base_url}/_sandbox/state")
    target = f"{site.url}/api/exports/{HIGH_VALUE}/runs"
    with page.expect_response(lambda r: r.url == target) as answer:
        page.evaluate(
            """async (url) => { await fetch(url, {method: "POST", mode: "no-cors",
                 headers: {"Content-Type": "text/plain"}, body: "{}"}); }""",
            target,
        )
    assert answer.value.status == 403  # the request reached the app, which refused it
    assert len(site.api(f"/exports/{HIGH_VALUE}/runs")["runs"]) == before


def test_no_identifier_hash_or_secret_reaches_a_page(site: Site, tab: Callable[[str], Tab]) -> None:
    hashes = sorted(site.demo.export.expected_hex)[:200]
    secret_values = [v for client in demo_console.CLIENTS.values() for v in client[1:]]
    browser_tab = tab("admin")
    bodies: list[str] = []
    browser_tab.page.on(
        "response", lambda r: bodies.append(r.text()) if "/api/" in r.url and r.ok else None
    )
    runs = site.api(f"/exports/{HIGH_VALUE}/runs")["runs"]
    lapsed = site.api(f"/exports/{LAPSED}/runs")["runs"]
    for fragment in ("#/exports", f"#/exports/{HIGH_VALUE}", "#/connections", "#/new-export",
                     f"#/exports/{HIGH_VALUE}/runs/{runs[0]['run_id']}",
                     f"#/exports/{LAPSED}/runs/{lapsed[-1]['run_id']}"):  # fmt: skip
        page = browser_tab.open(site, fragment)
        bodies.append(page.content())
    seen = "\n".join(bodies)
    assert len(seen) > 10_000
    stored = [site.rt.secrets.get(f"snapchat-{c}-refresh-token") for c in demo_console.CLIENTS]
    for value in (*hashes, *(h.upper() for h in hashes[:20]), *secret_values, *stored):
        assert value not in seen
    assert not re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", seen)  # no email address at all


# -- issue 24: choosing by name, reading the console --------------------------------------


def ready(page: Any, fragment: str) -> None:
    page.wait_for_function(
        "(f) => document.querySelector('main').dataset.ready === f", arg=fragment
    )


def test_after_a_run_ends_the_chart_is_one_figure_with_one_legend(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    page = tab("admin").open(site, f"#/exports/{HIGH_VALUE}")
    page.click("#dry-run")
    page.wait_for_selector("#notice.ok", timeout=60_000)
    page.wait_for_function("() => !document.querySelector('#dry-run').disabled")
    assert page.locator("#history figure").count() == 1
    assert page.locator("figure figure").count() == 0
    assert page.locator("#history .legend").count() == 1
    assert page.locator("#run-chart").count() == 1
    assert page.locator("#health-trend").count() == 1  # the demo's audience checks: drawn once
    assert page.locator("figure").count() == 2


def test_a_reader_opening_new_export_is_told_so(site: Site, tab: Callable[[str], Tab]) -> None:
    page = tab("reader").open(site, "#/new-export")
    assert page.locator("h1").inner_text() == "New export"
    assert "ask an administrator" in page.locator("#read-only").inner_text()
    assert page.locator("#exports").count() == 0


def test_people_are_shown_by_name_with_the_id_on_hover(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    answer = requests.post(
        f"{site.url}/api/exports/{HIGH_VALUE}/runs",
        headers={**principal("operator"), "X-Requested-With": "XMLHttpRequest"},
        json={"dry_run": True},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    run = wait_for_run(site, HIGH_VALUE, answer.json()["run_id"])
    operator = LOCAL_PRINCIPALS["operator"]
    page = tab("reader").open(site, f"#/exports/{HIGH_VALUE}")
    who = page.locator(f"#runs tr[data-run='{run['run_id']}'] .person")
    assert who.inner_text() == "test operator"
    assert who.get_attribute("title") == operator
    assert operator not in page.locator("#runs").inner_text()
    page = tab("reader").open(site, f"#/exports/{HIGH_VALUE}/runs/{run['run_id']}")
    facts = page.locator("#run-facts")
    assert "test operator" in facts.inner_text()
    assert operator not in facts.inner_text()
    assert facts.locator(f".person[title='{operator}']").count() == 1
    page = tab("reader").open(site, "#/connections")
    allowed = page.locator("tr[data-connection='demo'] td").nth(1)
    assert allowed.inner_text() == "Local operator"  # the name the admin chose, stored with the ID
    assert allowed.locator(".person").get_attribute("title") == operator


def test_every_time_follows_the_utc_or_local_switch(site: Site, tab: Callable[[str], Tab]) -> None:
    run = site.api(f"/exports/{HIGH_VALUE}/runs")["runs"][-1]
    queued = datetime.fromisoformat(run["queued_at"])
    utc = queued.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    local = queued.astimezone(timezone(timedelta(hours=5, minutes=30))).strftime("%Y-%m-%d %H:%M")
    browser_tab = tab("reader", timezone_id="Asia/Kolkata")
    page = browser_tab.open(site, f"#/exports/{HIGH_VALUE}/runs/{run['run_id']}")
    facts = page.locator("#run-facts")
    assert f"{local} your time" in facts.inner_text()
    assert utc in (facts.locator("time").first.get_attribute("title") or "")
    page.click("#zone")
    ready(page, f"#/exports/{HIGH_VALUE}/runs/{run['run_id']}")
    page.wait_for_function("() => document.querySelector('#zone').textContent === 'Times: UTC'")
    assert f"{utc} UTC" in page.locator("#run-facts").inner_text()
    page = browser_tab.open(site, "#/exports")  # kept: every page, after a reload too
    assert "your time" not in page.locator("#exports").inner_text()
    assert " UTC" in page.locator("#exports").inner_text()
    page.click("#zone")
    ready(page, "#/exports")
    assert "your time" in page.locator("#exports").inner_text()


def test_history_pages_past_fifty_runs_and_filters(site: Site, tab: Callable[[str], Tab]) -> None:
    name = "paged-history"
    stored = site.rt.definition_store.get("export", HIGH_VALUE)
    assert stored is not None
    definition_changes.put(
        site.rt,
        "export",
        name,
        {**stored.document, "name": name, "enabled": False},
        etag=None,
        by="test",
    )
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(60):
        at = start + timedelta(minutes=n)
        site.rt.runs.save(RunRecord(
            run_id=new_run_id(at), export=name, trigger="timer" if n % 4 == 0 else "http",
            snapshot="2026/11/01/0000", status="failed" if n % 5 == 0 else "succeeded",
            dry_run=n % 3 == 0, queued_at=at.isoformat(), started_at=at.isoformat(),
            finished_at=(at + timedelta(seconds=20)).isoformat(),
        ))  # fmt: skip
    page = tab("reader").open(site, f"#/exports/{name}")
    assert page.locator("#runs tbody tr").count() == 50
    page.click("#more-runs")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 60")
    assert page.locator("#more-runs").is_hidden()
    assert page.locator("#run-chart g.run").count() == 60
    assert page.locator("#run-chart g.run.dry").count() == 20  # drawn differently
    xs = [float(g.get_attribute("data-x") or 0) for g in page.locator("#run-chart g.run").all()]
    assert xs == sorted(xs)
    assert xs[0] < xs[-1]
    page.select_option("#run-filter-status", "failed")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 12")
    page.select_option("#run-filter-status", "")
    page.select_option("#run-filter-trigger", "timer")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 15")
    page.fill("#run-search", "failed")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 3")
    page.select_option("#run-sort", "oldest")
    first = page.locator("#runs tbody tr").first.get_attribute("data-run") or ""
    assert first[:19] == new_run_id(start)[:19]  # run 0: by the timer, failed


def test_at_390_pixels_nothing_scrolls_sideways(site: Site, tab: Callable[[str], Tab]) -> None:
    browser_tab = tab("admin", viewport={"width": 390, "height": 844})
    run = site.api(f"/exports/{LAPSED}/runs")["runs"][-1]
    for fragment in ("#/exports", f"#/exports/{HIGH_VALUE}", f"#/exports/{LAPSED}/runs/{run['run_id']}",
                     "#/connections", "#/new-export"):  # fmt: skip
        page = browser_tab.open(site, fragment)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 390, f"{fragment} is {wide} px wide"
    page = browser_tab.open(site, f"#/exports/{HIGH_VALUE}")
    label = page.locator("label[for='field-description']").bounding_box()
    field = page.locator("#field-description").bounding_box()
    assert label is not None
    assert field is not None
    assert label["y"] + label["height"] <= field["y"] + 1  # the label above its field
    assert page.locator("#runs").evaluate("t => t.parentElement.scrollWidth > 390")  # own box


def test_an_export_is_made_only_by_picking_segments_and_columns(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    page = tab("operator").open(site, "#/new-export")
    page.wait_for_selector("[data-segment='NewCustomers']")
    page.check("[data-segment='HighValueSegment']")
    page.check("[data-segment='NewCustomers']")
    assert page.locator("#field-columns-email").evaluate("e => e.tagName") == "SELECT"
    assert page.locator("#field-columns-email").input_value() == "EMail"  # pre-selected …
    assert "Suggested: EMail" in page.locator("#field-columns-email-suggestion").inner_text()
    offered = page.locator("#field-columns-email option").all_inner_texts()
    assert "Email_Address" not in offered  # only what every chosen segment has
    page.fill("#field-name", "picked-by-name")
    page.fill("#field-audience_id", "demo-audience-0001")
    page.check("#field-data_transfer_acknowledged")
    page.click("#save")
    ready(page, "#/exports/picked-by-name")
    stored = site.api("/exports/picked-by-name")["definition"]
    paths = {s["path"] for s in stored["sources"]}
    assert paths == {site.demo.export.path, segment_path(*demo_console.NEW_SEGMENT)}
    assert stored["columns"] == {"email": "EMail"}


def test_check_catches_a_wrong_column_before_saving(site: Site, tab: Callable[[str], Tab]) -> None:
    before = {e["name"] for e in site.api("/exports")["exports"]}
    page = tab("operator").open(site, "#/new-export")
    page.wait_for_selector("[data-segment='HighValueSegment']")
    page.check("[data-segment='HighValueSegment']")
    page.select_option("#field-columns-email", "City")
    page.fill("#field-audience_id", "demo-audience-0001")
    page.check("#field-data_transfer_acknowledged")
    page.click("#check")
    row = page.locator("#preview-table tr[data-kind='EMAIL_SHA256']")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "City"
    assert cells[2] == "0"  # no valid address in it
    assert "not an address" in cells[6]
    assert "wrong column" in page.locator("#preview").inner_text()
    assert {e["name"] for e in site.api("/exports")["exports"]} == before  # nothing saved


def test_a_failed_run_is_one_click_from_its_fix_and_retry(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    failed = site.api(f"/exports/{LAPSED}/runs")["runs"][-1]
    page = tab("admin").open(site, f"#/exports/{LAPSED}/runs/{failed['run_id']}")
    assert "Email_Address" in page.locator("#run-columns").inner_text()  # what the snapshot has
    page.click("#advice-fix")
    ready(page, page.evaluate("() => location.hash"))
    # The field is redrawn once the segments are listed: wait for the settled page, in which
    # it is marked and has the focus.
    page.wait_for_function(
        "() => { const e = document.querySelector('#field-columns-email');"
        " return Boolean(e && e.closest('.control')?.classList.contains('highlight')"
        " && document.activeElement === e); }"
    )
    page.wait_for_selector("#field-columns-email option[value='Email_Address']", state="attached")
    page.select_option("#field-columns-email", "Email_Address")
    page.click("#save")
    page.wait_for_selector("#notice.ok:has-text('Saved')")
    page = tab("admin").open(site, f"#/exports/{LAPSED}/runs/{failed['run_id']}")
    page.click("#retry")
    page.wait_for_selector("#notice.ok:has-text('Run succeeded')", timeout=60_000)
    assert site.api(f"/exports/{LAPSED}/runs")["runs"][0]["status"] == "succeeded"


def test_an_admin_adds_a_connection_and_authenticates_with_snapchat(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    person_id = "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    page = tab("admin").open(site, "#/connections")
    page.fill("#conn-name", "brand-c")
    page.fill("#conn-display-name", "Brand C (new agency)")
    page.fill("#conn-people .person-name", "Mae Jemison")
    page.fill("#conn-people .person-id", person_id)
    page.click("#conn-authenticate")
    assert "acknowledgement" in page.locator("#connection-problems").inner_text()
    page.check("#conn-ack")
    page.click("#conn-authenticate")  # saved, then to Snapchat's consent page and back
    assert "Connected: the refresh token of brand-c is stored" in connect_outcome(page)
    row = page.locator("tr[data-connection='brand-c']")
    assert "Brand C (new agency)" in row.inner_text()
    who = row.locator(f".person[title='{person_id}']")
    assert who.inner_text() == "Mae Jemison"
    assert person_id not in row.inner_text()
    client_id = demo_console.CLIENTS["brand-c"][0]
    token = site.rt.secrets.get("snapchat-brand-c-refresh-token")
    assert token == site.sandbox.current_refresh_token(client_id)
    assert token not in page.content()


# -- issue 25: what Snapchat made of the people sent -------------------------------------


def seed_export(site: Site, name: str, **fields: Any) -> None:
    """A disabled copy of the demo export, whose run records a test writes itself."""
    stored = site.rt.definition_store.get("export", HIGH_VALUE)
    assert stored is not None
    document = {**stored.document, "name": name, "enabled": False, "mode": "mirror", **fields}
    definition_changes.put(site.rt, "export", name, document, etag=None, by="test")


def checked_run(name: str, at: datetime, matched: int, warnings: list[dict[str, str]]) -> RunRecord:
    """A succeeded mirror run of 1,500 managed identifiers, with the audience check Snapchat's
    figures gave it (the run record's ``audience_check``, written through the RunLog)."""
    return RunRecord(
        run_id=new_run_id(at), export=name, trigger="timer", snapshot="2026/11/02/0000",
        status="succeeded", mode="mirror", queued_at=at.isoformat(), started_at=at.isoformat(),
        finished_at=(at + timedelta(seconds=30)).isoformat(),
        progress=Progress(rows_read=1_500, uploaded=1_500, added=1_500,
                          by_type={"EMAIL_SHA256": {"rows": 1_500, "added": 1_500}}),
        audience_check={
            "checks": 1, "next_check_at": None, "read_at": (at + timedelta(minutes=5)).isoformat(),
            "upload_status": "COMPLETE", "targetable_status": "TOO_FEW_USERS",
            "matched_estimate": matched, "match_rate": round(matched / 1_500, 4),
            "match_rate_basis": "managed", "warnings": warnings,
        },
    )  # fmt: skip


WARNINGS = [
    {"code": "too_few_users",
     "message": "Snapchat matched about 465 users; about 535 more are needed to reach ~1,000."},
    {"code": "match_rate_dropped", "message": "The match rate fell to 31.0% from 62.0%."},
]  # fmt: skip


def test_the_export_page_shows_the_matched_estimate_trend_and_warnings(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    name = "audience-health"
    seed_export(site, name)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    matched = [930, 915, 945, 930, 465]  # 62 % of 1,500, then a drop to 31 %
    for n, count in enumerate(matched):
        last = n == len(matched) - 1
        site.rt.runs.save(
            checked_run(name, start + timedelta(days=n), count, WARNINGS if last else [])
        )
    answer = site.api(f"/exports/{name}")["audience_health"]
    assert answer["matched_estimate"] == 465
    page = tab("reader").open(site, f"#/exports/{name}")
    assert page.locator("#matched-estimate").inner_text() == "465"
    rate = page.locator("#match-rate")
    assert rate.inner_text() == "31.0%"
    explained = rate.get_attribute("title") or ""
    assert "mirror audience holds" in explained  # what it is (the basis), and what it is not:
    assert "not which ones" in explained
    chart = page.locator("#health-chart")
    assert chart.get_attribute("data-points") == "5"
    xs = [float(g.get_attribute("data-x") or 0) for g in chart.locator("g.point").all()]
    assert xs == sorted(xs)
    assert xs[0] < xs[-1]  # on a time axis, oldest left
    heights = [float(r.get_attribute("height") or 0) for r in chart.locator("rect.s-matched").all()]
    assert heights[-1] == pytest.approx(heights[0] * 465 / 930, abs=0.5)  # to scale
    assert chart.locator("polyline.rate").count() == 1
    banners = {b.get_attribute("data-warning"): b.inner_text()
               for b in page.locator("#warnings .banner").all()}  # fmt: skip
    assert set(banners) == {"too_few_users", "match_rate_dropped"}
    assert "535 more" in banners["too_few_users"]  # the distance to the threshold
    assert banners["too_few_users"].startswith("Too few users to target")

    phone = tab("reader", viewport={"width": 390, "height": 844}).open(site, f"#/exports/{name}")
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390


def test_the_run_page_shows_coverage_by_reason_and_the_audience_check(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    name = "coverage-by-reason"
    seed_export(site, name)
    at = datetime(2026, 11, 3, tzinfo=UTC)
    record = checked_run(name, at, 465, WARNINGS[:1])
    record.progress.by_type = {
        "EMAIL_SHA256": {"rows": 12, "empty": 2, "invalid": 4, "prehashed": 1, "duplicates": 2,
                         "added": 3, "reasons": {"not_an_address": 3, "numeric_domain": 1}},
        "PHONE_SHA256": {"rows": 7, "empty": 1, "invalid": 3, "prehashed": 0, "duplicates": 1,
                         "added": 2, "reasons": {"no_country_code": 2, "too_short": 1}},
    }  # type: ignore[dict-item]  # fmt: skip
    site.rt.runs.save(record)
    page = tab("reader").open(site, f"#/exports/{name}/runs/{record.run_id}")
    table = page.locator("#coverage")
    heads = table.locator("thead th").all_inner_texts()
    assert heads == ["Identifier kind", "Rows", "Empty", "Invalid: no country code",
                     "Invalid: not an address", "Invalid: numeric domain", "Invalid: too short",
                     "Already hashed", "Repeated", "Sent"]  # fmt: skip
    email = table.locator("tr[data-kind='EMAIL_SHA256'] td").all_inner_texts()
    phone = table.locator("tr[data-kind='PHONE_SHA256'] td").all_inner_texts()
    assert email == ["EMAIL_SHA256", "12", "2", "0", "3", "1", "0", "1", "2", "3"]
    assert phone == ["PHONE_SHA256", "7", "1", "2", "0", "0", "1", "0", "1", "2"]
    check = page.locator("#audience-check").inner_text()
    for shown in ("COMPLETE", "TOO_FEW_USERS", "465", "none: checks done"):
        assert shown in check
    assert "535 more" in page.locator("#run-warnings [data-warning='too_few_users']").inner_text()

    small = tab("reader", viewport={"width": 390, "height": 844})
    phone_page = small.open(site, f"#/exports/{name}/runs/{record.run_id}")
    assert phone_page.evaluate("() => document.documentElement.scrollWidth") <= 390


def test_the_lookalike_is_shown_and_edited_on_the_export_form(
    site: Site, tab: Callable[[str], Tab]
) -> None:
    name = "lookalike-form"
    lookalike = {"type": "BALANCE", "countries": ["US", "GB"], "name": "High-value lookalike"}
    seed_export(site, name, lookalike=lookalike)
    reader = tab("reader").open(site, f"#/exports/{name}")
    assert reader.locator("#lookalike-type").inner_text() == "BALANCE"
    assert reader.locator("#lookalike-countries").inner_text() == "US, GB"
    assert reader.locator("#lookalike-status [data-status]").get_attribute("data-status") == (
        "waiting_for_seed"  # no run yet, so no targetable seed
    )
    assert reader.locator("#field-lookalike-type").is_disabled()

    browser_tab = tab("admin")
    browser_tab.allowed.append("status of 400")
    page = browser_tab.open(site, f"#/exports/{name}")
    assert page.locator("#field-lookalike-countries").input_value() == "US, GB"
    page.fill("#field-lookalike-countries", "us, xx9")
    page.click("#save")
    page.wait_for_selector("#field-lookalike-countries[aria-invalid=true]")
    assert "two-letter" in page.locator("#field-lookalike-countries-problem").inner_text()
    page.select_option("#field-lookalike-type", "REACH")
    page.fill("#field-lookalike-countries", "us, fr")
    page.click("#save")
    page.wait_for_selector("#notice.ok")
    stored = site.api(f"/exports/{name}")["definition"]["lookalike"]
    assert stored == {**lookalike, "type": "REACH", "countries": ["US", "FR"]}
    page.select_option("#field-lookalike-type", "")  # no lookalike: the field goes
    page.click("#save")
    page.wait_for_function("() => document.querySelector('#notice').textContent.includes('3')")
    assert "lookalike" not in site.api(f"/exports/{name}")["definition"]


# -- the local command -------------------------------------------------------------------


def test_scripts_console_serves_the_demo_with_its_succeeded_run() -> None:
    """``python -m devtools.console`` (what scripts/console runs), on a free port."""
    command = [sys.executable, "-m", "devtools.console", "--port", "0", "--profiles", "3000",
               "--as", "reader"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        url = address = ""
        assert process.stdout is not None
        for line in process.stdout:
            if found := re.search(r"(http://127\.0\.0\.1:\d+)/api/console/\?local_token=\S+", line):
                url, address = found.group(1), found.group(0)
                break
        assert url, "scripts/console printed no URL with the local token"
        # Without the token, local mode trusts no one; the printed address sets its cookie.
        assert requests.get(f"{url}/api/me", timeout=30).status_code == 401
        browser = requests.Session()
        page = browser.get(address, timeout=30)
        assert page.status_code == 200
        assert "console.js" in page.text
        assert "local_token" not in page.url  # sent on to the address without it
        me = browser.get(f"{url}/api/me", timeout=30).json()
        assert me["roles"] == ["Exporter.Reader"]
        exports = {e["name"]: e for e in browser.get(f"{url}/api/exports", timeout=30).json()[
            "exports"]}  # fmt: skip
        assert exports[HIGH_VALUE]["last_run"]["status"] == "succeeded"
        assert exports[LAPSED]["last_run"]["status"] == "failed"
    finally:
        process.terminate()  # as SIGTERM: it stops what it started (Azurite, the sandbox)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
