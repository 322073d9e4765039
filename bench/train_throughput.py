"""Training throughput: tokens/s, model FLOP/s and peak memory, ours against the textbook loop.

    python -m bench.train_throughput                          # char and word, hidden 200/650/1500
    python -m bench.train_throughput --kinds word --sizes 200 --steps 40
    python -m bench.train_throughput --device cuda --compile

Every row runs in a fresh process on the same prepared data (tokenizing is timed by neither loop)
and is timed over `--steps` steps after a warm-up. At the first size each switch of ours is turned
on in turn, so that its effect shows: the loop alone (train() at the baseline's batch and softmax),
+ the adaptive softmax (word level), + the larger batch, + torch.compile (with --compile), and the
same with one thread. At the other sizes, the baseline and ours with every switch on. FLOP/s count
24*h*(d+h) per LSTM layer and 6*h*V for the output layer per token
(labkit.model.train_flops_per_token) for both loops, so the adaptive softmax's row counts the work
of the full softmax it replaces; "x base" is tokens/s over the baseline's at the same size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.baseline import BaselineConfig, train_textbook
from bench.common import (
    BATCH20_LR,
    OURS,
    header,
    load_data,
    ours_config,
    print_table,
    ratio,
    run_fresh,
    save_data,
)
from labkit.hardware import peak_flops
from labkit.model import train_flops_per_token
from labkit.runtime import pick_device, set_cpu_threads
from labkit.train import build_model, train

# Warm-up and timed steps per row, by hidden size: big models take seconds per step on a CPU.
STEPS = {200: (5, 20), 650: (2, 6), 1500: (1, 2)}


def measure(
    loop: str,
    kind: str,
    data_path: str,
    hidden: int,
    warmup: int,
    steps: int,
    device: str,
    run_dir: str,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """Train for warmup + steps steps with `loop` ("baseline" or "ours"); time the last `steps`.

    Returns:
        tokens_per_s, flops_per_token, batch_size, softmax and threads of the run, and the device.
    """
    data, vocab_size = load_data(data_path)
    if loop == "baseline":
        # The same model as ours with the full softmax, built from the same seed.
        config = ours_config(kind, hidden, run_dir, device=device, adaptive_cutoffs=(), **overrides)
        set_cpu_threads(config.threads)
        model = build_model(config, vocab_size).to(pick_device(device))
        result = train_textbook(model, data.train, max_steps=warmup + steps, warmup_steps=warmup)
        tokens_per_s, batch_size = result["tokens_per_s"], BaselineConfig().batch_size
    else:
        # A history row every `warmup` steps; the rows after the first time the steps after it.
        config = ours_config(
            kind, hidden, run_dir, device=device, max_steps=warmup + steps, eval_every=warmup,
            eval_windows=1, checkpoint_every=warmup + steps, **overrides,
        )  # fmt: skip
        model = build_model(config, vocab_size)
        rows = train(model, data, config)
        first, last = rows[0], rows[-1]
        tokens_per_s = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
        batch_size = config.batch_size
    return {
        "tokens_per_s": tokens_per_s,
        "flops_per_token": train_flops_per_token(model.config),
        "batch_size": batch_size,
        "softmax": "adaptive" if model.config.adaptive_cutoffs else "full",
        "threads": config.threads,
        "device": str(pick_device(device)),
    }


def ladder(kind: str, threads: int, compile_row: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, loop, TrainConfig overrides) of the rows that turn ours' switches on one by one."""
    rows = [
        ("baseline: textbook loop", "baseline", {}),
        ("ours: train() loop, batch 20, full softmax", "ours", {"batch_size": 20,
                                                               "lr": BATCH20_LR[kind],
                                                               "adaptive_cutoffs": ()}),
    ]  # fmt: skip
    if kind == "word":
        rows.append(("+ adaptive softmax", "ours", {"batch_size": 20, "lr": BATCH20_LR[kind]}))
    ours = OURS[kind]
    if ours["batch_size"] != 20:  # else the rows above are ours already
        rows.append(
            (
                f"+ batch {ours['batch_size']}, {ours['optimizer']} lr {ours['lr']:g} (ours)",
                "ours",
                {},
            )
        )
    if compile_row:
        rows.append(("+ torch.compile", "ours", {"compile": True}))
    if threads > 1:
        rows.append(("ours with 1 thread", "ours", {"threads": 1}))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kinds", default="char,word", help="tokenizer kinds, comma-separated")
    parser.add_argument("--sizes", default="200,650,1500", help="hidden sizes, comma-separated")
    parser.add_argument(
        "--steps", type=int, default=0, help="timed steps per row (0: by size, see STEPS)"
    )
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps first (0: by size)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    parser.add_argument(
        "--compile", action="store_true", help="add a torch.compile row at the first size"
    )
    opts = parser.parse_args(argv)
    kinds = opts.kinds.split(",")
    sizes = [int(s) for s in opts.sizes.split(",")]
    device = str(pick_device(opts.device))
    header("training throughput: ours against the textbook loop", device)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            data_path = str(save_data(kind, Path(tmp)))
            for size in sizes:
                warmup, steps = STEPS.get(size, (2, 4))
                warmup, steps = opts.warmup or warmup, opts.steps or steps
                plan = ladder(kind, opts.threads or os.cpu_count() or 1, opts.compile)
                if size != sizes[0]:
                    plan = [plan[0], ("ours", "ours", {})]
                base = None
                for label, loop, overrides in plan:
                    if opts.threads:
                        overrides = {"threads": opts.threads, **overrides}
                    r = run_fresh(
                        "bench.train_throughput:measure", loop=loop, kind=kind,
                        data_path=data_path, hidden=size, warmup=warmup, steps=steps,
                        device=device, run_dir=tmp, overrides=overrides,
                    )  # fmt: skip
                    base = base or r["tokens_per_s"]
                    peak = peak_flops(device, "bf16")  # None on a CPU
                    flops = r["tokens_per_s"] * r["flops_per_token"]
                    rows.append({
                        "kind": kind, "hidden": size, "run": label, **r,
                        "x_base": ratio(r["tokens_per_s"], base),
                        "gflops": flops / 1e9,
                        "mfu": ratio(flops, peak),
                        "train_mb": r["peak_mb"] - r["idle_mb"],
                    })  # fmt: skip
                    print(f"  {kind} {size} {label}: {r['tokens_per_s']:,.0f} tokens/s", flush=True)
    print()
    print_table(
        rows,
        [
            ("kind", "kind", ""),
            ("hidden", "hidden", ""),
            ("run", "run", ""),
            ("batch_size", "batch", ""),
            ("softmax", "softmax", ""),
            ("threads", "thr", ""),
            ("tokens_per_s", "tokens/s", ",.0f"),
            ("x_base", "x base", ".2f"),
            ("gflops", "GFLOP/s", ".1f"),
            ("mfu", "MFU", ".1%"),
            ("peak_mb", "peak MB", ",.0f"),
            ("train_mb", "+MB", ",.0f"),
        ],
    )
    print(
        "\nGFLOP/s: model FLOPs (train_flops_per_token, the full-softmax count) x tokens/s. "
        "MFU: over the card's dense bf16 peak (labkit.hardware; none for CPUs), for every row, so "
        "the fp32 baseline's share shows what bf16 autocast and the other switches win. peak MB: the "
        "worker's peak RSS (CUDA: peak allocation); +MB: above the RSS after imports."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
