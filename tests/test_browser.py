"""What a person sees, checked in headless Chromium (Debian's `chromium`, driven by Playwright).

- `labkit present`: the Voila app of notebook 06 loads without a JavaScript error; Step advances
  the episode, the bars redraw with the new distribution, an override changes the action taken,
  and the chat answers a typed request with its audit trail.
- JupyterLab: notebook 06 runs all its cells and its widgets render (not `VBox(children=...)`);
  notebook 03's live loss figure shows points after the run.
- The series' HTML pages, opened from disk with the network blocked: formulas typeset, every
  figure drawn, no console error.

A screenshot of each page goes to runs/browser/ (LABKIT_UPDATE_DOCS=1: the stepper to
docs/present.png, the README's picture). Without
chromium or playwright the tests skip, saying what to install, except under CI (CI=true), where
.ci/run installs both and their absence fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "runs" / "browser"
CHROMIUM = shutil.which("chromium")
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "file://", "data:", "blob:", "about:")

pytestmark = pytest.mark.slow
if not os.environ.get("LABKIT_BROWSER"):  # opt-in until they hold on a loaded 2-core machine
    pytest.skip(
        "browser tests are opt-in: under load anywidget gives up on a chart's 5 MB plotly bundle "
        "after 2 s and the chart stops redrawing (issue 12); run LABKIT_BROWSER=1 pytest "
        "tests/test_browser.py",
        allow_module_level=True,
    )


def _need_browser() -> None:
    """Skip (fail under CI) when chromium or playwright is missing."""
    missing = []
    if CHROMIUM is None:
        missing.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        message = f"browser tests need {' and '.join(missing)}; .ci/run installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def new_page(browser, errors: list[str]):
    """A page whose console errors, uncaught exceptions and failed requests land in `errors`.

    Requests leave this machine for nothing: any address but 127.0.0.1 and files is aborted.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(lambda url: not url.startswith(LOCAL), lambda route: route.abort())
    page = context.new_page()
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"exception: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    return page


# anywidget gives each model 2 s to import its ES module (plotly's FigureWidget ships 5 MB of
# plotly.js per model); past that it logs "[anywidget] Failed to initialize model." and the model
# then drops every message from the kernel: the chart is drawn once and never redrawn. It is a
# real defect (seen under CPU load), so it is not excused here.


def page_errors(errors: list[str]) -> list[str]:
    """A page's errors. A request for another host counts: the pages ask nothing of the network
    (Voila's CDN stylesheets are cut by labkit present's template, the series pages carry
    plotly.js and typeset their formulas at export time)."""
    return list(errors)


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@contextlib.contextmanager
def shot_on_failure(page, name: str):
    """Save a screenshot NAME-failed.png when the block fails."""
    try:
        yield
    except BaseException:
        shoot(page, f"{name}-failed")
        raise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(command: list[str], url: str, log: Path, timeout: float = 60) -> subprocess.Popen:
    """Start a server and wait until `url` answers.

    Raises:
        RuntimeError: it exited or did not answer in time (its log is in the message).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PLOTLY_RENDERER": "plotly_mimetype"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=2)
            return process
        except urllib.error.HTTPError:  # it answers, if not with this page
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{' '.join(command)} did not serve {url}:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


# --- the Voila app --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(browser, tmp_path_factory):
    """`labkit present` serving notebook 06 (a quick agent trained in a temporary folder), opened
    in the browser: (page, errors)."""
    folder = tmp_path_factory.mktemp("present")
    port = free_port()
    command = [sys.executable, "-m", "labkit", "present", "--port", str(port)]
    command += ["-p", "agent_run", "", "-p", "run_dir", str(folder)]
    server = serve(command, f"http://127.0.0.1:{port}/voila/static/", folder / "voila.log")
    errors: list[str] = []
    page = new_page(browser, errors)
    try:
        page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
        page.get_by_role("button", name="Send override").wait_for(timeout=120_000)
        page.locator(".jupyter-widgets .js-plotly-plot").first.wait_for(timeout=60_000)
        yield page, errors
    finally:
        page.context.close()
        stop(server)


def stepper(page):
    """The agent stepper's widget box (the one holding the Step button)."""
    return page.locator(".widget-vbox").filter(has=page.get_by_role("button", name="Step"))


