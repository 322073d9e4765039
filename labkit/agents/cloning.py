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
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from labkit.agents.baselines import ExpertPolicy
from labkit.agents.core import Env
from labkit.agents.harness import Trajectory, run_episode
from labkit.agents.policies import (
    END_OF_ACTION,
    REQUEST_QUOTE,
    LMPolicy,
    LSTMScorer,
    by_reference,
    format_prompt,
)
from labkit.agents.recipes import RECIPE, recipe_for
from labkit.checkpoint import load_checkpoint, load_model
from labkit.config import from_dict
from labkit.corpus import TokenSplits
from labkit.tokenizer import WORD_PATTERN, Tokenizer, train_tokenizer
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
    max_minutes=0.0,  # no wall-clock budget: the same steps on every machine
    eval_every=100,
    name="agent",
    progress=False,
    threads=1,  # batches this small gain little from more threads, and lose much on a busy CPU
)
AGENT_FILE = "agent.json"  # beside the checkpoints: how the agent builds its prompts
BEST_FILE = "best.pt"  # the checkpoint of the best validation loss, which `train` writes


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
    expert, seeds = ExpertPolicy(), list(seeds)
    if hasattr(env, "compile_games"):  # TextWorld: the games compiled side by side first
        env.compile_games(seeds)
    episodes = [run_episode(expert, env, seed, max_steps) for seed in seeds]
    return [t for t in episodes if t.won]


Segment = tuple[str, bool]  # a piece of a training text, and whether it is an action to learn


def example_segments(
    trajectory: Trajectory, history_steps: int | None = None, values: str = "", **options: bool
) -> list[list[Segment]]:
    """The training texts of one episode, each cut into prompt text and the actions to learn.

    Every decision becomes the prompt the policy saw (`format_prompt`; the history of step i is the
    trajectory's steps before i, exactly what the harness passes to `Policy.act`) followed by the
    expert's action and END_OF_ACTION, marked True. With the whole history (history_steps=None)
    every prompt of an episode is a prefix of the next, so the episode is a single text, the full
    transcript, in which every action is marked once; with a window of history each text marks only
    its last action (the earlier ones are context, learnt in their own texts).

    Args:
        values: a regex of the values read by reference (policies.by_reference), as the policy
            reads them; only where each decision is a text of its own.
        options: format_prompt's layout switches (policies.LAYOUT_DEFAULTS). With last_action
            on, a prompt is no longer a prefix of the next, so each decision is a text of its own.
    Returns:
        One list of (text, is_action) segments per text; joined, a text is `format_example`'s.
    Raises:
        ValueError: `values` with the whole history as one text (each decision must be its own).
    """
    steps = trajectory.steps
    texts: list[list[Segment]] = []
    whole = (  # one text: every prompt is a prefix of the next
        history_steps is None
        and not options.get("last_action", False)
        and options.get("show_goal", True) != "bottom"
    )
    if values and whole:
        raise ValueError(
            "values are read by reference per decision: use a history window (history_steps) "
            "or last_action=True, so that each decision is a text of its own."
        )
    written = 0  # characters of the single transcript so far (whole history only)
    for i in range(len(steps)):
        prompt = format_prompt(
            trajectory.goal, steps[:i], steps[i]["observation"], history_steps, **options
        )
        prompt, (action_text,), _ = by_reference(prompt, [steps[i]["action"]], values)
        action: Segment = (action_text + END_OF_ACTION, True)
        if whole and texts:
            texts[0] += [(prompt[written:], False), action]
        else:
            texts.append([(prompt, False), action])
        written = len(prompt) + len(action[0])
    return texts


def examples(
    trajectory: Trajectory, history_steps: int | None = None, values: str = "", **options: bool
) -> list[str]:
    """The training texts of one episode as plain strings (see `example_segments`)."""
    return [
        "".join(text for text, _ in segments)
        for segments in example_segments(trajectory, history_steps, values, **options)
    ]


def blank_words(segments: list[Segment], rate: float, rng: random.Random) -> list[Segment]:
    """The segments with each word of a person's request (policies.REQUEST_QUOTE: the quote after
    'writes:' or 'User:') replaced by <unk> with probability `rate`: word dropout on the training
    prompts.

    A request is one of a dozen training wordings per kind, so the agent can learn a wording by
    heart and the kind with it; with words of it missing at random it has to read the rest. A
    placeholder (value_a), a word with an apostrophe and the actions are kept.
    """

    def blank(token: re.Match) -> str:  # a token as the word tokenizers read it
        if not token[0].isalpha() or rng.random() >= rate:  # value_a, it's, 4, "," stay
            return token[0]
        return "<unk>"

    def in_quote(match: re.Match) -> str:
        return match[1] + WORD_PATTERN.sub(blank, match[2]) + match[3]

    return [(text if is_action else REQUEST_QUOTE.sub(in_quote, text), is_action)
            for text, is_action in segments]  # fmt: skip


