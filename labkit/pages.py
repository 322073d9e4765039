"""The series' HTML pages as a person opens them: from disk, offline, in headless Chromium.

    python -m labkit.pages runs/series          # every page of the folder
    python -m labkit.pages runs/series/05_agents.html --shots runs/pages

Each page is opened with every request that would leave this machine refused, and checked for what
`labkit.export` promises: every formula typeset (MathML that takes up room, no `$...$` left as
text), every plotly figure drawn (with its points, lines, bars or image), and no console error,
uncaught exception or failed request. One line per page; the exit status is 1 when a page fails.

Needs Debian's `chromium` (apt-get install chromium) and Playwright's Python package (the test
extra: pip install -e ".[test]"); Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOCAL = ("file://", "data:", "blob:", "about:")  # what an exported page may load
# root in CI: no sandbox; no GPU (software GL costs CPU and nothing here needs WebGL)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
DRAW_SECONDS = 10.0  # how long a figure may take to draw: plotly needs well under a second
# $...$ left as text; a dollar sign before a figure is a price ("$435.31 ... $200 limit")
RAW_LATEX = r"/\$\$[^$]{1,200}\$\$|\$[^$\n\d][^$\n]{0,79}\$/g"
COUNT_RAW_LATEX = f"() => (document.body.innerText.match({RAW_LATEX}) || []).length"
# A figure is drawn when plotly put marks in it: points, lines, bars or a heatmap's image (its SVG
# alone is drawn for an empty figure too, which is how a blank live curve looked).
MARKS = ".point, .js-line, .bars path, .hm"
TYPESET = """() => [...document.querySelectorAll('math')]
    .filter(m => m.getBoundingClientRect().height > 5).length"""


@dataclass
class PageCheck:
    """What one page showed: formulas typeset and left raw, figures on it and drawn, errors."""

    page: str
    formulas: int = 0
    raw_latex: int = 0
    figures: int = 0
    drawn: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.raw_latex == 0 and self.drawn == self.figures and not self.errors

    def __str__(self) -> str:
        verdict = "ok  " if self.ok else "FAIL"
        line = (
            f"{verdict} {self.page}: {self.formulas} formulas typeset, {self.raw_latex} raw, "
            f"{self.drawn}/{self.figures} figures drawn"
        )
        return line + "".join(f"\n       {e}" for e in self.errors)


def find_chromium() -> str:
    """The path of Debian's chromium.

    Raises:
        RuntimeError: chromium or Playwright is missing (the message says what to install).
    """
    chromium = shutil.which("chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        chromium = None
    if chromium is None:
        raise RuntimeError(
            "checking pages needs Debian's chromium and Playwright: apt-get install chromium; "
            "pip install -e '.[test]'"
        )
    return chromium


def check_page(
    browser, path: Path, shots: Path | None = None, draw_seconds: float = DRAW_SECONDS
) -> PageCheck:
    """Open `path` in a new offline context of `browser` (a Playwright Browser) and check it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    check = PageCheck(path.name)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(lambda url: not url.startswith(LOCAL), lambda route: route.abort())
    page = context.new_page()

    def on_console(message) -> None:
        if message.type == "error":
            check.errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: check.errors.append(f"exception: {e}"))
    page.on("requestfailed", lambda r: check.errors.append(f"request failed: {r.url}"))
    try:
        page.goto(path.resolve().as_uri())
        figures = page.locator(".plotly-graph-div")
        check.figures = figures.count()
        for i in range(check.figures):
            try:
                figures.nth(i).locator(MARKS).first.wait_for(
                    state="attached", timeout=draw_seconds * 1000
                )
                check.drawn += 1
            except PlaywrightTimeout:  # this figure was not drawn
                check.errors.append(f"figure {i + 1} of {check.figures} not drawn")
        check.formulas = page.evaluate(TYPESET)
        check.raw_latex = page.evaluate(COUNT_RAW_LATEX)
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"{path.stem}.png"))
    finally:
        context.close()
    return check


def check_pages(
    paths: list[Path], shots: Path | None = None, draw_seconds: float = DRAW_SECONDS
) -> list[PageCheck]:
    """Check each page in one headless Chromium; see the module."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            return [check_page(browser, path, shots, draw_seconds) for path in paths]
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.pages", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("paths", nargs="+", type=Path, help="HTML pages, or folders of them")
    parser.add_argument("--shots", type=Path, help="write a screenshot of each page here")
    parser.add_argument(
        "--wait", type=float, default=DRAW_SECONDS, help="seconds a figure may take to draw"
    )
    args = parser.parse_args(argv)
    pages = []
    for path in args.paths:
        found = sorted(path.glob("*.html")) if path.is_dir() else [path]
        if not found or not all(p.is_file() for p in found):
            parser.error(f"{path}: no HTML page there; give an exported page or its folder")
        pages += found
    try:
        checks = check_pages(pages, args.shots, args.wait)
    except RuntimeError as e:  # no browser: what to install, without the usage of a right call
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    for check in checks:
        print(check)
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed}/{len(checks)} pages ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
