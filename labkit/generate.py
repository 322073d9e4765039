"""Sampling text from a language model: w_t ~ P(w_t | w_<t), one token at a time.

All prompts are sampled together: each prompt is read on its own (so prompts of different lengths
need no padding), their final LSTM states are stacked, and a single loop then feeds the batch one
token per step (B, 1) with the state carried. `filter_distribution` is the only place where the
model's distribution is reshaped (temperature, top-k, top-p) before a token is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from labkit.config import ConfigError, from_dict
from labkit.model import LSTMLanguageModel

if TYPE_CHECKING:
    from labkit.tokenizer import Tokenizer


@dataclass
class SampleConfig:
    max_new_tokens: int = 200  # tokens to sample per prompt (fewer if eos or a stop string comes)
    temperature: float = 1.0  # divides the logits: <1 sharpens the distribution, >1 flattens it
    top_k: int = 0  # sample among the k most likely tokens only; 0 = off
    top_p: float = 1.0  # sample from the smallest set of tokens holding this mass; 1 = off
    greedy: bool = False  # take the most likely token (ignores temperature, top_k, top_p)
    seed: int | None = None  # sampling seed; None draws one from torch's global RNG
    stop: tuple[str, ...] = ()  # cut the text before the first of these strings; ends that row

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # stop="\n" means one stop string, not one per character
            self.stop = (self.stop,)
        if self.max_new_tokens < 0:
            raise ConfigError(
                f"SampleConfig.max_new_tokens must be >= 0, got {self.max_new_tokens}; "
                "set --max_new_tokens to the number of tokens to generate."
            )
        if any(s == "" for s in self.stop):
            raise ConfigError(
                "SampleConfig.stop holds an empty string, which would end every row "
                "at once; remove it or give a non-empty stop string."
            )
        # Greedy decoding never divides by the temperature, so any value is accepted there.
        _check_filter(1.0 if self.greedy else self.temperature, self.top_k, self.top_p)


def _check_filter(temperature: float, top_k: int, top_p: float) -> None:
    """Raise ConfigError (a ValueError) for settings `filter_distribution` cannot use."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(
            f"temperature must be a finite number above 0, got {temperature}; use a small value "
            "(e.g. 0.1) for nearly greedy text, or greedy=True for the most likely token."
        )
    if top_k < 0:
        raise ConfigError(f"top_k must be >= 0, got {top_k}; use 0 to turn top-k filtering off.")
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(
            f"top_p must be in (0, 1], got {top_p}; use e.g. 0.9, or 1.0 to turn top-p filtering off."
        )


