"""The likelihood, one code path for training, evaluation and scoring.

    log P(w_1:T | w_0) = sum_t log P(w_t | w_<t, w_0)

`token_logprobs` computes the terms of that sum; the training loss, `score_stream`, `sequence_loglik` and
`score_continuations` (the agent's action scores) are all sums of its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from labkit.batching import IGNORE_INDEX, batchify, num_windows, window
from labkit.model import LSTMLanguageModel, State

LN2 = math.log(2.0)


def token_logprobs(
    model: LSTMLanguageModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    state: State | None = None,
) -> tuple[torch.Tensor, State]:
    """log P(targets[:, t] | inputs[:, :t+1], state) for every position.

    Args:
        inputs: (B, T) ids read by the model.
        targets: (B, T) ids to predict (inputs shifted by one); IGNORE_INDEX where there is none.
        state: the recurrent state carried in (zeros if None).
    Returns:
        (B, T) float32 log-probabilities (0 at ignored positions) and the state after the window.
    """
    features, state = model(inputs, state)  # (B, T, H)
    return model.target_logprobs(features, targets), state  # (B, T)


def mean_nll(logp: torch.Tensor, targets: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """The training loss: -sum(log p) / count, count defaulting to the number of real targets."""
    if count is None:
        count = int((targets != IGNORE_INDEX).sum())
    return -logp.sum() / max(count, 1)


@dataclass
class Score:
    """Summed negative log-likelihood of a text, with the figures derived from it."""

    nll: float  # -sum log P, in nats
    tokens: int  # number of predicted tokens
    chars: int | None = None  # characters of the text they came from, for bits per character

    @property
    def mean_nll(self) -> float:
        """Cross-entropy in nats per token."""
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        """exp(cross-entropy): the model is as unsure as a uniform choice among this many tokens."""
        return math.exp(min(self.mean_nll, 700.0))

    @property
    def bits_per_token(self) -> float:
        return self.mean_nll / LN2

    @property
    def bits_per_char(self) -> float | None:
        """Total bits over characters: comparable across tokenizers (None without a char count)."""
        return None if not self.chars else self.nll / LN2 / self.chars


@torch.no_grad()
def score_stream(
    model: LSTMLanguageModel,
    ids: torch.Tensor,
    batch_size: int = 10,
    bptt: int = 64,
    chars: int | None = None,
    max_windows: int | None = None,
    mask: torch.Tensor | None = None,
    carry_state: bool = True,
) -> Score:
    """The likelihood of a token stream `ids` (N,), read as `batch_size` streams with state carried.

    Args:
        chars: characters of the text behind the predicted tokens, so that the Score can give bits
            per character.
        max_windows: stop after this many windows (a quick estimate); then `chars` is scaled.
        mask: optional (N,) bool, True where a token is predicted (see `batchify`).
        carry_state: False reads each window from a zero state, as a model trained that way
            (TrainConfig.carry_state) was.
    Returns:
        A Score over every predicted token after the first (or over the windows read).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch_size = min(batch_size, ids.numel() - 1)
    inputs, targets = batchify(ids, batch_size, mask=mask)
    predicted = ids.numel() - 1 if mask is None else int(mask[1:].sum())
    inputs, targets = inputs.to(device), targets.to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    state = None
    windows = num_windows(inputs, bptt)
    if max_windows is not None:
        windows = min(windows, max_windows)
    try:
        for i in range(windows):
            x, y = window(inputs, targets, i, bptt)
            logp, state = token_logprobs(model, x, y, state if carry_state else None)
            total -= logp.sum(dtype=torch.float64)
            count += int((y != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    if chars is not None and count < predicted:
        chars = round(chars * count / predicted)
    return Score(nll=float(total), tokens=count, chars=chars)


def _as_context(context: list[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    ctx = torch.as_tensor(context, dtype=torch.long, device=device).view(1, -1)  # (1, C)
    if ctx.numel() == 0:
        raise ValueError(
            "the context is empty: log P(w_1:T | w_0) needs at least one token to condition on; "
            "start the prompt with the tokenizer's bos_id."
        )
    return ctx


@torch.no_grad()
def score_continuations(
    model: LSTMLanguageModel,
    context: list[int] | torch.Tensor,
    candidates: list[list[int]],
) -> torch.Tensor:
    """log P(candidate | context) for every candidate, from one encoding of the context.

    The context is run once; its final state is copied to all N candidates, which are then read in
    a single padded batch. This is how an agent scores all of its admissible actions.

    Returns:
        (N,) float32 summed log-probabilities, on the CPU.
    Raises:
        ValueError: an empty context or an empty candidate.
    """
    device = next(model.parameters()).device
    ctx = _as_context(context, device)
    if not candidates:
        return torch.empty(0)
    if any(len(c) == 0 for c in candidates):
        raise ValueError(
            "a candidate continuation is empty; every candidate needs at least one token."
        )
    was_training = model.training
    model.eval()
    features, (h, c) = model(ctx)  # (1, C, H)
    first = model.log_distribution(features[:, -1])[0]  # (V,) P(first token | context)
    n, longest = len(candidates), max(len(cand) for cand in candidates)
    ids = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
    for i, cand in enumerate(candidates):
        ids[i, : len(cand)] = torch.as_tensor(cand)
    ids = ids.to(device)
    total = first[ids[:, 0]]  # (N,)
    if longest > 1:
        state = (h.expand(-1, n, -1).contiguous(), c.expand(-1, n, -1).contiguous())
        # Padding positions read token 0; their targets are IGNORE_INDEX, so they add nothing.
        inputs = ids[:, :-1].clamp_min(0)  # (N, L-1)
        logp, _ = token_logprobs(model, inputs, ids[:, 1:], state)  # (N, L-1)
        total = total + logp.sum(dim=1)
    model.train(was_training)
    return total.float().cpu()


def sequence_loglik(
    model: LSTMLanguageModel, context: list[int] | torch.Tensor, continuation: list[int]
) -> float:
    """log P(continuation | context) = sum_t log P(w_t | w_<t, context), in nats."""
    return float(score_continuations(model, context, [continuation])[0])


@torch.no_grad()
def surprisal(model: LSTMLanguageModel, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """-log2 P(w_t | w_<t) for t = 1 .. len(ids)-1, the first token being the context.

    Returns:
        (len(ids) - 1,) bits per token, on the CPU.
    """
    seq = _as_context(ids, next(model.parameters()).device)  # (1, T)
    was_training = model.training
    model.eval()
    logp, _ = token_logprobs(model, seq[:, :-1], seq[:, 1:])
    model.train(was_training)
    return (-logp[0] / LN2).cpu()


def unigram_entropy(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of `eval_ids` under the add-one unigram model of `train_ids`.

    A language model that ignores context can do no better than this; a trained LSTM must beat it.
    """
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    logp = (counts / counts.sum()).log()
    return float(-logp[eval_ids[1:]].mean())
