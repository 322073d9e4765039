"""The LSTM model: shapes, normalised distributions, weight tying, config errors, state carrying."""

import math

import pytest
import torch
from conftest import V, tiny_model

from labkit.batching import IGNORE_INDEX
from labkit.config import ConfigError
from labkit.model import (
    LSTMLanguageModel,
    ModelConfig,
    detach_state,
    tail_shares,
    train_flops_per_token,
)


def random_ids(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def test_shapes(model):
    ids = random_ids(3, 5)
    features, (h, c) = model(ids)
    assert features.shape == (3, 5, 16)
    assert h.shape == c.shape == (2, 3, 16)
    assert model.target_logprobs(features, ids).shape == (3, 5)
    assert model.log_distribution(features).shape == (3, 5, V)
    assert model.log_distribution(features[:, -1]).shape == (3, V)
    init_h, init_c = model.init_state(3)
    assert init_h.shape == init_c.shape == (2, 3, 16) and not init_h.any()


def test_log_distribution_sums_to_one(model):
    features, _ = model(random_ids(2, 4))
    total = model.log_distribution(features).exp().sum(dim=-1)  # (B, T)
    torch.testing.assert_close(total, torch.ones(2, 4))


def test_target_logprobs_gather_the_distribution(model):
    ids = random_ids(3, 6)
    targets = random_ids(3, 6, seed=2)
    features, _ = model(ids)
    expected = model.log_distribution(features).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(model.target_logprobs(features, targets), expected)


def test_ignored_targets_give_zero(model):
    ids = random_ids(2, 5)
    targets = random_ids(2, 5, seed=3)
    features, _ = model(ids)
    full = model.target_logprobs(features, targets)
    masked_targets = targets.clone()
    masked_targets[0, 3:] = IGNORE_INDEX
    masked = model.target_logprobs(features, masked_targets)
    assert (masked[0, 3:] == 0).all()
    keep = masked_targets != IGNORE_INDEX
    torch.testing.assert_close(masked[keep], full[keep])


def test_weight_tying_shares_the_matrix_and_counts_it_once():
    e = h = 8
    untied = tiny_model(embed_dim=e, hidden_dim=h)
    tied = tiny_model(embed_dim=e, hidden_dim=h, tie_weights=True)
    assert tied.decoder.weight is tied.embedding.weight
    lstm = 4 * h * (e + h) + 8 * h + 4 * h * (h + h) + 8 * h  # two layers: weights and both biases
    assert untied.num_parameters() == V * e + lstm + h * V + V
    assert tied.num_parameters() == untied.num_parameters() - V * h


def test_forget_gate_bias_starts_at_one():
    model = tiny_model()
    h = model.config.hidden_dim
    for layer in range(model.config.num_layers):
        bias_ih = getattr(model.lstm, f"bias_ih_l{layer}")
        bias_hh = getattr(model.lstm, f"bias_hh_l{layer}")
        assert (bias_ih[h : 2 * h] == 1).all()  # gate order: input, forget, cell, output
        assert (bias_ih[:h] == 0).all() and (bias_ih[2 * h :] == 0).all()
        assert (bias_hh == 0).all()


def first_token_trace(model: LSTMLanguageModel, steps: int) -> float:
    """How far the cell state after `steps` tokens moves when only the first token changes."""
    ids = random_ids(1, steps)
    other = ids.clone()
    other[0, 0] = (ids[0, 0] + 1) % V
    with torch.no_grad():
        cells = [model(x)[1][1] for x in (ids, other)]  # (layers, 1, H) each
    return float((cells[0] - cells[1]).norm())


def test_chrono_init_spreads_the_forget_biases_and_a_token_fades_far_slower():
    t_max = 100
    chrono, plain = tiny_model(chrono_init=t_max), tiny_model()
    h = chrono.config.hidden_dim
    for layer in range(chrono.config.num_layers):
        bias_ih = getattr(chrono.lstm, f"bias_ih_l{layer}")
        forget = bias_ih[h : 2 * h]  # gate order: input, forget, cell, output
        assert (forget >= 0).all() and (forget <= math.log(t_max - 1)).all()
        assert forget.max() - forget.min() > 1.0  # memories of many lengths, not one
        assert torch.equal(bias_ih[:h], -forget) and (bias_ih[2 * h :] == 0).all()
    # What the first token left in the cells, 10 tokens on against 40: with every forget bias
    # at 1 most of it is gone in those 30 tokens, with chrono init most of it is still there.
    fading = {m: first_token_trace(m, 10) / first_token_trace(m, 40) for m in (chrono, plain)}
    assert fading[chrono] < 4 and fading[plain] > 10 * fading[chrono]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(chrono_init=2), "chrono_init"),
        (dict(chrono_init=-5), "chrono_init"),
        (dict(tie_weights=True, embed_dim=4, hidden_dim=8), "embed_dim == hidden_dim"),
        (dict(tie_weights=True, embed_dim=8, adaptive_cutoffs=(4,)), "adaptive_cutoffs"),
        (dict(adaptive_cutoffs=(8, 4)), "increase"),
        (dict(adaptive_cutoffs=(4, 4)), "increase"),
        (dict(adaptive_cutoffs=(0, 4)), "adaptive_cutoffs"),
        (dict(adaptive_cutoffs=(4, V)), "adaptive_cutoffs"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(embed_dim=-1), "embed_dim"),
        (dict(hidden_dim=0), "hidden_dim"),
        (dict(num_layers=0), "num_layers"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(embed_dropout=1.0), "embed_dropout"),
        (dict(weight_drop=-0.5), "weight_drop"),
        (dict(activation_reg=-1.0), "activation_reg"),
        (dict(temporal_reg=float("nan")), "temporal_reg"),
    ],
)
def test_config_errors(overrides, message):
    sizes = dict(vocab_size=V, embed_dim=8, hidden_dim=8, num_layers=1)
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**(sizes | overrides))


