"""Plotly figures for the notebooks, built from plain data (lists, dicts, history rows).

Every builder returns a figure and shows nothing, so that tests can read `fig.data`. How a figure is
rendered (JupyterLab, HTML export, headless) is decided once by `labkit.setup` via PLOTLY_RENDERER.
The charts that a page redraws while it is open (the live loss curve, a policy's action bars) are
also drawn as plain HTML/SVG (`lines_svg`, `action_bars_html`) for an `ipywidgets.HTML`: no script
for the page to load.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

LOSS_SERIES = (("train_loss", "train"), ("val_loss", "validation"))  # history key, trace name
PLOTLY_MIME = "application/vnd.plotly.v1+json"  # a plotly figure's output, as JSON


def loss_figure(history: Sequence[dict] = (), title: str = "Loss (nats per token)") -> go.Figure:
    """Training and validation loss against the step, from `train()`'s history rows.

    Args:
        history: rows with "step" and "train_loss" / "val_loss" (missing, None or NaN are skipped).
        title: the figure's title.
    Returns:
        A figure with one line trace per series, named "train" and "validation".
    """
    fig = go.Figure(layout={"title": title, "xaxis_title": "step", "yaxis_title": "nats per token"})
    for key, name in LOSS_SERIES:
        points = [(r["step"], r[key]) for r in history if _is_number(r.get(key))]
        fig.add_scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name
        )
    return fig


class LiveFigure:
    """A line figure redrawn in place as it changes, with a static copy for pages with no kernel.

        live = LiveFigure(loss_figure(title="loss while training"))
        live.show()        # the figure as it is now
        ...                # update live.figure (live_loss_callback(live) does, and refreshes)
        live.refresh()     # redraw it; the saved output is now the figure as it is now

    Beside a kernel (JupyterLab, Voila) the figure is drawn as an SVG (`lines_svg`) in an
    `ipywidgets.HTML`, redrawn by setting its value: no script to load. A plotly FigureWidget
    needs a 5 MB script per chart, which anywidget gives up loading on a loaded machine, and
    JupyterLab's plotly renderer ignores updates of an output it has drawn (and clearing it to
    draw it again raced with its resizing, an error in the page each time). The display also
    carries the figure's plotly JSON, which refresh() keeps current: exported pages
    (labkit.export) draw that, so a headless run (papermill) saves the curve with every point.
    """

    def __init__(self, figure: go.Figure) -> None:
        self.figure = figure
        self.view = None  # the ipywidgets.HTML drawn in, once shown
        self.handle = None  # the display, once shown

    def __repr__(self) -> str:
        return f"LiveFigure({self.figure.layout.title.text!r})"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The drawing's widget view (where a kernel is) and the figure's JSON (elsewhere)."""
        import json

        import plotly.io as pio

        static = json.loads(pio.to_json(go.Figure(self.figure), validate=False))
        view = self.view._repr_mimebundle_() if self.view is not None else None
        return {PLOTLY_MIME: static, **(view or {})}

    def show(self) -> None:
        """Display the figure (once per LiveFigure)."""
        import ipywidgets
        from IPython.display import display

        self.view = ipywidgets.HTML(lines_svg(self.figure))
        self.handle = display(self, display_id=True)

    def refresh(self) -> None:
        """Redraw the figure as it is now, and make it the displayed output's static copy."""
        if self.handle is not None:
            self.view.value = lines_svg(self.figure)
            self.handle.update(self)


def live_loss_callback(fig: go.Figure | LiveFigure) -> Callable[[dict], None]:
    """A `train(..., callback=...)` hook that appends each history row's losses to `fig`.

    Args:
        fig: a figure from `loss_figure` (its traces are matched by name), or a `LiveFigure` of
            one, which is redrawn after each row.
    Returns:
        callback(row): adds (row["step"], loss) to each trace whose loss is in the row.
    """
    live = fig if isinstance(fig, LiveFigure) else None
    figure = live.figure if live else fig
    traces = {trace.name: trace for trace in figure.data}

    def callback(row: dict) -> None:
        with figure.batch_update():  # one redraw per row, not one per trace
            for key, name in LOSS_SERIES:
                if _is_number(row.get(key)):
                    trace = traces[name]
                    trace.x = (*(trace.x or ()), row["step"])
                    trace.y = (*(trace.y or ()), row[key])
        if live:
            live.refresh()

    return callback


