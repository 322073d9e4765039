"""The textbook training loop, the baseline that every training benchmark measures labkit against.

It is the loop of PyTorch's word_language_model example (main.py), run on labkit's model and
batching so that only the loop differs: plain SGD at lr 20 with the gradient norm clipped to 0.25,
the full softmax, 20 streams read 35 tokens at a time, float32, the loss brought to the host with
.item() after every step, and the lr divided by 4 after an epoch whose validation loss did not
improve.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from labkit.batching import IGNORE_INDEX, batchify, num_windows, window
from labkit.likelihood import mean_nll, score_stream, token_logprobs
from labkit.model import LSTMLanguageModel, detach_state


@dataclass
class BaselineConfig:
    batch_size: int = 20  # parallel token streams
    bptt: int = 35  # tokens per window
    lr: float = 20.0  # plain SGD step size
    clip: float = 0.25  # largest gradient norm
    anneal: float = 4.0  # the lr is divided by this after an epoch without validation gain
    eval_batch_size: int = 10  # streams when scoring the validation split at an epoch's end


def train_textbook(
    model: LSTMLanguageModel,
    train_ids: torch.Tensor,
    valid_ids: torch.Tensor | None = None,
    config: BaselineConfig | None = None,
    max_steps: int = 0,
    max_seconds: float = 0.0,
    warmup_steps: int = 0,
) -> dict[str, float]:
    """Train `model` on the stream `train_ids` (N,) with the textbook loop, epoch after epoch.

    Args:
        valid_ids: scored at each epoch's end to anneal the lr (no annealing without it).
        max_steps: stop after this many steps; 0 = no limit.
        max_seconds: stop at the first step that ends after this much wall time; 0 = no limit.
        warmup_steps: steps left out of the timed figures (the first steps are slower).
    Returns:
        steps, tokens and seconds after the warm-up, tokens_per_s over them, the last epoch's mean
        training loss (nats/token) and the final lr.
    Raises:
        ValueError: neither max_steps nor max_seconds is set.
    """
    if not max_steps and not max_seconds:
        raise ValueError("set max_steps or max_seconds: the textbook loop would run forever.")
    cfg = config or BaselineConfig()
    device = next(model.parameters()).device
    inputs, targets = batchify(train_ids, cfg.batch_size)  # (B, S)
    inputs, targets = inputs.to(device), targets.to(device)  # on the device once, as in main.py
    lr, best_val = cfg.lr, math.inf
    step = tokens = timed_tokens = 0
    start = timed_start = time.perf_counter()
    model.train()
    while True:
        state, total_loss = None, 0.0
        for i in range(num_windows(inputs, cfg.bptt)):
            if step == warmup_steps:
                timed_start, timed_tokens = time.perf_counter(), tokens
            x, y = window(inputs, targets, i, cfg.bptt)  # (B, T)
            model.zero_grad()
            state = detach_state(state)
            logp, state = token_logprobs(model, x, y, state)  # (B, T)
            loss = mean_nll(logp, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            total_loss += loss.item()  # a host-device sync every step, as in main.py
            step += 1
            tokens += int((y != IGNORE_INDEX).sum())
            now = time.perf_counter()
            if (max_steps and step >= max_steps) or (max_seconds and now - start >= max_seconds):
                seconds = now - timed_start
                return {
                    "steps": step - min(warmup_steps, step),
                    "tokens": tokens - timed_tokens,
                    "seconds": seconds,
                    "tokens_per_s": (tokens - timed_tokens) / max(seconds, 1e-9),
                    "train_loss": total_loss / (i + 1),
                    "lr": lr,
                }
        if valid_ids is not None:
            val = score_stream(model, valid_ids, cfg.eval_batch_size, cfg.bptt).mean_nll
            if val < best_val:
                best_val = val
            else:
                lr /= cfg.anneal
