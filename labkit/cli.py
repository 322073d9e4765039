"""The command line: `labkit train`, `labkit sample` and `labkit score` (also `python -m labkit`).

    labkit train --hidden_dim 512 --name big
    labkit sample --run runs/big --prompt "ROMEO:" --temperature 0.8
    labkit score --run runs/big --text "To be, or not to be"

Each command reads `--key value` pairs into config dataclasses; `labkit COMMAND --help` lists the
keys with their defaults and meaning. Exit codes: 0 done, 1 the work failed (the message says why
and what to do), 2 a bad command line, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from labkit.checkpoint import CheckpointError, load_checkpoint, load_model, require_keys
from labkit.config import ConfigError, from_dict, help_text, parse_overrides
from labkit.corpus import _read_text
from labkit.generate import SampleConfig, generate
from labkit.likelihood import score_stream
from labkit.runtime import pick_device
from labkit.train import (
    NonFiniteLossError,
    TrainConfig,
    build_model,
    check_resume,
    check_run_folder,
    prepare,
    train,
)

USAGE = """usage: labkit COMMAND [--key value]...

commands:
  train    train a language model, writing runs/NAME/
  sample   continue a prompt with text sampled from a trained run
  score    the likelihood of a text under a trained run: nll, perplexity, bits/char
  present  serve notebook 06's demos as a web app on 127.0.0.1 (`labkit present --help`)

`labkit COMMAND --help` lists the keys of each command."""


@dataclass
class SampleArgs:
    run: str = ""  # a run folder (runs/NAME: its best.pt, else checkpoint.pt) or a checkpoint file
    prompt: str = ""  # text to continue; "" starts from <bos>
    device: str = "cpu"  # "cpu", "auto" (cuda > mps > cpu), "cuda" or "mps"


@dataclass
class ScoreArgs:
    run: str = ""  # a run folder (runs/NAME: its best.pt, else checkpoint.pt) or a checkpoint file
    text: str = ""  # the text to score
    file: str = ""  # a UTF-8 text file to score instead of --text
    device: str = "cpu"  # "cpu", "auto" (cuda > mps > cpu), "cuda" or "mps"


def _device(name: str) -> torch.device:
    """pick_device, with a missing device reported as a bad option (exit code 2)."""
    try:
        return pick_device(name)
    except RuntimeError as err:
        raise ConfigError(str(err)) from None


def _checkpoint_path(run: str) -> Path:
    """The checkpoint named by --run: a file, or a run folder's best.pt (else its checkpoint.pt)."""
    if not run:
        raise ConfigError("--run is required: give a run folder (runs/NAME) or a checkpoint file.")
    path = Path(run)
    if path.is_dir():
        best = path / "best.pt"
        return best if best.is_file() else path / "checkpoint.pt"
    return path


def _split_args(argv: list[str], *classes: type) -> list[object]:
    """Read `--key value` pairs into one instance of each dataclass, each key going to its owner.

    Raises:
        ConfigError: a key no class has (the message lists every valid key) or a bad value.
    """
    overrides = parse_overrides(argv)
    owners = {f.name: cls for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(owners))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(owners)}")
    return [
        from_dict(cls, {k: v for k, v in overrides.items() if owners[k] is cls}) for cls in classes
    ]


