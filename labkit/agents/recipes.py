"""What makes an agent work, per environment: its prompt layout, tokenizer and training settings.

    clone_expert(episodes)            uses the recipe of the episodes' environment by default
    train_agent("calendar")           plays the recipe's expert episodes and clones them

A recipe is data, measured rather than guessed: README (Agents) has the table of what each setting
did on the same unseen episodes. Notebooks, `bench.agent_eval` and a user's script all read the
recipe from here, so they all train the same agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labkit.agents.calendar_assistant import DAYS, PEOPLE, WINDOWS
from labkit.agents.core import Env
from labkit.agents.policies import ORDER_ID
from labkit.agents.registry import make_env

RECIPE = "recipe"  # a default that means "the recipe's value" where None already means something
TRAIN_SEED_START = 0  # expert episodes to learn from use seeds 0, 1, ...
EVAL_SEED_START = 1000  # unseen episodes to evaluate on use seeds 1000, 1001, ...


@dataclass(frozen=True)
class Recipe:
    """How to train and evaluate an agent for one environment (registry name `env`)."""

    env: str  # registry name (labkit.agents.registry)
    train_levels: tuple[int, ...] = ()  # levels the expert episodes come from; () for no levels
    eval_levels: tuple[int, ...] = ()  # levels to evaluate on (may hold levels never trained on)
    train_per_level: int = 100  # expert episodes per training level
    eval_per_level: int = 100  # unseen episodes per evaluation level
    max_steps: int = 10  # the harness's step limit per episode
    history_steps: int | None = None  # past (observation, action) pairs in each prompt
    prompt: dict[str, Any] = field(
        default_factory=dict
    )  # layout switches, values read by reference
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides of AGENT_DEFAULTS
    env_args: dict[str, Any] = field(default_factory=dict)  # make_env keywords, every env
    train_env_args: dict[str, Any] = field(default_factory=dict)  # ... the expert's episodes only
    train_seed_start: int = TRAIN_SEED_START  # first seed of the expert episodes
    word_dropout: float = 0.0  # share of a request's words read as <unk> in training prompts

    def make_envs(self, levels: tuple[int, ...], **env_args: Any) -> list[tuple[int | None, Env]]:
        """(level, environment) pairs, level None where the environment has none.

        env_args: make_env keywords over the recipe's (e.g. wordings="heldout").
        """
        kwargs = {"max_steps": self.max_steps, **self.env_args, **env_args}
        if not levels:
            return [(None, make_env(self.env, **kwargs))]
        return [(level, make_env(self.env, level=level, **kwargs)) for level in levels]

    def training_envs(self) -> list[tuple[int | None, Env]]:
        """The environments the expert's training episodes come from (train_env_args added)."""
        return self.make_envs(self.train_levels, **self.train_env_args)

    def train_seeds(self, count: int | None = None) -> range:
        """The seeds of the expert episodes to learn from, per level.

        Raises:
            ValueError: they would reach the evaluation seeds (start them past those instead).
        """
        seeds = range(
            self.train_seed_start, self.train_seed_start + (count or self.train_per_level)
        )
        evaluation = self.eval_seeds()
        if seeds.start < evaluation.stop and evaluation.start < seeds.stop:
            raise ValueError(
                f"{self.env}: training seeds {seeds.start}..{seeds.stop - 1} overlap the evaluation "
                f"seeds {evaluation.start}..{evaluation.stop - 1}; set train_seed_start past them."
            )
        return seeds

    def eval_seeds(self, count: int | None = None) -> range:
        """Unseen seeds to evaluate on, per level (disjoint from every training seed)."""
        return range(EVAL_SEED_START, EVAL_SEED_START + (count or self.eval_per_level))


