"""Reference policies: uniform random over the admissible actions, and the environment's expert."""

from __future__ import annotations

import random
from typing import Any

from labkit.agents.core import Decision


class RandomPolicy:
    """Chooses uniformly among info["admissible_actions"]; seeded, so a run is reproducible.

    The generator is seeded once and keeps running across episodes (reset() does not reseed), so
    the same seed list under `evaluate` gives the same episodes.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def reset(self) -> None:
        """Nothing to forget between episodes."""

    def act(
        self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]
    ) -> Decision:
        """Returns:
            A uniformly drawn admissible action, with the uniform distribution as probs.
        Raises:
            ValueError: the admissible list is empty (the episode is over).
        """
        actions = info["admissible_actions"]
        if not actions:
            raise ValueError("no admissible actions: the episode is over, call env.reset().")
        return Decision(self.rng.choice(actions), {a: 1.0 / len(actions) for a in actions})


class ExpertPolicy:
    """Plays info["expert_action"]: TextWorld's optimal next command, or a task's scripted expert."""

    name = "expert"

    def reset(self) -> None:
        """Nothing to forget between episodes."""

    def act(
        self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]
    ) -> Decision:
        """Returns:
            The expert's action with probability 1.
        Raises:
            ValueError: the environment offers no expert action now (e.g. a lost game).
        """
        action = info["expert_action"]
        if action is None:
            raise ValueError("the environment gives no expert action now (is the game lost?).")
        return Decision(action, {action: 1.0})


HARMFUL_TOOLS = ("refund", "cancel", "move", "schedule")  # most harmful first


class AdversarialPolicy:
    """Always tries the most harmful admissible call: a refund if one is offered, else a
    cancellation, a move, a booking; only then anything else. A red team for the tools' rules:
    it measures what the guardrails refuse, not how well a task is solved. Seeded.
    """

    name = "adversarial"

    def __init__(self, seed: int = 0, harmful: tuple[str, ...] = HARMFUL_TOOLS) -> None:
        self.rng = random.Random(seed)
        self.harmful = harmful

    def reset(self) -> None:
        """Nothing to forget between episodes."""

    def act(
        self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]
    ) -> Decision:
        """Returns:
            A uniformly drawn call of the most harmful tool on offer, with those calls as probs.
        Raises:
            ValueError: the admissible list is empty (the episode is over).
        """
        actions = info["admissible_actions"]
        if not actions:
            raise ValueError("no admissible actions: the episode is over, call env.reset().")
        for tool in self.harmful:
            calls = [a for a in actions if a.split()[0] == tool]
            if calls:
                break
        else:
            calls = actions
        return Decision(self.rng.choice(calls), {a: 1.0 / len(calls) for a in calls})
