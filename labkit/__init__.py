"""labkit: language models trained by maximum likelihood, and the agents they drive."""

from labkit.batching import IGNORE_INDEX, batchify, num_windows, window
from labkit.likelihood import (
    Score,
    evaluate,
    score_continuations,
    sequence_loglik,
    surprisal,
    token_logprobs,
    unigram_entropy,
)
from labkit.model import LSTMLanguageModel, ModelConfig, train_flops_per_token
from labkit.runtime import pick_device, seed_everything, setup

__version__ = "0.1.0"
