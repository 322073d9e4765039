"""Sampling: determinism, seeds, filtering, stop strings, batching and config errors."""

import math

import pytest
import torch

from labkit.batching import batchify, window
from labkit.config import ConfigError
from labkit.generate import SampleConfig, filter_distribution, generate
from labkit.likelihood import mean_nll, token_logprobs
from labkit.model import LSTMLanguageModel, ModelConfig, detach_state
from labkit.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("char", "abcdefgh \n")


def lstm(vocab_size: int, dropout: float = 0.0) -> LSTMLanguageModel:
    config = ModelConfig(
        vocab_size=vocab_size, embed_dim=8, hidden_dim=16, num_layers=1, dropout=dropout
    )
    return LSTMLanguageModel(config)


@pytest.fixture
def model(tok) -> LSTMLanguageModel:
    """A random model in train mode with dropout, so that generate must switch to eval itself.

    Its weights are larger than the default init, so that its distributions are peaked and depend
    on the whole prompt: a state mixed up between rows would change the greedy text.
    """
    torch.manual_seed(0)
    model = lstm(tok.vocab_size, dropout=0.3).train()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.6)
    return model


@pytest.fixture(scope="module")
def abc_model(tok) -> LSTMLanguageModel:
    """A model trained for a few dozen steps on "abcabc...": it has learnt the cycle."""
    torch.manual_seed(0)
    model = lstm(tok.vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    inputs, targets = batchify(torch.tensor(tok.encode("abc" * 100, bos=True)), 4)  # (4, 75)
    state = None
    for step in range(40):
        x, y = window(inputs, targets, step % 5, 15)
        logp, state = token_logprobs(model, x, y, None if step % 5 == 0 else detach_state(state))
        loss = mean_nll(logp, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_a_trained_model_continues_the_pattern(abc_model, tok):
    assert generate(abc_model, tok, "abcab", greedy=True, max_new_tokens=7) == "cabcabc"


def test_str_in_str_out_list_in_list_out(model, tok):
    assert isinstance(generate(model, tok, "ab", max_new_tokens=3, seed=0), str)
    out = generate(model, tok, ["ab", "c", ""], max_new_tokens=3, seed=0)
    assert isinstance(out, list) and len(out) == 3 and all(isinstance(s, str) for s in out)
    assert generate(model, tok, [], max_new_tokens=3) == []


def test_greedy_is_deterministic_and_the_mode_is_restored(model, tok):
    first = generate(model, tok, "abc", greedy=True, max_new_tokens=30)
    assert generate(model, tok, "abc", greedy=True, max_new_tokens=30) == first
    assert model.training  # generate ran in eval mode (no dropout) and switched back
    model.eval()
    generate(model, tok, "abc", greedy=True, max_new_tokens=3)
    assert not model.training


def test_same_seed_same_text_different_seed_different_text(model, tok):
    config = SampleConfig(max_new_tokens=40, seed=0)
    text = generate(model, tok, "ab", config)
    assert generate(model, tok, "ab", config) == text
    assert generate(model, tok, "ab", config, seed=1) != text


def test_seeded_sampling_leaves_the_global_rng_untouched(model, tok):
    before = torch.get_rng_state()
    generate(model, tok, "ab", max_new_tokens=20, seed=7)
    assert torch.equal(torch.get_rng_state(), before)


def test_unseeded_sampling_follows_the_global_seed(model, tok):
    torch.manual_seed(3)
    text = generate(model, tok, "ab", max_new_tokens=20)
    torch.manual_seed(3)
    assert generate(model, tok, "ab", max_new_tokens=20) == text


def test_top_k_one_equals_greedy(model, tok):
    greedy = generate(model, tok, "ha", greedy=True, max_new_tokens=25)
    assert generate(model, tok, "ha", top_k=1, seed=0, max_new_tokens=25) == greedy


def test_batched_greedy_equals_unbatched_for_prompts_of_different_lengths(model, tok):
    prompts = ["", "a", "abcab", "hgfedcbahg", "b b\n"]
    alone = [generate(model, tok, p, greedy=True, max_new_tokens=15) for p in prompts]
    assert len(set(alone)) > 1  # the prompts matter, so rows that leaked into each other would show
    assert generate(model, tok, prompts, greedy=True, max_new_tokens=15) == alone


def test_max_new_tokens_is_respected(abc_model, model, tok):
    for n in (0, 1, 9):
        assert len(generate(abc_model, tok, "ab", greedy=True, max_new_tokens=n)) == n
        assert len(generate(model, tok, "ab", seed=0, max_new_tokens=n)) <= n  # eos may end it


def test_stop_strings_cut_the_text_and_end_the_row(abc_model, tok):
    # The greedy continuation of "abc" is "abcabcabc...".
    assert generate(abc_model, tok, "abc", greedy=True, max_new_tokens=20, stop="ca") == "ab"
    out = generate(abc_model, tok, ["abc", "ab"], greedy=True, max_new_tokens=20, stop=("ca", "x"))
    assert out == ["ab", ""]  # the second row continues "cab...": cut at 0
    assert generate(abc_model, tok, "abc", greedy=True, max_new_tokens=6, stop=("h",)) == "abcabc"


def test_eos_ends_a_row(tok):
    model = lstm(tok.vocab_size)
    with torch.no_grad():
        model.decoder.bias[tok.eos_id] = 50.0  # eos is certain after any prompt
    assert generate(model, tok, ["ab", ""], greedy=True, max_new_tokens=10) == ["", ""]
    assert generate(model, tok, "ab", seed=0, max_new_tokens=10) == ""


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=float("nan")), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(stop=("",)), "stop"),
    ],
)
def test_bad_configs_raise_naming_the_field(model, tok, overrides, field):
    with pytest.raises(ValueError, match=field):
        generate(model, tok, "ab", **overrides)
    with pytest.raises(ConfigError, match=field):
        SampleConfig(**overrides)


