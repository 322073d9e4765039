"""The LSTM language model: embedding -> multi-layer LSTM -> linear (or adaptive softmax).

The model returns hidden features, not logits: the output layer is applied by `target_logprobs`
(training and scoring, which need log P of one token per position) or `log_distribution` (sampling,
which needs the whole distribution). This keeps one code path for both softmax kinds and never builds
a (B, T, V) tensor when the adaptive softmax is on.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from labkit.config import ConfigError, require_positive

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, B, hidden_dim)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision activations (autocast) for the softmax; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


@dataclass
class ModelSettings:
    """The model's settings that a run chooses; the defaults are those of `labkit train`.

    ModelConfig adds the vocabulary size, which the tokenizer decides; TrainConfig adds the rest of
    a training run. Both read these fields, defaults and comments from here.
    """

    embed_dim: int = 64  # size of each token's embedding vector
    hidden_dim: int = 256  # LSTM state size per layer
    num_layers: int = 1  # stacked LSTM layers
    dropout: float = 0.0  # dropout on embeddings, between layers and before the output layer
    tie_weights: bool = False  # share embedding and output matrices (needs embed_dim == hidden_dim)
    # AWD-LSTM's regularizers (Merity et al. 2018), each off by default; README, Performance
    locked_dropout: bool = False  # dropout's mask fixed across a window's tokens (input, output)
    embed_dropout: float = 0.0  # drop whole words: rows of the embedding matrix, every position
    weight_drop: float = 0.0  # DropConnect on the hidden-to-hidden weights, one mask per window
    activation_reg: float = 0.0  # AR: this times the mean squared LSTM output (after dropout)
    temporal_reg: float = 0.0  # TAR: this times the mean squared change of the output per step
    adaptive_cutoffs: tuple[int, ...] = ()  # e.g. 2000,10000: adaptive softmax; () = full softmax
    chrono_init: int = 0  # T_max: forget-gate biases log U(1, T_max - 1) (chrono init); 0 = all 1

    def __post_init__(self) -> None:
        require_positive(self, "embed_dim", "hidden_dim", "num_layers")
        if self.chrono_init and self.chrono_init < 3:  # U(1, T_max - 1) must be a range
            raise ConfigError(
                f"chrono_init must be 0 (off) or at least 3, got {self.chrono_init}; set it to "
                "about the longest distance in tokens the model must remember (e.g. 100)."
            )
        for name in ("dropout", "embed_dropout", "weight_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(
                    f"{name} must be in [0, 1), got {getattr(self, name)}; "
                    f"set --{name} to e.g. 0.2 (0 turns it off)."
                )
        for name in ("activation_reg", "temporal_reg"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(
                    f"{name} must be >= 0, got {getattr(self, name)}; set --{name} to e.g. 2 or "
                    "1 (0 turns it off)."
                )
        if self.tie_weights and self.embed_dim != self.hidden_dim:
            raise ConfigError(
                f"tie_weights needs embed_dim == hidden_dim, got {self.embed_dim} and "
                f"{self.hidden_dim}; set both to the same size or turn tie_weights off."
            )
        cuts = list(self.adaptive_cutoffs)
        if cuts and self.tie_weights:
            raise ConfigError("tie_weights cannot be combined with adaptive_cutoffs; pick one.")
        if cuts and (cuts != sorted(set(cuts)) or cuts[0] <= 0):
            raise ConfigError(f"adaptive_cutoffs must increase strictly from above 0, got {cuts}")
        if cuts and self.hidden_dim < 4 ** len(cuts):  # cluster i projects to hidden_dim // 4**i
            raise ConfigError(
                f"hidden_dim={self.hidden_dim} is too small for {len(cuts)} adaptive clusters; "
                f"use hidden_dim >= {4 ** len(cuts)} or fewer adaptive_cutoffs."
            )


# Settings added after the first checkpoints were written: the regularizers only change training
# and chrono_init only decides where it starts, so a checkpoint that lacks them loads with each one
# off (checkpoint.check_model_config).
ADDED_LATER = (
    "locked_dropout",
    "embed_dropout",
    "weight_drop",
    "activation_reg",
    "temporal_reg",
    "chrono_init",
)


@dataclass
class ModelConfig(ModelSettings):
    """ModelSettings and the vocabulary size: everything needed to build the model."""

    vocab_size: int = 0  # number of token ids; taken from the tokenizer

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "vocab_size")
        if self.adaptive_cutoffs and self.adaptive_cutoffs[-1] >= self.vocab_size:
            raise ConfigError(
                f"adaptive_cutoffs must lie below vocab_size={self.vocab_size}, got "
                f"{list(self.adaptive_cutoffs)}; drop the larger ones or use a larger vocabulary."
            )


def chrono_biases(size: int, t_max: int) -> torch.Tensor:
    """Forget-gate biases log U(1, t_max - 1): Tallec & Ollivier's chrono initialisation (2018).

    A unit with forget bias b keeps about sigmoid(b) of its cell per token, so these units start
    with memories from a few tokens to about t_max long; with every bias at 1 (0.73 per token) a
    token read 40 tokens back is all but gone before training begins, and a fact that far from the
    decision that needs it is learnt slowly or not at all (README, Agents: Treasure Hunter). The
    input gates get the negatives: a unit that keeps long writes little. Drawn from torch's global
    generator, which `build_model` seeds like the other weights.
    """
    return torch.log(torch.empty(size).uniform_(1.0, t_max - 1.0))


class LSTMLanguageModel(nn.Module):
    """P(w_t | w_<t) with an LSTM. `forward` maps ids (B, T) to features (B, T, H) and a new state."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.penalty: torch.Tensor | None = None  # AR/TAR of the last training window
        self.lstm = nn.LSTM(
            c.embed_dim,
            c.hidden_dim,
            c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            batch_first=True,
        )
        if c.adaptive_cutoffs:
            self.decoder = None
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                c.hidden_dim, c.vocab_size, list(c.adaptive_cutoffs), div_value=4.0
            )
        else:
            self.adaptive = None
            self.decoder = nn.Linear(c.hidden_dim, c.vocab_size)
        self._init_weights()
        if c.tie_weights:
            # Press & Wolf, "Using the Output Embedding to Improve Language Models".
            self.decoder.weight = self.embedding.weight

    def _init_weights(self) -> None:
        # Small uniform embeddings and output weights, as in PyTorch's word_language_model;
        # forget-gate biases at 1 so that early in training the cell keeps its memory (or spread
        # from 0 to log(T_max) by chrono_init, for memories up to T_max tokens long).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.decoder is not None:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
        h, t_max = self.config.hidden_dim, self.config.chrono_init
        for name, p in self.lstm.named_parameters():
            if not name.startswith("bias"):
                continue
            nn.init.zeros_(p)
            if name.startswith("bias_ih"):  # gate order: input, forget, cell, output
                p.data[h : 2 * h] = chrono_biases(h, t_max) if t_max else 1.0
                p.data[:h] = -p.data[h : 2 * h] if t_max else 0.0

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """A zero recurrent state for `batch_size` sequences."""
        weight = self.embedding.weight
        device = device or weight.device
        shape = (self.config.num_layers, batch_size, self.config.hidden_dim)
        return (
            torch.zeros(shape, device=device, dtype=weight.dtype),
            torch.zeros(shape, device=device, dtype=weight.dtype),
        )

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run the LSTM over `ids` (B, T) from `state` (zeros if None).

        In training, the AR/TAR term of this window is left in `self.penalty` (None when both
        are off): the training loop adds it to the loss.

        Returns:
            features (B, T, H) after dropout, ready for the output layer, and the new state.
        """
        c = self.config
        x = self._dropout(self._embed(ids))  # (B, T, E)
        if self.training and c.weight_drop > 0:  # DropConnect: the same dropped W_hh every step
            params = dict(self.lstm.named_parameters())
            for layer in range(c.num_layers):
                name = f"weight_hh_l{layer}"
                params[name] = F.dropout(params[name], c.weight_drop, training=True)
            out, state = torch.func.functional_call(self.lstm, params, (x, state))  # (B, T, H)
        else:
            out, state = self.lstm(x, state)  # (B, T, H)
        features = self._dropout(out)  # (B, T, H)
        terms = []  # AR on the dropped output, TAR on the raw output's change per step
        if self.training and c.activation_reg:
            terms.append(c.activation_reg * features.pow(2).mean())
        if self.training and c.temporal_reg:
            terms.append(c.temporal_reg * (out[:, 1:] - out[:, :-1]).pow(2).mean())
        self.penalty = sum(terms) if terms else None
        return features, state

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, T, E); in training with embed_dropout, a dropped word is zero everywhere."""
        weight, p = self.embedding.weight, self.config.embed_dropout  # (V, E)
        if self.training and p > 0:
            keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p)  # (V, 1)
            weight = weight * keep / (1 - p)
        return F.embedding(ids, weight)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on (B, T, D): a fresh mask per token, or one per stream with locked_dropout."""
        p = self.config.dropout
        if not (self.training and p > 0 and self.config.locked_dropout):
            return self.drop(x)
        keep = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p)  # (B, 1, D)
        return x * keep / (1 - p)

    def target_logprobs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log P(target) at each position; positions whose target is negative (padding) give 0.

        Args:
            features: (B, T, H) from `forward`.
            targets: (B, T) token ids, or a negative id where there is nothing to predict.
        Returns:
            (B, T) float32 log-probabilities.
        """
        valid = targets >= 0
        safe = targets.clamp_min(0)
        if self.adaptive is not None:
            flat = _at_least_float32(features.reshape(-1, features.size(-1)))  # (B*T, H)
            logp = self.adaptive(flat, safe.reshape(-1)).output.view_as(targets)  # (B, T)
        else:
            logits = _at_least_float32(self.decoder(features))  # (B, T, V)
            logp = -F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")  # (B, T)
        return logp.masked_fill(~valid, 0.0)

    def log_distribution(self, features: torch.Tensor) -> torch.Tensor:
        """The whole next-token distribution: features (..., H) -> log-probabilities (..., V)."""
        if self.adaptive is not None:
            flat = _at_least_float32(features.reshape(-1, features.size(-1)))  # (N, H)
            return self.adaptive.log_prob(flat).view(*features.shape[:-1], -1)  # (..., V)
        return F.log_softmax(_at_least_float32(self.decoder(features)), dim=-1)

    def num_parameters(self) -> int:
        """Number of distinct trainable parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a window boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    return state[0].detach(), state[1].detach()


def train_flops_per_token(config: ModelConfig, tail_shares: Sequence[float] | None = None) -> float:
    """Forward + backward FLOPs to train on one token: 24*h*(d+h) per LSTM layer plus the output's.

    (Each LSTM layer does 4 gates of (d+h)->h matrix products, 8*h*(d+h) FLOPs forward; backward
    costs twice that, so training costs 3x a layer's forward FLOPs. The full softmax's forward is
    2*h*V, 6*h*V in all.)

    Args:
        tail_shares: with the adaptive softmax, the share of targets that fall in each tail
            cluster: the head (the first cutoff's words and one logit per cluster) runs for every
            token, a cluster's projection and output only for its own targets. None counts the
            full softmax instead, an upper bound for the adaptive one.
    """
    h, e, vocab = config.hidden_dim, config.embed_dim, config.vocab_size
    lstm = sum(24 * h * ((e if layer == 0 else h) + h) for layer in range(config.num_layers))
    cuts = list(config.adaptive_cutoffs)
    if not cuts or tail_shares is None:
        return lstm + 6 * h * vocab
    bounds = [*cuts, vocab]
    output = h * (cuts[0] + len(cuts))  # multiply-adds per token: the head
    for i, share in enumerate(tail_shares):  # cluster i: h -> h / 4**(i+1) -> its words
        width = h // 4 ** (i + 1)
        output += share * (h * width + width * (bounds[i + 1] - bounds[i]))
    return lstm + 6 * output


def tail_shares(config: ModelConfig, targets: torch.Tensor) -> list[float]:
    """The share of `targets` (token ids) in each tail cluster of the adaptive softmax."""
    bounds = [*config.adaptive_cutoffs, config.vocab_size]
    return [
        float(((targets >= lo) & (targets < hi)).float().mean())
        for lo, hi in itertools.pairwise(bounds)
    ]
