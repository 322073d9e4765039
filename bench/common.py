"""What every benchmark shares: the header, tables, the prepared data, and runs in fresh processes.

Each measured configuration runs in a fresh Python process (`run_fresh`), so that its peak memory is
its own (on the CPU the process's peak resident set size, on CUDA torch's peak allocation) and no
configuration inherits another's warm caches, threads or compiled code. The corpus is tokenized
once, in the parent, and handed to the workers as a tensor file: data preparation is timed by
neither loop.

    python -m bench.common MODULE:FUNCTION '{"keyword": "arguments"}'   # what run_fresh starts
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from labkit.config import from_dict
from labkit.corpus import TokenSplits
from labkit.train import DataSettings, TrainConfig, prepare

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "  # marks the worker's result line among whatever else it prints

# The models every training benchmark compares: 2 LSTM layers with embeddings as wide as the hidden
# state and dropout 0.2, as in PyTorch's word_language_model; only the training loop differs.
LAYERS = 2
DROPOUT = 0.2
# Ours: the settings chosen for quality per wall-clock second, by tokenizer kind. Both keep the
# textbook's batch of 20 x 35 and plain SGD at lr 20 with clipping at 0.25, run by our loop: no sync
# per step, and a cosine decay over the run instead of dividing the lr by 4 after a bad epoch. In a
# few minutes the number of updates decides the quality: at word level, batch 64 at lr 40 read 3x
# the tokens per step, made a third of the updates and reached a far worse perplexity in the same
# two minutes, and AdamW sat on the unigram plateau for hundreds of steps at every lr tried
# (bench/README.md).
# Word level: the adaptive softmax gives the 2000 most frequent words the full head and the other
# 8000 a cluster projected to hidden/4, so that a step costs a third of the full softmax's, and
# dropout's mask is locked for a window (AWD-LSTM). Char level: 80 characters leave no output layer
# to shrink, and larger batches or AdamW reached a worse perplexity in a 2-minute budget.
OURS = {
    "word": {
        "batch_size": 20, "bptt": 35, "optimizer": "sgd", "momentum": 0.0, "lr": 20.0,
        "grad_clip": 0.25, "warmup_steps": 0, "locked_dropout": True,
    },
    "char": {
        "batch_size": 20, "bptt": 35, "optimizer": "sgd", "momentum": 0.0, "lr": 20.0,
        "grad_clip": 0.25, "warmup_steps": 0,
    },
}  # fmt: skip
# The lr of ours' loop at the textbook's batch of 20 (the throughput ladder's first rows).
BATCH20_LR = {"word": 20.0, "char": 20.0}
ADAPTIVE_CUTOFFS = {"word": (2000,), "char": ()}


def ours_config(kind: str, hidden: int, run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """Our TrainConfig for a `kind`-level model of `hidden` units (embeddings as wide).

    Overrides replace the OURS settings, e.g. batch_size=20, adaptive_cutoffs=() for the rows that
    switch one thing off; they may be strings, as from the command line.

    Raises:
        ConfigError: an unknown key or a bad value (the message lists the valid keys).
    """
    settings = {
        "tokenizer": kind,
        "embed_dim": hidden,
        "hidden_dim": hidden,
        "num_layers": LAYERS,
        "dropout": DROPOUT,
        "adaptive_cutoffs": ADAPTIVE_CUTOFFS[kind],
        "threads": os.cpu_count() or 1,
        "device": "cpu",
        "progress": False,
        "run_dir": str(run_dir),
        "name": f"{kind}-{hidden}",
        **OURS[kind],
        **overrides,
    }
    return from_dict(TrainConfig, settings)


def header(title: str, device: str = "cpu") -> None:
    """Print the benchmark's title and the machine it ran on, with the load average at its start.

    The load average matters on a shared machine: other work on the cores slows every row alike,
    so ratios hold up better than absolute figures when it is high.
    """
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
    print(f"== {title} ==")
    print(
        f"torch {torch.__version__}, device {device} ({name or platform.machine()}), "
        f"{os.cpu_count()} CPUs, load average at start {load} (1, 5, 15 min)"
    )


def format_cell(value: Any, spec: str) -> str:
    """One table cell: '-' for a missing value, else `format(value, spec)`."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec) if spec else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print `rows` as an aligned table; columns are (key, heading, format spec) triples."""
    cells = [[format_cell(row.get(key), spec) for key, _, spec in columns] for row in rows]
    widths = [
        max([len(heading)] + [len(r[i]) for r in cells])
        for i, (_, heading, _) in enumerate(columns)
    ]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip([c[1] for c in columns], widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for r in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    sys.stdout.flush()


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is 0."""
    if value is None or not reference:
        return None
    return value / reference


def resident_mb() -> float:
    """This process's resident set size now, in MiB (Linux; elsewhere its peak so far)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss: KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def save_data(kind: str, folder: Path, corpus: str = DataSettings.corpus) -> Path:
    """Tokenize `corpus` (the embedded plays by default) with the `kind` tokenizer at its default
    vocabulary, once.

    Returns:
        The tensor file the workers load with `load_data`.
    """
    path = folder / f"{kind}.pt"
    if not path.exists():
        tokenizer, data = prepare(TrainConfig(tokenizer=kind, corpus=corpus))
        payload = {
            "train": data.train,
            "valid": data.valid,
            "test": data.test,
            "chars": data.chars,
            "vocab_size": tokenizer.vocab_size,
        }
        torch.save(payload, path)
    return path


def load_data(path: str | Path) -> tuple[TokenSplits, int]:
    """The splits and vocabulary size written by `save_data`."""
    payload = torch.load(path, weights_only=True)
    vocab_size = payload.pop("vocab_size")
    return TokenSplits(**payload), vocab_size


def run_fresh(target: str, timeout: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """Call MODULE:FUNCTION(**kwargs) in a fresh Python process and return its result dict.

    The result gains peak_mb (the worker's peak RSS in MiB, or on CUDA torch's peak allocation) and
    idle_mb (its RSS after importing torch and labkit, before the function ran).

    Raises:
        RuntimeError: the worker failed; the message holds the end of its error output.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.common", target, json.dumps(kwargs)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker {target} {kwargs} failed (exit code {proc.returncode}):\n"
            f"{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def _worker(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process and add its memory figures."""
    module, function = target.split(":")
    fn = getattr(importlib.import_module(module), function)
    idle = resident_mb()
    result = fn(**kwargs)
    if result.get("device", "cpu").startswith("cuda"):
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["idle_mb"] = 0.0
    else:
        result["peak_mb"] = peak_rss_mb()
        result["idle_mb"] = idle
    return result


if __name__ == "__main__":
    out = _worker(sys.argv[1], json.loads(sys.argv[2]))
    print(RESULT_PREFIX + json.dumps(out), flush=True)
