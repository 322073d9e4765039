"""Offline HTML pages without a browser: formulas become MathML, figures and widgets become
static HTML drawn by the folder's own plotly.js, and nothing on the page names another host."""

import re

import nbformat

from labkit.export import PLOTLY_MIME, WIDGET_MIME, WIDGET_STATE, export_html, typeset
from labkit.plots import action_bars_html

BARS = action_bars_html({"look": 0.75, "go east": 0.25}, chosen="go east")


def test_typeset_swaps_formulas_for_placeholders_and_leaves_code_alone():
    formulas: list[str] = []
    text = "Loss $-\\log p(x)$ and\n$$H = -\\sum_i p_i \\log p_i$$\n`$HOME` and ```\n$x$\n```"
    out = typeset(text, formulas)
    assert out.startswith("Loss LABKITMATH0X and\nLABKITMATH1X")
    assert "`$HOME`" in out and "```\n$x$\n```" in out  # code spans and fences untouched
    assert formulas[0].startswith("<math") and 'display="inline"' in formulas[0]
    assert 'display="block"' in formulas[1] and "<munder>" in formulas[1]


def _executed_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("The chain rule: $p(x) = \\prod_t p(x_t)$.")]
    figure = {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4]}], "layout": {}}
    loader = {"text/html": "<script>window.PlotlyConfig = {};</script>" + "x" * 100}
    live = {PLOTLY_MIME: figure, WIDGET_MIME: {"model_id": "fig", "version_major": 2}}
    buttons = {WIDGET_MIME: {"model_id": "box", "version_major": 2}, "text/plain": "VBox()"}
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data=data) for data in (loader, live, buttons)
    ]
    nb.cells.append(cell)
    state = {
        "box": {
            "model_name": "VBoxModel",
            "state": {"children": ["IPY_MODEL_b", "IPY_MODEL_h", "IPY_MODEL_bars"]},
        },
        "b": {"model_name": "ButtonModel", "state": {"description": "Step"}},
        "h": {"model_name": "HTMLModel", "state": {"value": "<b>game 3</b>"}},
        "bars": {"model_name": "HTMLModel", "state": {"value": BARS}},  # widgets.ActionBars
    }
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state}}
    return nb


def test_export_writes_an_offline_page_beside_the_notebook(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(_executed_notebook(), path)
    page = export_html(path).read_text()
    assert (tmp_path / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    assert '<script src="_static/plotly.min.js"></script>' in page
    assert "<math" in page and "LABKITMATH" not in page and "\\prod" not in page
    assert page.count("plotly-graph-div") >= 1 and "window.PlotlyConfig = {}" not in page
    assert re.search(r"<button disabled[^>]*>Step</button>", page) and "<b>game 3</b>" in page
    assert "VBox()" not in page
    # the action bars as last drawn (nbconvert rewrites the HTML: double quotes, sorted attributes)
    assert '<tr data-action="look" data-p="0.75">' in page and "width:75.0%" in page
    assert '<tr class="chosen" data-action="go east" data-p="0.25">' in page
    hosts = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert hosts == [], hosts  # no script, stylesheet or font from another host