BARS = """gd => {
    const labels = gd.data && gd.data.length ? [...gd.data[0].x] : [];
    return [...gd.querySelectorAll('.barlayer .point path')].map((bar, i) => [
        labels[i] || '', Math.round(bar.getBBox().height * 10) / 10, getComputedStyle(bar).fill,
    ]);
}"""
CHOSEN_FILL = "rgb(220, 20, 60)"  # crimson, labkit.plots.CHOSEN_COLOR: the action taken


def drawn_bars(chart) -> list[tuple[str, float, str]]:
    """A bar chart's bars as drawn: (action, height in pixels, fill colour), left to right."""
    return [tuple(bar) for bar in chart.evaluate(BARS)]


def redrawn_bars(
    page, chart, before: list, chosen: str, timeout: float = 30_000
) -> list[tuple[str, float, str]]:
    """Wait until `chart` draws bars other than `before`, `chosen` the red one; return them.

    The locator is read afresh each time: a widget view may replace its element while it loads.

    Raises:
        AssertionError: not so after `timeout` milliseconds (the bars last drawn in the message).
    """
    deadline = time.monotonic() + timeout / 1000
    while True:
        now = drawn_bars(chart)
        if now != before and any(a == chosen and fill == CHOSEN_FILL for a, _, fill in now):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"no redraw with {chosen!r} chosen; drawn: {now}")
        page.wait_for_timeout(250)


def would_play(page) -> str:
    """The action the stepper's policy would play now, as its status line says."""
    return status(page).split("would play '")[1].split("'")[0]


def status(page) -> str:
    return stepper(page).locator(".widget-html-content").first.inner_text()


def test_the_app_loads_without_a_javascript_error(app):
    page, errors = app
    body = page.inner_text("body")
    assert "from labkit.widgets import" not in body  # no code shown
    assert "VBox(children=" not in body
    assert page.locator(".jupyter-widgets .js-plotly-plot").count() >= 2  # stepper and chat
    shoot(page, "voila")
    assert page_errors(errors) == []


def test_step_advances_the_episode_and_the_bars_redraw(app):
    page, errors = app
    box = stepper(page)
    box.get_by_role("button", name="Reset (next game)").click()  # the notebook played one already
    box.locator(".widget-html-content", has_text="step 0,").first.wait_for(timeout=30_000)
    chart = box.locator(".js-plotly-plot").first
    before = redrawn_bars(page, chart, [], would_play(page))  # the new game's first decision
    assert sum(height for _, height, _ in before) > 0, before
    box.get_by_role("button", name="Step", exact=True).click()
    box.locator(".widget-html-content", has_text="step 1,").first.wait_for(timeout=30_000)
    after = redrawn_bars(page, chart, before, would_play(page))  # the next decision's
    assert [h for _, h, _ in after] != [h for _, h, _ in before], (before, after)
    chart.scroll_into_view_if_needed()
    shoot(page, "voila-step")
    if os.environ.get("LABKIT_UPDATE_DOCS"):  # refresh the README's picture: the stepper alone
        box.screenshot(path=str(ROOT / "docs" / "present.png"))
    assert page_errors(errors) == []


def test_an_override_changes_the_action_taken(app):
    page, errors = app
    box = stepper(page)
    menu = box.locator(".widget-dropdown select").last  # the override menu
    before = status(page)
    wanted = would_play(page)
    labels = menu.locator("option").all_inner_texts()  # ipywidgets writes spaces as U+00A0
    others = [label for label in labels if label.replace("\xa0", " ") != wanted]
    assert others, "the override menu offers no other action"
    menu.select_option(label=others[0])
    box.get_by_role("button", name="Send override").click()
    transcript = box.locator(".widget-html-content", has_text="overridden by the user")
    transcript.first.wait_for(timeout=30_000)
    text = transcript.first.inner_text().replace("\xa0", " ")
    played = others[0].replace("\xa0", " ")
    assert f"> {played}   [overridden by the user: the agent chose '{wanted}']" in text, text
    assert status(page) != before
    shoot(page, "voila-override")
    assert page_errors(errors) == []


