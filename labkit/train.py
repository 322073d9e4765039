"""Training: fit the LSTM language model by maximum likelihood, one loop for every setting.

    python -m labkit train --hidden_dim 512 --max_minutes 10
    torchrun --nproc_per_node 4 -m labkit train --batch_size 128

The loss is `mean_nll(token_logprobs(...))`, the code path evaluation uses too. The step index alone
decides which window of the token streams a step reads (window = step % windows per epoch), and a
checkpoint holds every other piece of state (weights, optimizer, schedule, RNG, the carried LSTM
state, the running loss; see `labkit.checkpoint.resume_payload`), so a run that is stopped and
resumed ends with the same weights as one that never stopped. Under torchrun each process trains on
its rows of the batch with DistributedDataParallel (`labkit.distributed.World`); rank 0 evaluates
and writes the run folder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from labkit.batching import batchify, window, window_counts
from labkit.checkpoint import (
    RESUME_KEYS,
    CheckpointError,
    RunState,
    load_checkpoint,
    require_keys,
    restore_run,
    resume_payload,
    save_checkpoint,
)
from labkit.config import ConfigError, require_positive, to_dict
from labkit.corpus import TokenSplits, encode_corpus, load_corpus
from labkit.distributed import World
from labkit.likelihood import Score, mean_nll, score_stream, token_logprobs
from labkit.model import LSTMLanguageModel, ModelConfig, ModelSettings, State, detach_state
from labkit.runtime import Interrupt, autocast, pick_device, seed_everything, set_cpu_threads
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
class DataSettings:
    """The corpus and the tokenizer of a run (what `prepare` reads)."""

    corpus: str = "shakespeare"  # "shakespeare" (embedded), a .txt file, or a folder of .txt files
    max_chars: int = 0  # use only the first N characters of the corpus; 0 = all
    tokenizer: str = "char"  # "char", "word", "lower" (lower-case words), "lower_typos", "bpe"
    vocab_size: int = 0  # tokenizer vocabulary size; 0 = the kind's default
    min_freq: int = 1  # word tokenizer: words seen fewer times become <unk>


@dataclass
class TrainConfig(ModelSettings, DataSettings):
    """Every setting of a training run: data, then model (ModelSettings, labkit/model.py), then these.

    (A dataclass lists the fields of its last base first.) The defaults are tuned for `labkit
    train` on a 2-core CPU: a char-level LSTM on the embedded Shakespeare that reaches about 2.15
    validation bits/char in under two minutes, data included.
    """

    # optimisation
    batch_size: int = 32  # parallel token streams per step (split over the processes of torchrun)
    bptt: int = 64  # tokens per window: gradients are truncated at window boundaries
    carry_state: bool = True  # each window starts from the last one's state; False: from zero
    optimizer: str = "adamw"  # "adamw", "sgd", or "asgd" (SGD, weights averaged from average_start)
    lr: float = 1.5e-2  # peak learning rate, reached at the end of the warmup
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) or L2 penalty (SGD)
    momentum: float = 0.9  # SGD momentum (AdamW ignores it)
    average_start: int = 0  # asgd: the step from which the weights are averaged (AWD-LSTM)
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
        super().__post_init__()  # the model's settings
        require_positive(self, "batch_size", "bptt", "lr", "max_steps", "eval_every")
        require_positive(self, "checkpoint_every", "min_freq")
        zero_ok = ("max_chars", "vocab_size", "weight_decay", "momentum", "grad_clip")
        zero_ok += ("warmup_steps", "max_minutes", "eval_windows", "patience", "threads")
        for name in zero_ok:
            if not getattr(self, name) >= 0:  # `not >=` also catches NaN
                raise ConfigError(
                    f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}; "
                    f"set --{name} to 0 or a positive value."
                )
        choices = {
            "tokenizer": KINDS,
            "optimizer": ("adamw", "sgd", "asgd"),
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
    vocab_size = config.vocab_size or None
    tokenizer = train_tokenizer(config.tokenizer, corpus.train, vocab_size, config.min_freq)
    return tokenizer, encode_corpus(corpus, tokenizer)


def model_config(config: TrainConfig, vocab_size: int) -> ModelConfig:
    """The ModelConfig of a TrainConfig's model settings and the tokenizer's vocabulary size."""
    settings = {f.name: getattr(config, f.name) for f in fields(ModelSettings)}
    settings["adaptive_cutoffs"] = tuple(config.adaptive_cutoffs)
    return ModelConfig(**settings, vocab_size=vocab_size)


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
    """AdamW, SGD or averaged SGD over the model's parameters (fused kernels on CUDA).

    Averaged SGD (Polyak averaging, AWD-LSTM's last phase) takes plain SGD steps at the schedule's
    lr (lambd=alpha=0; torch's ASGD applies an lr one step late) and keeps in its state the mean
    of the weights since step `average_start`: the weights that `averaged_weights` evaluates.
    """
    fused = next(model.parameters()).is_cuda or None  # None lets torch pick foreach on CPU
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr, config.momentum, weight_decay=decay, fused=fused)
    if config.optimizer == "asgd":
        return torch.optim.ASGD(
            params, lr, lambd=0.0, alpha=0.0, t0=config.average_start, weight_decay=decay
        )
    return torch.optim.AdamW(params, lr, weight_decay=decay, fused=fused)


def _averages(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, its mean so far) for averaged SGD after a first step; [] otherwise."""
    if not isinstance(optimizer, torch.optim.ASGD):
        return []
    return [
        (param, optimizer.state[param]["ax"])
        for param in model.parameters()
        if "ax" in optimizer.state.get(param, {})
    ]


@contextmanager
def averaged_weights(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[bool]:
    """Inside, the model holds averaged SGD's mean weights (if it has any yet); then its own.

    Yields:
        Whether the weights were swapped (False for any other optimizer, or before a first step).
    """
    averages = _averages(model, optimizer)
    own = [param.detach().clone() for param, _ in averages]
    with torch.no_grad():
        for param, mean in averages:
            param.copy_(mean)
    try:
        yield bool(averages)
    finally:
        with torch.no_grad():
            for (param, _), weights in zip(averages, own, strict=True):
                param.copy_(weights)


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
    world = World.start(pick_device(config.device))
    _check_splits(data, config, world.size)

    # The token streams go to the device once; only the window index changes from step to step.
    inputs, targets = batchify(data.train, config.batch_size, mask=data.masks.get("train"))
    counts = window_counts(targets, config.bptt)  # real targets per window, all ranks together
    windows = len(counts)
    inputs = world.shard(inputs).to(world.device)  # (B / world, S)
    targets = world.shard(targets).to(world.device)  # (B / world, S)

    model.to(world.device).train()
    optimizer = make_optimizer(model, config)
    checkpoints = _Checkpoints(model, optimizer, world, config, tokenizer)
    run, state = RunState(), None  # state: the LSTM state carried from window to window
    if config.resume:
        run, state = _resume(model, optimizer, config, tokenizer, world)
        checkpoints.saved_step = run.step
    else:
        seed_everything(config.seed + world.rank)  # each rank draws its own dropout masks
    if config.compile:
        model.compile()  # in place: the state_dict keys stay those of the plain model
    net = world.wrap(model)
    if world.rank == 0:
        _start_run_folder(config, tokenizer, run.history)

    loss_sum = _LossSum.zeros(world.device, config.max_steps)
    start = row_start = time.time()
    budget = 60 * config.max_minutes or math.inf  # seconds
    row_tokens = run.tokens  # tokens done at row_start
    show = config.progress and world.rank == 0
    pbar = tqdm(
        total=config.max_steps, initial=run.step, desc=config.name, unit="step", disable=not show
    )
    interrupt, mid_step = Interrupt(), False
    try:
        with interrupt:
            while run.step < config.max_steps:
                mid_step = True
                # the window: each epoch reads the streams from their start
                index = run.step % windows
                if index == 0:
                    state = None
                x, y = window(inputs, targets, index, config.bptt)  # (B / world, T)
                # the learning rate
                lr = learning_rate(config, run.step, run.lr_scale)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # forward: DDP averages gradients over ranks, so the loss is scaled by world size
                # to give the gradient of the mean over the global batch, whatever the padding.
                with autocast(world.device, config.amp):
                    logp, state = token_logprobs(net, x, y, state)  # (B / world, T)
                    loss = mean_nll(logp, y, counts[index]) * world.size
                    if model.penalty is not None:  # AR/TAR (activation_reg, temporal_reg)
                        loss = loss + model.penalty
                # backward, clip, step
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                state = detach_state(state) if config.carry_state else None
                # bookkeeping: the loss stays on the device, no sync per step
                loss_sum.add(logp, run.step)
                run.step += 1
                run.tokens += counts[index]
                run.run_tokens += counts[index]
                mid_step = False
                pbar.update()
                if interrupt.requested:
                    raise KeyboardInterrupt
                # One process reads the clock every step, and evaluates and stops when time is up;
                # under torchrun the ranks must agree, so rank 0 checks it at evaluations only.
                over_time = world.size == 1 and time.time() - start > budget
                eval_due = run.step % config.eval_every == 0 or run.step == config.max_steps
                eval_due = eval_due or over_time
                if not (eval_due or run.step % config.checkpoint_every == 0):
                    continue
                _sync_loss(run, loss_sum, world, checkpoints)
                if not eval_due:
                    checkpoints.save(run, state)
                    continue
                # evaluate: a history row, best.pt when the loss improved, stop when it is time
                now = time.time()
                with averaged_weights(model, optimizer):  # asgd: the mean weights; else as they are
                    score, over_time = _validate(model, data, config, world, now - start > budget)
                row = history_row(run, score, lr, now - row_start, run.tokens - row_tokens, windows)
                checkpoints.save(run, state, best=_record(run, row, config))
                if world.rank == 0:
                    with open(config.run_path / "history.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    pbar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}")
                if callback is not None:
                    callback(row)
                if over_time or (config.patience and run.bad_evals >= config.patience):
                    break
                row_start, row_tokens = time.time(), run.tokens
    except KeyboardInterrupt:
        if world.size == 1 and not mid_step and not interrupt.forced:
            _sync_loss(run, loss_sum, world, checkpoints)
            checkpoints.save(run, state)
        raise
    finally:
        pbar.close()
        world.close()
    with torch.no_grad():  # averaged SGD: the run's result is the mean weights, as in best.pt
        for param, mean in _averages(model, optimizer):
            param.copy_(mean)
    return run.history


def _resume(
    model: LSTMLanguageModel,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    tokenizer: Tokenizer | None,
    world: World,
) -> tuple[RunState, State | None]:
    """Check that checkpoint.pt is this run's (settings, tokenizer, model), then restore it.

    Returns:
        The run's state and this rank's carried LSTM state.
    """
    path = config.run_path / "checkpoint.pt"
    payload = load_checkpoint(path)
    require_keys(payload, RESUME_KEYS, path)
    check_resume(payload["config"], config, path)
    saved_tokenizer = payload.get("tokenizer")
    if tokenizer is not None and saved_tokenizer and saved_tokenizer != tokenizer.to_json():
        raise CheckpointError(
            f"{path} was trained with another tokenizer than the one built now from "
            f"--corpus {config.corpus}: the corpus text changed since the run began. Resume "
            "with the same corpus, or start a new run (another --name, or --overwrite true)."
        )
    return restore_run(payload, path, model, optimizer, config.batch_size, world)


def _start_run_folder(
    config: TrainConfig, tokenizer: Tokenizer | None, history: list[dict[str, Any]]
) -> None:
    """Write config.json, tokenizer.json and the history so far (rows after the checkpoint go)."""
    out = config.run_path
    out.mkdir(parents=True, exist_ok=True)
    if not config.resume:  # a fresh run replaces an earlier one whole: nothing is mixed in
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(out / "tokenizer.json")
    with open(out / "history.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)


@dataclass
class _LossSum:
    """The training loss summed on the device between syncs, so that no step waits for the host."""

    nll: torch.Tensor  # () float64: -sum log p since the last sync
    first_bad: torch.Tensor  # (): the first step (1-based) whose loss was not finite; or max + 1

    @classmethod
    def zeros(cls, device: torch.device, max_steps: int) -> _LossSum:
        nll = torch.zeros((), dtype=torch.float64, device=device)
        return cls(nll, torch.full((), max_steps + 1, device=device))

    def add(self, logp: torch.Tensor, step: int) -> None:
        """Add one step's summed loss; `step` is the 0-based index of that step."""
        step_nll = -logp.detach().sum(dtype=torch.float64)
        self.nll += step_nll
        bad = self.first_bad.clamp(max=step + 1)
        self.first_bad = torch.where(step_nll.isfinite(), self.first_bad, bad)


def _sync_loss(run: RunState, loss_sum: _LossSum, world: World, saver: _Checkpoints) -> None:
    """Move the summed loss of every rank into run.run_nll; stop if it is not finite."""
    world.sum(loss_sum.nll)
    world.min(loss_sum.first_bad)
    run.run_nll += float(loss_sum.nll)
    loss_sum.nll.zero_()
    if not math.isfinite(run.run_nll):
        step = int(loss_sum.first_bad)
        raise saver.non_finite(f"the training loss became non-finite at step {step}")


@dataclass
class _Checkpoints:
    """Writes a run's checkpoint.pt and best.pt, and knows which step checkpoint.pt holds."""

    model: LSTMLanguageModel
    optimizer: torch.optim.Optimizer
    world: World
    config: TrainConfig
    tokenizer: Tokenizer | None
    saved_step: int | None = None  # the step checkpoint.pt holds; None before the first save

    def save(self, run: RunState, state: State | None, best: bool = False) -> None:
        """Save the run after run.step steps, also as best.pt if `best` (every rank calls this).

        Raises:
            NonFiniteLossError: a weight is not finite; nothing is written, so no file holds NaN.
        """
        if not bool(torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()):
            raise self.non_finite(f"the weights are not finite after step {run.step}")
        config = to_dict(self.config)
        payload = resume_payload(
            self.model, self.optimizer, run, state, self.world, config, self.tokenizer
        )
        if payload is not None:  # rank 0
            save_checkpoint(self.config.run_path / "checkpoint.pt", payload)
            if best:  # the weights evaluated: averaged SGD's mean, or the model's own
                means = dict(_averages(self.model, self.optimizer))  # parameter -> its mean
                weights = payload["model"] | {
                    name: means[param]
                    for name, param in self.model.named_parameters(remove_duplicate=False)
                    if param in means
                }
                save_checkpoint(self.config.run_path / "best.pt", {**payload, "model": weights})
        self.saved_step = run.step

    def non_finite(self, problem: str) -> NonFiniteLossError:
        """The error for a non-finite loss or weight, naming the last good checkpoint and the fix."""
        kept = "no checkpoint was written before it"
        if self.saved_step is not None:
            path = self.config.run_path / "checkpoint.pt"
            kept = f"{path} keeps the last good state (step {self.saved_step})"
        return NonFiniteLossError(
            f"{problem}; {kept}. Lower --lr (now {self.config.lr}) or set --grad_clip (e.g. 1.0), "
            "then train again."
        )


def _validate(
    model: LSTMLanguageModel, data: TokenSplits, config: TrainConfig, world: World, over_time: bool
) -> tuple[Score, bool]:
    """Rank 0 scores the validation split and says if time is up; every rank gets both answers."""
    shared = torch.zeros(4, dtype=torch.float64)  # nll, tokens, chars, out of time
    if world.rank == 0:
        chars = data.chars.get("valid") if data.chars else None
        with autocast(world.device, config.amp):
            windows, mask = config.eval_windows or None, data.masks.get("valid")
            score = score_stream(
                model,
                data.valid,
                config.batch_size,
                config.bptt,
                chars,
                windows,
                mask,
                carry_state=config.carry_state,
            )
        shared = torch.tensor(
            [score.nll, score.tokens, score.chars or 0, over_time], dtype=torch.float64
        )
    nll, tokens, chars, over = world.broadcast(shared).tolist()  # every rank takes rank 0's branch
    return Score(nll=nll, tokens=int(tokens), chars=int(chars) or None), bool(over)


def history_row(
    run: RunState, score: Score, lr: float, seconds: float, tokens: int, windows: int
) -> dict[str, Any]:
    """The history row of an evaluation after run.step steps.

    Args:
        seconds, tokens: wall time and real targets since the previous row.
        windows: windows per epoch.
    """
    return {
        "step": run.step,
        "tokens": run.tokens,
        "epoch": round(run.step / windows, 4),
        "train_loss": run.run_nll / run.run_tokens,
        "val_loss": score.mean_nll,
        "val_ppl": score.perplexity,
        "val_bpc": score.bits_per_char,
        "lr": lr,
        "tokens_per_s": tokens / max(seconds, 1e-9),
        "elapsed_s": (run.history[-1]["elapsed_s"] if run.history else 0.0) + seconds,
    }


def _record(run: RunState, row: dict[str, Any], config: TrainConfig) -> bool:
    """Append the row to the history; track the best loss and the plateau. Returns: improved."""
    run.history.append(row)
    run.run_nll, run.run_tokens = 0.0, 0
    if row["val_loss"] < run.best_val:
        run.best_val, run.bad_evals = row["val_loss"], 0
        return True
    run.bad_evals += 1
    if config.schedule == "plateau":
        run.lr_scale = max(run.lr_scale * PLATEAU_FACTOR, config.min_lr_ratio)
    return False
