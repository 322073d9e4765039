"""The two contracts of the agent harness: what an environment is, and what a policy returns.

Environments follow gymnasium's text-game shape:

    reset(seed) -> (observation, info)
    step(action) -> (observation, reward, terminated, truncated, info)

and every `info` carries the keys in `INFO_KEYS`, so that any policy can run in any environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Keys every environment puts in `info`, after reset and after each step.
INFO_KEYS = (
    "goal",  # str: what the agent is asked to do, in words
    "admissible_actions",  # list[str]: the actions that are valid now (never empty unless done)
    "expert_action",  # str | None: what the environment's expert would do now
    "score",  # float: points so far
    "max_score",  # float: points available in this episode
    "won",  # bool: the goal was reached
    "lost",  # bool: the episode ended in failure
)


class EnvError(RuntimeError):
    """An environment failed (bad game file, crashed engine); the message says what and how to fix."""


class InvalidActionError(ValueError):
    """An action outside the admissible set was passed to `step` where that is not allowed."""


@runtime_checkable
class Env(Protocol):
    """A text environment. `name` identifies it in trajectories and reports."""

    name: str

    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]: ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]: ...

    def close(self) -> None: ...


@dataclass
class Decision:
    """What a policy chose, and why: the distribution it chose from, when it has one."""

    action: str  # the action sent to the environment
    probs: dict[str, float] = field(default_factory=dict)  # action -> probability, if known
    note: str = ""  # e.g. "generated 'tak coin', mapped to 'take coin'" or a fallback's reason


@runtime_checkable
class Policy(Protocol):
    """Chooses an action from the observation, the info dict and the episode so far."""

    name: str

    def reset(self) -> None: ...

    def act(
        self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]
    ) -> Decision: ...
