"""Figures built from data carry the right traces; the live loss callback grows a figure; the
action bars draw what they are given."""

import math
import re
from types import SimpleNamespace

import ipywidgets
import pytest
from conftest import drawn_bars

from labkit.plots import (
    LiveFigure,
    action_bars_html,
    action_distribution,
    grouped_bars,
    lines_svg,
    live_loss_callback,
    loss_figure,
    metric_bars,
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


def test_live_callback_appends_rows_to_the_figure():
    fig = loss_figure()
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


def test_action_distribution_draws_one_bar_per_action_the_chosen_one_in_red():
    fig = action_distribution({"look": 0.7, "reply": 0.3}, chosen="look", title="first step")
    (bar,) = fig.data
    assert (list(bar.x), list(bar.y)) == (["look", "reply"], [0.7, 0.3])
    assert list(bar.marker.color) == ["crimson", "steelblue"]
    assert fig.layout.title.text == "first step" and tuple(fig.layout.yaxis.range) == (0, 1)
    (empty,) = action_distribution().data
    assert list(empty.x) == [] and list(empty.y) == []


def test_live_figure_draws_an_svg_and_keeps_a_static_copy_current():
    live = LiveFigure(loss_figure(title="run: loss while training"))
    assert list(live._repr_mimebundle_()) == ["application/vnd.plotly.v1+json"]  # not shown yet
    live.refresh()  # not shown yet: nothing to update, no error
    shown = []
    live.handle = SimpleNamespace(update=lambda obj: shown.append(obj._repr_mimebundle_()))
    live.view = ipywidgets.HTML()  # what show() draws in
    live_loss_callback(live)({"step": 10, "train_loss": 3.0, "val_loss": 3.1})
    live_loss_callback(live)({"step": 20, "train_loss": 2.5, "val_loss": 2.6})
    assert live.view.value.count("class='point'") == 4  # redrawn: train and validation, twice
    bundle = shown[-1]
    view = bundle["application/vnd.jupyter.widget-view+json"]  # kernels draw the HTML widget
    assert view["model_id"] == live.view.model_id  # an ipywidgets.HTML, not a FigureWidget
    static = bundle["application/vnd.plotly.v1+json"]  # exported pages draw this
    assert [t["x"] for t in static["data"]] == [[10, 20], [10, 20]]
    assert repr(live) == "LiveFigure('run: loss while training')"


def test_lines_svg_draws_each_point_with_axes_legend_and_escaped_text():
    svg = lines_svg(loss_figure(HISTORY, title="<run> & loss"))
    assert svg.count("class='point'") == 3 + 1  # NaN and None are not drawn
    assert svg.count("<polyline") == 2 and "validation</text>" in svg and "train</text>" in svg
    assert "&lt;run&gt; &amp; loss" in svg and "<run>" not in svg
    assert "<title>train: 20, 2.5</title>" in svg
    assert ">step</text>" in svg and ">nats per token</text>" in svg  # the axis titles
    assert "<script" not in svg
    empty = lines_svg(loss_figure())  # before the first evaluation: axes, no point
    assert "class='point'" not in empty and "<svg" in empty


def test_action_bars_draw_each_probability_and_highlight_the_chosen_action():
    value = action_bars_html({"look": 0.7, "reply 'hi' <b>": 0.25, "go": 0.05}, chosen="look")
    assert drawn_bars(value) == [("look", 0.7, True), ("reply 'hi' <b>", 0.25, False),
                                 ("go", 0.05, False)]  # fmt: skip
    assert "<b>" not in value
    assert "reply &#x27;hi&#x27; &lt;b&gt;" in value  # a label cannot break out of the page
    assert re.findall(r">(\d\.\d{3})</td>", value) == ["0.700", "0.250", "0.050"]  # the numbers
    assert "width:70.0%" in value and value.count("background-color:crimson") == 1
    assert "<script" not in value
    empty = action_bars_html({}, title="The agent's last decision")
    assert drawn_bars(empty) == [] and "no decision to show" in empty
    assert "The agent&#x27;s last decision" in empty
