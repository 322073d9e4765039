"""Behaviour cloning by likelihood: expert episodes -> text transcripts -> an LSTM agent.

    expert episodes  --format_example-->  transcripts  --train()-->  LSTM  --LMPolicy-->  agent

Every decision the expert made becomes one training example: the prompt the policy would have seen
(`format_prompt`: goal, recent history, observation) followed by the expert's action. The examples
are read as one token stream, each opened by <bos> as a prompt is when the agent acts, and the LSTM
is fitted by maximum likelihood with the same `train` loop as any language model. Nothing here is
reinforcement learning: the agent imitates, and the harness measures how well that generalises to
games it has never seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from labkit.agents.baselines import ExpertPolicy
from labkit.agents.core import Env
from labkit.agents.harness import Trajectory, run_episode
from labkit.agents.policies import LMPolicy, LSTMScorer, format_example
from labkit.checkpoint import load_model
from labkit.config import from_dict
from labkit.corpus import TokenSplits
from labkit.tokenizer import Tokenizer, train_tokenizer
from labkit.train import TrainConfig, build_model, train

# TrainConfig values that suit an agent's transcripts: short, repetitive text with a small alphabet.
AGENT_DEFAULTS: dict[str, Any] = dict(
    tokenizer="char",
    embed_dim=64,
    hidden_dim=256,
    num_layers=1,
    dropout=0.0,
    batch_size=32,
    bptt=64,
    lr=3e-3,
    warmup_steps=20,
    max_steps=600,
    eval_every=100,
    name="agent",
    progress=False,
    threads=1,  # batches this small gain little from more threads, and lose much on a busy CPU
)
AGENT_FILE = "agent.json"  # beside the checkpoints: how the agent builds its prompts


def agent_config(**overrides: Any) -> TrainConfig:
    """A TrainConfig with AGENT_DEFAULTS, then `overrides` (any TrainConfig field).

    Raises:
        ConfigError: an unknown field (the message lists the valid ones) or a value of the wrong type.
    """
    return from_dict(TrainConfig, {**AGENT_DEFAULTS, **overrides})


def expert_episodes(env: Env, seeds: Iterable[int], max_steps: int = 100) -> list[Trajectory]:
    """Play the environment's expert on each seed and keep the episodes it won.

    Returns:
        The won trajectories, in seed order (an expert that fails a game teaches nothing useful).
    """
    expert = ExpertPolicy()
    episodes = [run_episode(expert, env, seed, max_steps) for seed in seeds]
    return [t for t in episodes if t.won]


def examples(trajectory: Trajectory, history_steps: int | None = None) -> list[str]:
    """The training texts of one episode: each prompt the policy saw, followed by its action.

    The history of step i is the trajectory's steps before i, exactly what the harness passes to
    `Policy.act`, so a training text is the text the agent will later act on. With the whole
    history (history_steps=None) every example is a prefix of the last one, so the episode is a
    single text: the full transcript, in which every action is predicted once.

    Returns:
        One text per step (or one per episode when history_steps is None).
    """
    steps = trajectory.steps
    chosen = range(len(steps) - 1, len(steps)) if history_steps is None else range(len(steps))
    return [
        format_example(
            trajectory.goal, steps[:i], steps[i]["observation"], steps[i]["action"], history_steps
        )
        for i in chosen
    ]


def encode_examples(texts: list[str], tokenizer: Tokenizer) -> torch.Tensor:
    """The examples as one stream (N,), each opened by <bos> as a prompt is when the agent acts."""
    ids = [i for text in texts for i in tokenizer.encode(text, bos=True)]
    return torch.tensor(ids, dtype=torch.long)


def clone_expert(
    episodes: list[Trajectory],
    config: TrainConfig | None = None,
    history_steps: int | None = None,
    valid_fraction: float = 0.1,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[LMPolicy, list[dict[str, Any]]]:
    """Fit an LSTM to expert transcripts by maximum likelihood and wrap it as an LMPolicy.

    The last `valid_fraction` of the episodes (at least one) are held out as the validation split;
    the tokenizer is built from all transcripts. The final weights are kept: the validation loss
    is dominated by the wording of unseen rooms, not by the actions, so it chooses badly between
    checkpoints. The run folder (config.run_path) gets what `train` writes plus AGENT_FILE, so that
    `load_agent` can rebuild the policy.

    Args:
        episodes: expert trajectories (see `expert_episodes`), at least two.
        config: the training settings (default: `agent_config()`).
        history_steps: past (observation, action) pairs in each prompt (None: the whole episode);
            the policy uses the same.
        callback: called with each history row (e.g. a live loss plot).
    Returns:
        (the greedy LMPolicy named "lstm", the training history rows).
    Raises:
        ValueError: fewer than two episodes, or valid_fraction outside (0, 1).
    """
    if len(episodes) < 2:
        raise ValueError(
            f"behaviour cloning needs at least two expert episodes (one to validate on), got "
            f"{len(episodes)}; play the expert on more seeds."
        )
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    config = config or agent_config()
    held_out = max(1, round(len(episodes) * valid_fraction))
    train_texts = [e for t in episodes[:-held_out] for e in examples(t, history_steps)]
    valid_texts = [e for t in episodes[-held_out:] for e in examples(t, history_steps)]
    tokenizer = train_tokenizer(
        config.tokenizer, "".join(train_texts + valid_texts), config.vocab_size or None
    )
    data = TokenSplits(
        train=encode_examples(train_texts, tokenizer),
        valid=encode_examples(valid_texts, tokenizer),
        test=torch.empty(0, dtype=torch.long),
        chars={"train": sum(map(len, train_texts)), "valid": sum(map(len, valid_texts)), "test": 0},
    )
    model = build_model(config, tokenizer.vocab_size)
    history = train(model, data, config, tokenizer, callback)
    (config.run_path / AGENT_FILE).write_text(json.dumps({"history_steps": history_steps}) + "\n")
    policy = LMPolicy(LSTMScorer(model.eval(), tokenizer), history_steps=history_steps, name="lstm")
    return policy, history


def load_agent(run_path: str | Path, device: str = "cpu", **policy_args: Any) -> LMPolicy:
    """Rebuild the policy that `clone_expert` trained in `run_path` (its final weights).

    Args:
        policy_args: LMPolicy settings (greedy, temperature, length_norm, seed, name).
    Returns:
        The LMPolicy, with the history_steps it was trained with.
    Raises:
        CheckpointError: no usable checkpoint.pt in run_path.
        FileNotFoundError: run_path has no AGENT_FILE (it is not a cloning run).
    """
    folder = Path(run_path)
    if not (folder / AGENT_FILE).is_file():
        raise FileNotFoundError(
            f"{folder / AGENT_FILE} is missing, so {folder} is not a behaviour-cloning run; "
            "train one with clone_expert(...) and pass its config.run_path."
        )
    settings = json.loads((folder / AGENT_FILE).read_text())
    model, tokenizer = load_model(folder / "checkpoint.pt", device=device)
    policy_args.setdefault("name", "lstm")
    return LMPolicy(
        LSTMScorer(model, tokenizer), history_steps=settings["history_steps"], **policy_args
    )
