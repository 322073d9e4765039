"""Quality at a fixed wall-clock budget: the validation loss ours and the textbook loop reach.

    python -m bench.quality_budget                          # word and char level, 3 minutes each
    python -m bench.quality_budget --kinds word --minutes 5 --hidden 200
    python -m bench.quality_budget --kinds word -- --lr 3e-3 --batch_size 128   # ours' overrides
    python -m bench.quality_budget --kinds word --minutes 2 --switches     # AWD-LSTM's, one by one
    python -m bench.quality_budget --kinds word --minutes 5 --switches locked_dropout
    python -m bench.quality_budget --kinds word --minutes 2 --corpus /usr/share/vim/vim90/doc

Ours trains first, with max_minutes set to the budget and its cosine schedule spread over a tenth
more steps than a short probe says fit in it, so that the budget ends the run; the baseline
(bench.baseline, the textbook loop) then trains for exactly the wall time ours took, start to end
of train() with its periodic evaluations and checkpoints included. Both start from the same
weights (same model, same seed) and are scored by the same call, labkit.likelihood.score_stream
over the whole validation split, outside the budget. Arguments after `--` are TrainConfig
overrides for ours. With --switches, ours also trains with each of AWD-LSTM's regularizers
(SWITCHES) on its own and then with all of them, each row for the same budget (a switch ours
already has is turned off instead); the baseline trains once, for the longest of ours' wall times.
--corpus trains and scores both on other text.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.baseline import train_textbook
from bench.common import (
    OURS,
    header,
    load_data,
    ours_config,
    print_table,
    ratio,
    run_fresh,
    save_data,
)
from labkit.config import parse_overrides
from labkit.likelihood import score_stream
from labkit.runtime import pick_device, set_cpu_threads
from labkit.train import TrainConfig, build_model, train

EVAL_BATCH = 64  # streams when scoring the validation split (the same for both loops)
EVAL_BPTT = 35  # tokens per window when scoring
PROBE_WARMUP, PROBE_ROWS = 10, 8  # a throwaway run of ours: steps untimed, then rows of them timed
EVALS_PER_RUN = 5  # ours evaluates (and saves a checkpoint) this often
SCHEDULE_SHARE = 1.1  # ours' cosine schedule is spread over this share of the budget, and the
# budget stops the run: a cosine's last tenth barely moves the lr, so a schedule cut short costs
# little, while one that ends early leaves budget unused (the probe's estimate is good to ~10%)
AVERAGE_SHARE = 0.5  # averaged SGD averages the weights of the last half of the steps
# AWD-LSTM's regularizers (Merity et al. 2018; labkit/model.py, labkit/train.py), each a row of its
# own over ours' settings, then all together. Tied weights need the full softmax.
SWITCHES = {
    "locked_dropout": ("locked dropout", {"locked_dropout": True}),
    "embed_dropout": ("embedding dropout 0.1", {"embed_dropout": 0.1}),
    "weight_drop": ("weight drop 0.3", {"weight_drop": 0.3}),
    "ar_tar": ("AR 2 + TAR 1", {"activation_reg": 2.0, "temporal_reg": 1.0}),
    "tie_weights": ("tied weights, full softmax", {"tie_weights": True, "adaptive_cutoffs": ()}),
    "asgd": ("averaged SGD", {"optimizer": "asgd"}),
}
DEFAULTS = TrainConfig()  # a switch's "off": TrainConfig's default for each of its settings
ALL_SWITCHES = {key: value for _, switch in SWITCHES.values() for key, value in switch.items()}


def _probe_step_seconds(config_args: dict[str, Any], vocab_size: int, data: Any) -> float:
    """Seconds per optimizer step of ours: the median over PROBE_ROWS rows of PROBE_WARMUP steps.

    History rows time the steps between them, evaluations and checkpoints left out; the first
    PROBE_WARMUP steps (slower while caches and thread pools warm up) are not timed, and the median
    keeps a moment's load from another process from setting the whole run's schedule.
    """
    steps = PROBE_WARMUP * (1 + PROBE_ROWS)
    config = ours_config(
        **config_args, name="probe", max_steps=steps, eval_every=PROBE_WARMUP, eval_windows=1,
        checkpoint_every=steps,
    )  # fmt: skip
    elapsed = [row["elapsed_s"] for row in train(build_model(config, vocab_size), data, config)]
    return statistics.median(b - a for a, b in itertools.pairwise(elapsed)) / PROBE_WARMUP


def variants(kind: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Ours' rows: ours, then one per switch key ("all": every switch at once), name -> overrides.

    A switch that ours already has on (OURS) is measured by turning it off instead: its row is
    "ours without ..." at TrainConfig's default for each of its settings.
    """
    rows: dict[str, dict[str, Any]] = {"ours": {}}
    for key in keys:
        if key == "all":
            rows["ours + all of them"] = ALL_SWITCHES
            continue
        label, switch = SWITCHES[key]
        if all(OURS[kind].get(name) == value for name, value in switch.items()):
            rows[f"ours without {label}"] = {name: getattr(DEFAULTS, name) for name in switch}
        else:
            rows[f"ours + {label}"] = switch
    return rows


