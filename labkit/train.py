"""Training: fit the LSTM language model by maximum likelihood, one loop for every setting.

    python -m labkit train --hidden_dim 512 --max_minutes 10
    torchrun --nproc_per_node 4 -m labkit train --batch_size 128

The loss is `mean_nll(token_logprobs(...))`, the code path evaluation uses too. The step index alone
decides which window of the token streams a step reads (window = step % windows per epoch), and a
checkpoint holds every other piece of state (weights, optimizer, schedule, RNG, the carried LSTM
state, the running loss), so a run that is stopped and resumed ends with the same weights as one
that never stopped. Under torchrun each process trains on its rows of the batch with
DistributedDataParallel; rank 0 evaluates and writes the run folder.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from labkit.batching import IGNORE_INDEX, batchify, num_windows, shard_rows, window
from labkit.checkpoint import (
    RESUME_KEYS,
    CheckpointError,
    check_model_config,
    load_checkpoint,
    load_weights,
    require_keys,
    save_checkpoint,
)
from labkit.config import ConfigError, require_positive, to_dict
from labkit.corpus import TokenSplits, encode_corpus, load_corpus
from labkit.likelihood import Score, evaluate, mean_nll, token_logprobs
from labkit.model import LSTMLanguageModel, ModelConfig, State, detach_state
from labkit.runtime import pick_device, seed_everything, set_cpu_threads
from labkit.tokenizer import KINDS, Tokenizer, train_tokenizer

if TYPE_CHECKING:
    from collections.abc import Callable

PLATEAU_FACTOR = 0.5  # schedule="plateau" multiplies the lr by this at an evaluation without gain
# What train() writes into a run folder; labkit train refuses to start a run where these are.
RUN_FILES = ("config.json", "tokenizer.json", "history.jsonl", "checkpoint.pt", "best.pt")
# The settings a resumed run may change: budgets, evaluation, the machine, where the run lies, and
# the two that the non-finite-loss advice names (lr, grad_clip). Every other one (data, tokenizer,
# model, batches, optimizer) must equal the run's own, so that a resumed run never mixes two setups.
RESUME_MAY_CHANGE = (
    "max_steps", "max_minutes", "eval_every", "eval_windows", "patience", "checkpoint_every",
    "lr", "grad_clip", "device", "amp", "compile", "threads", "progress", "run_dir", "name",
    "resume", "overwrite",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Every setting of a training run.

    The defaults are tuned for `labkit train` on a 2-core CPU: a char-level LSTM on the embedded
    Shakespeare that reaches about 2.15 validation bits/char in under two minutes, data included.
    """

    # data
    corpus: str = "shakespeare"  # "shakespeare" (embedded), a .txt file, or a folder of .txt files
    max_chars: int = 0  # use only the first N characters of the corpus; 0 = all
    tokenizer: str = (
        "char"  # tokenizer kind: "char", "word", "lower" (words in lower case) or "bpe"
    )
    vocab_size: int = 0  # tokenizer vocabulary size; 0 = the kind's default
    min_freq: int = 1  # word tokenizer: words seen fewer times become <unk>
    # model
    embed_dim: int = 64  # size of each token's embedding vector
    hidden_dim: int = 256  # LSTM state size per layer
    num_layers: int = 1  # stacked LSTM layers
    dropout: float = 0.0  # dropout on embeddings, between layers and before the output layer
    tie_weights: bool = False  # share embedding and output matrices (needs embed_dim == hidden_dim)
    adaptive_cutoffs: tuple[int, ...] = ()  # e.g. 2000,10000: adaptive softmax; () = full softmax
    # optimisation
    batch_size: int = 32  # parallel token streams per step (split over the processes of torchrun)
    bptt: int = 64  # tokens per window: gradients are truncated at window boundaries
    optimizer: str = "adamw"  # "adamw" or "sgd"
    lr: float = 1.5e-2  # peak learning rate, reached at the end of the warmup
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) or L2 penalty (SGD)
    momentum: float = 0.9  # SGD momentum (AdamW ignores it)
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = off
    warmup_steps: int = 50  # steps of linear warmup from 0 to lr
    schedule: str = "cosine"  # after warmup: "cosine" (to min_lr_ratio*lr), "plateau", "constant"
    min_lr_ratio: float = 0.1  # lowest lr of the cosine and plateau schedules, as a share of lr
    max_steps: int = 2000  # optimizer steps in all; the cosine schedule decays over them
    max_minutes: float = 2.0  # time budget of the loop: then evaluate, save, stop; 0 = none
    eval_every: int = 400  # steps between evaluations (one history row each)
    eval_windows: int = 0  # validation windows per evaluation; 0 = the whole validation split
    patience: int = 0  # evaluations without improvement before stopping early; 0 = never stop early
    # system
    device: str = "auto"  # "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:N" or "mps"
    amp: str = "bf16"  # "bf16": bfloat16 autocast on CUDA (other devices stay float32); "none"
    compile: bool = False  # torch.compile the model (slow first steps, faster later ones on GPU)
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    seed: int = 1337  # seeds the weights, dropout and everything else random
    # run
    run_dir: str = "runs"  # folder holding every run
    name: str = "shakespeare-char"  # this run's folder inside run_dir
    checkpoint_every: int = 200  # steps between checkpoint.pt writes (also at evaluations, the end)
    resume: bool = False  # continue from run_dir/name/checkpoint.pt
    overwrite: bool = False  # labkit train: replace the run in run_dir/name instead of refusing
    progress: bool = True  # show a progress bar

    def __post_init__(self) -> None:
        require_positive(
            self, "embed_dim", "hidden_dim", "num_layers", "batch_size", "bptt", "lr",
            "max_steps", "eval_every", "checkpoint_every", "min_freq",
        )  # fmt: skip
        zero_ok = (
            "max_chars", "vocab_size", "weight_decay", "momentum", "grad_clip", "warmup_steps",
            "max_minutes", "eval_windows", "patience", "threads",
        )  # fmt: skip
        for name in zero_ok:
            if not getattr(self, name) >= 0:  # `not >=` also catches NaN
                raise ConfigError(
                    f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}; "
                    f"set --{name} to 0 or a positive value."
                )
        choices = {
            "tokenizer": KINDS,
            "optimizer": ("adamw", "sgd"),
            "schedule": ("cosine", "plateau", "constant"),
            "amp": ("bf16", "none"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; set --{name} to one of "
                    f"{', '.join(valid)}."
                )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.resume and self.overwrite:
            raise ConfigError(
                "resume and overwrite contradict each other: --resume true continues the run in "
                "run_dir/name, --overwrite true replaces it; set only one of them."
            )
        if not self.name or Path(self.name).name != self.name:
            raise ConfigError(
                f"name must be a plain folder name, got {self.name!r}; put folders in --run_dir."
            )

    @property
    def run_path(self) -> Path:
        """The run folder: run_dir/name."""
        return Path(self.run_dir) / self.name


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or infinite; training stopped."""


def check_run_folder(config: TrainConfig) -> None:
    """Refuse to start a fresh run in a folder that holds one, unless config.overwrite says so.

    `labkit train` calls this before preparing any data; `train()` itself replaces what it finds.

    Raises:
        ConfigError: run_dir/name holds a run's files and neither resume nor overwrite is set.
    """
    found = [name for name in RUN_FILES if (config.run_path / name).exists()]
    if found and not (config.resume or config.overwrite):
        raise ConfigError(
            f"{config.run_path} already holds a run ({', '.join(found)}); nothing was changed. "
            "Continue it with --resume true, replace it with --overwrite true, or pick another "
            "--name."
        )


def check_resume(saved: Any, config: TrainConfig, source: str | Path) -> None:
    """Raise CheckpointError naming each setting that differs from the run's own `saved` ones.

    Settings in RESUME_MAY_CHANGE may differ, and those `saved` does not record are not compared.

    Args:
        saved: the run's settings as a dict (a checkpoint's "config", or the run's config.json).
        source: the file `saved` was read from, for the message.
    """
    if not isinstance(saved, dict):
        raise CheckpointError(
            f"{source} records no settings (its 'config' is a {type(saved).__name__}, not a "
            "dict); use a checkpoint written by labkit train, or train again."
        )

    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value  # JSON turns tuples into lists

    differ = [
        f"{key}: saved {plain(saved[key])!r}, now {plain(value)!r}"
        for key, value in to_dict(config).items()
        if key not in RESUME_MAY_CHANGE and key in saved and plain(saved[key]) != plain(value)
    ]
    if differ:
        raise CheckpointError(
            f"cannot resume {config.run_path} with other settings than {source} holds "
            f"({'; '.join(differ)}). Resume with the saved settings (drop those options), or "
            "start a new run: another --name, or --overwrite true without --resume to replace "
            f"this one. A resume may change only {', '.join(RESUME_MAY_CHANGE)}."
        )


def prepare(config: TrainConfig) -> tuple[Tokenizer, TokenSplits]:
    """Load the corpus, train the tokenizer on its training split, and encode every split.

    Returns:
        (tokenizer, token splits).
    Raises:
        ValueError: an empty or unreadable corpus, or an unknown tokenizer kind (from corpus.py and
            tokenizer.py, whose messages say what to change).
    """
    corpus = load_corpus(config.corpus, max_chars=config.max_chars)
    tokenizer = train_tokenizer(
        config.tokenizer, corpus.train, vocab_size=config.vocab_size or None,
        min_freq=config.min_freq,
    )  # fmt: skip
    return tokenizer, encode_corpus(corpus, tokenizer)


def model_config(config: TrainConfig, vocab_size: int) -> ModelConfig:
    """The ModelConfig named by a TrainConfig's model fields."""
    return ModelConfig(
        vocab_size=vocab_size,
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
        num_layers=config.num_layers,
        dropout=config.dropout,
        tie_weights=config.tie_weights,
        adaptive_cutoffs=tuple(config.adaptive_cutoffs),
    )


def build_model(config: TrainConfig, vocab_size: int) -> LSTMLanguageModel:
    """A freshly initialised model; the seed makes its weights the same on every call."""
    seed_everything(config.seed)
    return LSTMLanguageModel(model_config(config, vocab_size))


def learning_rate(config: TrainConfig, step: int, scale: float = 1.0) -> float:
    """The lr for optimizer step `step` (0-based): linear warmup, then the schedule, times `scale`.

    `scale` is the plateau schedule's factor (1 for the others).
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        span = max(config.max_steps - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))  # 1 -> 0
        return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)
    return config.lr * scale


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the model's parameters (fused kernels on CUDA)."""
    fused = next(model.parameters()).is_cuda or None  # None lets torch pick foreach on CPU
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, fused=fused,
        )  # fmt: skip
    return torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused
    )