def _saved_settings(run: Path) -> tuple[dict, Path]:
    """The settings a run was trained with: its config.json, else the copy in its checkpoint.pt.

    Returns:
        (the settings, less resume and overwrite; the file they came from).
    Raises:
        CheckpointError: no checkpoint.pt to resume from, or one without settings.
        ConfigError: a config.json that is not a JSON object.
    """
    ckpt, saved = run / "checkpoint.pt", run / "config.json"
    if not ckpt.is_file():
        raise CheckpointError(
            f"nothing to resume in {run}: it has no checkpoint.pt. Check --run_dir and --name, or "
            "start the run without --resume true."
        )
    if saved.is_file():
        try:
            values = json.loads(saved.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            values = f"invalid JSON: {e}"
        if not isinstance(values, dict):
            raise ConfigError(
                f"{saved} does not hold the run's settings as a JSON object ({values!s:.80}); fix "
                "it, or delete it to resume with the settings saved in checkpoint.pt."
            )
    else:  # the checkpoint carries the same settings
        payload = load_checkpoint(ckpt)
        require_keys(payload, ("config",), ckpt)
        values, saved = payload["config"], ckpt
        if not isinstance(values, dict):
            raise CheckpointError(
                f"{ckpt} records no settings (its 'config' is a {type(values).__name__}) and the "
                f"run has no config.json; put the run's config.json back in {run}, or train again."
            )
    return {k: v for k, v in values.items() if k not in ("resume", "overwrite")}, saved


def train_command(argv: list[str]) -> int:
    """labkit train: prepare the data, build the model, train, print the validation bits/char."""
    overrides = parse_overrides(argv)
    config = from_dict(TrainConfig, overrides)
    if config.resume:  # resume with the run's own settings, then the overrides
        saved, source = _saved_settings(config.run_path)
        config = from_dict(TrainConfig, overrides, from_dict(TrainConfig, saved))
        check_resume(saved, config, source)
    check_run_folder(config)  # nothing of an earlier run is touched without --overwrite true
    _device(config.device)  # fail before the data is prepared
    rank0 = int(os.environ.get("RANK", "0")) == 0
    tokenizer, data = prepare(config)
    model = build_model(config, tokenizer.vocab_size)
    if rank0:
        print(
            f"{model.num_parameters():,} parameters, {tokenizer.kind} tokenizer of "
            f"{tokenizer.vocab_size} tokens, {data.train.numel():,} training tokens; "
            f"writing {config.run_path}"
        )
    try:
        history = train(model, data, config, tokenizer)
    except KeyboardInterrupt:
        if rank0:
            print(
                f"interrupted; continue from {config.run_path / 'checkpoint.pt'} with: "
                f"labkit train --run_dir {config.run_dir} --name {config.name} --resume true",
                file=sys.stderr,
            )
        return 130
    if rank0 and history:
        last = history[-1]
        best = min(history, key=lambda row: row["val_loss"])
        if last["step"] < config.max_steps:
            print(
                f"stopped at step {last['step']} of {config.max_steps}: the time budget "
                f"(--max_minutes {config.max_minutes}) or --patience {config.patience} ran out; "
                "raise them (0 = no limit) to train longer"
            )
        print(
            f"validation bits/char {last['val_bpc']:.4f} at step {last['step']} "
            f"(best {best['val_bpc']:.4f} at step {best['step']}); run folder {config.run_path}"
        )
    return 0


def sample_command(argv: list[str]) -> int:
    """labkit sample: print the prompt and its sampled continuation."""
    args, sample_config = _split_args(argv, SampleArgs, SampleConfig)
    model, tokenizer = load_model(_checkpoint_path(args.run), device=_device(args.device))
    print(args.prompt + generate(model, tokenizer, args.prompt, sample_config))
    return 0


def score_command(argv: list[str]) -> int:
    """labkit score: print the text's negative log-likelihood, perplexity and bits per character."""
    (args,) = _split_args(argv, ScoreArgs)
    if bool(args.text) == bool(args.file):
        raise ConfigError("give exactly one of --text T or --file F to score.")
    text = _read_text(Path(args.file)) if args.file else args.text
    model, tokenizer = load_model(_checkpoint_path(args.run), device=_device(args.device))
    ids = torch.tensor(tokenizer.encode(text, bos=True), dtype=torch.long)  # (N,) <bos> first
    if ids.numel() < 2:
        raise ValueError("the text has no tokens to score; give a non-empty --text or --file.")
    score = score_stream(model, ids, batch_size=1, bptt=256, chars=len(text))
    print(
        f"nll {score.nll:.3f} nats over {score.tokens} tokens ({score.mean_nll:.4f} nats/token), "
        f"perplexity {score.perplexity:.3f}, bits/char {score.bits_per_char:.4f}"
    )
    return 0


COMMANDS = {
    "train": (train_command, [TrainConfig]),
    "sample": (sample_command, [SampleArgs, SampleConfig]),
    "score": (score_command, [ScoreArgs]),
}


def main(argv: list[str] | None = None) -> int:
    """Run `labkit COMMAND [--key value]...`.

    Returns:
        The exit code: 0 done, 1 the work failed, 2 a bad command line, 130 interrupted.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "present":  # its own argparse command line (labkit/present.py)
        from labkit.present import main as present

        return present(rest)
    if name not in COMMANDS:
        print(
            f"labkit: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}\n",
            file=sys.stderr,
        )
        print(USAGE, file=sys.stderr)
        return 2
    command, classes = COMMANDS[name]
    if "-h" in rest or "--help" in rest:
        print(f"usage: labkit {name} [--key value]...\n\n{command.__doc__}\n\nkeys:")
        print("\n".join(help_text(cls) for cls in classes))
        return 0
    try:
        return command(rest)
    except ConfigError as err:  # a bad command line: before ValueError, which it subclasses
        print(f"labkit {name}: {err}", file=sys.stderr)
        return 2
    except (CheckpointError, NonFiniteLossError, FileNotFoundError, ValueError) as err:
        print(f"labkit {name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
