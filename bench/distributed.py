"""One process against two: training tokens/s under torchrun (DDP, gloo on the CPU), same global batch.

    python -m bench.distributed                              # word level, 2 layers of 200
    python -m bench.distributed --kind char --hidden 650 --steps 10

Each row is `torchrun --standalone --nproc_per_node N -m labkit train` with ours' settings; every
rank reads its own rows of the batch, and the threads are split so that the processes together use
the machine's cores. tokens/s comes from the run's history (steps after the warm-up, evaluations
left out). A third row runs one process on half the batch with one rank's share of the cores, i.e.
what each rank computes without the gradient all-reduce: the gap between it and the two-process row
is the price of communication and of the ranks waiting for each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, header, load_data, ours_config, print_table, ratio, save_data
from labkit.config import to_dict
from labkit.train import TrainConfig, build_model


def _argv(config: TrainConfig) -> list[str]:
    """The `labkit train` command line that gives `config`."""
    out = []
    for key, value in to_dict(config).items():
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        out += [f"--{key}", str(value)]
    return out


def run_torchrun(config: TrainConfig, processes: int, timeout: float = 1800) -> dict[str, Any]:
    """Train `config` with torchrun on `processes` processes; tokens/s after the first history row.

    Raises:
        RuntimeError: torchrun failed; the message holds the end of its error output.
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": str(config.threads),  # torchrun would set 1; ours sets it explicitly
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(processes), "-m", "labkit", "train", *_argv(config),
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun failed (exit code {proc.returncode}):\n{proc.stderr[-3000:]}")
    history = (config.run_path / "history.jsonl").read_text().splitlines()
    first, last = json.loads(history[0]), json.loads(history[-1])
    seconds = last["elapsed_s"] - first["elapsed_s"]
    tokens = last["tokens"] - first["tokens"]
    return {"tokens_per_s": tokens / seconds, "step_s": seconds / (last["step"] - first["step"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.distributed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kind", default="word", help="tokenizer kind: char, word or bpe")
    parser.add_argument("--hidden", type=int, default=200, help="hidden size (2 layers)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to use")
    opts = parser.parse_args(argv)
    header("one process against two (torchrun, DDP over gloo), same global batch")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        _, vocab_size = load_data(save_data(opts.kind, Path(tmp)))

        def config(name: str, threads: int, **overrides: Any) -> TrainConfig:
            return ours_config(
                opts.kind, opts.hidden, tmp, name=name, threads=threads,
                max_steps=opts.warmup + opts.steps, eval_every=opts.warmup, eval_windows=1,
                checkpoint_every=opts.warmup + opts.steps, **overrides,
            )  # fmt: skip

        one = config("one", opts.cores)
        half = max(opts.cores // 2, 1)
        plan = [
            (f"1 process x {opts.cores} threads, batch {one.batch_size}", one, 1),
            (f"2 processes x {half} thread(s), gloo, batch {one.batch_size // 2} each",
             config("two", half), 2),
            (f"1 process x {half} thread(s), batch {one.batch_size // 2} (one rank, no all-reduce)",
             config("rank", half, batch_size=one.batch_size // 2), 1),
        ]  # fmt: skip
        params = build_model(one, vocab_size).num_parameters()
        for label, cfg, processes in plan:
            r = run_torchrun(cfg, processes)
            rows.append({"run": label, **r})
            print(f"  {label}: {r['tokens_per_s']:,.0f} tokens/s", flush=True)
    for r in rows:
        r["x_one"] = ratio(r["tokens_per_s"], rows[0]["tokens_per_s"])
    print()
    print_table(
        rows,
        [
            ("run", "run", ""),
            ("tokens_per_s", "tokens/s", ",.0f"),
            ("x_one", "x 1 proc", ".2f"),
            ("step_s", "s/step", ".3f"),
        ],
    )
    comm = rows[1]["step_s"] - rows[2]["step_s"]
    print(
        f"\n{opts.kind}-level, 2 layers of {opts.hidden}: {params / 1e6:.2f} M parameters, so each "
        f"step all-reduces {4 * params / 2**20:.1f} MiB of float32 gradients. Two processes "
        f"spend {comm * 1000:.0f} ms per step more than one rank's share alone (all-reduce and "
        "waiting); with both cores already busy in one process, data parallelism on one machine "
        "can only win what intra-op threading leaves idle."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
