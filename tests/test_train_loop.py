"""The training step itself: train() takes the textbook loop's steps, window by window.

Each test here fails when one line of the loop is broken: the LSTM state not carried from window
to window (or not reset at an epoch's start, or carried where carry_state is off), gradient clipping off, gradients not zeroed, the
learning rate not set.
"""

import copy

import pytest
import torch
from conftest import tiny_config
from torch.nn.utils import parameters_to_vector

from labkit.batching import IGNORE_INDEX, batchify, num_windows, window
from labkit.likelihood import token_logprobs
from labkit.model import detach_state
from labkit.train import build_model, learning_rate, prepare, train


def loop_config(tmp_path, **overrides):
    """Plain SGD, so that each update is -lr times the (clipped) gradient; 8 windows per epoch."""
    values = dict(optimizer="sgd", momentum=0.0, lr=0.5, batch_size=8, bptt=64, grad_clip=0.05)
    values |= dict(max_steps=19, eval_every=1000, checkpoint_every=1000)  # two epoch starts
    return tiny_config(tmp_path, **(values | overrides))


@pytest.mark.parametrize(
    "regularizers", [{}, {"activation_reg": 2.0, "temporal_reg": 1.0}], ids=["plain", "AR+TAR"]
)
def test_train_takes_the_steps_of_the_textbook_loop(tmp_path, regularizers):
    config = loop_config(tmp_path, **regularizers)
    tokenizer, data = prepare(config)
    model = build_model(config, tokenizer.vocab_size)
    reference = copy.deepcopy(model)
    train(model, data, config)

    # The loop written out: windows in order with the state carried, reset at each epoch's start.
    inputs, targets = batchify(data.train, config.batch_size)
    windows = num_windows(inputs, config.bptt)
    assert windows < config.max_steps // 2  # the run crosses two epoch starts
    optimizer = torch.optim.SGD(reference.parameters(), lr=config.lr)
    state = None
    for step in range(config.max_steps):
        if step % windows == 0:
            state = None
        x, y = window(inputs, targets, step % windows, config.bptt)
        optimizer.param_groups[0]["lr"] = learning_rate(config, step)
        logp, state = token_logprobs(reference, x, y, state)
        loss = -logp.sum() / (y != IGNORE_INDEX).sum()
        if regularizers:  # AWD-LSTM's AR and TAR, computed by the forward pass
            loss = loss + reference.penalty
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), config.grad_clip)
        optimizer.step()
        state = detach_state(state)
    for name, weight in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], weight, msg=name)


def test_the_lstm_state_is_carried_between_windows_and_reset_at_each_epoch(tmp_path, monkeypatch):
    config = loop_config(tmp_path)
    tokenizer, data = prepare(config)
    windows = num_windows(batchify(data.train, config.batch_size)[0], config.bptt)
    received, returned = [], []

    def recording(net, x, y, state):
        received.append(state)
        logp, new = token_logprobs(net, x, y, state)
        returned.append(new)
        return logp, new

    monkeypatch.setattr("labkit.train.token_logprobs", recording)
    train(build_model(config, tokenizer.vocab_size), data, config)
    assert len(received) == config.max_steps
    for step, state in enumerate(received):
        if step % windows == 0:
            assert state is None, f"step {step} starts an epoch: the state must start at zero"
        else:
            assert state is not None, f"step {step} lost the state of the window before"
            for carried, produced in zip(state, returned[step - 1], strict=True):
                assert torch.equal(carried, produced.detach())
                assert carried.grad_fn is None  # cut at the window boundary


@pytest.mark.parametrize("carry_state", [True, False])
def test_carry_state_off_reads_every_window_from_zero_in_training_and_validation(
    tmp_path, monkeypatch, carry_state
):
    config = loop_config(tmp_path, carry_state=carry_state, bptt=16, max_steps=6, eval_every=3)
    tokenizer, data = prepare(config)
    seen = {"train": [], "valid": []}

    def recording(part):
        def record(net, x, y, state=None):
            seen[part].append(state)
            return token_logprobs(net, x, y, state)

        return record

    monkeypatch.setattr("labkit.train.token_logprobs", recording("train"))
    monkeypatch.setattr("labkit.likelihood.token_logprobs", recording("valid"))
    train(build_model(config, tokenizer.vocab_size), data, config)
    assert (
        len(seen["train"]) == config.max_steps and len(seen["valid"]) > 2
    )  # windows of two evaluations
    for part, states in seen.items():
        carried = [state is not None for state in states]
        assert any(carried) if carry_state else not any(carried), part


def first_update_norm(tmp_path, grad_clip: float) -> float:
    """The norm of the first update of plain SGD at lr 1: the gradient's, after clipping."""
    config = loop_config(tmp_path, lr=1.0, warmup_steps=0, grad_clip=grad_clip, max_steps=1)
    tokenizer, data = prepare(config)
    model = build_model(config, tokenizer.vocab_size)
    before = parameters_to_vector(model.parameters()).detach().clone()
    train(model, data, config)
    return float((parameters_to_vector(model.parameters()).detach() - before).norm())


@pytest.mark.parametrize("clip", [1e-3, 0.02])
def test_gradient_clipping_bounds_the_update(tmp_path, clip):
    assert first_update_norm(tmp_path, 0.0) > 5 * clip  # unclipped, the gradient is larger
    assert first_update_norm(tmp_path, clip) == pytest.approx(clip, rel=1e-3)
