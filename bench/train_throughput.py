"""Training throughput: tokens/s, model FLOP/s and peak memory, ours against the textbook loop.

    python -m bench.train_throughput                          # char and word, hidden 200/650/1500
    python -m bench.train_throughput --kinds word --sizes 200 --steps 40
    python -m bench.train_throughput --device cuda --compile

Every row runs in a fresh process on the same prepared data (tokenizing is timed by neither loop)
and is timed over `--steps` steps after a warm-up. At the first size each switch of ours is turned
on in turn, so that its effect shows: the loop alone (train() at the baseline's batch and softmax),
+ the adaptive softmax (word level), + the larger batch, + torch.compile (with --compile), and the
same with one thread. At the other sizes, the baseline and ours with every switch on. FLOP/s count
the work each row really does (labkit.model.train_flops_per_token: 24*h*(d+h) per LSTM layer, 6*h*V
for a full softmax, and for the adaptive one its head and each tail cluster for the share of
targets that reach it); "x base" is tokens/s over the baseline's at the same size.

How close to the machine: each worker also times torch.matmul, in the same process and threads,
on the products of one training window of its own model (per layer the input projection of every
step at once and the recurrent product step by step, then the output layer or the adaptive head),
and the row's FLOP/s are reported as a share of that. With --profile, one more worker runs ours at
the first size under torch.profiler and splits a step's time into the LSTM, the output layer and
loss, the optimizer (with clipping), embedding and dropout, and the rest (data, bookkeeping).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

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
from labkit.model import ModelConfig, tail_shares, train_flops_per_token
from labkit.runtime import pick_device, set_cpu_threads
from labkit.train import build_model, train

# Warm-up and timed steps per row, by hidden size: big models take seconds per step on a CPU.
STEPS = {200: (5, 20), 650: (2, 6), 1500: (1, 2)}
MATMUL_REPEATS = 5  # the matmul roof is the best of this many timings of one window's products
PROFILE_STEPS = 20  # steps of ours under torch.profiler (--profile)
# A profiled op's part of the step, by the first of these words its name holds (lower case).
PARTS = {
    "LSTM (forward and backward)": ("lstm", "rnn"),
    "optimizer, clipping, zero_grad": ("optimizer", "foreach", "clip", "norm"),
    "embedding and dropout": ("embedding", "dropout", "mulbackward", "index_select"),
    "output layer and loss": ("linear", "mm", "softmax", "gather", "nll", "cross_entropy", "index"),
}


def matmul_flops_per_s(config: ModelConfig, batch_size: int, bptt: int, device: str) -> float:
    """FLOP/s that torch.matmul reaches here on one training window's products of this model.

    The products: per layer the input projection of all bptt steps at once and the recurrent
    product step by step (4 gates each), then the output layer (the adaptive softmax's head).
    On CUDA in bf16 (the default autocast), elsewhere in float32. The best of MATMUL_REPEATS.
    """
    dev = pick_device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    h, e = config.hidden_dim, config.embed_dim
    cuts = config.adaptive_cutoffs
    out = cuts[0] + len(cuts) if cuts else config.vocab_size
    shapes = []  # (m, k, n): an (m, k) @ (k, n) product
    for layer in range(config.num_layers):
        shapes.append((batch_size * bptt, e if layer == 0 else h, 4 * h))
        shapes += [(batch_size, h, 4 * h)] * bptt
    shapes.append((batch_size * bptt, h, out))
    operands = {
        shape: (
            torch.randn(shape[0], shape[1], device=dev, dtype=dtype),
            torch.randn(shape[1], shape[2], device=dev, dtype=dtype),
        )
        for shape in set(shapes)
    }
    flops = sum(2 * m * k * n for m, k, n in shapes)
    best = float("inf")
    for _ in range(MATMUL_REPEATS + 1):  # the first is a warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for shape in shapes:
            torch.matmul(*operands[shape])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return flops / best


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
    shares = tail_shares(model.config, data.train) if model.config.adaptive_cutoffs else None
    return {
        "tokens_per_s": tokens_per_s,
        "flops_per_token": train_flops_per_token(model.config, shares),
        "matmul_flops_per_s": matmul_flops_per_s(model.config, batch_size, config.bptt, device),
        "batch_size": batch_size,
        "softmax": "adaptive" if model.config.adaptive_cutoffs else "full",
        "threads": config.threads,
        "device": str(pick_device(device)),
    }


def profile(
    kind: str, data_path: str, hidden: int, device: str, run_dir: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Milliseconds per step of ours in each part of PARTS, from PROFILE_STEPS profiled steps.

    Each op that no other op called counts whole (backward ops included) towards the first part
    whose words its name holds. The run's one evaluation scores a single window and its one
    checkpoint lands in "rest", so both add little over PROFILE_STEPS steps.
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    data, vocab_size = load_data(data_path)
    config = ours_config(
        kind, hidden, run_dir, device=device, max_steps=PROFILE_STEPS, eval_every=PROFILE_STEPS,
        eval_windows=1, checkpoint_every=PROFILE_STEPS, **overrides,
    )  # fmt: skip
    model = build_model(config, vocab_size)
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if str(pick_device(device)).startswith("cuda") else []
    )
    with torch_profile(activities=activities) as prof:
        train(model, data, config)
    spent: collections.Counter[str] = collections.Counter()
    for event in prof.events():
        if event.cpu_parent is not None:
            continue
        name = event.name.lower()
        part = next((p for p, words in PARTS.items() if any(w in name for w in words)), "rest")
        spent[part] += event.cpu_time_total / 1e3  # ms
    total = sum(spent.values())
    return {
        "ms_per_step": {part: spent[part] / PROFILE_STEPS for part in [*PARTS, "rest"]},
        "total_ms_per_step": total / PROFILE_STEPS,
    }


def ladder(kind: str, threads: int, compile_row: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, loop, TrainConfig overrides) of the rows that turn ours' switches on one by one."""
    rows = [
        ("baseline: textbook loop", "baseline", {}),
        ("ours: train() loop, batch 20, full softmax", "ours", {"batch_size": 20,
                                                               "lr": BATCH20_LR[kind],
                                                               "adaptive_cutoffs": ()}),
    ]  # fmt: skip
    ours = OURS[kind]
    if kind == "word":
        label = "+ adaptive softmax" + (" (ours)" if ours["batch_size"] == 20 else "")
        rows.append((label, "ours", {"batch_size": 20, "lr": BATCH20_LR[kind]}))
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
    parser.add_argument(
        "--profile", action="store_true", help="split a step of ours at the first size into parts"
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
                        "matmul_gflops": r["matmul_flops_per_s"] / 1e9,
                        "of_matmul": ratio(flops, r["matmul_flops_per_s"]),
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
            ("matmul_gflops", "matmul GFLOP/s", ".1f"),
            ("of_matmul", "of matmul", ".1%"),
            ("mfu", "MFU", ".1%"),
            ("peak_mb", "peak MB", ",.0f"),
            ("train_mb", "+MB", ",.0f"),
        ],
    )
    print(
        "\nGFLOP/s: the FLOPs the row's model does per token (train_flops_per_token; the adaptive "
        "softmax's head and tails at their share of the targets) x tokens/s. matmul GFLOP/s: "
        "torch.matmul on one window's products of that model, same process and threads; of "
        "matmul: the row's GFLOP/s as a share of it. MFU: over the card's dense bf16 peak "
        "(labkit.hardware; none for CPUs). peak MB: the worker's peak RSS (CUDA: peak "
        "allocation); +MB: above the RSS after imports."
    )
    if opts.profile:
        for kind in kinds:
            with tempfile.TemporaryDirectory() as tmp:
                data_path = str(save_data(kind, Path(tmp)))
                overrides = {"threads": opts.threads} if opts.threads else {}
                r = run_fresh(
                    "bench.train_throughput:profile", kind=kind, data_path=data_path,
                    hidden=sizes[0], device=device, run_dir=tmp, overrides=overrides,
                )  # fmt: skip
            total = r["total_ms_per_step"]
            print(f"\nWhere a step of ours goes ({kind} level, hidden {sizes[0]}, "
                  f"{PROFILE_STEPS} steps under torch.profiler, {total:.1f} ms per step):")  # fmt: skip
            print_table(
                [
                    {"part": part, "ms": ms, "share": ms / total}
                    for part, ms in r["ms_per_step"].items()
                ],  # fmt: skip
                [("part", "part", ""), ("ms", "ms/step", ".1f"), ("share", "share", ".1%")],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
