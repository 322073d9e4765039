"""The likelihood: chain rule, batched scoring, evaluation, gradients and baselines."""

import math

import pytest
import torch
from conftest import V, tiny_model
from torch import nn
from torch.func import functional_call

from labkit.batching import IGNORE_INDEX, batchify, num_windows, window
from labkit.likelihood import (
    LN2,
    mean_nll,
    score_continuations,
    score_stream,
    sequence_loglik,
    surprisal,
    token_logprobs,
    unigram_entropy,
)
from labkit.model import LSTMLanguageModel, ModelConfig, detach_state


@torch.no_grad()
def stepwise_logprobs(model: LSTMLanguageModel, seq: list[int]) -> torch.Tensor:
    """log P(seq[t+1] | seq[:t+1]) by feeding one token at a time with the state carried."""
    state, out = None, []
    for t in range(len(seq) - 1):
        features, state = model(torch.tensor([[seq[t]]]), state)  # (1, 1, H)
        out.append(model.log_distribution(features[0, -1])[seq[t + 1]])
    return torch.stack(out)


def test_chain_rule(model):
    context, continuation = [2, 5, 7], [1, 9, 3, 3]
    steps = stepwise_logprobs(model, context + continuation)
    by_hand = steps[len(context) - 1 :].sum()  # only the continuation's tokens are scored
    assert sequence_loglik(model, context, continuation) == pytest.approx(float(by_hand), abs=1e-5)


def test_score_continuations_batched_equals_one_at_a_time(model):
    context = [2, 4, 6, 8]
    candidates = [[3], [1, 2, 3], [10, 0, 5, 5, 7], [3, 1]]
    batched = score_continuations(model, context, candidates)
    assert batched.shape == (len(candidates),)
    alone = torch.tensor([sequence_loglik(model, context, c) for c in candidates])
    torch.testing.assert_close(batched, alone)


def test_score_stream_equals_the_nll_by_hand(model):
    ids = torch.randint(0, V, (50,), generator=torch.Generator().manual_seed(4))
    batch_size, bptt, chars = 3, 4, 123
    score = score_stream(model, ids, batch_size=batch_size, bptt=bptt, chars=chars)
    # Same layout (3 streams of 17, the last padded), read in one pass instead of 5 windows.
    inputs, targets = batchify(ids, batch_size)
    assert num_windows(inputs, bptt) > 1
    with torch.no_grad():
        features, _ = model(inputs)  # (B, S, H)
        logp = model.log_distribution(features).gather(-1, targets.clamp_min(0).unsqueeze(-1))
    real = targets != IGNORE_INDEX
    nll = float(-logp.squeeze(-1)[real].sum())
    assert score.tokens == ids.numel() - 1 == int(real.sum())
    assert score.nll == pytest.approx(nll, rel=1e-5)
    assert score.mean_nll == pytest.approx(nll / score.tokens, rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(nll / score.tokens), rel=1e-5)
    assert score.bits_per_char == pytest.approx(nll / math.log(2) / chars, rel=1e-5)


def test_mean_nll_averages_over_the_real_targets_only():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]])  # padding positions give 0
    targets = torch.tensor([[4, 5, IGNORE_INDEX], [6, IGNORE_INDEX, IGNORE_INDEX]])
    assert float(mean_nll(logp, targets)) == pytest.approx(6.0 / 3)  # 3 real targets, not 6
    assert float(mean_nll(logp, targets, count=4)) == pytest.approx(6.0 / 4)  # a given count wins


def test_score_stream_with_a_mask_scores_the_marked_tokens_only(model):
    ids = torch.randint(0, V, (50,), generator=torch.Generator().manual_seed(5))
    mask = torch.arange(50) % 4 == 1  # e.g. the action tokens of a transcript
    whole = score_stream(model, ids, batch_size=1, bptt=7)
    part = score_stream(model, ids, batch_size=1, bptt=7, mask=mask, chars=26)
    with torch.no_grad():
        features, _ = model(ids[:-1].unsqueeze(0))  # (1, 49, H): every token is still read
        logp = model.log_distribution(features)[0].gather(-1, ids[1:].unsqueeze(-1)).squeeze(-1)
    assert part.tokens == int(mask[1:].sum()) == 13
    assert part.nll == pytest.approx(float(-logp[mask[1:]].sum()), rel=1e-5)
    assert whole.nll == pytest.approx(float(-logp.sum()), rel=1e-5)
    half = score_stream(model, ids, batch_size=1, bptt=7, mask=mask, chars=26, max_windows=4)
    # chars are scaled to the marked tokens read
    assert half.tokens < 13 and half.chars == round(26 * half.tokens / 13)