def filter_distribution(
    logp: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Reshape next-token distributions for sampling: temperature, then top-k, then top-p.

    Args:
        logp: (B, V) log-probabilities (or logits: they are renormalised anyway).
        temperature: logp / temperature before renormalising.
        top_k: keep the k most likely tokens of each row (0 = keep all).
        top_p: keep the smallest set of most likely tokens whose probability is >= top_p (the
            nucleus); the most likely token is always kept.
    Returns:
        (B, V) log-probabilities that sum to 1 per row, -inf on the tokens filtered out.
    Raises:
        ValueError: temperature not finite or <= 0, top_k < 0 or top_p outside (0, 1].
    """
    _check_filter(temperature, top_k, top_p)
    logp = torch.log_softmax(logp.float() / temperature, dim=-1)  # (B, V)
    if 0 < top_k < logp.size(-1):
        kept = logp.topk(top_k, dim=-1).indices  # (B, k)
        keep = torch.zeros_like(logp, dtype=torch.bool).scatter_(-1, kept, True)  # (B, V)
        logp = torch.log_softmax(logp.masked_fill(~keep, -torch.inf), dim=-1)
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logp.exp()
        mass_above = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked before each token
        drop_sorted = mass_above >= top_p  # the nucleus is complete before this token
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)  # (B, V)
        logp = torch.log_softmax(logp.masked_fill(drop, -torch.inf), dim=-1)
    return logp


@torch.no_grad()
def generate(
    model: LSTMLanguageModel,
    tokenizer: Tokenizer,
    prompts: str | list[str],
    config: SampleConfig | None = None,
    **overrides,
) -> str | list[str]:
    """Continue each prompt with text sampled from `model`.

    Each prompt is encoded with bos in front (an empty prompt is bos alone). A row ends at eos, at
    a stop string (which is cut off with everything after it) or after `max_new_tokens`. Greedy
    output does not depend on which other prompts share the batch.

    Args:
        tokenizer: the tokenizer the model was trained with (encode, decode, bos_id, eos_id).
        prompts: one prompt, or a list of prompts sampled together.
        config: the sampling settings (SampleConfig defaults if None).
        **overrides: SampleConfig fields to change, e.g. temperature=0.8, seed=0.
    Returns:
        The continuation only (without the prompt): a str for a str prompt, else a list of str.
    Raises:
        ConfigError (a ValueError): an unknown override (the message lists the valid ones) or a bad
            value (temperature not finite or <= 0 without greedy, top_k < 0, top_p outside
            (0, 1], max_new_tokens < 0).
        TypeError: prompts is neither a str nor a list of str.
        ValueError: the tokenizer's vocabulary size differs from the model's.
    """
    # stop="..." from Python is one stop string; from_dict would split it on commas as on the CLI.
    if isinstance(overrides.get("stop"), str):
        overrides["stop"] = (overrides["stop"],)
    cfg = from_dict(SampleConfig, overrides, base=config)
    single = isinstance(prompts, str)
    texts = [prompts] if single else list(prompts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("prompts must be a str or a list of str; decode token ids to text first.")
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model was built for "
            f"{model.config.vocab_size}; use the tokenizer the model was trained with."
        )
    was_training = model.training
    model.eval()
    try:
        outputs = _sample(model, tokenizer, texts, cfg) if texts else []
    finally:
        model.train(was_training)
    return outputs[0] if single else outputs


def _sample(
    model: LSTMLanguageModel, tokenizer: Tokenizer, texts: list[str], cfg: SampleConfig
) -> list[str]:
    """The sampling loop of `generate`, in eval mode and without gradients."""
    device = next(model.parameters()).device
    # Each prompt is read alone, so the state it leaves is exactly the one it would leave unbatched.
    last, hs, cs = [], [], []
    for text in texts:
        ids = torch.tensor([tokenizer.encode(text, bos=True)], device=device)  # (1, L)
        features, (h, c) = model(ids)  # (1, L, H)
        last.append(features[:, -1])
        hs.append(h)
        cs.append(c)
    features = torch.cat(last)  # (B, H)
    state = (torch.cat(hs, dim=1), torch.cat(cs, dim=1))  # each (num_layers, B, H)

    generator = None
    if not cfg.greedy:
        seed = cfg.seed
        if seed is None:  # one draw from the global RNG, so that seed_everything fixes the text too
            seed = int(torch.randint(2**62, (), dtype=torch.long))
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)

    n = len(texts)
    new_ids: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for _ in range(cfg.max_new_tokens):
        logp = model.log_distribution(features)  # (B, V)
        if cfg.greedy:
            tokens = logp.argmax(dim=-1)  # (B,)
        else:
            probs = filter_distribution(logp, cfg.temperature, cfg.top_k, cfg.top_p).exp()
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        for i, token in enumerate(tokens.tolist()):
            if done[i]:
                continue
            if token == tokenizer.eos_id:
                done[i] = True
                continue
            new_ids[i].append(token)
            if cfg.stop and _stop_index(tokenizer.decode(new_ids[i]), cfg.stop) is not None:
                done[i] = True
        if all(done):
            break
        features, state = model(tokens.view(n, 1), state)  # (B, 1, H); finished rows run idle
        features = features[:, -1]  # (B, H)

    outputs = []
    for ids in new_ids:
        text = tokenizer.decode(ids)
        cut = _stop_index(text, cfg.stop)
        outputs.append(text if cut is None else text[:cut])
    return outputs


def _stop_index(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string starts in `text`, or None if none occurs."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
