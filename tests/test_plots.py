"""Figures built from data carry the right traces; the live loss callback grows a FigureWidget."""

import math

import plotly.graph_objects as go
import pytest

from labkit.plots import (
    LiveFigure,
    action_distribution,
    grouped_bars,
    live_loss_callback,
    loss_figure,
    metric_bars,
    show_action_distribution,
    token_heatmap,
)

HISTORY = [
    {"step": 10, "train_loss": 3.0, "val_loss": None},
    {"step": 20, "train_loss": 2.5, "val_loss": 2.6},
    {"step": 30, "train_loss": 2.2, "val_loss": math.nan},
]


def test_loss_figure_plots_every_finite_loss():
    fig = loss_figure(HISTORY)
    train, val = fig.data
    assert (train.name, list(train.x), list(train.y)) == ("train", [10, 20, 30], [3.0, 2.5, 2.2])
    assert (val.name, list(val.x), list(val.y)) == ("validation", [20], [2.6])


def test_live_callback_appends_rows_to_the_widget():
    fig = loss_figure(widget=True)
    assert isinstance(fig, go.FigureWidget)
    callback = live_loss_callback(fig)
    for row in HISTORY:
        callback(row)
    train, val = fig.data
    assert list(train.x) == [10, 20, 30] and list(train.y) == [3.0, 2.5, 2.2]
    assert list(val.x) == [20] and list(val.y) == [2.6]


def test_token_heatmap_lays_tokens_out_in_rows():
    tokens = ["To", " be", ",", " or", " not", "\n"]
    fig = token_heatmap(tokens, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], width=4)
    (heat,) = fig.data
    assert heat.type == "heatmap"
    assert [list(row) for row in heat.z] == [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, None, None]]
    assert heat.text[0][1] == "\u2423be" and heat.text[1][1] == "\u21b5"
    with pytest.raises(ValueError, match="one value per token"):
        token_heatmap(tokens, [1.0])


def test_bar_builders_make_one_trace_per_series_or_metric():
    fig = grouped_bars(["a", "b"], {"x": [1, 2], "y": [3, 4]})
    assert [t.name for t in fig.data] == ["x", "y"] and list(fig.data[1].y) == [3, 4]
    with pytest.raises(ValueError, match="2 categories"):
        grouped_bars(["a", "b"], {"x": [1]})
    rows = [{"kind": "char", "vocab": 70, "rate": 0.0}, {"kind": "bpe", "vocab": 500, "rate": 0.1}]
    fig = metric_bars(rows, "kind", ["vocab", "rate"])
    assert [list(t.x) for t in fig.data] == [["char", "bpe"]] * 2
    assert [list(t.y) for t in fig.data] == [[70, 500], [0.0, 0.1]]


def test_a_widget_chart_keeps_its_synced_state_current():
    # A page that connects after the updates (Voila) draws the synced state: it must hold the bars.
    fig = action_distribution(widget=True)
    show_action_distribution(fig, {"look": 0.7, "reply": 0.3}, chosen="look")
    (bar,) = fig._widget_data
    assert (bar["x"], bar["y"]) == (["look", "reply"], [0.7, 0.3])
    assert bar["marker"]["color"] == ["crimson", "steelblue"]
    live_loss_callback(live := loss_figure(widget=True))({"step": 5, "train_loss": 2.0})
    assert list(live._widget_data[0]["x"]) == [5]


def test_live_figure_displays_the_widget_with_a_static_copy():
    live = LiveFigure(loss_figure(widget=True, title="run: loss while training"))
    live_loss_callback(live.figure)({"step": 10, "train_loss": 3.0, "val_loss": 3.1})
    bundle = live._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # kernels draw the widget
    static = bundle["application/vnd.plotly.v1+json"]  # exported pages draw this
    assert [t["x"] for t in static["data"]] == [[10], [10]]
    assert repr(live) == "LiveFigure('run: loss while training')"
    live.refresh()  # not shown yet: nothing to update, no error
