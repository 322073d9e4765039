"""What a person sees, checked in headless Chromium (Debian's `chromium`, driven by Playwright).

- `labkit present`: the Voila app of notebook 06 loads without a JavaScript error; Step advances
  the episode and the bars redraw with the new distribution, an override changes the action
  taken, and the chat answers a typed request with its audit trail.
- JupyterLab: notebook 06 runs all its cells and its widgets render (not `VBox(children=...)`);
  notebook 03's live loss figure shows points after the run.
- The series' HTML pages, opened from disk with the network blocked: formulas typeset, every
  figure drawn, no console error (`labkit.pages`, which checks any folder of pages the same way:
  `python -m labkit.pages runs/series`).

The slow work starts at once, so that it overlaps (`jobs`, `pages`): the series runner executes
and exports notebooks 01 and 03, Voila runs notebook 06, and JupyterLab runs 06 and 03, all while
the browser checks the pages as they come. One browser, one Voila page and one JupyterLab page
serve all the tests; the notebooks run at sizes smaller still than their quick ones (the pages
are under test, not the models), except 06 in Voila. Every wait is on a condition of the page,
none on a clock.

A screenshot of each page goes to runs/browser/ (NAME-failed.png when a check fails;
LABKIT_UPDATE_DOCS=1: the stepper to docs/present.png, the README's picture). Without chromium or
playwright the tests skip, saying what to install, except under CI (CI=true), where .ci/run
installs both and their absence fails.
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

from labkit.pages import CHROMIUM_ARGS  # the flags `python -m labkit.pages` launches with

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "runs" / "browser"
CHROMIUM = shutil.which("chromium")
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "file://", "data:", "blob:", "about:")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PLOTLY_RENDERER": "plotly_mimetype"}

pytestmark = pytest.mark.slow

# The notebooks at sizes smaller than their quick ones: a few seconds each.
# Notebook 06 in JupyterLab: an agent that barely learned, which still acts. (Voila runs 06 at its
# quick size: the stepper's screenshot is the README's picture.)
TINY_06 = {"train_episodes": 4, "train_steps": 4}
# Notebook 03: 4 points a curve, still below the unigram baseline it asserts; 01 shares the keys.
TINY_03 = {"max_chars": 60000, "hidden_dim": 64, "lr": 0.01, "max_steps": 40, "eval_every": 10,
           "sample_tokens": 20}  # fmt: skip
TINY_01 = {"lstm_steps": 60}  # 01's LSTM, still below the unigram baseline it asserts


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


# --- servers and jobs ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Start `command` in the repository, its output in `log`."""
    return subprocess.Popen(
        command, cwd=ROOT, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def serving(process: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> str:
    """Wait until the server `process` answers at `url`; return `url`.

    Raises:
        RuntimeError: it exited or did not answer in time (its log is in the message).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return url
        except urllib.error.HTTPError:  # it answers, if not with this page
            return url
        except OSError:
            time.sleep(0.2)  # a socket that does not listen yet: nothing to wait on but time
    raise RuntimeError(f"{process.args} did not serve {url}:\n{log.read_text()[-3000:]}")


def stop(*processes: subprocess.Popen) -> None:
    """Ask each process to end (servers shut their kernels down), all at once; kill what lingers."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def jupyterlab_command(folder: Path, settings: Path, workspaces: Path, port: int) -> list[str]:
    """JupyterLab on `folder`: no token, no news, no update check, the kernel started unasked and
    every cell in the page (no windowing), settings and workspaces of its own."""
    for plugin, values in {
        "notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "apputils-extension/notification": {"fetchNews": "false"},  # no news pop-up
    }.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
        f"--ServerApp.root_dir={folder}", "--allow-root", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workspaces}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The slow work, started at once so that it overlaps: the series runner on notebooks 01 and
    03, `labkit present` (Voila, notebook 06 with a quick agent) and JupyterLab on copies of 06
    and 03. Yields {name: (process, log, address or folder)}; stops them all at the end."""
    _need_browser()
    for old in SHOTS.glob("*-failed.png"):  # a failure's picture of an earlier run misleads
        old.unlink()
    out = tmp_path_factory.mktemp("browser")
    series, present, lab = out / "series", out / "present", out / "lab"
    for folder in (series, present, lab):
        folder.mkdir()
    command = [sys.executable, "-m", "labkit.series", "--quick", "--out", str(series)]
    command += ["--only", "01", "03"]
    for key, value in {**TINY_03, **TINY_01}.items():
        command += ["-p", key, str(value)]
    started = {"series": (start(command, out / "series.log"), out / "series.log", series)}

    port = free_port()
    command = [sys.executable, "-m", "labkit", "present", "--port", str(port)]
    for key, value in {"agent_run": "", "run_dir": str(present)}.items():
        command += ["-p", key, str(value)]
    url = f"http://127.0.0.1:{port}"
    started["voila"] = (start(command, out / "voila.log"), out / "voila.log", url)

    runs = str(lab / "runs")
    parametrized_copy("06_interactive_demos.ipynb", lab, run_dir=runs, **TINY_06)
    parametrized_copy("03_training.ipynb", lab, run_dir=runs, **TINY_03)
    port = free_port()
    command = jupyterlab_command(lab, out / "lab-settings", out / "lab-workspaces", port)
    url = f"http://127.0.0.1:{port}"
    started["lab"] = (start(command, out / "lab.log"), out / "lab.log", url)
    try:
        yield started
    finally:
        stop(*(process for process, _, _ in started.values()))


# --- pages --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(jobs):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, errors: list[str]):
    """A page whose console errors, uncaught exceptions and failed requests land in `errors`.

    Requests leave this machine for nothing: any address but 127.0.0.1 and files is aborted, and
    so counts as an error (the pages ask nothing of the network).
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(lambda url: not url.startswith(LOCAL), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(120_000)  # a loaded 2-core machine; every wait is on a condition
    page.on(
        "console",
        lambda m: (
            errors.append(f"console: {m.text} ({m.location.get('url', '')})")
            if m.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(f"exception: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    return page


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


# --- the action bars (labkit.plots.action_bars_html in an ipywidgets.HTML) ------------------------

CHOSEN_FILL = "rgb(220, 20, 60)"  # crimson, labkit.plots.CHOSEN_COLOR: the action taken
# A chart's bars as drawn: [action, bar width in pixels, bar colour, the number shown], in order.
BARS = """el => [...el.querySelectorAll('.labkit-action-bars tr[data-action]')].map(row => {
    const bar = row.querySelector('.bar');
    return [row.dataset.action, Math.round(bar.getBoundingClientRect().width * 10) / 10,
            getComputedStyle(bar).backgroundColor, row.cells[2].textContent];
})"""
# Bars other than `before`, one red: `chosen`, or else the action the `status` element names.
REDRAWN = f"""([el, before, chosen, status]) => {{
    const now = ({BARS})(el);
    const named = status && status.textContent.match(/would play '(.*?)'/);
    const want = chosen || (named && named[1]);
    const red = now.filter(bar => bar[2] === '{CHOSEN_FILL}').map(bar => bar[0]);
    return JSON.stringify(now) !== JSON.stringify(before) && red.length === 1
        && red[0] === want && now.some(bar => bar[1] > 1) && now;
}}"""


def chart_of(box):
    """The action-bars widget inside `box` (its view's element: the bars inside are redrawn)."""
    return box.locator(".widget-html:has(.labkit-action-bars)").first


def drawn_bars(chart) -> list[list]:
    return chart.evaluate(BARS)


def redrawn_bars(page, chart, before: list, chosen: str | None = None, status=None) -> list:
    """Wait until `chart` draws bars other than `before`, one in red: `chosen`, or else the
    action that the `status` locator says the policy would play; return them.

    Raises:
        AssertionError: not so in time (the bars last drawn in the message).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    line = status.element_handle() if status is not None else None
    try:
        arg = [chart.element_handle(), before, chosen, line]
        drawn = page.wait_for_function(REDRAWN, arg=arg, polling=100)  # not every frame: layout
    except PlaywrightTimeout:
        now, said = drawn_bars(chart), line.text_content() if line else ""
        raise AssertionError(f"no redraw with {chosen or said!r} in red; drawn: {now}") from None
    return drawn.json_value()


def stepper(page):
    """The agent stepper's widget box (the one holding the Step button)."""
    return page.locator(".widget-vbox").filter(has=page.get_by_role("button", name="Step")).first


def status_line(page):
    return stepper(page).locator(".widget-html-content").first


def status(page) -> str:
    return status_line(page).inner_text()


def would_play(page) -> str:
    """The action the stepper's policy would play now, as its status line says."""
    return status(page).split("would play '")[1].split("'")[0]


def new_game(page, policy: str | None = None) -> list[list]:
    """Press Reset (choosing `policy` first, if given) and wait until the bars show the new
    game's first decision; return them."""
    box = stepper(page)
    if policy:
        box.locator(".widget-dropdown", has_text="policy").locator("select").select_option(policy)
    box.get_by_role("button", name="Reset (next game)").click()
    box.locator(".widget-html-content", has_text="step 0,").first.wait_for()
    return redrawn_bars(page, chart_of(box), [], status=status_line(page))


# --- both apps, opened at once ------------------------------------------------------------------

IN_VIEW = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # JupyterLab: the notebook whose tab is shown
PROMPTS = f"""[...document.querySelectorAll('{IN_VIEW} .jp-CodeCell .jp-InputArea-prompt')]
    .map(p => p.textContent)"""  # the prompts of the notebook in view: [ ], [*] or [3]
# The notebook in view has its kernel, connected and idle (before that its indicator says idle
# beside "No Kernel", and Run All runs nothing).
KERNEL_READY = f"""() => {{
    const panel = document.querySelector('{IN_VIEW}');
    const name = panel && panel.querySelector('[data-jp-item-name=kernelName]');
    const state = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
    return !!name && !/No Kernel/.test(name.textContent) && state.dataset.status === 'idle';
}}"""


def show_notebook(page, name: str) -> None:
    """Bring notebook `name`'s tab to the front in JupyterLab (it is open) and wait until it is."""
    tabs = page.locator("#jp-main-dock-panel .lm-TabBar-tab")
    if not tabs.filter(has_text=name).and_(page.locator(".lm-mod-current")).count():
        tabs.filter(has_text=name).click()
    tabs.filter(has_text=name).and_(page.locator(".lm-mod-current")).wait_for()
    page.locator(f"{IN_VIEW} .jp-Cell").first.wait_for()


def start_run_all(page) -> None:
    """Run all cells of the notebook in view; return once they queue (their prompts say [*]).

    JupyterLab names the kernel in the toolbar before the kernel has connected, and Run All given
    then queues nothing (or asks which kernel to use): on a loaded machine that window is long.
    So: wait for the kernel, answer a kernel dialog with its default, give Run All, and give it
    again until the cells queue.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    queued = f"() => {PROMPTS}.some(t => t.includes('*'))"
    for _ in range(8):
        page.wait_for_function(KERNEL_READY, timeout=180_000, polling=200)  # kernels start slowly
        dialog = page.locator(".jp-Dialog")
        if dialog.count():  # "Select Kernel": take the default it offers
            dialog.locator(".jp-mod-accept").first.click()
            dialog.wait_for(state="detached")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function(queued, timeout=15_000, polling=100)
            return
        except PlaywrightTimeout:
            continue  # nothing queued: the kernel was not there yet
    state = page.evaluate(f"""() => {{
        const panel = document.querySelector('{IN_VIEW}');
        const name = panel && panel.querySelector('[data-jp-item-name=kernelName]');
        const state = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
        const dialog = document.querySelector('.jp-Dialog');
        return {{kernel: name && name.textContent, status: state && state.dataset.status,
                 dialog: dialog && dialog.textContent, prompts: {PROMPTS}}};
    }}""")
    raise AssertionError(f"Run All queued no cell in 8 tries: {state}")


def ran_all(page) -> None:
    """Wait until every cell of the notebook in view has run.

    Raises:
        AssertionError: a cell did not run, or wrote an error.
    """
    page.wait_for_function(  # nothing queued or running any more
        f"() => !{PROMPTS}.some(t => t.includes('*'))", timeout=300_000, polling=500
    )
    errors = page.locator(f"{IN_VIEW} .jp-OutputArea-output[data-mime-type*='stderr']")
    errors = errors.filter(has_text="Error")
    assert errors.count() == 0, errors.all_inner_texts()
    prompts = page.evaluate(PROMPTS)
    assert all(any(c.isdigit() for c in p) for p in prompts), prompts


@pytest.fixture(scope="module")
def pages(browser, jobs):
    """The Voila app and JupyterLab in the browser, every notebook started so that all of them run
    at once: Voila runs notebook 06 as soon as its page is asked for, and JupyterLab is told to
    run all cells of 06, then of 03 (each in its tab, each with its kernel). The tests wait on
    what they check. Yields {"voila": (page, errors), "lab": (page, errors)}."""
    opened: dict[str, tuple] = {}
    try:
        process, log, url = jobs["voila"]
        serving(process, f"{url}/voila/static/", log)
        errors: list[str] = []
        page = new_page(browser, errors)
        opened["voila"] = page, errors
        with shot_on_failure(page, "voila"):
            page.goto(f"{url}/", wait_until="commit", timeout=180_000)  # Voila runs the notebook

        process, log, url = jobs["lab"]
        serving(process, f"{url}/api", log)
        errors = []
        page = new_page(browser, errors)
        opened["lab"] = page, errors
        with shot_on_failure(page, "jupyterlab"):
            page.goto(f"{url}/lab/tree/06_interactive_demos.ipynb?reset")  # ?reset: no old tabs
            show_notebook(page, "06_interactive_demos.ipynb")
            start_run_all(page)
            page.locator(".jp-DirListing-item", has_text="03_training.ipynb").dblclick()
            show_notebook(page, "03_training.ipynb")
            start_run_all(page)
        yield opened
    finally:
        for page, _ in opened.values():
            page.context.close()


@pytest.fixture(scope="module")
def app(pages):
    """`labkit present` serving notebook 06 (a quick agent), its widgets drawn: (page, errors)."""
    page, errors = pages["voila"]
    with shot_on_failure(page, "voila"):
        page.wait_for_load_state("load", timeout=300_000)  # Voila streams it as the cells run
        page.get_by_role("button", name="Send override").wait_for()
        chart_of(stepper(page)).wait_for()
    return page, errors


@pytest.fixture(scope="module")
def lab(pages, jobs):
    """JupyterLab on the copies of notebooks 06 and 03, both running: (page, errors()).

    The errors leave out jupyter_server's known race, when its log shows it: the page asks for
    the list of kernels while one starts, before the kernel has a `last_activity`, and the
    server answers 500 (jupyter-server/enterprise_gateway#1395; the next poll succeeds).
    """
    page, errors = pages["lab"]
    log = jobs["lab"][1]

    def page_errors() -> list[str]:
        race = "The 'last_activity' trait of a ServerKernelManager" in log.read_text()
        return [
            error
            for error in errors
            if not (race and "status of 500" in error and "/api/kernels?" in error)
        ]

    return page, page_errors


# --- the Voila app --------------------------------------------------------------------------


def test_the_app_loads_without_a_javascript_error(app):
    page, errors = app
    with shot_on_failure(page, "voila"):
        body = page.inner_text("body")
        assert "from labkit.widgets import" not in body  # no code shown
        assert "VBox(children=" not in body
        assert page.locator(".jupyter-widgets .labkit-action-bars").count() >= 2  # stepper, chat
        shoot(page, "voila")
        assert errors == []


def test_step_advances_the_episode_and_the_bars_redraw(app):
    page, errors = app
    box = stepper(page)
    chart = chart_of(box)
    with shot_on_failure(page, "voila-step"):
        # the expert, which never ends a game on its first call: one bar, its next call
        before = new_game(page, policy="expert")
        assert [(fill, number) for _, _, fill, number in before] == [(CHOSEN_FILL, "1.000")]
        box.get_by_role("button", name="Step", exact=True).click()
        box.locator(".widget-html-content", has_text="step 1,").first.wait_for()
        after = redrawn_bars(page, chart, before, status=status_line(page))
        assert after[0][0] != before[0][0]
        # the agent on the same state: its whole distribution, its choice in red
        box.locator(".widget-dropdown", has_text="policy").locator("select").select_option("lstm")
        agent = redrawn_bars(page, chart, after, status=status_line(page))
        assert len(agent) > 1 and sum(float(number) for *_, number in agent) > 0.99, agent
        chart.scroll_into_view_if_needed()
        shoot(page, "voila-step")
        if os.environ.get("LABKIT_UPDATE_DOCS"):  # refresh the README's picture: the stepper alone
            box.screenshot(path=str(ROOT / "docs" / "present.png"))
        assert errors == []


def test_an_override_changes_the_action_taken(app):
    page, errors = app
    box = stepper(page)
    with shot_on_failure(page, "voila-override"):
        if "would play" not in status(page):  # the last call ended the game
            new_game(page)
        menu = box.locator(".widget-dropdown select").last  # the override menu
        before = status(page)
        wanted = would_play(page)
        labels = menu.locator("option").all_inner_texts()  # ipywidgets writes spaces as U+00A0
        others = [label for label in labels if label.replace("\xa0", " ") != wanted]
        assert others, "the override menu offers no other action"
        menu.select_option(label=others[0])
        box.get_by_role("button", name="Send override").click()
        transcript = box.locator(".widget-html-content", has_text="overridden by the user").first
        transcript.wait_for()
        text = transcript.inner_text().replace("\xa0", " ")
        played = others[0].replace("\xa0", " ")
        assert f"> {played}   [overridden by the user: the agent chose '{wanted}']" in text, text
        assert status(page) != before
        shoot(page, "voila-override")
        assert errors == []


STATUS_REPLIES = ("processing", "shipped", "delivered", "refunded", "cancelled")  # reply <status>


def test_the_chat_answers_a_typed_request_with_its_audit_trail(app):
    page, errors = app
    chat = page.locator(".widget-vbox").filter(has=page.get_by_role("button", name="New customer"))
    chat = chat.first
    chart = chart_of(chat)
    with shot_on_failure(page, "voila-chat"):
        shop = chat.locator(".widget-html-content").first  # the customer and their orders
        before = shop.inner_text()
        chat.get_by_role("button", name="New customer").click()  # no conversation, no bars yet
        page.wait_for_function(
            "([el, old]) => el.innerText !== old", arg=[shop.element_handle(), before]
        )
        chart.locator("text=no decision to show").wait_for()
        orders = shop.inner_text().replace("\xa0", " ")
        rows = [line.split() for line in orders.split("Your orders:")[1].splitlines()]
        # an order the desk can say where it is (a lost one, say, it would not: ask for a refund)
        order = next((row[0] for row in rows if row and row[-1] in STATUS_REPLIES), None)
        assert order, f"no order to ask about: {orders}"
        chat.locator("input[type=text]").fill(f"where is my order {order}?")
        chat.get_by_role("button", name="Send", exact=True).click()
        said = chat.locator(
            ".widget-html-content", has_text=f"Customer: where is my order {order}?"
        )
        said.first.locator("text=Tool:").first.wait_for()  # the episode has ended
        conversation = said.first.inner_text().replace("\xa0", " ")
        assert "Agent:" in conversation and "Tool:" in conversation
        last = [line for line in conversation.splitlines() if line.startswith("Agent:")][-1]
        last = last.removeprefix("Agent:").split("   [")[0].strip()
        audit = chat.locator(".widget-html-content", has_text="Audit trail").first.inner_text()
        assert last in audit.replace("\xa0", " ")  # every tool call is a row of the audit trail
        redrawn_bars(page, chart, [], last)  # the chart shows the agent's last decision
        chart.scroll_into_view_if_needed()
        shoot(page, "voila-chat")
        assert errors == []


# --- JupyterLab ---------------------------------------------------------------------------------


def test_jupyterlab_runs_notebook_06_and_its_widgets_render(lab):
    page, errors = lab  # errors(): those of the page so far
    with shot_on_failure(page, "jupyterlab-06"):
        show_notebook(page, "06_interactive_demos.ipynb")
        ran_all(page)
        page.get_by_role("button", name="Send override").first.wait_for()
        assert page.locator(f"{IN_VIEW} .jupyter-widgets.widget-button").count() >= 6
        text = page.locator(f"{IN_VIEW} .jp-Notebook").inner_text()
        assert "VBox(children=" not in text and "ActionBars(" not in text
        assert page.locator(f"{IN_VIEW} .jupyter-widgets .labkit-action-bars").count() >= 2
        new_game(page)  # the notebook's game ended: the bars of the next one's first decision
        chart_of(stepper(page)).scroll_into_view_if_needed()
        shoot(page, "jupyterlab-06")
        assert errors() == []


def test_jupyterlab_shows_notebook_03s_live_figure_with_points(lab):
    page, errors = lab  # errors(): those of the page so far
    with shot_on_failure(page, "jupyterlab-03"):
        show_notebook(page, "03_training.ipynb")
        ran_all(page)
        # the live figure (labkit.plots.LiveFigure: an SVG in an HTML widget), every point in
        live = page.locator(f"{IN_VIEW} .jupyter-widgets .labkit-lines")
        live = live.filter(has_text="loss while training").first
        live.locator(".point").nth(2 * 4 - 1).wait_for()  # train and validation at 10, ..., 40
        live.scroll_into_view_if_needed()
        shoot(page, "jupyterlab-03")
        assert errors() == []


# --- the series' HTML pages, offline ---------------------------------------------------------


@pytest.fixture(scope="module")
def series_pages(jobs):
    """The series runner's pages of notebooks 01 (the formulas) and 03 (the live figure, tiny)."""
    process, log, out = jobs["series"]
    try:
        process.wait(timeout=600)
    except subprocess.TimeoutExpired:
        stop(process)
    assert process.returncode == 0, log.read_text()[-3000:]
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


@pytest.mark.parametrize("name", ["01_likelihood", "03_training"])
def test_series_page_opens_offline_with_formulas_typeset_and_figures_drawn(
    browser, series_pages, name
):
    from labkit.pages import check_page  # `python -m labkit.pages`: the same check, any page

    check = check_page(browser, series_pages / f"{name}.html", shots=SHOTS / "series")
    assert check.ok and check.figures >= 1, str(check)
    if name.startswith("01"):
        assert check.formulas >= 10, str(check)
    if name.startswith("03"):  # the live figure, drawn from its static copy: 4 points a curve
        page = new_page(browser, [])
        with contextlib.closing(page.context), shot_on_failure(page, f"series-{name}"):
            page.goto((series_pages / f"{name}.html").as_uri())
            live = page.locator(".plotly-graph-div").filter(has_text="loss while training").first
            live.locator(".scatterlayer .point").nth(2 * 4 - 1).wait_for(state="attached")


def test_the_page_check_fails_raw_latex_an_empty_figure_and_a_cdn_script(tmp_path):
    """`python -m labkit.pages`, which passes the series' pages, fails a page broken each way."""
    _need_browser()
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<p>Formula: $P(w_t \\mid w_{t-1})$</p><div class='plotly-graph-div'><svg class='main-svg'>"
        "</svg></div><script src='https://cdn.example.org/mathjax.js'></script>"
    )
    prices = tmp_path / "prices.html"
    prices.write_text("<p>refund $435.31 is above the $200 limit</p>")  # prices, not formulas
    command = [sys.executable, "-m", "labkit.pages", str(broken), str(prices), "--wait", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[0] == "FAIL broken.html: 0 formulas typeset, 1 raw, 0/1 figures drawn", lines
    assert "request failed: https://cdn.example.org/mathjax.js" in done.stdout
    assert "ok   prices.html: 0 formulas typeset, 0 raw, 0/0 figures drawn" in lines
    assert lines[-1] == "1/2 pages ok"