def test_the_chat_answers_a_typed_request_with_its_audit_trail(app):
    page, errors = app
    chat = page.locator(".widget-vbox").filter(has=page.get_by_role("button", name="New customer"))
    chat = chat.first
    orders = chat.locator(".widget-html-content").first.inner_text()
    order = orders.split("Your orders:")[1].split()[0]
    chart = chat.locator(".js-plotly-plot").first
    before = drawn_bars(chart)
    chat.locator("input[type=text]").fill(f"where is my order {order}?")
    chat.get_by_role("button", name="Send", exact=True).click()
    said = chat.locator(".widget-html-content", has_text=f"Customer: where is my order {order}?")
    said.first.locator("text=Tool:").first.wait_for(timeout=60_000)  # the episode has ended
    conversation = said.first.inner_text().replace("\xa0", " ")
    assert f"Customer: where is my order {order}?" in conversation
    assert "Agent:" in conversation and "Tool:" in conversation
    last = [line for line in conversation.splitlines() if line.startswith("Agent:")][-1]
    last = last.removeprefix("Agent:").strip()
    audit = chat.locator(".widget-html-content", has_text="Audit trail").first.inner_text()
    assert last in audit.replace("\xa0", " ")  # every tool call is a row of the audit trail
    if before and last in [action for action, _, fill in before if fill == CHOSEN_FILL]:
        before = []  # the same decision as the notebook's: the bars need not change
    redrawn_bars(page, chart, before, last)  # the chart shows the agent's last decision
    chart.scroll_into_view_if_needed()
    shoot(page, "voila-chat")
    assert page_errors(errors) == []


# --- JupyterLab ---------------------------------------------------------------------------------


# Notebook 03 in a few seconds: 4 points a curve, still below the unigram baseline it asserts.
TINY_03 = {"max_chars": 60000, "hidden_dim": 64, "lr": 0.01, "max_steps": 80, "eval_every": 20,
           "sample_tokens": 20}  # fmt: skip


def parametrized_copy(name: str, folder: Path, **parameters) -> Path:
    """notebooks/NAME with `parameters` injected (papermill's way) in `folder`, for JupyterLab to
    run and save without touching the committed file."""
    import nbformat

    from labkit.present import inject

    nb = inject(nbformat.read(ROOT / "notebooks" / name, as_version=4), parameters)
    # the committed notebooks carry no kernelspec (trimmed metadata): JupyterLab would ask
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    target = folder / name
    nbformat.write(nb, target)
    shutil.copy(ROOT / "notebooks" / "sanitize.cfg", folder)  # what some notebooks read nearby
    return target


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    """JupyterLab on a folder holding copies of notebooks 03 (tiny) and 06: (base url, errors)."""
    folder = tmp_path_factory.mktemp("lab")
    runs = str(folder / "runs")
    parametrized_copy("06_interactive_demos.ipynb", folder, run_dir=runs)
    parametrized_copy("03_training.ipynb", folder, run_dir=runs, **TINY_03)
    settings = tmp_path_factory.mktemp("lab-settings")
    for plugin, values in {
        # every cell in the page, and the kernel started without asking which
        "notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "apputils-extension/notification": {"fetchNews": "false"},  # no news pop-up
    }.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
        f"--ServerApp.root_dir={folder}", "--allow-root", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path_factory.mktemp('lab-workspaces')}",
    ]  # fmt: skip
    server = serve(command, f"http://127.0.0.1:{port}/api", folder / "lab.log")
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        stop(server)


PROMPTS = """[...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt'
)].map(p => p.textContent)"""  # the prompts of the notebook in view: [ ], [*] or [3]


