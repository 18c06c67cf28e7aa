"""The README's screenshots of the console, made from the running console so that they stay
true: ``scripts/screenshots`` starts what ``scripts/console`` starts, opens each page in
headless Chromium (Debian's package, through Playwright) and writes ``docs/console/*.png``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from devtools.console import EXPORTS, check_audiences, running
from shared import runtime
from shared.adapters import local_token
from shared.entry.signin import LOCAL_TOKEN_QUERY

OUT = Path(__file__).resolve().parent.parent / "docs" / "console"
WIDTH = 1280


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("scripts/screenshots: apt-get install -y chromium chromium-driver", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with running("admin") as started, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 800})
        base = f"{started.host.url}/api/console/"
        token = local_token.read_or_create(runtime.current().settings.local_token_file)
        page.goto(f"{base}?{LOCAL_TOKEN_QUERY}={token}")  # local mode's cookie, as a person would
        high_value, lapsed = EXPORTS

        def shoot(name: str, fragment: str, settled: str = "") -> None:
            page.goto("about:blank")
            page.goto(base + fragment)
            page.wait_for_function(
                "(f) => document.querySelector('main').dataset.ready === f", arg=fragment
            )
            if settled:  # a part the page fills in after it is drawn
                page.wait_for_selector(settled)
            if name:
                page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
                print(f"wrote {args.out / name}.png")

        shoot("exports", "#/exports")
        shoot("connections", "#/connections")
        failed = _newest_run(page, base, lapsed)
        shoot("run", f"#/exports/{lapsed}/runs/{failed}")
        # A run in progress: each upload slowed a little, so the bar is caught part way.
        started.sandbox.inject("slow:0.4", times=10, path_contains="/users", method="POST")
        shoot("", f"#/exports/{high_value}")
        page.click("#run-now")
        page.wait_for_function(
            "() => Number(document.querySelector('#run-progress')?.dataset.rowsRead) > 20000"
        )
        page.screenshot(path=str(args.out / "progress.png"))
        print(f"wrote {args.out / 'progress.png'}")
        page.wait_for_selector("#notice.ok", timeout=60_000)
        check_audiences(runtime.current())  # the new run's audience check, as the queue would
        shoot("export", f"#/exports/{high_value}", settled="#segments-list fieldset")
        shoot("", f"#/exports/{high_value}")  # the top: matched, match rate, trend, lookalike
        page.locator("#audience-health").scroll_into_view_if_needed()
        page.screenshot(path=str(args.out / "health.png"))
        print(f"wrote {args.out / 'health.png'}")
        succeeded = _newest_run(page, base, high_value)
        shoot("", f"#/exports/{high_value}/runs/{succeeded}")  # the audience check, coverage
        page.locator("#coverage").scroll_into_view_if_needed()
        page.screenshot(path=str(args.out / "coverage.png"))
        print(f"wrote {args.out / 'coverage.png'}")
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing scrolls sideways
        shoot("", f"#/exports/{lapsed}/runs/{failed}")
        page.locator("#run-error").scroll_into_view_if_needed()  # the error, its advice, Retry
        page.screenshot(path=str(args.out / "phone.png"))
        print(f"wrote {args.out / 'phone.png'}")
        browser.close()
    return 0


def _newest_run(page: Page, base: str, export: str) -> str:
    answer = page.request.get(base.replace("/console/", f"/exports/{export}/runs?limit=1"))
    run_id: str = answer.json()["runs"][0]["run_id"]
    return run_id


if __name__ == "__main__":
    sys.exit(main())