class _DDP(DistributedDataParallel):
    """DDP that also exposes `target_logprobs`, so `token_logprobs` runs through the wrapper."""

    def target_logprobs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.module.target_logprobs(features, targets)


def _init_distributed(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """Rank, world size, this process's device, and whether we started the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device, started


class _Interrupt:
    """Turn Ctrl-C into a flag the loop reads between steps, so a checkpoint is never half a step.

    A second Ctrl-C interrupts at once, and nothing is saved. (Only the main thread can catch
    signals; elsewhere Ctrl-C never reaches the loop.)
    """

    def __init__(self) -> None:
        self.requested = False  # Ctrl-C was pressed: stop after this step
        self.forced = False  # pressed twice: stop now, without saving
        self.previous = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _window_counts(targets: torch.Tensor, bptt: int) -> list[int]:
    """Real (non-padding) targets in each window of a (B, S) target stream, over all rows."""
    per_column = (targets != IGNORE_INDEX).sum(0)  # (S,)
    n = num_windows(targets, bptt)
    padded = torch.zeros(n * bptt, dtype=torch.long)
    padded[: per_column.numel()] = per_column
    return padded.view(n, bptt).sum(1).tolist()


def _check_splits(data: TokenSplits, config: TrainConfig, world: int) -> None:
    """Fail early, naming the split and the fix, when the data cannot fill one batch."""
    n_train, n_valid = data.train.numel(), data.valid.numel()
    if n_train - 1 < config.batch_size:
        raise ValueError(
            f"the training split has {n_train} tokens, fewer than one batch of "
            f"batch_size={config.batch_size} streams; use a longer corpus (or --max_chars 0) or a "
            "smaller --batch_size."
        )
    if n_valid < 2:
        raise ValueError(
            f"the validation split has {n_valid} tokens, too few to evaluate; use a longer corpus "
            "(or --max_chars 0)."
        )
    for split, mask in data.masks.items():
        if not bool(mask[1:].any()):
            raise ValueError(
                f"the {split} split's target mask selects no token after the first, so there is "
                "nothing to predict; mark the tokens to learn as True."
            )
    if config.batch_size % world:
        raise ConfigError(
            f"batch_size={config.batch_size} does not split over {world} processes; use a "
            f"multiple of {world}."
        )


@dataclass
class _Progress:
    """What a checkpoint restores besides weights, optimizer and RNG, to resume exactly."""

    step: int = 0  # optimizer steps done
    tokens: int = 0  # real targets trained on, all ranks together
    lr_scale: float = 1.0  # the plateau schedule's factor
    best_val: float = math.inf  # best validation loss so far
    bad_evals: int = 0  # evaluations since the best one
    run_nll: float = 0.0  # summed training loss since the last history row
    run_tokens: int = 0  # real targets since the last history row
    history: list[dict[str, Any]] = field(default_factory=list)


def _all_finite(model: torch.nn.Module) -> bool:
    """Whether every weight is finite (one host-device sync)."""
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def train(
    model: LSTMLanguageModel,
    data: TokenSplits,
    config: TrainConfig,
    tokenizer: Tokenizer | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train `model` on `data.train`, evaluating on `data.valid`, writing run_dir/name/.

    Writes (rank 0 only) config.json, tokenizer.json, history.jsonl (one row per evaluation),
    checkpoint.pt (every checkpoint_every steps, at each evaluation, at the end and on Ctrl-C) and
    best.pt (at the best validation loss so far). Training stops at max_steps, when max_minutes
    have passed since this call began (under torchrun: at the first evaluation after that), or
    after `patience` evaluations without improvement; the last step always gets a history row.
    Without `resume`, the files of an earlier run in the folder are replaced (RUN_FILES).

    Args:
        tokenizer: saved into the run folder and every checkpoint, so that the run can be sampled.
        callback: called with each history row as it is made (e.g. to update a live plot).
    Returns:
        The history: one dict per evaluation with step, tokens, epoch, train_loss (mean since the
        previous row, nats/token), val_loss, val_ppl, val_bpc, lr, tokens_per_s, elapsed_s.
    Raises:
        KeyboardInterrupt: re-raised after checkpoint.pt was written at the last finished step (one
            process; under torchrun, resume from the last periodic checkpoint).
        NonFiniteLossError: the loss or the weights stopped being finite; checkpoint.pt keeps the
            last good state.
        CheckpointError: resume=True without a usable checkpoint, or with one whose settings,
            tokenizer or model differ from this run's (except RESUME_MAY_CHANGE).
        RuntimeError: the device asked for is not on this machine.
        ValueError: a split too short for one batch.
    """
    set_cpu_threads(config.threads)
    rank, world, device, started_group = _init_distributed(pick_device(config.device))
    _check_splits(data, config, world)
    out = config.run_path
    ckpt_path, best_path = out / "checkpoint.pt", out / "best.pt"

    # The token streams go to the device once; only the window index changes from step to step.
    inputs, targets = batchify(data.train, config.batch_size, mask=data.masks.get("train"))
    counts = _window_counts(targets, config.bptt)  # real targets per window, all ranks together
    windows = len(counts)
    inputs = shard_rows(inputs, rank, world).to(device)  # (B / world, S)
    targets = shard_rows(targets, rank, world).to(device)  # (B / world, S)
    valid_chars = data.chars.get("valid") if data.chars else None

    model.to(device).train()
    optimizer = make_optimizer(model, config)
    p = _Progress()
    state: State | None = None  # the LSTM state carried from window to window
    if config.resume:
        payload = load_checkpoint(ckpt_path)
        require_keys(payload, RESUME_KEYS, ckpt_path)
        check_resume(payload["config"], config, ckpt_path)
        _check_same_model(check_model_config(payload["model_config"], ckpt_path), model, ckpt_path)
        saved_tokenizer = payload.get("tokenizer")
        if tokenizer is not None and saved_tokenizer and saved_tokenizer != tokenizer.to_json():
            raise CheckpointError(
                f"{ckpt_path} was trained with another tokenizer than the one built now from "
                f"--corpus {config.corpus}: the corpus text changed since the run began. Resume "
                "with the same corpus, or start a new run (another --name, or --overwrite true)."
            )
        load_weights(model, payload["model"], ckpt_path)
        p, state = _restore(payload, model, optimizer, config, rank, world, device, ckpt_path)
    else:
        seed_everything(config.seed + rank)  # each rank draws its own dropout masks
    if config.compile:
        model.compile()  # in place: the state_dict keys stay those of the plain model
    net = (
        _DDP(model, device_ids=[device] if device.type == "cuda" else None) if world > 1 else model
    )
    use_bf16 = device.type == "cuda" and config.amp == "bf16"

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not config.resume:  # a fresh run replaces an earlier one whole: nothing is mixed in
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(out / "tokenizer.json")
        with open(out / "history.jsonl", "w") as f:  # rows after the checkpoint are dropped
            f.writelines(json.dumps(row) + "\n" for row in p.history)

    nll_sum = torch.zeros((), dtype=torch.float64, device=device)  # loss since the last sync
    first_bad = torch.full((), config.max_steps + 1, device=device)  # first step with a bad loss

    saved_step = p.step if config.resume else None  # the step checkpoint.pt holds

    def non_finite(problem: str) -> NonFiniteLossError:
        kept = "no checkpoint was written before it"
        if saved_step is not None:
            kept = f"{ckpt_path} keeps the last good state (step {saved_step})"
        return NonFiniteLossError(
            f"{problem}; {kept}. Lower --lr (now {config.lr}) or set --grad_clip (e.g. 1.0), "
            "then train again."
        )

    def sync_loss() -> None:
        """Bring the loss summed on the device to the host (all ranks); stop if it is not finite."""
        if world > 1:
            dist.all_reduce(nll_sum)
            dist.all_reduce(first_bad, op=dist.ReduceOp.MIN)
        p.run_nll += float(nll_sum)
        nll_sum.zero_()
        if not math.isfinite(p.run_nll):
            raise non_finite(f"the training loss became non-finite at step {int(first_bad)}")

    def save(paths: list[Path]) -> None:
        """Checkpoint the state after `p.step` steps (every rank calls this; rank 0 writes)."""
        nonlocal saved_step
        if not _all_finite(model):  # checked before every write: no checkpoint holds NaN weights
            raise non_finite(f"the weights are not finite after step {p.step}")
        mine = {
            "state": None if state is None else tuple(t.cpu() for t in state),
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        ranks = [mine]
        if world > 1:
            ranks = [None] * world
            dist.all_gather_object(ranks, mine)
        if rank == 0:
            carried = None  # (L, B, H): the rows of every rank, so the whole batch's state returns
            if state is not None:
                carried = tuple(torch.cat([r["state"][k] for r in ranks], dim=1) for k in (0, 1))
            payload = {
                "model": model.state_dict(),
                "model_config": to_dict(model.config),
                "optimizer": optimizer.state_dict(),
                "progress": asdict(p),
                "rng": {"cpu": [r["cpu"] for r in ranks], "cuda": [r["cuda"] for r in ranks]},
                "lstm_state": carried,
                "config": to_dict(config),
                "tokenizer": tokenizer.to_json() if tokenizer is not None else None,
            }
            for path in paths:
                save_checkpoint(path, payload)
        saved_step = p.step

    def evaluate_row(lr: float, seconds: float, over_time: bool) -> tuple[dict[str, Any], bool]:
        """Rank 0 scores the validation split and says if time is up; every rank builds the row."""
        shared = torch.zeros(4, dtype=torch.float64)  # nll, tokens, chars, out of time
        if rank == 0:
            with autocast():
                score = evaluate(
                    model, data.valid, config.batch_size, config.bptt, chars=valid_chars,
                    max_windows=config.eval_windows or None, mask=data.masks.get("valid"),
                )  # fmt: skip
            shared = torch.tensor([score.nll, score.tokens, score.chars or 0, over_time],
                                  dtype=torch.float64)  # fmt: skip
        if world > 1:  # rank 0 decides; every rank then takes the same branches
            shared = shared.to(device)
            dist.broadcast(shared, src=0)
        nll, tokens, chars, over = shared.tolist()
        score = Score(nll=nll, tokens=int(tokens), chars=int(chars) or None)
        return {
            "step": p.step,
            "tokens": p.tokens,
            "epoch": round(p.step / windows, 4),
            "train_loss": p.run_nll / p.run_tokens,
            "val_loss": score.mean_nll,
            "val_ppl": score.perplexity,
            "val_bpc": score.bits_per_char,
            "lr": lr,
            "tokens_per_s": (p.tokens - row_tokens) / max(seconds, 1e-9),
            "elapsed_s": (p.history[-1]["elapsed_s"] if p.history else 0.0) + seconds,
        }, bool(over)

    start = row_start = time.time()
    budget = 60 * config.max_minutes or math.inf  # seconds
    row_tokens = p.tokens  # tokens done at row_start
    interrupt = _Interrupt()
    pbar = tqdm(total=config.max_steps, initial=p.step, disable=not config.progress or rank != 0,
                desc=config.name, unit="step", dynamic_ncols=True)  # fmt: skip
    mid_step = False
    try:
        with interrupt:
            while p.step < config.max_steps:
                mid_step = True
                index = p.step % windows
                if index == 0:
                    state = None  # each epoch reads the streams from their start
                x, y = window(inputs, targets, index, config.bptt)  # (B / world, T)
                lr = learning_rate(config, p.step, p.lr_scale)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast():
                    logp, state = token_logprobs(net, x, y, state)  # (B / world, T)
                    # DDP averages gradients over ranks: scaled by world, the result is the
                    # gradient of the mean over the global batch, whatever each rank's padding.
                    loss = mean_nll(logp, y, counts[index]) * world
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                state = detach_state(state)
                step_nll = -logp.detach().sum(dtype=torch.float64)
                nll_sum += step_nll  # stays on the device: no sync per step
                first_bad = torch.where(
                    step_nll.isfinite(), first_bad, first_bad.clamp(max=p.step + 1)
                )
                p.step += 1
                p.tokens += counts[index]
                p.run_tokens += counts[index]
                mid_step = False
                pbar.update()
                if interrupt.requested:
                    raise KeyboardInterrupt
                # One process reads the clock every step, and evaluates and stops when time is up;
                # under torchrun the ranks must agree, so rank 0 checks it at evaluations only.
                over_time = world == 1 and time.time() - start > budget
                is_eval = p.step % config.eval_every == 0 or p.step == config.max_steps or over_time
                if not (is_eval or p.step % config.checkpoint_every == 0):
                    continue
                sync_loss()
                if not is_eval:
                    save([ckpt_path])
                    continue
                now = time.time()
                row, over_time = evaluate_row(lr, now - row_start, now - start > budget)
                p.history.append(row)
                p.run_nll, p.run_tokens = 0.0, 0
                improved = row["val_loss"] < p.best_val
                if improved:
                    p.best_val, p.bad_evals = row["val_loss"], 0
                else:
                    p.bad_evals += 1
                    if config.schedule == "plateau":
                        p.lr_scale = max(p.lr_scale * PLATEAU_FACTOR, config.min_lr_ratio)
                save([ckpt_path, best_path] if improved else [ckpt_path])
                if rank == 0:
                    with open(out / "history.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    pbar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}")
                if callback is not None:
                    callback(row)
                if over_time or (config.patience and p.bad_evals >= config.patience):
                    break
                row_start, row_tokens = time.time(), p.tokens
    except KeyboardInterrupt:
        if world == 1 and not mid_step and not interrupt.forced:
            sync_loss()
            save([ckpt_path])
        raise
    finally:
        pbar.close()
        if started_group:
            dist.destroy_process_group()
    return p.history


def _check_same_model(saved: dict[str, Any], model: LSTMLanguageModel, path: Path) -> None:
    """Raise CheckpointError unless the checkpoint's model config equals the model's."""
    mine = to_dict(model.config)
    if saved["vocab_size"] != mine["vocab_size"]:
        raise CheckpointError(
            f"{path} holds a model with a vocabulary of {saved['vocab_size']} tokens, but the "
            f"tokenizer has {mine['vocab_size']}; resume with the same corpus and tokenizer "
            "settings, or start a new run (another --name, or --overwrite true)."
        )
    differ = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in mine.items() if saved.get(k) != v]
    if differ:
        raise CheckpointError(
            f"{path} holds a model with other settings: {', '.join(differ)}; resume with the same "
            "model settings, or start a new run (another --name, or --overwrite true)."
        )


def _set_rng(rng: dict[str, list], rank: int, device: torch.device) -> None:
    """Restore this rank's RNG states (with a new world size, ranks take the saved ones in turn)."""
    torch.set_rng_state(rng["cpu"][rank % len(rng["cpu"])])
    cuda = rng["cuda"][rank % len(rng["cuda"])]
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def _restore(
    payload: dict[str, Any],
    model: LSTMLanguageModel,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    rank: int,
    world: int,
    device: torch.device,
    path: Path,
) -> tuple[_Progress, State | None]:
    """Load a checkpoint's optimizer and RNG states; return its progress and this rank's LSTM state.

    Raises:
        CheckpointError: a part that does not fit this run (a hand-edited or foreign checkpoint).
    """
    part = "optimizer"
    try:
        optimizer.load_state_dict(payload["optimizer"])
        for param, slots in optimizer.state.items():
            for key, value in slots.items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"its {key} is {tuple(value.shape)}, not {tuple(param.shape)}")
        part = "progress"
        names = sorted(f.name for f in fields(_Progress))
        if not isinstance(payload["progress"], dict) or sorted(payload["progress"]) != names:
            raise ValueError(f"it needs exactly the keys {', '.join(names)}")
        progress = _Progress(**payload["progress"])
        part = "lstm_state"
        state = None
        if payload["lstm_state"] is not None:
            h, c = payload["lstm_state"]
            shape = (model.config.num_layers, config.batch_size, model.config.hidden_dim)
            if tuple(h.shape) != shape or tuple(c.shape) != shape:
                raise ValueError(f"it needs two tensors of shape {shape}")
            per = config.batch_size // world
            h, c = (t[:, rank * per : (rank + 1) * per] for t in (h, c))
            state = (h.contiguous().to(device), c.contiguous().to(device))  # (L, B / world, H)
        part = "rng"
        _set_rng(payload["rng"], rank, device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        reason = str(e) if type(e) is ValueError else f"{type(e).__name__}: {e}"
        raise CheckpointError(
            f"{path}: its {part!r} does not fit this run ({reason}), so it was edited or written "
            "by other code; resume from best.pt (copy it over checkpoint.pt) or train again."
        ) from None
    return progress, state