def run(
    loop: str,
    kind: str,
    data_path: str,
    hidden: int,
    seconds: float,
    device: str,
    run_dir: str,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """Train with `loop` ("baseline" or "ours") for about `seconds`, then score validation.

    Returns:
        steps, tokens, wall_s (the training's wall time), val_loss, val_ppl, val_bpc, device.
    """
    data, vocab_size = load_data(data_path)
    args = {"kind": kind, "hidden": hidden, "run_dir": run_dir, "device": device, **overrides}
    if loop == "baseline":
        config = ours_config(**{**args, "adaptive_cutoffs": ()})
        set_cpu_threads(config.threads)
        model = build_model(config, vocab_size).to(pick_device(device))
        start = time.perf_counter()
        result = train_textbook(model, data.train, data.valid, max_seconds=seconds)
        wall = time.perf_counter() - start
        steps, tokens = result["steps"], result["tokens"]
    else:
        step_s = _probe_step_seconds(args, vocab_size, data)
        max_steps = max(int(SCHEDULE_SHARE * seconds / step_s), 1)
        if args.get("optimizer") == "asgd":
            args.setdefault("average_start", int((1 - AVERAGE_SHARE) * max_steps))
        config = ours_config(
            **args, max_steps=max_steps, max_minutes=seconds / 60,
            eval_every=max(max_steps // EVALS_PER_RUN, 1), eval_windows=10,
            checkpoint_every=max_steps,
        )  # fmt: skip
        model = build_model(config, vocab_size)
        start = time.perf_counter()
        rows = train(model, data, config)
        wall = time.perf_counter() - start
        steps, tokens = rows[-1]["step"], rows[-1]["tokens"]
    score = score_stream(model, data.valid, EVAL_BATCH, EVAL_BPTT, chars=data.chars["valid"])
    return {
        "steps": steps,
        "tokens": tokens,
        "wall_s": wall,
        "val_loss": score.mean_nll,
        "val_ppl": score.perplexity,
        "val_bpc": score.bits_per_char,
        "device": str(pick_device(device)),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    own, extra = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (
        args, [])  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality_budget", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kinds", default="word,char", help="tokenizer kinds, comma-separated")
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget per run")
    parser.add_argument("--hidden", type=int, default=200, help="hidden size (2 layers)")
    parser.add_argument(
        "--corpus",
        default=DEFAULTS.corpus,
        help="shakespeare (the embedded plays), a .txt file or a folder of .txt files",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    parser.add_argument(
        "--switches",
        nargs="?",
        const=",".join([*SWITCHES, "all"]),
        default="",
        help=f"also ours with these AWD-LSTM switches, one per row (of {', '.join(SWITCHES)}, "
        "all: every one at once; no value: each, then all)",
    )
    opts = parser.parse_args(own)
    overrides: dict[str, Any] = dict(parse_overrides(extra))
    if opts.threads:
        overrides.setdefault("threads", opts.threads)
    device = str(pick_device(opts.device))
    header(
        f"quality in {opts.minutes:g} minutes on {opts.corpus}: ours against the textbook loop",
        device,
    )
    keys = list(filter(None, opts.switches.split(",")))
    for key in keys:
        if key != "all" and key not in SWITCHES:
            parser.error(f"unknown switch {key!r}; choose from {', '.join([*SWITCHES, 'all'])}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in opts.kinds.split(","):
            try:
                data_path = str(save_data(kind, Path(tmp), opts.corpus))
            except (OSError, ValueError) as error:  # a corpus missing, empty or unreadable
                parser.error(str(error))
            common = {"kind": kind, "data_path": data_path, "hidden": opts.hidden,
                      "device": device, "run_dir": tmp}  # fmt: skip
            ours = {}
            for name, switch in variants(kind, keys).items():
                ours[name] = run_fresh(
                    "bench.quality_budget:run", loop="ours", seconds=60 * opts.minutes,
                    overrides={**overrides, **switch}, **common,
                )  # fmt: skip
                print(f"  {kind}: {name}: ppl {ours[name]['val_ppl']:.1f}", flush=True)
            base_overrides = {"threads": overrides["threads"]} if "threads" in overrides else {}
            base = run_fresh(
                "bench.quality_budget:run", loop="baseline",
                seconds=max(r["wall_s"] for r in ours.values()), overrides=base_overrides,
                **common,
            )  # fmt: skip
            for name, r in {"baseline: textbook loop": base, **ours}.items():
                rows.append({
                    "kind": kind, "run": name, **r,
                    "tokens_per_s": r["tokens"] / r["wall_s"],
                    "ppl_ratio": ratio(r["val_ppl"], base["val_ppl"]),
                    "tokens_ratio": ratio(r["tokens"], base["tokens"]),
                })  # fmt: skip
            print(f"  {kind}: baseline ppl {base['val_ppl']:.1f}")
    print()
    print_table(
        rows,
        [
            ("kind", "kind", ""),
            ("run", "run", ""),
            ("steps", "steps", ","),
            ("tokens", "tokens", ","),
            ("wall_s", "wall s", ".0f"),
            ("tokens_per_s", "tokens/s", ",.0f"),
            ("tokens_ratio", "x tokens", ".2f"),
            ("val_loss", "val loss", ".3f"),
            ("val_ppl", "val ppl", ",.1f"),
            ("ppl_ratio", "ppl / base", ".3f"),
            ("val_bpc", "val bpc", ".3f"),
        ],
    )
    print(
        f"\nval: the whole validation split, {EVAL_BATCH} streams of {EVAL_BPTT}-token windows; "
        "ppl / base < 1: ours reached the lower perplexity in the same wall time."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