def test_unknown_override_lists_the_valid_names(model, tok):
    with pytest.raises(ConfigError, match="max_tokens.*valid keys: max_new_tokens, temperature"):
        generate(model, tok, "ab", max_tokens=5)


def test_greedy_accepts_any_temperature(abc_model, tok):
    assert generate(abc_model, tok, "ab", greedy=True, temperature=0.0, max_new_tokens=3) == "cab"


def test_a_tokenizer_of_another_size_is_rejected(model):
    other = train_tokenizer("char", "xyz")
    with pytest.raises(ValueError, match="tokenizer the model was trained with"):
        generate(model, other, "x")


# filter_distribution

LOGP = torch.log_softmax(torch.randn(6, 20, generator=torch.Generator().manual_seed(0)), dim=-1)


def kept(logp: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(logp)


def assert_rows_normalised(logp: torch.Tensor) -> None:
    torch.testing.assert_close(logp.exp().sum(dim=-1), torch.ones(logp.size(0)))


@pytest.mark.parametrize("k", [1, 3, 20])
def test_top_k_keeps_the_k_most_likely(k):
    out = filter_distribution(LOGP, top_k=k)
    assert (kept(out).sum(dim=-1) == k).all()
    top = LOGP.topk(k, dim=-1).indices
    assert kept(out).gather(-1, top).all()
    assert_rows_normalised(out)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logp = probs.log()
    assert kept(filter_distribution(logp, top_p=0.4)).tolist() == [[False, True, False, False]]
    assert kept(filter_distribution(logp, top_p=0.75)).tolist() == [[False, True, False, True]]
    assert kept(filter_distribution(logp, top_p=0.85)).tolist() == [[False, True, True, True]]
    assert kept(filter_distribution(logp, top_p=1.0)).all()
    torch.testing.assert_close(
        filter_distribution(logp, top_p=0.75).exp(), torch.tensor([[0.0, 0.625, 0.0, 0.375]])
    )
    for p in (1e-6, 0.3, 0.6, 0.9, 0.99):  # random rows: mass >= p, and no kept token is spare
        out = filter_distribution(LOGP, top_p=p)
        mass = LOGP.exp().masked_fill(~kept(out), 0.0)  # (B, V)
        smallest = mass.masked_fill(~kept(out), math.inf).min(dim=-1).values
        assert (mass.sum(dim=-1) >= p - 1e-6).all()
        assert (mass.sum(dim=-1) - smallest < p).all()
        assert_rows_normalised(out)
    assert (kept(filter_distribution(LOGP, top_p=1e-6)).sum(dim=-1) == 1).all()


def test_temperature_sharpens_and_flattens():
    def entropy(logp: torch.Tensor) -> torch.Tensor:
        return -(logp.exp() * logp).sum(dim=-1)

    temps = [0.01, 0.3, 1.0, 3.0]
    entropies = [entropy(filter_distribution(LOGP, temperature=t)) for t in temps]
    for colder, warmer in zip(entropies, entropies[1:], strict=False):
        assert (colder < warmer).all()
    torch.testing.assert_close(entropies[2], entropy(LOGP))  # temperature 1 changes nothing
    cold = filter_distribution(LOGP, temperature=0.01)
    assert (cold.argmax(dim=-1) == LOGP.argmax(dim=-1)).all()
    assert (cold.max(dim=-1).values.exp() > 0.99).all()
    assert_rows_normalised(cold)


def test_filters_combine_and_renormalise():
    out = filter_distribution(LOGP, temperature=0.7, top_k=5, top_p=0.8)
    assert (kept(out).sum(dim=-1) <= 5).all()
    assert_rows_normalised(out)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_k=-2), "top_k"),
        (dict(top_p=2.0), "top_p"),
    ],
)
def test_filter_distribution_rejects_bad_settings(kwargs, field):
    with pytest.raises(ValueError, match=field):
        filter_distribution(LOGP, **kwargs)
