"""Environments by name: make_env("coin_collector", level=5)."""

from __future__ import annotations

import inspect
from typing import Any

from labkit.agents.calendar_assistant import CalendarEnv
from labkit.agents.core import Env
from labkit.agents.customer_service import CustomerServiceEnv
from labkit.agents.textworld_env import TextWorldEnv

# name -> (constructor, fixed keyword arguments)
ENVS: dict[str, tuple[type, dict[str, Any]]] = {
    "coin_collector": (TextWorldEnv, {"kind": "coin_collector"}),
    "treasure_hunter": (TextWorldEnv, {"kind": "treasure_hunter"}),
    "tw_simple": (TextWorldEnv, {"kind": "tw_simple"}),
    "tw_cooking": (TextWorldEnv, {"kind": "tw_cooking"}),
    "customer_service": (CustomerServiceEnv, {}),
    "calendar": (CalendarEnv, {}),
}
ENV_NAMES = tuple(ENVS)


def make_env(name: str, **kwargs: Any) -> Env:
    """Build an environment by name, e.g. make_env("treasure_hunter", level=3, max_steps=30).

    TextWorld names take level, max_steps, cache_dir, settings; "customer_service" takes
    max_steps, refund_limit; "calendar" takes max_steps.

    Returns:
        The environment (call reset(seed) to start an episode).
    Raises:
        ValueError: an unknown name or keyword argument (the message lists the valid ones).
    """
    if name not in ENVS:
        raise ValueError(f"unknown environment {name!r}: use one of {', '.join(ENV_NAMES)}.")
    cls, fixed = ENVS[name]
    valid = [p for p in inspect.signature(cls).parameters if p not in fixed]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"make_env({name!r}) got unknown argument(s) {unknown}; valid: {', '.join(valid)}."
        )
    return cls(**fixed, **kwargs)
