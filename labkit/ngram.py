"""A count-based n-gram language model with add-k smoothing: the baseline an LSTM must beat.

    P(w_t | w_{t-n+1} .. w_{t-1}) = (count(context, w_t) + k) / (count(context) + k * V)

Counting is maximum likelihood for this model (k = 0), and add-k keeps every probability above zero
so that held-out text has a finite cross-entropy. Each n-gram of token ids is stored as one integer
code (base V), so counting and look-up are a sort, `unique` and `searchsorted` over tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from labkit.likelihood import Score


@dataclass
class NGramModel:
    """Counts of every n-gram and context seen in training (sorted codes for `searchsorted`)."""

    order: int  # n: each token is predicted from the n - 1 tokens before it (1 = unigram)
    vocab_size: int  # V: number of token ids
    k: float  # add-k smoothing: k is added to every n-gram count
    keys: torch.Tensor  # (G,) sorted codes of the n-grams seen in training
    counts: torch.Tensor  # (G,) how often each was seen
    context_keys: torch.Tensor  # (C,) sorted codes of the contexts seen in training
    context_counts: torch.Tensor  # (C,) how often each context was followed by a token

    @property
    def start(self) -> int:
        """The first position scored: every token after the first that has a full context."""
        return max(1, self.order - 1)

    def logprobs(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """log P(w_t | w_{t-n+1} .. w_{t-1}) for t = start .. len(ids) - 1.

        Returns:
            (len(ids) - start,) float64 log-probabilities in nats.
        Raises:
            ValueError: a 2-D input, ids outside [0, V), or fewer tokens than one prediction needs.
        """
        ids = _check_ids(ids, self.vocab_size)
        if ids.numel() <= self.start:
            raise ValueError(
                f"an order-{self.order} model needs more than {self.start} tokens to score "
                f"anything, got {ids.numel()}; pass a longer text."
            )
        grams = ids.unfold(0, self.order, 1)[self.start - self.order + 1 :]  # (N - start, n)
        return self._logprob(_codes(grams, self.vocab_size))

    def log_distribution(self, context: torch.Tensor | list[int]) -> torch.Tensor:
        """The whole next-token distribution after `context` (its last n - 1 tokens are used).

        Returns:
            (V,) float64 log-probabilities that sum to 1 in probability.
        Raises:
            ValueError: fewer than n - 1 context tokens, or ids outside [0, V).
        """
        context = _check_ids(context, self.vocab_size)
        n_ctx = self.order - 1
        if context.numel() < n_ctx:
            raise ValueError(
                f"an order-{self.order} model conditions on {n_ctx} tokens, got {context.numel()}"
            )
        ctx = context[context.numel() - n_ctx :]  # (n - 1,)
        prefix = _codes(ctx.view(1, -1), self.vocab_size) * self.vocab_size  # (1,)
        return self._logprob(prefix + torch.arange(self.vocab_size))  # (V,)

    def score_stream(self, ids: torch.Tensor | list[int], chars: int | None = None) -> Score:
        """The summed negative log-likelihood of a token stream `ids`, as the LSTM's is reported.

        For order 1 and 2 this scores every token after the first, exactly the tokens that
        `labkit.likelihood.score_stream` scores, so the two Scores compare directly.

        Args:
            chars: characters of the text behind `ids`, for bits per character.
        Returns:
            A Score over positions start .. len(ids) - 1.
        """
        logp = self.logprobs(ids)
        return Score(nll=float(-logp.sum()), tokens=logp.numel(), chars=chars)

    def _logprob(self, codes: torch.Tensor) -> torch.Tensor:
        """log P for n-gram codes (M,): the smoothed count over the smoothed context count."""
        joint = _lookup(self.keys, self.counts, codes)  # (M,)
        context = _lookup(self.context_keys, self.context_counts, codes // self.vocab_size)
        numerator = joint.double() + self.k
        return numerator.log() - (context.double() + self.k * self.vocab_size).log()  # (M,)


def fit_ngram(
    ids: torch.Tensor | list[int], vocab_size: int, order: int = 2, k: float = 1.0
) -> NGramModel:
    """Count the n-grams of a training stream.

    Args:
        ids: (N,) token ids of the training text.
        vocab_size: V, the tokenizer's vocabulary size.
        order: n (1 = unigram, 2 = bigram, ...).
        k: add-k smoothing (1 = Laplace); 0 gives the maximum-likelihood estimate, which assigns
            probability 0 (log-probability -inf) to any n-gram not seen in training.
    Returns:
        The fitted NGramModel.
    Raises:
        ValueError: order < 1, k < 0, V ** order too large for int64 codes, ids outside [0, V),
            or a stream shorter than one n-gram.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1 (1 = unigram, 2 = bigram), got {order}")
    if k < 0:
        raise ValueError(f"k must be >= 0 (add-k smoothing; 1 = Laplace), got {k}")
    if vocab_size**order >= 2**62:
        raise ValueError(
            f"vocab_size={vocab_size} to the power order={order} does not fit an int64 code; "
            "use a lower order or a smaller vocabulary."
        )
    ids = _check_ids(ids, vocab_size)
    if ids.numel() < order:
        raise ValueError(
            f"the training stream has {ids.numel()} tokens, fewer than one {order}-gram; "
            "pass a longer text or a lower order."
        )
    codes = _codes(ids.unfold(0, order, 1), vocab_size)  # (N - n + 1,)
    keys, counts = torch.unique(codes, return_counts=True)  # sorted
    # Contexts are counted as prefixes of the n-grams, so that for every context the smoothed
    # probabilities of the V possible next tokens sum to exactly 1.
    context_keys, inverse = torch.unique(keys // vocab_size, return_inverse=True)
    context_counts = torch.zeros_like(context_keys).index_add_(0, inverse, counts)
    return NGramModel(order, vocab_size, k, keys, counts, context_keys, context_counts)


def _check_ids(ids: torch.Tensor | list[int], vocab_size: int) -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long).cpu()
    if ids.dim() != 1:
        raise ValueError(f"expected a 1-D stream of token ids, got shape {tuple(ids.shape)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]; "
            "encode the text with the tokenizer whose vocab_size the model was fitted with."
        )
    return ids


def _codes(grams: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """One int64 per row of ids (M, n): the row read as a base-V number."""
    code = torch.zeros(grams.size(0), dtype=torch.long)  # (M,)
    for j in range(grams.size(1)):
        code = code * vocab_size + grams[:, j]
    return code


def _lookup(keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """values[keys == q] for each query, 0 where the query was never seen."""
    if keys.numel() == 0:
        return torch.zeros_like(queries)
    idx = torch.searchsorted(keys, queries).clamp_max(keys.numel() - 1)  # (M,)
    return torch.where(keys[idx] == queries, values[idx], torch.zeros_like(queries))
