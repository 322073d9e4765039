"""The count-based n-gram model: exact counts, normalised distributions, Scores like the LSTM's."""

import math

import pytest
import torch

from labkit.likelihood import unigram_entropy
from labkit.ngram import fit_ngram


def test_bigram_probability_is_the_smoothed_count_ratio():
    ids = [0, 1, 1, 2, 1, 1, 0]
    model = fit_ngram(ids, vocab_size=3, order=2, k=0.5)
    # Bigrams after token 1: (1,1) twice, (1,2) once, (1,0) once -> count(context 1) = 4.
    logp = model.log_distribution([1]).exp()
    expected = torch.tensor([1.5, 2.5, 1.5], dtype=torch.float64) / (4 + 0.5 * 3)
    assert torch.allclose(logp, expected)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_context_gives_a_distribution(order):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 7, (300,), generator=gen)
    model = fit_ngram(ids, vocab_size=7, order=order, k=0.1)
    for context in ([3, 4], [6, 6], [0, 5]):  # seen and unseen contexts alike
        assert model.log_distribution(context).exp().sum().item() == pytest.approx(1.0)


def test_score_stream_is_the_chain_rule_over_every_token_after_the_first():
    ids = torch.tensor([2, 0, 1, 1, 0, 1, 2, 2, 0])
    model = fit_ngram(ids, vocab_size=3, order=2)
    score = model.score_stream(ids, chars=18)
    by_hand = sum(model.log_distribution(ids[:t])[ids[t]].item() for t in range(1, ids.numel()))
    assert score.tokens == ids.numel() - 1
    assert score.nll == pytest.approx(-by_hand)
    assert score.perplexity == pytest.approx(math.exp(-by_hand / score.tokens))
    assert score.bits_per_char == pytest.approx(-by_hand / math.log(2) / 18)


def test_add_one_unigram_matches_the_unigram_entropy_baseline():
    gen = torch.Generator().manual_seed(1)
    train, held_out = torch.randint(0, 11, (500,), generator=gen), torch.randint(0, 11, (80,))
    model = fit_ngram(train, vocab_size=11, order=1, k=1.0)
    assert model.score_stream(held_out).mean_nll == pytest.approx(
        unigram_entropy(train, held_out, 11)
    )


def test_context_helps_on_text_with_structure():
    ids = torch.tensor([0, 1, 2, 3] * 50)  # each token fixes the next one
    unigram = fit_ngram(ids, 4, order=1).score_stream(ids)
    bigram = fit_ngram(ids, 4, order=2).score_stream(ids)
    assert bigram.mean_nll < 0.1 < math.log(4) - 0.01 < unigram.mean_nll


def test_unsmoothed_counts_give_zero_probability_to_unseen_bigrams():
    model = fit_ngram([0, 1, 0, 1], vocab_size=3, order=2, k=0.0)
    assert model.logprobs([0, 1]).item() == pytest.approx(0.0)  # P(1 | 0) = 1
    assert model.logprobs([0, 2]).item() == -math.inf


def test_bad_input_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fit_ngram([0, 1, 5], vocab_size=3)
    with pytest.raises(ValueError, match="order must be >= 1"):
        fit_ngram([0, 1], vocab_size=3, order=0)
    with pytest.raises(ValueError, match="lower order"):
        fit_ngram([1, 2, 1], vocab_size=50_000, order=5)
    with pytest.raises(ValueError, match="longer text"):
        fit_ngram([0, 1, 2], vocab_size=3, order=2).score_stream([1])
