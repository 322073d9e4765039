"""Checkpoints: a dict of plain values and tensors, written atomically and read without unpickling.

A checkpoint holds everything a run needs to continue exactly where it stopped (weights, optimizer,
schedule, RNG states, the carried LSTM state, step, history) plus what a reader needs to use the
model (its config and the tokenizer as JSON). Only plain types and tensors go in, so that
`torch.load(weights_only=True)` can read it: loading a checkpoint never runs code from the file.
A hand-edited or foreign checkpoint raises CheckpointError saying what does not fit, never a
KeyError or a shape error from deep inside torch.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from labkit.model import LSTMLanguageModel, ModelConfig

if TYPE_CHECKING:
    from labkit.tokenizer import Tokenizer

FORMAT = "labkit-checkpoint"  # the tag every checkpoint carries
VERSION = 1  # bumped when the payload's keys change meaning
MODEL_KEYS = ("model", "model_config")  # what rebuilding the model reads
RESUME_KEYS = (*MODEL_KEYS, "optimizer", "progress", "rng", "lstm_state", "config")  # and resuming
_FIX = "use a checkpoint.pt or best.pt written by labkit train, or train again"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do instead."""


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
    missing = [k for k in fields if k not in values and k != "adaptive_cutoffs"]  # () if absent
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
