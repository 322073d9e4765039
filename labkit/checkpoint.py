"""Checkpoints: a dict of plain values and tensors, written atomically and read without unpickling.

A checkpoint holds everything a run needs to continue exactly where it stopped (weights, optimizer,
schedule, RNG states, the carried LSTM state, step, history) plus what a reader needs to use the
model (its config and the tokenizer as JSON). Only plain types and tensors go in, so that
`torch.load(weights_only=True)` can read it: loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from labkit.model import LSTMLanguageModel, ModelConfig

if TYPE_CHECKING:
    from labkit.tokenizer import Tokenizer

FORMAT = "labkit-checkpoint"  # the tag every checkpoint carries
VERSION = 1  # bumped when the payload's keys change meaning


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
        reason = f"{type(e).__name__}: {str(e).strip()[:200]}".split("\n")[0]
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated, corrupt, or holds objects other than "
            f"tensors and plain values ({reason}). Use best.pt from the same run folder (copy it "
            "over checkpoint.pt to resume from it), or train again."
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


def model_from_payload(payload: dict[str, Any]) -> LSTMLanguageModel:
    """Rebuild the model of a checkpoint payload, weights loaded, on the CPU."""
    values = dict(payload["model_config"])
    values["adaptive_cutoffs"] = tuple(values.get("adaptive_cutoffs", ()))
    model = LSTMLanguageModel(ModelConfig(**values))
    model.load_state_dict(payload["model"])
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
        CheckpointError: an unreadable file, a checkpoint without a tokenizer when none is given, or
            a tokenizer whose vocabulary size differs from the model's.
    """
    from labkit.tokenizer import tokenizer_from_json

    payload = load_checkpoint(path)
    model = model_from_payload(payload).to(device).eval()
    vocab = model.config.vocab_size
    if tokenizer is None:
        if not payload.get("tokenizer"):
            raise CheckpointError(
                f"{path} holds no tokenizer; pass the tokenizer the model was trained with "
                "(load_model(path, tokenizer=...))."
            )
        tokenizer = tokenizer_from_json(payload["tokenizer"])
    if tokenizer.vocab_size != vocab:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model in {path} was trained "
            f"with {vocab}; use the tokenizer saved with that run (its tokenizer.json, or pass no "
            "tokenizer to use the checkpoint's own)."
        )
    return model, tokenizer
