"""Checkpoints: a dict of plain values and tensors, written atomically and read without unpickling.

A checkpoint holds everything a run needs to continue exactly where it stopped (weights, optimizer,
schedule, RNG states, the carried LSTM state, step, history) plus what a reader needs to use the
model (its config and the tokenizer as JSON). Only plain types and tensors go in, so that
`torch.load(weights_only=True)` can read it: loading a checkpoint never runs code from the file.
A hand-edited or foreign checkpoint raises CheckpointError saying what does not fit, never a
KeyError or a shape error from deep inside torch. `resume_payload` builds what the training loop
saves (gathered from every process under torchrun) and `restore_run` puts it back.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from labkit.config import to_dict
from labkit.model import ADDED_LATER, LSTMLanguageModel, ModelConfig, State

if TYPE_CHECKING:
    from labkit.distributed import World
    from labkit.tokenizer import Tokenizer

FORMAT = "labkit-checkpoint"  # the tag every checkpoint carries
VERSION = 1  # bumped when the payload's keys change meaning
MODEL_KEYS = ("model", "model_config")  # what rebuilding the model reads
RESUME_KEYS = (*MODEL_KEYS, "optimizer", "progress", "rng", "lstm_state", "config")  # and resuming
_FIX = "use a checkpoint.pt or best.pt written by labkit train, or train again"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do instead."""


@dataclass
class RunState:
    """Where a training run stands: what a checkpoint restores besides weights, optimizer and RNG."""

    step: int = 0  # optimizer steps done
    tokens: int = 0  # real targets trained on, all ranks together
    lr_scale: float = 1.0  # the plateau schedule's factor
    best_val: float = math.inf  # best validation loss so far
    bad_evals: int = 0  # evaluations since the best one
    run_nll: float = 0.0  # summed training loss since the last history row
    run_tokens: int = 0  # real targets since the last history row
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per evaluation


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temp file in the same folder, fsync, then rename.

    A crash or a kill at any moment leaves either the old file or the new one, never half a file.
    The format tag and version are added to the payload.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "format": FORMAT, "version": VERSION}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: rename stays atomic
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows when both lie on one filesystem
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # from a killed writer
        stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, tensors on the CPU.

    Returns:
        The payload dict.
    Raises:
        CheckpointError: the file is missing, truncated, corrupt, holds pickled objects other than
            plain values and tensors, or is not a labkit checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; check the path, or train first (labkit train --name ...)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad files: all mean "unusable"
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated, corrupt, or holds objects other than "
            f"tensors and plain values ({_load_error(e)}). Use best.pt from the same run folder "
            "(copy it over checkpoint.pt to resume from it), or train again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a labkit checkpoint (no '{FORMAT}' format tag); "
            "point to a checkpoint.pt or best.pt written by labkit train."
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, this labkit reads version "
            f"{VERSION}; use the labkit release that wrote it, or train again."
        )
    return payload