def run_all(page, url: str, name: str) -> None:
    """Open a notebook in JupyterLab, run all its cells, wait until each has run.

    Run All is given three tries: while the new kernel is still connecting it runs nothing, or
    runs the first cell and drops the queue when the kernel connects.

    Raises:
        AssertionError: a cell did not run, or wrote an error.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"{url}/lab/tree/{name}?reset", timeout=60_000)  # ?reset: no tab of a test before
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    errors = errors.filter(has_text="Error")
    for _ in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:  # queued cells show [*] at once
            page.wait_for_function(f"() => {PROMPTS}.some(t => t.includes('*'))", timeout=20_000)
        except PlaywrightTimeout:
            continue
        page.wait_for_function(  # nothing queued or running any more
            f"() => !{PROMPTS}.some(t => t.includes('*'))", timeout=240_000, polling=500
        )
        prompts = page.evaluate(PROMPTS)
        if errors.count() or all(any(c.isdigit() for c in p) for p in prompts):
            break
    assert errors.count() == 0, errors.all_inner_texts()
    prompts = page.evaluate(PROMPTS)
    assert all(any(c.isdigit() for c in p) for p in prompts), prompts


def test_jupyterlab_runs_notebook_06_and_its_widgets_render(browser, lab):
    url, _ = lab
    errors: list[str] = []
    page = new_page(browser, errors)
    with shot_on_failure(page, "jupyterlab-06"):
        run_all(page, url, "06_interactive_demos.ipynb")
        page.get_by_role("button", name="Send override").first.wait_for(timeout=30_000)
        assert page.locator(".jupyter-widgets.widget-button").count() >= 6
        text = page.locator(".jp-Notebook").inner_text()
        assert "VBox(children=" not in text and "FigureWidget(" not in text
        charts = page.locator(".jp-Notebook .jupyter-widgets .js-plotly-plot")
        assert charts.count() >= 2
        box = stepper(page)
        box.get_by_role("button", name="Reset (next game)").click()  # the notebook's game ended
        box.locator(".widget-html-content", has_text="step 0,").first.wait_for(timeout=30_000)
        redrawn_bars(page, box.locator(".js-plotly-plot").first, [], would_play(page))
        page.get_by_role("button", name="Send override").first.scroll_into_view_if_needed()
        shoot(page, "jupyterlab-06")
        assert page_errors(errors) == []
    page.context.close()


def test_jupyterlab_shows_notebook_03s_live_figure_with_points(browser, lab):
    url, _ = lab
    errors: list[str] = []
    page = new_page(browser, errors)
    with shot_on_failure(page, "jupyterlab-03"):
        run_all(page, url, "03_training.ipynb")
        live = page.locator(".js-plotly-plot").filter(has_text="loss while training").first
        live.wait_for(timeout=30_000)
        live.scroll_into_view_if_needed()
        points = live.locator(".scatterlayer .point").count()
        assert points >= 2 * 4, points  # train and validation at steps 20, 40, 60, 80
        shoot(page, "jupyterlab-03")
        assert page_errors(errors) == []
    page.context.close()


# --- the series' HTML pages, offline ---------------------------------------------------------


@pytest.fixture(scope="module")
def series_pages(tmp_path_factory):
    """The series runner's pages of notebooks 01 (the formulas) and 03 (the live figure, tiny)."""
    out = tmp_path_factory.mktemp("series")
    command = [sys.executable, "-m", "labkit.series", "--quick", "--out", str(out)]
    command += ["--only", "01", "03"]
    for key, value in TINY_03.items():
        command += ["-p", key, str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary] == ["ok", "ok"], summary
    return out


def test_series_pages_are_small_and_share_plotly_js(series_pages):
    pages = sorted(series_pages.glob("*.html"))
    assert [p.name for p in pages] == ["01_likelihood.html", "03_training.html"]
    assert (series_pages / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    for page in pages:
        text = page.read_text()
        assert page.stat().st_size < 1_000_000, page  # plotly.js is not inside
        assert "cdn" not in "".join(text.split('src="')[1:]).split('"')[0]


def test_series_pages_open_offline_with_formulas_typeset_and_figures_drawn(browser, series_pages):
    for path in sorted(series_pages.glob("*.html")):
        errors: list[str] = []
        page = new_page(browser, errors)
        with shot_on_failure(page, f"series-{path.stem}"):
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            figures = page.locator(".plotly-graph-div")
            count = figures.count()
            assert count >= 1, path.name
            for i in range(count):  # each figure drawn: plotly put its SVG in
                assert figures.nth(i).locator(".main-svg").count() > 0, (path.name, i)
            raw = page.evaluate(
                "() => (document.body.innerText.match(/\\$[^$\\n]{1,80}\\$/g) || []).length"
            )
            assert raw == 0, f"{path.name}: formulas left as raw LaTeX"
            if path.name.startswith("01"):
                typeset = page.evaluate(
                    """() => [...document.querySelectorAll('math')]
                             .filter(m => m.getBoundingClientRect().height > 5).length"""
                )
                assert typeset >= 10, typeset
                page.locator("math[display=block]").first.scroll_into_view_if_needed()
            if path.name.startswith("03"):  # the live figure, drawn from its static copy
                live = figures.filter(has_text="loss while training").first
                assert live.locator(".scatterlayer .point").count() >= 2 * 4
                live.scroll_into_view_if_needed()
            shoot(page, f"series-{path.stem}")
            assert page_errors(errors) == [], path.name
        page.context.close()