LINE_COLORS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa")  # plotly's first colours, in order


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values from `low` to `high` (steps of 1, 2 or 5 times a power of 10)."""
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def lines_svg(fig: go.Figure, width: int = 640, height: int = 320) -> str:
    """A figure's line traces drawn as a small SVG: no script, no plotly.js.

    Each trace with x and y values becomes a polyline with a dot per point (its title: the
    trace's name, x and y), in plotly's colours, with axes, their titles, round tick values and a
    legend; the figure's title above. Text is escaped. `LiveFigure` shows it in an
    `ipywidgets.HTML` and redraws it by setting the value.

    Args:
        fig: a figure of scatter traces, e.g. from `loss_figure`.
    Returns:
        An HTML fragment: a div holding the SVG, its dots of class `point`.
    """
    esc = html.escape
    traces = [  # (name, the points that can be drawn)
        (
            t.name or f"trace {i}",
            [
                (x, y)
                for x, y in zip(t.x or (), t.y or (), strict=False)
                if _is_number(x) and _is_number(y)
            ],
        )
        for i, t in enumerate(fig.data)
    ]
    points = [point for _, mine in traces for point in mine]
    left, right, top, bottom = 60, 130, 36, 44  # margins: tick labels, legend, title, axis title
    plot_w, plot_h = width - left - right, height - top - bottom
    x_lo, x_hi = (min(p[0] for p in points), max(p[0] for p in points)) if points else (0, 1)
    y_lo, y_hi = (min(p[1] for p in points), max(p[1] for p in points)) if points else (0, 1)
    pad = (x_hi - x_lo) * 0.03 or 1  # the dots at the ends inside the frame
    x_lo, x_hi = x_lo - pad, x_hi + pad
    pad = (y_hi - y_lo) * 0.05 or 0.5
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return top + (y_hi - y) / (y_hi - y_lo) * plot_h

    parts = [f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='#e5ecf6'/>"]
    for x in _ticks(x_lo, x_hi):
        parts.append(
            f"<line x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='{top}' y2='{top + plot_h}' "
            f"stroke='white'/><text x='{sx(x):.1f}' y='{top + plot_h + 16}' "
            f"text-anchor='middle'>{x:g}</text>"
        )
    for y in _ticks(y_lo, y_hi):
        parts.append(
            f"<line x1='{left}' x2='{left + plot_w}' y1='{sy(y):.1f}' y2='{sy(y):.1f}' "
            f"stroke='white'/><text x='{left - 6}' y='{sy(y) + 4:.1f}' "
            f"text-anchor='end'>{y:g}</text>"
        )
    for i, (name, mine) in enumerate(traces):
        color = LINE_COLORS[i % len(LINE_COLORS)]
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in mine)
        parts.append(f"<polyline points='{line}' fill='none' stroke='{color}' stroke-width='2'/>")
        parts += [
            f"<circle class='point' cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{color}'>"
            f"<title>{esc(name)}: {x:g}, {y:.4g}</title></circle>"
            for x, y in mine
        ]
        legend_y = top + 10 + 20 * i
        parts.append(
            f"<line x1='{left + plot_w + 12}' x2='{left + plot_w + 36}' y1='{legend_y}' "
            f"y2='{legend_y}' stroke='{color}' stroke-width='2'/>"
            f"<text x='{left + plot_w + 42}' y='{legend_y + 4}'>{esc(name)}</text>"
        )
    layout = fig.layout
    title = esc(layout.title.text or "")
    x_title = esc(layout.xaxis.title.text or "")
    y_title = esc(layout.yaxis.title.text or "")
    parts.append(f"<text x='{left}' y='22' font-size='16'>{title}</text>")
    parts.append(
        f"<text x='{left + plot_w / 2:.0f}' y='{height - 8}' text-anchor='middle'>{x_title}</text>"
    )
    parts.append(
        f"<text transform='translate(14 {top + plot_h / 2:.0f}) rotate(-90)' "
        f"text-anchor='middle'>{y_title}</text>"
    )
    return (
        f"<div class='labkit-lines'><svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
        f"height='{height}' font-family='sans-serif' font-size='12' fill='#2a3f5f'>"
        + "".join(parts)
        + "</svg></div>"
    )


def token_heatmap(
    tokens: Sequence[str],
    values: Sequence[float],
    title: str = "Surprisal",
    value_name: str = "bits",
    width: int = 16,
) -> go.Figure:
    """Tokens laid out like text, `width` per row, each cell coloured by its value.

    Args:
        tokens: the token strings (shown in the cells; spaces and newlines made visible).
        values: one number per token, e.g. surprisal in bits.
    Returns:
        A figure with one Heatmap trace (rows read top to bottom).
    Raises:
        ValueError: tokens and values differ in length.
    """
    if len(tokens) != len(values):
        raise ValueError(f"{len(tokens)} tokens but {len(values)} values: give one value per token")
    rows = max(1, math.ceil(len(tokens) / width))
    z = [[None] * width for _ in range(rows)]
    text = [[""] * width for _ in range(rows)]
    for i, (token, value) in enumerate(zip(tokens, values, strict=True)):
        z[i // width][i % width] = float(value)
        text[i // width][i % width] = token.replace(" ", "\u2423").replace("\n", "\u21b5")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=text,
            texttemplate="%{text}",
            hovertemplate="%{text}: %{z:.2f} " + value_name + "<extra></extra>",
            colorscale="Reds",
            colorbar={"title": value_name},
            xgap=2,
            ygap=2,
        )
    )
    fig.update_layout(title=title, height=120 + 40 * rows)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    return fig


def grouped_bars(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str = "",
    yaxis_title: str = "",
) -> go.Figure:
    """One bar per category for each named series, the series side by side.

    Returns:
        A figure with one Bar trace per series.
    Raises:
        ValueError: a series whose length differs from the number of categories.
    """
    fig = go.Figure(layout={"title": title, "yaxis_title": yaxis_title, "barmode": "group"})
    for name, ys in series.items():
        if len(ys) != len(categories):
            raise ValueError(
                f"series {name!r} has {len(ys)} values for {len(categories)} categories"
            )
        fig.add_bar(x=list(categories), y=list(ys), name=name)
    return fig


def metric_bars(
    rows: Sequence[dict], label: str, metrics: Sequence[str], title: str = ""
) -> go.Figure:
    """A table of results as bar charts: one panel per metric (each on its own scale).

    Args:
        rows: one dict per item compared (e.g. per tokenizer).
        label: the key whose value names each bar.
        metrics: the keys to plot, one panel each.
    Returns:
        A figure with one Bar trace per metric.
    """
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
    names = [str(r[label]) for r in rows]
    for col, metric in enumerate(metrics, start=1):
        fig.add_bar(x=names, y=[r[metric] for r in rows], name=metric, row=1, col=col)
    fig.update_layout(title=title, showlegend=False)
    return fig


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Agent figures (labkit.agents): a policy's action distribution, and success rates with intervals.
CHOSEN_COLOR, OTHER_COLOR = "crimson", "steelblue"  # the chosen action's bar stands out


def action_distribution(
    probs: dict[str, float] | None = None,
    chosen: str | None = None,
    title: str = "The policy's distribution over admissible actions",
) -> go.Figure:
    """One bar per admissible action, its height the policy's probability; the chosen one in red.

    Args:
        probs: action -> probability (a Decision's probs); empty or None gives an empty chart.
        chosen: the action taken, highlighted.
        title: the figure's title.
    Returns:
        A figure with one Bar trace. The interactive demos draw `action_bars_html` instead.
    """
    actions = list(probs or {})
    fig = go.Figure(layout={"title": title, "yaxis": {"title": "probability", "range": [0, 1]}})
    fig.add_bar(
        x=actions,
        y=[probs[a] for a in actions],
        marker_color=[CHOSEN_COLOR if a == chosen else OTHER_COLOR for a in actions],
        name="P(action)",
    )
    return fig


def action_bars_html(
    probs: dict[str, float],
    chosen: str | None = None,
    title: str = "The policy's distribution over admissible actions",
) -> str:
    """The action distribution as a small HTML bar chart: no script, no plotly.js.

    One row per action, in the order of `probs`: the action's name, a bar as long as its
    probability (the chosen action's in red, its name in bold) and the probability as a number.
    Each row carries `data-action` and `data-p`, and the chosen one the class `chosen`, for tests
    and browsers to read. Names are escaped (an action can hold a person's words). The interactive
    demos show it in an `ipywidgets.HTML` (labkit.widgets.ActionBars) and redraw it by setting its
    `.value`: a plotly FigureWidget needs a 5 MB bundle per chart, which a loaded page may give up
    loading, and the chart then stops redrawing. An exported page shows the HTML as it is.

    Args:
        probs: action -> probability (a Decision's probs); empty: "no decision to show" instead
            of bars.
        chosen: the action taken, highlighted.
        title: the line above the bars.
    Returns:
        An HTML fragment (a div holding a table).
    """
    esc = html.escape
    rows = []
    for action, p in probs.items():
        mine = action == chosen
        color = CHOSEN_COLOR if mine else OTHER_COLOR
        width = 100 * min(max(float(p), 0.0), 1.0)
        rows.append(
            f"<tr data-action='{esc(action, quote=True)}' data-p='{float(p)!r}'"
            f"{' class=chosen' if mine else ''}>"
            f"<td style='text-align:right;padding:0 6px;white-space:nowrap;"
            f"{'font-weight:bold;' if mine else ''}'>{esc(action)}</td>"
            f"<td style='width:260px;padding:1px 0'><div class='bar' style='width:{width:.1f}%;"
            f"min-width:1px;height:12px;background-color:{color}'></div></td>"
            f"<td style='padding:0 6px;font-variant-numeric:tabular-nums'>{float(p):.3f}</td></tr>"
        )
    body = (
        f"<table style='border-collapse:collapse;line-height:16px;font-size:12px'>{''.join(rows)}"
        "</table>"
        if rows
        else "<div style='color:#666;line-height:16px'>no decision to show</div>"
    )
    return (
        "<div class='labkit-action-bars' style='max-height:26em;overflow-y:auto'>"
        f"<div style='font-weight:bold;line-height:20px'>{esc(title)}</div>{body}</div>"
    )


def success_bars(
    rows: Sequence[dict],
    title: str = "Success rate on unseen episodes (95% Wilson interval)",
) -> go.Figure:
    """Success rates grouped by task, one coloured series per policy, with interval whiskers.

    Args:
        rows: dicts with "task", "policy", "success_rate", "ci_low", "ci_high" (e.g. from
            EvalReport.to_dict() plus a "task" label).
    Returns:
        A figure with one Bar trace per policy.
    """
    fig = go.Figure(
        layout={"title": title, "barmode": "group", "yaxis": {"title": "success", "range": [0, 1]}}
    )
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy]
        fig.add_bar(
            x=[r["task"] for r in mine],
            y=[r["success_rate"] for r in mine],
            name=policy,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [r["ci_high"] - r["success_rate"] for r in mine],
                "arrayminus": [r["success_rate"] - r["ci_low"] for r in mine],
            },
        )
    return fig
