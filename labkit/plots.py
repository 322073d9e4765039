"""Plotly figures for the notebooks, built from plain data (lists, dicts, history rows).

Every builder returns a figure and shows nothing, so that tests can read `fig.data`. How a figure is
rendered (JupyterLab, HTML export, headless) is decided once by `labkit.setup` via PLOTLY_RENDERER.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

LOSS_SERIES = (("train_loss", "train"), ("val_loss", "validation"))  # history key, trace name


def loss_figure(
    history: Sequence[dict] = (), widget: bool = False, title: str = "Loss (nats per token)"
) -> go.Figure | go.FigureWidget:
    """Training and validation loss against the step, from `train()`'s history rows.

    Args:
        history: rows with "step" and "train_loss" / "val_loss" (missing, None or NaN are skipped).
        widget: return a FigureWidget, which redraws in place as `live_loss_callback` adds points.
    Returns:
        A figure with one line trace per series, named "train" and "validation".
    """
    cls = go.FigureWidget if widget else go.Figure
    fig = cls(layout={"title": title, "xaxis_title": "step", "yaxis_title": "nats per token"})
    for key, name in LOSS_SERIES:
        points = [(r["step"], r[key]) for r in history if _is_number(r.get(key))]
        fig.add_scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name
        )
    return fig


def sync_widget(fig: go.Figure | go.FigureWidget) -> None:
    """Make a FigureWidget's synced state the figure as it is now (a plain Figure: nothing).

    A FigureWidget sends each change as a one-off message that only a page already open applies;
    its synced state (`_widget_data`, `_widget_layout`) is the figure when it was built or last
    displayed by itself, and a page that opens later (Voila, which runs the notebook before the
    page connects, or a second view) draws that: a chart inside a VBox stayed empty, and then
    ignored every update for want of a trace. This sets the state as plotly's own display does.
    """
    if isinstance(fig, go.FigureWidget):
        from copy import deepcopy

        fig._widget_layout = deepcopy(fig._layout_obj._props)
        fig._widget_data = deepcopy(fig._data)


def live_loss_callback(fig: go.FigureWidget) -> Callable[[dict], None]:
    """A `train(..., callback=...)` hook that appends each history row's losses to `fig`.

    Args:
        fig: a figure from `loss_figure(widget=True)` (its traces are matched by name).
    Returns:
        callback(row): adds (row["step"], loss) to each trace whose loss is in the row.
    """
    traces = {trace.name: trace for trace in fig.data}

    def callback(row: dict) -> None:
        with fig.batch_update():  # one redraw per row, not one per trace
            for key, name in LOSS_SERIES:
                if _is_number(row.get(key)):
                    trace = traces[name]
                    trace.x = (*(trace.x or ()), row["step"])
                    trace.y = (*(trace.y or ()), row[key])
        sync_widget(fig)

    return callback


class LiveFigure:
    """A FigureWidget shown with a static copy of itself, for pages that have no kernel.

        live = LiveFigure(loss_figure(widget=True))
        live.show()        # JupyterLab and Voila draw the widget, redrawn as its data change
        ...                # update live.figure
        live.refresh()     # the displayed output now also holds the figure as it is now

    A widget draws only beside a live kernel: an exported HTML page or a notebook opened later
    showed the live curve blank. The display's bundle holds the widget's view and the figure as
    plotly JSON; frontends with a kernel prefer the widget, exports take the JSON
    (labkit.export), and refresh() replaces the bundle in place, so the saved output ends with
    every point.
    """

    def __init__(self, figure: go.FigureWidget) -> None:
        self.figure = figure
        self.handle = None  # the display, once shown

    def __repr__(self) -> str:
        return f"LiveFigure({self.figure.layout.title.text!r})"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        import json

        import plotly.io as pio

        static = json.loads(pio.to_json(self.figure, validate=False))
        widget = self.figure._repr_mimebundle_(include, exclude)
        return {"application/vnd.plotly.v1+json": static, **widget}

    def show(self) -> None:
        """Display the figure (once per LiveFigure)."""
        from IPython.display import display

        self.handle = display(self, display_id=True)

    def refresh(self) -> None:
        """Put the figure as it is now into the displayed output."""
        if self.handle is not None:
            self.handle.update(self)


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
    widget: bool = False,
    title: str = "The policy's distribution over admissible actions",
) -> go.Figure | go.FigureWidget:
    """One bar per admissible action, its height the policy's probability; the chosen one in red.

    Args:
        probs: action -> probability (a Decision's probs); empty or None gives an empty chart.
        chosen: the action taken, highlighted.
        widget: return a FigureWidget, which `show_action_distribution` updates in place.
    Returns:
        A figure with one Bar trace.
    """
    cls = go.FigureWidget if widget else go.Figure
    fig = cls(layout={"title": title, "yaxis": {"title": "probability", "range": [0, 1]}})
    fig.add_bar(x=[], y=[], name="P(action)")
    show_action_distribution(fig, probs or {}, chosen)
    return fig


def show_action_distribution(
    fig: go.Figure | go.FigureWidget, probs: dict[str, float], chosen: str | None = None
) -> None:
    """Replace the bars of an `action_distribution` figure (redraws a FigureWidget once)."""
    actions = list(probs)
    with fig.batch_update():
        bar = fig.data[0]
        bar.x = actions
        bar.y = [probs[a] for a in actions]
        bar.marker.color = [CHOSEN_COLOR if a == chosen else OTHER_COLOR for a in actions]
    sync_widget(fig)


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
