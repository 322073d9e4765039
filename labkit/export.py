"""HTML pages of executed notebooks that open offline, with every formula and figure drawn.

    export_html(Path("runs/series/01_likelihood.ipynb"))   # -> runs/series/01_likelihood.html

nbconvert's own pages load MathJax, require.js and the widget manager from CDNs and embed a copy of
plotly.js (about 5 MB) in every page, and draw no widget: opened without a network, formulas stay
raw LaTeX and widgets blank. Here:

- formulas are typeset at export time: each `$...$` and `$$...$$` of a markdown cell becomes
  MathML (`latex2mathml`), which browsers draw themselves, with no script and no web font (Chromium
  refuses web fonts to a page opened from disk, so MathJax from a local copy would not do);
- the pages of one folder share `_static/plotly.min.js` (from the plotly package, written once per
  folder), and each plotly figure is redrawn from its JSON by it;
- each widget output becomes a still picture of the widget's saved state (buttons, menus, text,
  progress bars, HTML such as the action bars), and a display that also carries a static figure
  (`labkit.plots.LiveFigure`) shows that figure.

Nothing on a page asks for the network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from labkit.plots import PLOTLY_MIME  # a plotly figure's output, as JSON

STATIC = "_static"  # the folder beside the pages
PLOTLY_JS = f"{STATIC}/plotly.min.js"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# The lab template without its CDN scripts: plotly.js from _static instead of require.js, no widget
# manager (widgets are drawn here from their saved state), no MathJax (formulas are MathML), no
# mermaid.
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}
<script src="{{ resources.plotly_js_url }}"></script>
{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

# Markdown math, code left alone: fenced blocks and code spans are matched first and kept.
_MATH = re.compile(
    r"(?P<code>```.*?```|`[^`\n]*`)"
    r"|\$\$(?P<block>.+?)\$\$"
    r"|(?<![\\$])\$(?P<inline>[^$\n]+?)\$",
    re.S,
)


def write_assets(folder: Path) -> Path:
    """Copy plotly.js into `folder/_static` unless this version is already there.

    Returns:
        The `_static` folder.
    """
    import plotly

    static = folder / STATIC
    stamp = static / "VERSIONS.json"
    versions = {"plotly": plotly.__version__}
    if stamp.is_file() and json.loads(stamp.read_text()) == versions:
        return static
    static.mkdir(parents=True, exist_ok=True)
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    shutil.copyfile(plotly_js, static / "plotly.min.js")
    stamp.write_text(json.dumps(versions))
    return static


def typeset(markdown: str, formulas: list[str]) -> str:
    """`markdown` with each formula replaced by a placeholder; its MathML appended to `formulas`.

    The placeholders (plain letters and digits, which markdown leaves alone) are swapped for the
    MathML once the page is written, so markdown never reads inside a formula.
    """
    from latex2mathml.converter import convert

    def swap(match: re.Match) -> str:
        if match.group("code"):
            return match.group(0)
        block = match.group("block")
        latex = (block if block is not None else match.group("inline")).strip()
        formulas.append(convert(latex, display="block" if block is not None else "inline"))
        return f"LABKITMATH{len(formulas) - 1}X"

    return _MATH.sub(swap, markdown)


def figure_html(figure: dict) -> str:
    """A plotly figure (its JSON) as a div drawn by the page's shared plotly.js."""
    import plotly.io as pio

    return pio.to_html(
        figure,
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        validate=False,
        default_height="450px",
    )


def _is_plotly_loader(output: dict) -> bool:
    """The output in which plotly's notebook renderer embeds plotly.js itself (5 MB)."""
    text = output.get("data", {}).get("text/html", "")
    text = "".join(text) if isinstance(text, list) else text
    return "window.PlotlyConfig" in text and "plotly-graph-div" not in text


class WidgetPicture:
    """Still HTML for a widget, drawn from the notebook's saved widget state."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state  # model id -> {"model_name": ..., "state": {...}}

    def html(self, model_id: str) -> str:
        """The widget `model_id` as HTML ("" when the state does not hold it)."""
        model = self.state.get(model_id)
        if model is None:
            return ""
        name, s = model.get("model_name", ""), model.get("state", {})
        label = html.escape(str(s.get("description", "")))
        if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
            direction = "row" if name == "HBoxModel" else "column"
            inner = "".join(self.html(_ref(c)) for c in s.get("children", []))
            return f"<div style='display:flex;flex-direction:{direction};gap:4px'>{inner}</div>"
        if name in ("HTMLModel", "HTMLMathModel", "LabelModel"):
            value = s.get("value", "")
            return f"<div>{value if name != 'LabelModel' else html.escape(value)}</div>"
        if name == "ButtonModel":
            return f"<button disabled>{label}</button>"
        if name in ("DropdownModel", "SelectModel"):
            options, index = s.get("_options_labels", []), s.get("index")
            chosen = options[index] if isinstance(index, int) and index < len(options) else ""
            return f"<label>{label} <select disabled><option>{html.escape(chosen)}</option></select></label>"
        if name in ("TextModel", "TextareaModel", "IntTextModel", "BoundedIntTextModel",
                    "FloatTextModel", "BoundedFloatTextModel"):  # fmt: skip
            value = html.escape(str(s.get("value", "")))
            return f"<label>{label} <input disabled value='{value}'></label>"
        if name in ("FloatProgressModel", "IntProgressModel"):
            value, top = s.get("value", 0), s.get("max", 1) or 1
            return f"<label>{label} <progress value='{value}' max='{top}'></progress></label>"
        return ""


def _ref(child: str) -> str:
    """A model id from a widget reference, "IPY_MODEL_<id>"."""
    return child.removeprefix("IPY_MODEL_")


def offline_outputs(nb: Any, formulas: list[str]) -> Any:
    """`nb` made for an offline page (changed in place; also returned).

    Markdown formulas become placeholders (their MathML appended to `formulas`), plotly's embedded
    loaders are dropped, every plotly figure is redrawn for the shared plotly.js, and each widget
    output without a static alternative becomes a still picture.
    """
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = typeset(cell.source, formulas)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    pictures = WidgetPicture(state)
    for cell in nb.cells:
        outputs = []
        for output in cell.get("outputs", []):
            if _is_plotly_loader(output):
                continue
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                data.pop(WIDGET_MIME, None)  # a LiveFigure: its static copy is the picture
                data["text/html"] = figure_html(data[PLOTLY_MIME])
            elif WIDGET_MIME in data:
                picture = pictures.html(data.pop(WIDGET_MIME).get("model_id", ""))
                if picture:
                    data["text/html"] = picture
            outputs.append(output)
        if "outputs" in cell:
            cell.outputs = outputs
    nb.metadata.pop("widgets", None)  # nothing on the page loads a widget manager
    return nb


def export_html(notebook: Path) -> Path:
    """Write an HTML page of an executed notebook beside it, opening offline (see the module).

    Returns:
        The page's path (`notebook` with the suffix .html).
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    write_assets(notebook.parent)
    exporter = HTMLExporter(
        template_name="lab",
        template_file="labkit_offline.html.j2",
        extra_loaders=[jinja2.DictLoader({"labkit_offline.html.j2": TEMPLATE})],
    )
    formulas: list[str] = []
    nb = offline_outputs(nbformat.read(notebook, as_version=4), formulas)
    body, _ = exporter.from_notebook_node(nb, resources={"plotly_js_url": PLOTLY_JS})
    body = re.sub(r"LABKITMATH(\d+)X", lambda m: formulas[int(m.group(1))], body)
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target