TOOL_USE_LAYOUT = {"show_goal": False, "last_action": True}
# Values an agent reads by reference (policies.by_reference): order ids (four digits or more:
# prices stay numbers, since their size decides a refund); times, days, names, the half of the
# day and meeting lengths in figures (the calendar's prompt writes "an hour" as "60 minutes":
# read_minutes), each named by its type (day_a, time_a, window_a, ...: which argument a value
# fills does not hang on word order).
ORDER_IDS = rf"\b{ORDER_ID}\b"
CALENDAR_VALUES = (
    r"(?P<time>\b\d{1,2}:\d{2}\b)"
    + r"|\b(?:(?P<day>"
    + "|".join(DAYS)
    + r")|(?P<person>"
    + "|".join(PEOPLE)
    + r")"
    + r"|(?<!good )(?P<window>"  # "Good morning," greets: it is no half of the day
    + "|".join(WINDOWS)
    + r")|(?P<length>30|60))\b"
)
# Both tool-use agents: words in lower case, words seen fewer than 10 times read as <unk> in
# training too (so that words no training request used are not read as noise), windows of 128
# tokens (each prompt and its decision inside one window: cloning.encode_examples packs them),
# each window read from a zero state, as the agent reads each prompt (carry_state: see the desk's
# and the calendar's figures below), lr 0.005.
TOOL_USE_TRAINING = {
    "tokenizer": "lower",
    "min_freq": 10,
    "embed_dim": 128,
    "lr": 5e-3,
    "bptt": 128,
    "carry_state": False,
    "max_steps": 1000,
    "eval_every": 250,
}