def _load_error(e: Exception) -> str:
    """torch.load's reason in one complete sentence (its own messages run to paragraphs)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch colours part of its message
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe:  # weights_only refused a pickled callable or class: the unsafe case
        return f"a pickled {unsafe.group(1)}, which could run code when loaded; labkit never does"
    if "WeightsUnpickler error:" in text:  # skip torch's advice to load it unsafely
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def require_keys(payload: dict[str, Any], keys: tuple[str, ...], path: str | Path) -> None:
    """Raise CheckpointError naming the keys of `keys` that `payload` lacks."""
    missing = [k for k in keys if k not in payload]
    if missing:
        raise CheckpointError(
            f"{path} lacks {', '.join(map(repr, missing))}, so it was edited or written by other "
            f"code; {_FIX}."
        )


def check_model_config(values: Any, path: str | Path) -> dict[str, Any]:
    """The checkpoint's model settings as ModelConfig keyword arguments.

    Raises:
        CheckpointError: not a dict, or missing or unknown ModelConfig fields.
    """
    if not isinstance(values, dict):
        raise CheckpointError(
            f"{path}: 'model_config' is a {type(values).__name__}, not a dict of settings; {_FIX}."
        )
    fields = [f.name for f in dataclasses.fields(ModelConfig)]
    optional = ("adaptive_cutoffs", *ADDED_LATER)  # absent: () and off (older checkpoints)
    missing = [k for k in fields if k not in values and k not in optional]
    unknown = [k for k in values if k not in fields]
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] * bool(missing)
        problems += [f"unknown {', '.join(map(str, unknown))}"] * bool(unknown)
        raise CheckpointError(
            f"{path}: 'model_config' has {' and '.join(problems)} (ModelConfig has "
            f"{', '.join(fields)}); {_FIX}."
        )
    values = dict(values)
    cutoffs = values.get("adaptive_cutoffs", ())
    values["adaptive_cutoffs"] = tuple(cutoffs) if isinstance(cutoffs, list | tuple) else cutoffs
    return values


def load_weights(model: torch.nn.Module, weights: Any, path: str | Path) -> None:
    """model.load_state_dict(weights), after checking the names and shapes of every tensor.

    Raises:
        CheckpointError: not a dict of tensors, or tensors missing, extra or of the wrong shape.
    """
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise CheckpointError(f"{path}: 'model' is not a dict of tensors; {_FIX}.")
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [str(k) for k in weights if k not in expected]
    shapes = [
        f"{k} is {tuple(weights[k].shape)}, the model needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    problems = [f"missing tensors {', '.join(missing)}"] * bool(missing)
    problems += [f"extra tensors {', '.join(extra)}"] * bool(extra)
    problems += shapes
    if problems:
        raise CheckpointError(
            f"{path}: the weights do not fit the model its settings describe ({'; '.join(problems)})"
            f"; {_FIX}."
        )
    model.load_state_dict(weights)


def model_from_payload(
    payload: dict[str, Any], path: str | Path = "the checkpoint"
) -> LSTMLanguageModel:
    """Rebuild the model of a checkpoint payload, weights loaded, on the CPU.

    Raises:
        CheckpointError: the payload lacks the model or its settings, or they do not fit together.
    """
    require_keys(payload, MODEL_KEYS, path)
    values = check_model_config(payload["model_config"], path)
    try:
        model = LSTMLanguageModel(ModelConfig(**values))
    except (TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: unusable 'model_config' ({e}); {_FIX}.") from None
    load_weights(model, payload["model"], path)
    return model


def load_model(
    path: str | Path, tokenizer: Tokenizer | None = None, device: str | torch.device = "cpu"
) -> tuple[LSTMLanguageModel, Tokenizer]:
    """The model of a checkpoint, in eval mode on `device`, with its tokenizer.

    Args:
        tokenizer: use this tokenizer instead of the one saved in the checkpoint; its vocabulary
            size must equal the model's.
    Returns:
        (model, tokenizer).
    Raises:
        CheckpointError: an unreadable file, model settings and weights that do not fit together
            (missing or extra keys, wrong shapes), a checkpoint without a usable tokenizer when
            none is given, or a tokenizer whose vocabulary size differs from the model's.
    """
    from labkit.tokenizer import tokenizer_from_json

    payload = load_checkpoint(path)
    model = model_from_payload(payload, path).to(device).eval()
    vocab = model.config.vocab_size
    if tokenizer is None:
        if not isinstance(payload.get("tokenizer"), str) or not payload["tokenizer"]:
            raise CheckpointError(
                f"{path} holds no tokenizer; pass the tokenizer the model was trained with "
                "(load_model(path, tokenizer=...))."
            )
        try:
            tokenizer = tokenizer_from_json(payload["tokenizer"], f"the tokenizer in {path}")
        except ValueError as e:
            raise CheckpointError(f"{e} ({path} was edited or written by other code.)") from None
    if tokenizer.vocab_size != vocab:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model in {path} was trained "
            f"with {vocab}; use the tokenizer saved with that run (its tokenizer.json, or pass no "
            "tokenizer to use the checkpoint's own)."
        )
    return model, tokenizer


def resume_payload(
    model: LSTMLanguageModel,
    optimizer: torch.optim.Optimizer,
    run: RunState,
    state: State | None,
    world: World,
    config: dict[str, Any],
    tokenizer: Tokenizer | None,
) -> dict[str, Any] | None:
    """Everything a run needs to continue exactly where it is; every rank calls this.

    The RNG states of every rank and every rank's rows of the carried LSTM state are gathered, so
    that a resume restores the whole batch's state, also with another number of processes.

    Returns:
        The payload on rank 0 (for `save_checkpoint`), None on the other ranks.
    """
    mine = {
        "state": None if state is None else tuple(t.cpu() for t in state),
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(world.device) if world.device.type == "cuda" else None,
    }
    ranks = world.gather(mine)
    if world.rank != 0:
        return None
    carried = None  # (L, B, H): the rows of every rank, in rank order
    if state is not None:
        carried = tuple(torch.cat([r["state"][k] for r in ranks], dim=1) for k in (0, 1))
    return {
        "model": model.state_dict(),
        "model_config": to_dict(model.config),
        "optimizer": optimizer.state_dict(),
        "progress": dataclasses.asdict(run),
        "rng": {"cpu": [r["cpu"] for r in ranks], "cuda": [r["cuda"] for r in ranks]},
        "lstm_state": carried,
        "config": config,
        "tokenizer": tokenizer.to_json() if tokenizer is not None else None,
    }


def restore_run(
    payload: dict[str, Any],
    path: Path,
    model: LSTMLanguageModel,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    world: World,
) -> tuple[RunState, State | None]:
    """Load a `resume_payload` into the model and optimizer, and this rank's RNG states.

    Returns:
        The run's state and this rank's rows of the carried LSTM state (None at an epoch's start).
    Raises:
        CheckpointError: a part that does not fit this run (a hand-edited or foreign checkpoint).
    """
    check_same_model(check_model_config(payload["model_config"], path), model, path)
    load_weights(model, payload["model"], path)
    part = "optimizer"
    try:
        optimizer.load_state_dict(payload["optimizer"])
        for param, slots in optimizer.state.items():
            for key, value in slots.items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"its {key} is {tuple(value.shape)}, not {tuple(param.shape)}")
        part = "progress"
        names = sorted(f.name for f in dataclasses.fields(RunState))
        if not isinstance(payload["progress"], dict) or sorted(payload["progress"]) != names:
            raise ValueError(f"it needs exactly the keys {', '.join(names)}")
        run = RunState(**payload["progress"])
        part = "lstm_state"
        state = None
        if payload["lstm_state"] is not None:
            h, c = payload["lstm_state"]
            shape = (model.config.num_layers, batch_size, model.config.hidden_dim)
            if tuple(h.shape) != shape or tuple(c.shape) != shape:
                raise ValueError(f"it needs two tensors of shape {shape}")
            per = batch_size // world.size  # rows per rank
            h, c = (t[:, world.rank * per : (world.rank + 1) * per] for t in (h, c))
            state = (
                h.contiguous().to(world.device),
                c.contiguous().to(world.device),
            )  # (L, B/w, H)
        part = "rng"
        rng = payload["rng"]
        torch.set_rng_state(rng["cpu"][world.rank % len(rng["cpu"])])  # another world size: in turn
        cuda = rng["cuda"][world.rank % len(rng["cuda"])]
        if world.device.type == "cuda" and cuda is not None:
            torch.cuda.set_rng_state(cuda, world.device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        reason = str(e) if type(e) is ValueError else f"{type(e).__name__}: {e}"
        raise CheckpointError(
            f"{path}: its {part!r} does not fit this run ({reason}), so it was edited or written "
            "by other code; resume from best.pt (copy it over checkpoint.pt) or train again."
        ) from None
    return run, state


def check_same_model(saved: dict[str, Any], model: LSTMLanguageModel, path: Path) -> None:
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