def test_state_carried_across_windows_equals_the_whole_sequence(model):
    ids = random_ids(2, 12)
    whole, (h_whole, c_whole) = model(ids)
    first, state = model(ids[:, :5])
    second, (h, c) = model(ids[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    torch.testing.assert_close(h, h_whole)
    torch.testing.assert_close(c, c_whole)


def test_detach_state_cuts_the_graph():
    model = tiny_model().train()
    # Tokens 1 and 2 appear only in the first window, so their embeddings can get a gradient from
    # the second window's loss only through the carried state.
    first = torch.tensor([[1, 2, 1, 2]])
    second = torch.tensor([[5, 6, 7, 5]])

    def embedding_grad(cut: bool) -> torch.Tensor:
        model.zero_grad()
        _, state = model(first)
        if cut:
            state = detach_state(state)
        features, _ = model(second, state)
        (-model.target_logprobs(features, second).sum()).backward()
        return model.embedding.weight.grad[[1, 2]]

    assert embedding_grad(cut=False).abs().sum() > 0
    assert (embedding_grad(cut=True) == 0).all()
    _, state = model(first)
    detached = detach_state(state)
    assert all(t.grad_fn is None and not t.requires_grad for t in detached)
    assert all(torch.equal(a, b) for a, b in zip(state, detached, strict=True))
    assert detach_state(None) is None


def test_train_flops_per_token_by_hand():
    config = ModelConfig(vocab_size=7, embed_dim=3, hidden_dim=5, num_layers=2)
    # Layer 0: 4 gates x (3+5)->5 products = 2*4*5*8 = 320 forward FLOPs; x3 with backward = 960.
    # Layer 1: 2*4*5*10 = 400 forward, 1200 in all. Output: 2*5*7 = 70 forward, 210 in all.
    assert train_flops_per_token(config) == 960 + 1200 + 210


def test_the_adaptive_softmax_is_credited_with_the_flops_it_does():
    config = ModelConfig(vocab_size=20, embed_dim=8, hidden_dim=16, adaptive_cutoffs=(4, 10))
    lstm = 24 * 16 * (8 + 16)
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 12, 19])  # 4 in the head, 2 in each tail cluster
    assert tail_shares(config, targets) == [0.25, 0.25]
    # Head: 16 -> 4 words + 2 cluster logits, every token. Cluster 0: 16 -> 16/4 -> its 6 words;
    # cluster 1: 16 -> 16/16 -> its 10 words; each for a quarter of the tokens. x3 with backward.
    head, tail0, tail1 = 16 * 6, 16 * 4 + 4 * 6, 16 * 1 + 1 * 10
    expected = lstm + 6 * (head + 0.25 * tail0 + 0.25 * tail1)
    assert train_flops_per_token(config, [0.25, 0.25]) == pytest.approx(expected)
    assert expected < train_flops_per_token(config) == lstm + 6 * 16 * 20  # no shares: full count


def test_locked_dropout_drops_the_same_units_at_every_step():
    model = tiny_model(dropout=0.5, locked_dropout=True).train()
    x = torch.ones(3, 6, 8)
    dropped = model._dropout(x)  # (B, T, D)
    assert (dropped == dropped[:, :1]).all()  # one mask per stream, the same at every step
    assert (dropped == 0).any() and set(dropped.unique().tolist()) <= {0.0, 2.0}
    per_token = tiny_model(dropout=0.5).train()._dropout(x)
    assert not (per_token == per_token[:, :1]).all()  # the usual dropout: a new mask per token
    assert torch.equal(model.eval()._dropout(x), x)  # no dropout at evaluation


def test_embed_dropout_drops_a_word_at_every_position():
    model = tiny_model(embed_dropout=0.5).train()
    ids = torch.arange(V).repeat(2, 3)  # (2, 3V): every word at three positions per stream
    zero = (model._embed(ids) == 0).all(dim=-1)  # (B, T): a dropped word's whole embedding
    assert zero.any() and not zero.all()
    assert torch.equal(zero, zero[:1, :V].repeat(2, 3))  # a word: dropped everywhere or nowhere
    assert not (model.eval()._embed(ids) == 0).all(dim=-1).any()


def test_weight_drop_changes_the_recurrence_only_in_training_and_trains_the_raw_weights():
    model = tiny_model(weight_drop=0.5)
    ids = random_ids(2, 7)
    plain = tiny_model()
    eval_features, _ = model.eval()(ids)
    assert torch.allclose(eval_features, plain.eval()(ids)[0])  # evaluation: the whole weights
    features, _ = model.train()(ids)
    assert not torch.allclose(features, eval_features)
    features.sum().backward()
    assert model.lstm.weight_hh_l0.grad is not None and model.lstm.weight_hh_l0.grad.any()


def test_activation_and_temporal_regularizers_are_left_for_the_loss():
    ids = random_ids(2, 7)
    plain = tiny_model().train()
    plain(ids)
    assert plain.penalty is None  # both off: nothing to add
    ar = tiny_model(activation_reg=2.0).train()
    features, _ = ar(ids)
    assert torch.allclose(ar.penalty, 2.0 * features.pow(2).mean())
    tar = tiny_model(temporal_reg=1.0).train()
    features, _ = tar(ids)
    change = features[:, 1:] - features[:, :-1]  # no dropout: the output is the features
    assert torch.allclose(tar.penalty, change.pow(2).mean())
    tar.eval()(ids)
    assert tar.penalty is None  # evaluation adds nothing
