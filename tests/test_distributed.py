"""torchrun with two processes (DDP over gloo) follows the same losses as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import as_argv, run, tiny_config

from labkit.checkpoint import load_checkpoint
from labkit.train import prepare

REPO = Path(__file__).resolve().parents[1]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    # 6 streams of 615 tokens, 3 per rank, read in 10 windows: 12 steps cross an epoch end, and
    # the last window holds padding in rank 1's rows only, so the ranks count different targets.
    # SGD, unlike Adam, is not blind to the scale of the gradient: it checks the loss scaling.
    config = tiny_config(
        tmp_path, batch_size=6, bptt=64, max_steps=12, eval_every=4, optimizer="sgd", lr=1.0
    )
    _, data = prepare(config)
    assert (data.train.numel() - 1) % config.batch_size != 0  # the streams are padded
    single_model, single = run(config)

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "labkit", "train", *as_argv(config), "--name", "ddp"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("validation bits/char") == 1  # rank 0 alone prints

    out = Path(config.run_dir) / "ddp"
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [4, 8, 12]
    assert [row["tokens"] for row in rows] == [row["tokens"] for row in single]
    for key in ("train_loss", "val_loss"):
        assert [row[key] for row in rows] == pytest.approx([row[key] for row in single], abs=1e-4)
    weights = load_checkpoint(out / "checkpoint.pt")["model"]
    for name, tensor in single_model.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-4, rtol=1e-4)
