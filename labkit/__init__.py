"""labkit: language models trained by maximum likelihood, and the agents they drive.

Notebooks import it as `import labkit as lk`. The agent harness lives in `labkit.agents` (imported
on demand, since it loads TextWorld).
"""

from labkit.batching import IGNORE_INDEX, batchify, num_windows, window
from labkit.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from labkit.corpus import Corpus, TokenSplits, encode_corpus, load_corpus, shakespeare_text
from labkit.generate import SampleConfig, filter_distribution, generate
from labkit.likelihood import (
    Score,
    mean_nll,
    score_continuations,
    score_stream,
    sequence_loglik,
    surprisal,
    token_logprobs,
    unigram_entropy,
)
from labkit.model import LSTMLanguageModel, ModelConfig, train_flops_per_token
from labkit.runtime import pick_device, seed_everything, setup
from labkit.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer

# Not the function `train`: `lk.train` stays the module (lk.train.train, lk.train.TrainConfig).
from labkit.train import NonFiniteLossError, TrainConfig, build_model, prepare

__version__ = "0.1.0"
