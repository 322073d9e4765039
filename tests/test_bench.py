"""The benchmarks' row plans: each row changes what its label says and nothing else."""

from bench.common import OURS
from bench.quality_budget import ALL_SWITCHES, variants


def test_a_switch_ours_already_has_is_measured_by_turning_it_off():
    assert OURS["word"]["locked_dropout"] is True  # ours at word level locks dropout's mask
    rows = variants("word", ["locked_dropout", "asgd", "all"])
    assert rows == {
        "ours": {},
        "ours without locked dropout": {"locked_dropout": False},
        "ours + averaged SGD": {"optimizer": "asgd"},
        "ours + all of them": ALL_SWITCHES,
    }
    # at char level ours has no locked dropout, so its row turns it on
    assert variants("char", ["locked_dropout"])["ours + locked dropout"] == {"locked_dropout": True}