def encode_examples(
    texts: list[list[Segment]], tokenizer: Tokenizer, block: int = 0, rows: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The texts as one stream, each opened by <bos> as a prompt is when the agent acts.

    Each segment is encoded on its own, as the scorer encodes a prompt and a candidate action
    apart, so the action tokens learnt are the ones later scored.

    With `block` (the training window, bptt) the texts that fit in one are packed whole into
    blocks of that many tokens, padded with <pad> that nothing predicts, and the stream is padded
    so that each of `rows` streams (`batchify`'s batch_size) is a whole number of blocks: every
    window of training then starts at a block, and no decision is cut off from its prompt (where
    no text fits in a block, the stream is left as it is). Without it, a text that
    straddles two windows has its action learnt with no gradient reaching the prompt's words in
    the window before (truncated backpropagation): the desk agent, whose request is 20-60 tokens
    before its decision, could not learn to read it (see README, Agents).

    Returns:
        ids (N,) and mask (N,) bool: True on the tokens of the actions.
    """
    ids: list[int] = []
    mask: list[bool] = []
    packed = False  # whether any text was moved to a block's start
    for segments in texts:
        piece: list[int] = []
        targets: list[bool] = []
        for j, (text, is_action) in enumerate(segments):
            encoded = tokenizer.encode(text, bos=j == 0)
            piece += encoded
            targets += [is_action] * len(encoded)
        if block and len(piece) <= block < len(ids) % block + len(piece):  # would straddle
            gap = -len(ids) % block
            ids += [tokenizer.pad_id] * gap
            mask += [False] * gap
            packed = True
        ids += piece
        mask += targets
    if packed:  # rows whole blocks, plus the one token batchify's shifted inputs leave over
        gap = -len(ids) % (block * rows) + 1
        ids += [tokenizer.pad_id] * gap
        mask += [False] * gap
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.bool)


def clone_expert(
    episodes: list[Trajectory],
    config: TrainConfig | None = None,
    history_steps: int | None | str = RECIPE,
    valid_fraction: float = 0.1,
    actions_only: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    word_dropout: float | str = RECIPE,
    **options: bool,
) -> tuple[LMPolicy, list[dict[str, Any]]]:
    """Fit an LSTM to expert transcripts by maximum likelihood and wrap it as an LMPolicy.

    The last `valid_fraction` of the episodes (at least one) are held out as the validation split;
    the tokenizer is built from all transcripts. With `actions_only` the likelihood counts only the
    action tokens, log P(action | prompt), which is all the policy ever asks of the model: the game
    text is read but not predicted, so a direction word is not one target lost among sixty, and the
    validation loss measures decisions on unseen games. The policy gets the weights of the best
    validation loss (best.pt). The run folder (config.run_path) gets what `train` writes plus
    AGENT_FILE, so that `load_agent` can rebuild the policy.

    By default the settings are the recipe of the episodes' environment (`recipes.RECIPES`:
    prompt layout, tokenizer, model and training settings), so a notebook, the benchmark and a
    script that clone the same episodes train the same agent; an environment without a recipe
    gets AGENT_DEFAULTS, the whole history and the standard layout.

    Args:
        episodes: expert trajectories (see `expert_episodes`), at least two.
        config: the training settings (default: the recipe's, see `agent_config`).
        history_steps: past (observation, action) pairs in each prompt (None: the whole episode;
            default: the recipe's); the policy uses the same.
        actions_only: predict only the actions (False: every token of the transcripts, the plain
            language-model objective).
        callback: called with each history row (e.g. a live loss plot).
        word_dropout: each word of a person's request in a training prompt is read as <unk>
            with this probability (`blank_words`; the validation split stays whole; default:
            the recipe's, else 0).
        options: format_prompt's layout switches (policies.LAYOUT_DEFAULTS), used for training
            and by the policy (none given: the recipe's).
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
    recipe = recipe_for(episodes[0].env)
    if word_dropout == RECIPE:
        word_dropout = recipe.word_dropout if recipe else 0.0
    if not 0.0 <= word_dropout < 1.0:
        raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
    config = config or agent_config(**(recipe.train if recipe else {}))
    if history_steps == RECIPE:
        history_steps = recipe.history_steps if recipe else None
    if not options and recipe:
        options = dict(recipe.prompt)
    held_out = max(1, round(len(episodes) * valid_fraction))
    parts = {"train": episodes[:-held_out], "valid": episodes[-held_out:]}
    splits = {
        name: [e for t in part for e in example_segments(t, history_steps, **options)]
        for name, part in parts.items()
    }
    corpus = "".join(text for texts in splits.values() for e in texts for text, _ in e)
    tokenizer = train_tokenizer(
        config.tokenizer, corpus, config.vocab_size or None, config.min_freq
    )
    if word_dropout:  # after the tokenizer, whose vocabulary counts the words as written
        rng = random.Random(config.seed)
        splits["train"] = [blank_words(e, word_dropout, rng) for e in splits["train"]]
    # Validation is read as training was: with the state carried, one stream; from a zero state
    # at each window (carry_state off), packed whole into windows like the training texts.
    valid_block = 0 if config.carry_state else config.bptt
    streams = {
        "train": encode_examples(splits["train"], tokenizer, config.bptt, config.batch_size),
        "valid": encode_examples(splits["valid"], tokenizer, valid_block, config.batch_size),
    }
    chars = {
        name: sum(len(text) for e in texts for text, act in e if act or not actions_only)
        for name, texts in splits.items()
    }
    data = TokenSplits(
        train=streams["train"][0],
        valid=streams["valid"][0],
        test=torch.empty(0, dtype=torch.long),
        chars={**chars, "test": 0},
        masks={name: mask for name, (_, mask) in streams.items()} if actions_only else {},
    )
    model = build_model(config, tokenizer.vocab_size)
    history = train(model, data, config, tokenizer, callback)
    best = config.run_path / BEST_FILE
    model.load_state_dict(load_checkpoint(best)["model"])
    layout = {"history_steps": history_steps, **options}
    (config.run_path / AGENT_FILE).write_text(json.dumps(layout) + "\n")
    policy = LMPolicy(LSTMScorer(model.eval(), tokenizer), **layout, name="lstm")
    return policy, history


def load_agent(run_path: str | Path, device: str = "cpu", **policy_args: Any) -> LMPolicy:
    """Rebuild the policy that `clone_expert` trained in `run_path` (its best weights, best.pt).

    Args:
        policy_args: LMPolicy settings (greedy, temperature, length_norm, seed, name).
    Returns:
        The LMPolicy, with the prompt layout it was trained with (history_steps, show_goal,
        last_action).
    Raises:
        CheckpointError: no usable best.pt in run_path.
        FileNotFoundError: run_path has no AGENT_FILE (it is not a cloning run).
    """
    folder = Path(run_path)
    if not (folder / AGENT_FILE).is_file():
        raise FileNotFoundError(
            f"{folder / AGENT_FILE} is missing, so {folder} is not a behaviour-cloning run; "
            "train one with clone_expert(...) and pass its config.run_path."
        )
    settings = json.loads((folder / AGENT_FILE).read_text())
    model, tokenizer = load_model(folder / BEST_FILE, device=device)
    policy_args.setdefault("name", "lstm")
    return LMPolicy(LSTMScorer(model, tokenizer), **settings, **policy_args)


def train_agent(
    env: str, run_dir: str = "runs", name: str = "", seed: int = 0, **overrides: Any
) -> tuple[LMPolicy, list[dict[str, Any]]]:
    """Play the expert on the recipe's training seeds and levels, then clone it (`clone_expert`).

        agent, history = train_agent("customer_service", run_dir="runs/demo")

    Args:
        env: a registry name with a recipe (recipes.RECIPES).
        run_dir, name: where the run goes (default name "agent-<env>").
        seed: the training seed.
        overrides: TrainConfig fields over the recipe's (e.g. max_steps=200 for a quick run),
            `episodes` (expert episodes per training level) over the recipe's train_per_level,
            and `word_dropout` over the recipe's.
    Returns:
        (the greedy LMPolicy, the training history rows).
    Raises:
        ValueError: no recipe for `env` (the message lists those there are).
    """
    recipe = recipe_for(env)
    if recipe is None:
        from labkit.agents.recipes import RECIPES

        raise ValueError(f"no recipe for {env!r}; recipes exist for {', '.join(RECIPES)}.")
    per_level = overrides.pop("episodes", recipe.train_per_level)
    word_dropout = overrides.pop("word_dropout", recipe.word_dropout)
    episodes = [
        trajectory
        for _, level_env in recipe.training_envs()
        for trajectory in expert_episodes(
            level_env, recipe.train_seeds(per_level), recipe.max_steps
        )
    ]
    settings = {**recipe.train, **overrides}
    config = agent_config(run_dir=run_dir, name=name or f"agent-{env}", seed=seed, **settings)
    return clone_expert(
        episodes, config, recipe.history_steps, word_dropout=word_dropout, **recipe.prompt
    )
