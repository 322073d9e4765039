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

    return callback


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