RECIPES: dict[str, Recipe] = {
    # Coin Collector: the room and the last move decide each step (the one exit not taken back), so
    # the prompt is the room with the last action restated next to the decision, without the goal
    # (which only restates the walkthrough). Word embeddings as wide as the state let the LSTM keep
    # which direction words it read; with 64 it learnt neither the exits nor the way back.
    # Trained on the even levels, it won 200/200 unseen games of levels 1-10 (20 per level, the
    # odd levels never trained on); trained on the odd ones instead, 200/200 as well.
    "coin_collector": Recipe(
        "coin_collector",
        train_levels=(2, 4, 6, 8, 10),
        eval_levels=tuple(range(1, 11)),
        train_per_level=30,
        eval_per_level=20,
        max_steps=50,
        history_steps=0,
        prompt={"show_goal": False, "last_action": True},
        train={
            "tokenizer": "word",
            "embed_dim": 256,
            "bptt": 128,
            "batch_size": 16,
            "max_steps": 1500,
            "eval_every": 250,
        },
    ),
    # Treasure Hunter: the goal spells out the way ("go south. With that over with, take a trip
    # east. Then ... lift the broom"), so each step is the next instruction not yet carried out.
    # The prompt is every action so far, then the goal, and no room: the LSTM counts the actions,
    # then counts the instructions as it reads them and keeps the one after the last carried out.
    # What made it learn at all is chrono init (chrono_init: forget biases spread up to 100
    # tokens of memory): with every forget bias at 1 the LSTM gave the directions 1.36 nats each
    # after 2,000 steps, chance among four, even on its training games, since the instruction
    # that decides lies 20-60 words back. Each window read from a zero state, as the agent reads
    # each prompt. Words seen fewer than 10 times read as <unk> in training too, so that an object
    # few training games named is one the agent has learnt to pick up ("take <unk>"), not a word
    # it cannot write: the games still lost took a move there instead. README (Agents, TextWorld)
    # has the table of what each setting did.
    "treasure_hunter": Recipe(
        "treasure_hunter",
        train_levels=tuple(range(1, 11)),
        eval_levels=tuple(range(1, 11)),
        train_per_level=100,
        eval_per_level=20,
        max_steps=50,
        history_steps=0,
        prompt={"show_goal": "bottom", "show_observation": False, "last_action": "all"},
        train={
            "tokenizer": "word",
            "min_freq": 10,
            "embed_dim": 256,
            "chrono_init": 100,
            "bptt": 256,
            "carry_state": False,
            "batch_size": 16,
            "max_steps": 4000,
            "eval_every": 250,
        },
    ),
    # Tool use: each decision reads the request, the tool's last answer and the call that asked
    # for it (restated just before the decision). The desk keeps the request on top; the calendar
    # restates it below the tool's answer (its words decide the query). Ids, times, days and names
    # are read by reference (value_a, day_a, ...: an argument is chosen, not spelt); other numbers
    # digit by digit. The desk's agent reads what is asked at its first call, right after the
    # request (where_is: lookup_order; a refund: check_refund; a cancellation: check_cancel), and
    # the check's answer, next to its second decision, says what the rules allow: the LSTM never
    # has to carry the request across the order line (unseen 0.74 -> 1.00; README, Agents).
    "customer_service": Recipe(
        "customer_service",
        train_per_level=4000,
        train_seed_start=10_000,
        history_steps=0,
        prompt={
            **TOOL_USE_LAYOUT,
            "show_request": "top",
            "read_orders": True,  # "#4085", "about 4085": "order 4085", as training wrote it
            "read_twice": True,  # the first call's prompt holds the request twice
            "values": ORDER_IDS,
        },
        # One-letter typos read as the word meant ("cncel"): unseen 0.94 -> 1.00, held-out 0.45 ->
        # 0.69. Every window read from a zero state, as the agent reads each prompt (the prompts
        # are packed whole into windows): unseen 0.96, 0.91, 0.95 -> 0.99, 1.00, 0.99 on training
        # seeds 0, 1, 2 (with read_orders; held-out 0.62, 0.75, 0.53). With the state carried, the
        # validation loss of one seed sat at 0.50 while its agent chose 205 of 212 validation
        # decisions right.
        train={**TOOL_USE_TRAINING, "tokenizer": "lower_typos", "lr": 2e-3, "max_steps": 3000},
        env_args={"injection": 0.2},
        # Four in five of the expert's requests put together from parts (compose_request: asking
        # words in frames and amid asides that every kind shares, so only the asking words tell
        # the kinds apart), at lr 0.003 for 3,000 steps: held-out wordings 0.62, 0.75, 0.53 ->
        # 0.83, 0.91, 0.88 on training seeds 0, 1, 2, unseen 0.98, 0.99, 1.00. At lr 0.005 one
        # seed in three stalled on them (validation loss 0.07 after 3,000 steps, held-out 0.59).
        # The request read twice before the first call (read_twice: the second reading already
        # knows all of it) at lr 0.002: held-out 0.86, 0.91, 0.88 -> 0.97, 0.91, 0.88, wordings
        # of my own 70, 89, 88 -> 95, 88, 94 of 100 (at lr 0.003 seed 2 stalled: val loss 0.13).
        train_env_args={"composed": 0.8},
    ),
    # Rare words read as <unk> in training too: held-out wordings 0.59 -> 0.92 with the typed
    # placeholders. Lengths written in minutes ("half-hour" was read as 60) and "Good morning"
    # read as a greeting, not a window: unseen 0.89 -> 1.00, held-out 0.92 -> 0.99 (training seed
    # 0; seed 1: 0.99 and 0.75). Windows from a zero state: held-out 0.94 and 0.97 on seeds 0 and 1
    # (unseen 1.00 and 1.00; README, Agents).
    "calendar": Recipe(
        "calendar",
        train_per_level=2000,
        train_seed_start=10_000,
        history_steps=0,
        prompt={
            **TOOL_USE_LAYOUT,
            "show_request": "bottom",
            "read_minutes": True,  # "half an hour" is 30 minutes: a length read by reference
            "values": CALENDAR_VALUES,
        },
        train={**TOOL_USE_TRAINING, "max_steps": 1500},
    ),
}


def recipe_for(env: str) -> Recipe | None:
    """The recipe of a registry name, or None for an environment without one (e.g. a test's)."""
    return RECIPES.get(env)
