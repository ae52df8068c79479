"""A PNG screenshot of a run's report.html in headless Chromium (Debian's, not a download).

Usage:
    .venv/bin/python bench/report_screenshot.py RUN_DIR [--png docs/report.png] [--full]

Writes RUN_DIR/report.html first if it is missing. Needs ``pip install playwright`` (the
package only: never ``playwright install``) and ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from handgrad.train.report_page import REPORT, write_report

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def screenshot(page_path: Path, png: Path, *, full: bool = False, width: int = 1280) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1600})
            page.goto(page_path.resolve().as_uri())
            page.wait_for_selector("#colorful-dimension .main-svg, #curves-chart .main-svg")
            page.screenshot(path=str(png), full_page=full)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--png", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--full", action="store_true", help="the whole page, not the top")
    args = parser.parse_args()
    page = args.run / REPORT
    if not page.exists():
        write_report(args.run)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    screenshot(page, args.png, full=args.full)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
