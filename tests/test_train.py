"""The training loop: learning, exact resume, non-finite losses, schedules, stops and bad input.

The tiny corpus and config (`tiny_config`, `run`) are in conftest.py, shared with test_cli.py and
test_distributed.py.
"""

import math
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import run, tiny_config

from labkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from labkit.config import ConfigError, from_dict
from labkit.likelihood import Score, score_stream, unigram_entropy
from labkit.model import ModelConfig
from labkit.train import (
    NonFiniteLossError,
    TrainConfig,
    build_model,
    learning_rate,
    model_config,
    prepare,
    train,
)


def losses(history):
    return [(row["step"], row["train_loss"], row["val_loss"]) for row in history]


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_learns_and_writes_the_run_folder(tmp_path):
    config = tiny_config(tmp_path)
    rows = []
    model, history = run(config, callback=rows.append)
    assert rows == history
    assert [row["step"] for row in history] == [10, 20, 30, 40]
    assert set(history[0]) == {
        "step", "tokens", "epoch", "train_loss", "val_loss", "val_ppl", "val_bpc", "lr",
        "tokens_per_s", "elapsed_s",
    }  # fmt: skip
    _, data = prepare(config)
    unigram = unigram_entropy(data.train, data.valid, model.config.vocab_size)
    assert history[-1]["val_loss"] < unigram - 0.3  # it uses the context
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[-1]["val_ppl"] == pytest.approx(math.exp(history[-1]["val_loss"]))
    assert history[-1]["tokens"] == 40 * 4 * 16  # every window is full on this corpus
    out = config.run_path
    for name in ("config.json", "tokenizer.json", "history.jsonl", "checkpoint.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert len((out / "history.jsonl").read_text().splitlines()) == len(history)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["progress"]["step"] == 40
    assert ckpt["config"]["hidden_dim"] == 32
    assert all(torch.equal(ckpt["model"][k], v.cpu()) for k, v in model.state_dict().items())
    best = min(history, key=lambda row: row["val_loss"])
    assert load_checkpoint(out / "best.pt")["progress"]["step"] == best["step"]
    assert not list(out.glob(".*.tmp"))  # no temp files left behind


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_each_optimizer_is_deterministic_and_learns(tmp_path, optimizer):
    lr = 3e-2 if optimizer == "adamw" else 1.0
    config = tiny_config(tmp_path, optimizer=optimizer, lr=lr, dropout=0.2)
    model_a, history_a = run(config)
    model_b, history_b = run(
        tiny_config(tmp_path, optimizer=optimizer, lr=lr, dropout=0.2, name="b")
    )
    assert losses(history_a) == losses(history_b)
    assert same_weights(model_a, model_b)
    assert history_a[-1]["val_loss"] < history_a[0]["val_loss"]


# AWD-LSTM's switches all on (labkit/model.py; averaged SGD from step 15).
AWD = dict(
    dropout=0.3, locked_dropout=True, embed_dropout=0.1, weight_drop=0.3, activation_reg=2.0,
    temporal_reg=1.0, optimizer="asgd", lr=1.0, average_start=15, num_layers=2,
)  # fmt: skip


@pytest.mark.parametrize("settings", [dict(dropout=0.3), AWD], ids=["dropout", "AWD-LSTM"])
def test_resume_after_ctrl_c_in_a_callback_matches_an_uninterrupted_run(tmp_path, settings):
    full_model, full = run(tiny_config(tmp_path, **settings, name="full"))

    def interrupt_at_20(row):
        if row["step"] == 20:
            raise KeyboardInterrupt

    config = tiny_config(tmp_path, **settings, name="cut")
    with pytest.raises(KeyboardInterrupt):
        run(config, callback=interrupt_at_20)
    assert load_checkpoint(config.run_path / "checkpoint.pt")["progress"]["step"] == 20
    model, resumed = run(tiny_config(tmp_path, **settings, name="cut", resume=True))
    assert same_weights(model, full_model)
    assert losses(resumed) == losses(full)


def test_averaged_sgd_evaluates_saves_and_returns_the_mean_weights(tmp_path):
    config = tiny_config(tmp_path, optimizer="asgd", lr=1.0, average_start=25)
    model, history = run(config)
    raw = load_checkpoint(config.run_path / "checkpoint.pt")
    means = [slots["ax"] for _, slots in sorted(raw["optimizer"]["state"].items())]
    for param, mean in zip(model.parameters(), means, strict=True):
        assert torch.equal(param.detach(), mean)  # the run's result: the mean since step 25
    assert not all(torch.equal(raw["model"][k], v) for k, v in model.state_dict().items())
    best = load_checkpoint(config.run_path / "best.pt")  # the weights that were evaluated
    assert best["progress"]["step"] == history[-1]["step"]  # still learning at step 40
    assert all(torch.equal(best["model"][k], v) for k, v in model.state_dict().items())
    _, data = prepare(config)
    score = score_stream(model, data.valid, config.batch_size, config.bptt)
    assert score.mean_nll == pytest.approx(history[-1]["val_loss"], rel=1e-5)


def test_sigint_stops_after_the_current_step_and_resumes_exactly(tmp_path):
    # The SIGINT arrives at step 10; the step in flight finishes, so the checkpoint is at step 11,
    # between two history rows: the running train loss must survive the checkpoint too.
    full_model, full = run(tiny_config(tmp_path, dropout=0.3, name="full"))
    config = tiny_config(tmp_path, dropout=0.3, name="cut")

    def press_ctrl_c(row):
        if row["step"] == 10:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run(config, callback=press_ctrl_c)
    saved = load_checkpoint(config.run_path / "checkpoint.pt")["progress"]
    assert saved["step"] == 11 and saved["run_tokens"] == 4 * 16
    model, resumed = run(tiny_config(tmp_path, dropout=0.3, name="cut", resume=True))
    assert same_weights(model, full_model)
    assert losses(resumed) == losses(full)


@pytest.mark.parametrize("where", ["decoder", "unused_embedding_row"])
def test_non_finite_values_stop_training_and_keep_the_last_good_checkpoint(tmp_path, where):
    config = tiny_config(tmp_path, checkpoint_every=10)

    def poison(row):  # after the checkpoint at step 10 is written
        if row["step"] == 10:
            model = poison.model
            if where == "decoder":  # every later loss is NaN
                model.decoder.bias.data[5] = float("nan")
            else:  # <pad> never occurs in the text: the loss stays finite, one weight does not
                model.embedding.weight.data[0, 0] = float("inf")

    tokenizer, data = prepare(config)
    poison.model = build_model(config, tokenizer.vocab_size)
    with pytest.raises(NonFiniteLossError) as err:
        train(poison.model, data, config, tokenizer, poison)
    message = str(err.value)
    assert "checkpoint.pt keeps the last good state (step 10)" in message and "--lr" in message
    assert ("at step 11" if where == "decoder" else "after step 20") in message
    ckpt = load_checkpoint(config.run_path / "checkpoint.pt")
    assert ckpt["progress"]["step"] == 10
    assert all(t.isfinite().all() for t in ckpt["model"].values())


def test_learning_rate_schedules():
    config = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(0.1)
    assert learning_rate(config, 9) == pytest.approx(1.0)
    assert learning_rate(config, 60) == pytest.approx(0.55)  # half-way down the cosine
    assert learning_rate(config, 110) == pytest.approx(0.1)
    constant = TrainConfig(lr=1.0, warmup_steps=0, schedule="constant")
    assert learning_rate(constant, 500) == 1.0
    plateau = TrainConfig(lr=1.0, warmup_steps=0, schedule="plateau")
    assert learning_rate(plateau, 500, scale=0.25) == 0.25


def test_early_stopping_and_plateau_schedule(tmp_path, monkeypatch):
    # A validation score that never improves: the first evaluation sets the best, the plateau
    # schedule halves the lr at each later one, and patience=2 stops after two of them.
    monkeypatch.setattr(
        "labkit.train.score_stream", lambda *a, **k: Score(nll=10.0, tokens=5, chars=7)
    )
    config = tiny_config(tmp_path, schedule="plateau", patience=2, warmup_steps=0, lr=0.01)
    _, history = run(config)
    assert [row["step"] for row in history] == [10, 20, 30]
    assert [row["lr"] for row in history] == pytest.approx([0.01, 0.01, 0.005])
    assert history[0]["val_bpc"] == pytest.approx(10.0 / math.log(2) / 7)


def test_max_minutes_stops_after_the_step_that_used_up_the_time(tmp_path):
    config = tiny_config(tmp_path, max_minutes=1e-6)
    _, history = run(config)
    assert [row["step"] for row in history] == [1]  # evaluated and saved before stopping
    assert load_checkpoint(config.run_path / "checkpoint.pt")["progress"]["step"] == 1


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("hidden_dim", 0, "hidden_dim must be positive"),
        ("batch_size", -4, "batch_size must be positive"),
        ("max_steps", 0, "max_steps must be positive"),
        ("lr", 0.0, "lr must be positive"),
        ("grad_clip", -1.0, "grad_clip must be >= 0"),
        ("tokenizer", "morse", "unknown tokenizer 'morse'; set --tokenizer to one of char, word"),
        ("optimizer", "adam", "set --optimizer to one of adamw, sgd"),
        ("schedule", "linear", "cosine, plateau, constant"),
    ],
)
def test_bad_config_values_name_the_problem_and_the_fix(key, value, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        TrainConfig(**{key: value})
    assert f"--{key}" in str(err.value)


def test_a_corpus_shorter_than_one_batch_is_refused(tmp_path):
    config = tiny_config(tmp_path, batch_size=64)
    tokenizer, data = prepare(config)
    data.train = data.train[:30]
    with pytest.raises(ValueError, match=r"30 tokens, fewer than one batch of batch_size=64"):
        train(build_model(config, tokenizer.vocab_size), data, config)


def test_a_target_mask_limits_what_is_learnt_and_scored(tmp_path):
    config = tiny_config(tmp_path)
    tokenizer, data = prepare(config)
    # Predict only the character after each ".", always a newline: the rest is read, not predicted.
    dot = tokenizer.encode(".")[0]
    for name in ("train", "valid"):
        ids = getattr(data, name)
        data.masks[name] = torch.cat([torch.tensor([False]), ids[:-1] == dot])
    history = train(build_model(config, tokenizer.vocab_size), data, config, tokenizer)
    marked_share = float(data.masks["train"].float().mean())  # about 1 character in 40
    assert history[-1]["tokens"] <= 2 * marked_share * 40 * 4 * 16  # only marked targets count
    assert history[-1]["val_loss"] < 0.1  # a certain target, learnt; the text itself is not
    _, plain = run(tiny_config(tmp_path, name="plain"))
    assert plain[-1]["val_loss"] > 1.0


def test_a_mask_that_marks_nothing_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    tokenizer, data = prepare(config)
    data.masks = {"valid": torch.zeros_like(data.valid, dtype=torch.bool)}
    with pytest.raises(ValueError, match="valid split's target mask selects no token"):
        train(build_model(config, tokenizer.vocab_size), data, config)


def test_an_empty_corpus_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        prepare(tiny_config(tmp_path, corpus=str(empty)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_cuda_is_refused(tmp_path):
    config = tiny_config(tmp_path, device="cuda")
    tokenizer, data = prepare(config)
    with pytest.raises(RuntimeError, match="no CUDA device.*device='cpu'"):
        train(build_model(config, tokenizer.vocab_size), data, config)


def test_resume_refuses_a_checkpoint_of_another_vocabulary(tmp_path):
    run(tiny_config(tmp_path, max_steps=10))
    config = tiny_config(tmp_path, resume=True, max_steps=20)
    tokenizer, data = prepare(config)
    model = build_model(config, tokenizer.vocab_size + 3)
    with pytest.raises(CheckpointError, match=rf"vocabulary of {tokenizer.vocab_size} tokens.*"
                       rf"tokenizer has {tokenizer.vocab_size + 3}"):  # fmt: skip
        train(model, data, config)


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        run(tiny_config(tmp_path, resume=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_training_learns(tmp_path):
    _, history = run(tiny_config(tmp_path, device="cuda", amp="bf16"))
    assert history[-1]["val_loss"] < history[0]["val_loss"]


@pytest.mark.parametrize(
    "changes, differ",
    [
        (dict(hidden_dim=64), "hidden_dim: saved 32, now 64"),
        (dict(tokenizer="word"), "tokenizer: saved 'char', now 'word'"),
        (dict(bptt=8, seed=5), "bptt: saved 16, now 8; seed: saved 0, now 5"),
    ],
)
def test_resume_with_other_settings_is_refused_naming_each_one(tmp_path, changes, differ):
    run(tiny_config(tmp_path, max_steps=10))
    before = (tmp_path / "runs" / "tiny" / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="A resume may change only max_steps") as err:
        run(tiny_config(tmp_path, resume=True, max_steps=20, **changes))
    assert differ in str(err.value)
    assert (tmp_path / "runs" / "tiny" / "checkpoint.pt").read_bytes() == before  # untouched


def test_resume_may_change_the_budget_evaluation_and_machine_settings(tmp_path):
    run(tiny_config(tmp_path, max_steps=10))
    changes = dict(max_steps=20, eval_every=5, max_minutes=5.0, threads=2, checkpoint_every=3)
    _, history = run(tiny_config(tmp_path, resume=True, patience=9, lr=0.02, **changes))
    assert [row["step"] for row in history] == [10, 15, 20]


def test_resume_after_the_corpus_text_changed_is_refused(tmp_path):
    run(tiny_config(tmp_path, tokenizer="word", max_steps=10))
    config = tiny_config(tmp_path, tokenizer="word", max_steps=20, resume=True)  # writes the corpus
    for path in Path(config.corpus).glob("*.txt"):  # same size of vocabulary, other words
        path.write_text(path.read_text().replace("king", "kong"), encoding="utf-8")
    with pytest.raises(CheckpointError, match="another tokenizer.*the corpus text changed"):
        run(config)


def drop(key):
    return lambda payload: payload.pop(key)


def edit_progress(payload):
    payload["progress"]["extra"] = 1


def halve_lstm_state(payload):
    payload["lstm_state"] = tuple(t[:, :2] for t in payload["lstm_state"])


def reshape_optimizer_state(payload):
    slots = payload["optimizer"]["state"][0]
    slots["exp_avg"] = torch.zeros(3)


def drop_param_group(payload):
    payload["optimizer"]["param_groups"][0]["params"].pop()


def reshape_weight(payload):
    payload["model"]["decoder.bias"] = torch.zeros(2)


@pytest.mark.parametrize(
    "edit, problem",
    [
        (drop("optimizer"), "lacks 'optimizer'"),
        (drop("config"), "lacks 'config'"),
        (lambda p: p.update(config=[1]), "records no settings"),
        (lambda p: p.update(model_config=3), "'model_config' is a int"),
        (reshape_weight, r"decoder.bias is \(2,\), the model needs"),
        (edit_progress, "its 'progress' does not fit this run.*exactly the keys"),
        (lambda p: p.update(progress=[]), "its 'progress' does not fit"),
        (halve_lstm_state, r"its 'lstm_state' does not fit this run.*shape \(1, 4, 32\)"),
        (lambda p: p.update(lstm_state=5), "its 'lstm_state' does not fit"),
        (reshape_optimizer_state, r"its 'optimizer' does not fit.*exp_avg is \(3,\)"),
        (drop_param_group, "its 'optimizer' does not fit"),
        (lambda p: p.update(rng={"cpu": "x"}), "its 'rng' does not fit"),
    ],
)
def test_resuming_a_hand_edited_checkpoint_raises_checkpoint_error(tmp_path, edit, problem):
    run(tiny_config(tmp_path, max_steps=10))
    path = tmp_path / "runs" / "tiny" / "checkpoint.pt"
    payload = load_checkpoint(path)
    edit(payload)
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match=problem) as err:
        run(tiny_config(tmp_path, resume=True, max_steps=20))
    assert str(path) in str(err.value)


def test_a_fresh_run_in_the_folder_of_another_leaves_nothing_of_it(tmp_path, monkeypatch):
    run(tiny_config(tmp_path, max_steps=10))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        "labkit.train.score_stream", ctrl_c
    )  # the new run stops before its first best.pt
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config(tmp_path, max_steps=10, hidden_dim=16, overwrite=True))
    out = tmp_path / "runs" / "tiny"
    assert not (out / "best.pt").exists()  # the old run's best weights are gone, not mixed in
    assert load_checkpoint(out / "checkpoint.pt")["model_config"]["hidden_dim"] == 16


@pytest.mark.parametrize("key", ["lr", "max_minutes", "dropout", "grad_clip", "min_lr_ratio"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused_when_the_config_is_read(key, value):
    with pytest.raises(ConfigError, match=rf"--{key} expects a finite number, got '{value}'"):
        from_dict(TrainConfig, {key: value})


@pytest.mark.parametrize("key", ["lr", "max_minutes", "grad_clip", "weight_decay"])
def test_nan_in_a_config_built_in_python_is_refused(key):
    with pytest.raises(ConfigError, match=rf"{key} must be .*got nan; set --{key}"):
        TrainConfig(**{key: float("nan")})


def test_resume_and_overwrite_together_are_refused():
    with pytest.raises(ConfigError, match="resume and overwrite contradict each other"):
        TrainConfig(resume=True, overwrite=True)


def test_the_model_settings_have_one_set_of_defaults():
    # TrainConfig takes its model fields from ModelSettings: `labkit train` and a bare ModelConfig
    # build the same model.
    assert model_config(TrainConfig(), 65) == ModelConfig(vocab_size=65)
    assert model_config(TrainConfig(hidden_dim=64, dropout=0.1), 65).hidden_dim == 64
