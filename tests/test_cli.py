"""The command line: help, bad input, train/sample/score, and resuming a killed process."""

import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import as_argv, tiny_config

from labkit.checkpoint import load_checkpoint, save_checkpoint
from labkit.cli import main

REPO = Path(__file__).resolve().parents[1]


def tiny_args(tmp_path: Path, **overrides) -> list[str]:
    """The command line of test_train's tiny config: a run of a second or two."""
    return as_argv(tiny_config(tmp_path, **overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run folder, and what `labkit train` printed."""
    tmp_path = tmp_path_factory.mktemp("cli")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", *tiny_args(tmp_path)]) == 0
    return tmp_path / "runs" / "tiny", printed.getvalue()


def test_train_prints_validation_bits_per_char_and_the_run_folder(trained):
    run, printed = trained
    last = printed.strip().splitlines()[-1]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert f"validation bits/char {history[-1]['val_bpc']:.4f} at step 40" in last
    assert str(run) in last


def test_sample_continues_the_prompt(trained, capsys):
    run, _ = trained
    argv = [
        "sample",
        "--run",
        str(run),
        "--prompt",
        "the king",
        "--max_new_tokens",
        "40",
        "--seed",
        "0",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("the king") and len(first) > len("the king")
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # seeded


def test_score_prints_nll_perplexity_and_bits_per_char(trained, tmp_path, capsys):
    run, _ = trained
    text = "the king and queen of night.\n"
    assert main(["score", "--run", str(run), "--text", text]) == 0
    printed = capsys.readouterr().out
    nll, tokens, ppl, bpc = (
        float(x)
        for x in re.findall(
            r"nll ([\d.]+) nats over (\d+) tokens.*perplexity ([\d.]+), bits/char ([\d.]+)", printed
        )[0]
    )
    assert tokens == len(text)  # char tokenizer: every character after <bos> is predicted
    assert ppl == pytest.approx(math.exp(nll / tokens), rel=1e-3)
    assert bpc == pytest.approx(nll / math.log(2) / len(text), rel=1e-3)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    assert main(["score", "--run", str(run / "checkpoint.pt"), "--file", str(path)]) == 0
    assert "bits/char" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "sample", "score"])
def test_help_lists_every_key_with_its_comment(command, capsys):
    assert main([command, "--help"]) == 0
    printed = capsys.readouterr().out
    assert f"usage: labkit {command}" in printed
    expected = {
        "train": ["--hidden_dim", "LSTM state size per layer", "--max_minutes", "--resume"],
        "sample": ["--run", "--prompt", "--temperature", "--top_p"],
        "score": ["--run", "--text", "--file"],
    }[command]
    for text in expected:
        assert text in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit"], "unknown command 'fit'; valid commands: train, sample, score"),
        (
            ["train", "--hiden_dim", "8"],
            "unknown config key(s) hiden_dim for TrainConfig; valid keys: corpus",
        ),
        (["train", "--batch_size", "0"], "batch_size must be positive, got 0; set --batch_size"),
        (["train", "--hidden_dim", "-3"], "hidden_dim must be positive, got -3"),
        (
            ["train", "--tokenizer", "morse"],
            "set --tokenizer to one of char, word, lower, lower_typos, bpe",
        ),
        (["train", "--max_steps", "ten"], "--max_steps expects int, got 'ten'"),
        (["sample", "--tempreature", "2"], "unknown key(s) tempreature; valid keys: run, prompt"),
        (["sample", "--prompt", "x"], "--run is required"),
        (["score", "--run", "runs/x"], "give exactly one of --text T or --file F"),
    ],
)
def test_a_bad_command_line_exits_2_with_the_valid_choices(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_exits_2(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, device="cuda")]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_a_corpus_that_is_not_utf8_exits_1_naming_the_file_and_the_fix(tmp_path, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Où est la forêt?\n".encode("latin-1") * 50)
    assert main(["train", *tiny_args(tmp_path, corpus=latin1)]) == 1
    err = capsys.readouterr().err
    assert "latin1.txt is not UTF-8" in err and "iconv" in err


def test_an_empty_corpus_exits_1(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert main(["train", *tiny_args(tmp_path, corpus=empty)]) == 1
    assert "is empty" in capsys.readouterr().err


def test_a_corrupt_checkpoint_exits_1_naming_the_file(tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"weights": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:300])
    assert main(["sample", "--run", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {path}: it is truncated" in err


def test_a_killed_process_resumes_to_the_same_weights_and_losses(tmp_path):
    # Dropout on, so that equal results need the RNG state restored too.
    args = tiny_args(tmp_path, dropout=0.3, max_steps=200, eval_every=50, checkpoint_every=10)
    assert main(["train", *args, "--name", "whole"]) == 0

    run = tmp_path / "runs" / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit", "train", *args, "--name", "killed"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    killed_at = load_checkpoint(run / "checkpoint.pt")["progress"]["step"]
    assert 0 < killed_at < 200

    # Resuming needs only the run folder: the other settings come from its config.json.
    resume = ["--run_dir", str(tmp_path / "runs"), "--name", "killed", "--resume", "true"]
    assert main(["train", *resume]) == 0
    whole = load_checkpoint(tmp_path / "runs" / "whole" / "checkpoint.pt")
    resumed = load_checkpoint(run / "checkpoint.pt")
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])

    def losses(path: Path) -> list:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [(row["step"], row["train_loss"], row["val_loss"]) for row in rows]

    assert losses(run / "history.jsonl") == losses(tmp_path / "runs" / "whole" / "history.jsonl")


def test_a_run_cut_short_by_the_time_budget_says_so(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, max_minutes=1e-6)]) == 0
    printed = capsys.readouterr().out
    assert "stopped at step 1 of 40: the time budget (--max_minutes 1e-06)" in printed
    assert "validation bits/char" in printed.splitlines()[-1]


def run_files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def test_train_refuses_a_folder_that_holds_a_run_until_told_to_resume_or_overwrite(
    tmp_path, capsys
):
    args = tiny_args(tmp_path, max_steps=10)
    assert main(["train", *args]) == 0
    run = tmp_path / "runs" / "tiny"
    before = run_files(run)
    capsys.readouterr()
    assert main(["train", *args, "--hidden_dim", "16"]) == 2
    err = capsys.readouterr().err
    assert f"labkit train: {run} already holds a run (config.json" in err
    assert "--resume true" in err and "--overwrite true" in err and "Traceback" not in err
    assert run_files(run) == before  # nothing of the old run was touched

    assert main(["train", *args, "--hidden_dim", "16", "--overwrite", "true"]) == 0
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["model_config"]["hidden_dim"] == 16 and ckpt["progress"]["step"] == 10
    assert json.loads((run / "config.json").read_text())["hidden_dim"] == 16
    assert main(["train", *args, "--resume", "true", "--overwrite", "true"]) == 2
    assert "resume and overwrite contradict each other" in capsys.readouterr().err


def test_resume_with_other_settings_exits_1_naming_them_and_touches_nothing(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, max_steps=10)]) == 0
    run = tmp_path / "runs" / "tiny"
    before = run_files(run)
    capsys.readouterr()
    resume = ["--run_dir", str(tmp_path / "runs"), "--name", "tiny", "--resume", "true"]
    assert main(["train", *resume, "--hidden_dim", "64", "--max_chars", "500"]) == 1
    err = capsys.readouterr().err
    assert "max_chars: saved 0, now 500; hidden_dim: saved 32, now 64" in err
    assert run_files(run) == before
    assert main(["train", *resume, "--max_steps", "20", "--eval_every", "5"]) == 0  # allowed
    assert load_checkpoint(run / "checkpoint.pt")["progress"]["step"] == 20


def test_a_run_without_config_json_resumes_with_its_checkpoints_settings(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, max_steps=10)]) == 0
    run = tmp_path / "runs" / "tiny"
    (run / "config.json").unlink()
    resume = ["--run_dir", str(tmp_path / "runs"), "--name", "tiny", "--resume", "true"]
    assert main(["train", *resume, "--max_steps", "20"]) == 0
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["progress"]["step"] == 20 and ckpt["config"]["hidden_dim"] == 32

    payload = {k: v for k, v in ckpt.items() if k != "config"}
    save_checkpoint(run / "checkpoint.pt", payload)
    (run / "config.json").unlink()
    capsys.readouterr()
    assert main(["train", *resume]) == 1
    assert f"{run / 'checkpoint.pt'} lacks 'config'" in capsys.readouterr().err
    (run / "checkpoint.pt").unlink()
    assert main(["train", *resume]) == 1
    assert f"nothing to resume in {run}: it has no checkpoint.pt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lr", "nan", "--lr expects a finite number, got 'nan'"),
        ("max_minutes", "nan", "--max_minutes expects a finite number, got 'nan'"),
        ("grad_clip", "inf", "--grad_clip expects a finite number, got 'inf'"),
        ("dropout", "-inf", "--dropout expects a finite number, got '-inf'"),
    ],
)
def test_non_finite_floats_exit_2_before_any_data_is_prepared(
    tmp_path, monkeypatch, capsys, key, value, message
):
    monkeypatch.setattr("labkit.cli.prepare", lambda config: pytest.fail("data was prepared"))
    assert main(["train", *tiny_args(tmp_path), f"--{key}", value]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("temperature", "nan", "--temperature expects a finite number, got 'nan'"),
        ("temperature", "inf", "--temperature expects a finite number, got 'inf'"),
        ("temperature", "-0.5", "temperature must be a finite number above 0, got -0.5"),
        ("top_p", "nan", "--top_p expects a finite number, got 'nan'"),
        ("top_p", "0", "top_p must be in (0, 1], got 0.0"),
        ("top_p", "1.5", "top_p must be in (0, 1], got 1.5"),
        ("top_k", "-1", "top_k must be >= 0, got -1"),
    ],
)
def test_bad_sampling_settings_exit_2_naming_the_setting(trained, capsys, key, value, message):
    run, _ = trained
    assert main(["sample", "--run", str(run), f"--{key}", value]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