class LossOf(nn.Module):
    """mean_nll(token_logprobs(...)) as a module, so that functional_call can swap its weights."""

    def __init__(self, model: LSTMLanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logp, _ = token_logprobs(self.model, inputs, targets)
        return mean_nll(logp, targets)


def float64_model() -> LSTMLanguageModel:
    """A tiny float64 model whose weights are large enough for every gradient to be far from 0
    (the default init gives a nearly uniform model whose LSTM gradients are ~1e-5)."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=5, embed_dim=3, hidden_dim=4, num_layers=2, dropout=0.0)
    model = LSTMLanguageModel(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.8)
    return model


def test_gradcheck_of_the_likelihood():
    loss = LossOf(float64_model())
    ids = torch.randint(0, 5, (2, 7), generator=torch.Generator().manual_seed(5))
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    targets[1, -2:] = IGNORE_INDEX  # padding must not contribute to the gradient either
    names = ["model.embedding.weight", "model.lstm.weight_hh_l0", "model.decoder.bias"]
    params = dict(loss.named_parameters())
    weights = tuple(params[n].detach().clone().requires_grad_() for n in names)

    def f(*ws: torch.Tensor) -> torch.Tensor:
        return functional_call(loss, dict(zip(names, ws, strict=True)), (inputs, targets))

    assert torch.autograd.gradcheck(f, weights)


def test_finite_difference_of_one_weight():
    model = float64_model()
    ids = torch.randint(0, 5, (3, 9), generator=torch.Generator().manual_seed(6))
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def loss() -> torch.Tensor:
        logp, _ = token_logprobs(model, inputs, targets)
        return mean_nll(logp, targets)

    loss().backward()
    weight = model.lstm.weight_ih_l1
    index = tuple(int(i) for i in torch.unravel_index(weight.grad.abs().argmax(), weight.shape))
    eps = 1e-2
    with torch.no_grad():
        weight[index] += eps
        up = float(loss())
        weight[index] -= 2 * eps
        down = float(loss())
        weight[index] += eps
    numeric = (up - down) / (2 * eps)
    assert abs(float(weight.grad[index])) > 1e-3  # a weight that matters
    assert numeric == pytest.approx(float(weight.grad[index]), rel=1e-3, abs=1e-5)


def test_empty_context_or_candidate_raise_with_the_fix():
    model = tiny_model()
    with pytest.raises(ValueError, match="context is empty.*bos_id"):
        score_continuations(model, [], [[1, 2]])
    with pytest.raises(ValueError, match="context is empty.*bos_id"):
        sequence_loglik(model, torch.tensor([], dtype=torch.long), [1])
    with pytest.raises(ValueError, match="candidate continuation is empty.*at least one token"):
        score_continuations(model, [2], [[1], []])


def test_unigram_entropy_of_a_uniform_stream_is_log_v():
    stream = torch.arange(V).repeat(20)
    assert unigram_entropy(stream, stream, V) == pytest.approx(math.log(V), rel=1e-6)


def test_a_trained_model_beats_the_unigram_baseline():
    pattern = torch.tensor([2, 3, 4, 5, 3, 4, 6, 2, 7, 3])  # repeats: predictable from context
    train_ids, valid_ids = pattern.repeat(40), pattern.repeat(6)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=8, embed_dim=8, hidden_dim=16, num_layers=1, dropout=0.0)
    model = LSTMLanguageModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    inputs, targets = batchify(train_ids, 4)  # 4 streams of 100 tokens: 5 windows an epoch
    state = None
    for step in range(60):
        x, y = window(inputs, targets, step % 5, 20)
        logp, state = token_logprobs(model, x, y, None if step % 5 == 0 else detach_state(state))
        loss = mean_nll(logp, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    baseline = unigram_entropy(train_ids, valid_ids, 8)
    assert baseline > 1.5  # 7 symbols, far from uniform
    assert score_stream(model, valid_ids, batch_size=2, bptt=20).mean_nll < 0.25 * baseline


def test_surprisal_is_minus_log2_of_each_step(model):
    ids = [2, 5, 7, 1, 9, 3]
    bits = surprisal(model, ids)
    assert bits.shape == (len(ids) - 1,)
    torch.testing.assert_close(bits, -stepwise_logprobs(model, ids) / LN2)
