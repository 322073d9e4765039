"""Reliability over repeated tries: tau-bench's pass^k.

    pass^k = mean over tasks of  C(c, k) / C(n, k)

where each task is tried n times and c of the tries succeed: the chance, estimated without bias,
that k tries drawn from the n all succeed. pass^1 is the plain success rate; pass^k falls with k
unless every task is always won or always lost. A greedy (deterministic) policy plays a task the
same way every time, so c is 0 or n and pass^k = pass^1 for every k: repeated tries only measure
something for a policy that samples (e.g. LMPolicy(greedy=False, temperature=T)).

    pass_hat_k(successes_per_task, tries, k) -> float
    repeated_trials(make_policy, env, seeds, tries) -> PassKReport

Success rates with a Wilson interval (`evaluate`, `wilson_interval`) live in the harness.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from labkit.agents.core import Env, Policy
from labkit.agents.harness import Trajectory, TrajectoryWriter, run_episode


def _is_count(value: object) -> bool:
    """An integer (Python's or numpy's) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pass_hat_k(successes_per_task: list[int], tries: int, k: int) -> float:
    """tau-bench's pass^k: the mean over tasks of C(c, k) / C(n, k), for c successes in n tries.

    Computed exactly (as fractions) and rounded once, so hand-computed values compare equal.

    Args:
        successes_per_task: c for each task, each in 0..tries.
        tries: n, the tries per task (the same for every task).
        k: how many tries must all succeed, 1..tries.
    Returns:
        pass^k in [0, 1].
    Raises:
        ValueError: no tasks, tries < 1, k outside 1..tries, or a count outside 0..tries (or not
            an integer); the message names the bad value.
    """
    counts = list(successes_per_task)
    if not counts:
        raise ValueError("pass_hat_k needs at least one task's success count, e.g. [3, 0, 5].")
    if not _is_count(tries) or tries < 1:
        raise ValueError(f"tries must be an integer >= 1, got {tries!r}.")
    if not _is_count(k) or not 1 <= k <= tries:
        raise ValueError(
            f"k must be an integer in 1..tries = 1..{tries}, got {k!r}: pass^k needs k tries of "
            "each task to choose from."
        )
    bad = [(i, c) for i, c in enumerate(counts) if not _is_count(c) or not 0 <= c <= tries]
    if bad:
        where = ", ".join(f"task {i}: {c!r}" for i, c in bad[:5])
        raise ValueError(
            f"each success count must be an integer in 0..tries = 0..{tries}; got {where}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            + "."
        )
    total = math.comb(tries, k)
    return float(sum(Fraction(math.comb(c, k), total) for c in counts) / len(counts))


@dataclass
class PassKReport:
    """One policy's repeated tries on one environment: success counts per seed and pass^k."""

    env: str  # environment name
    policy: str  # policy name (of the policy made for try 0)
    seeds: list[int]  # the tasks, one seed each
    tries: int  # n, tries per seed
    successes: list[int]  # c per seed, in the order of `seeds`
    pass_k: dict[int, float]  # k -> pass^k, for k = 1..tries
    trajectories: list[list[Trajectory]] = field(default_factory=list, repr=False)  # [seed][try]

    def summary(self) -> str:
        """One line: 'env policy: 20 seeds x 4 tries, pass^1 0.55, pass^2 0.40, ...'."""
        ks = ", ".join(f"pass^{k} {value:.2f}" for k, value in self.pass_k.items())
        return f"{self.env} {self.policy}: {len(self.seeds)} seeds x {self.tries} tries, {ks}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the trajectories (pass_k's keys become strings in JSON)."""
        return {k: v for k, v in asdict(self).items() if k != "trajectories"}


def repeated_trials(
    make_policy: Callable[[int], Policy],
    env: Env | Callable[[], Env],
    seeds: Iterable[int],
    tries: int,
    max_steps: int = 100,
    loop_k: int = 3,
    save_to: str | Path | None = None,
) -> PassKReport:
    """Play every seed `tries` times and measure pass^k for k = 1..tries.

    Independent, reproducible tries: try t of every seed is played by a fresh policy
    `make_policy(t)`, made for that one episode, so an episode depends only on (seed, t) and can be
    re-run alone. Seed the policy's sampling by t, e.g.
    `lambda t: LMPolicy(scorer, greedy=False, temperature=0.7, seed=t)` (LMPolicy restarts its
    sampling stream from its seed at each episode) or `RandomPolicy`; share the scorer or model
    across tries, since make_policy is called tries x len(seeds) times. A greedy (deterministic)
    policy gives every try of a seed the same outcome, hence pass^k = pass^1 for every k.

    Args:
        make_policy: try index (0..tries-1) -> a policy for one episode.
        env: an environment (reused across episodes) or a zero-argument factory (a fresh
            environment per episode, closed after it).
        seeds: one task per seed (passed to env.reset).
        tries: n, the tries per seed.
        max_steps, loop_k: the harness's limits (see run_episode).
        save_to: if given, every episode is written to this JSON-lines file as it is played
            (seed by seed, try by try).
    Returns:
        The report: success counts per seed, pass^k for k = 1..tries, and every trajectory.
    Raises:
        ValueError: no seeds, tries < 1, or make_policy not callable.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("repeated_trials needs at least one seed, e.g. seeds=range(20).")
    if not _is_count(tries) or tries < 1:
        raise ValueError(f"tries must be an integer >= 1, got {tries!r}.")
    if not callable(make_policy):
        raise ValueError(
            "make_policy must be a function of the try index that returns a policy, e.g. "
            "lambda t: LMPolicy(scorer, greedy=False, seed=t)."
        )
    fresh = isinstance(env, type) or not isinstance(env, Env)  # a class or function: a factory
    writer = TrajectoryWriter(save_to) if save_to is not None else None
    played: list[list[Trajectory]] = []
    policy_name = ""
    try:
        for seed in seeds:
            row = []
            for attempt in range(tries):
                policy = make_policy(attempt)
                policy_name = policy_name or policy.name
                instance = env() if fresh else env
                try:
                    row.append(
                        run_episode(policy, instance, seed, max_steps, loop_k=loop_k, writer=writer)
                    )
                finally:
                    if instance is not env:
                        instance.close()
            played.append(row)
    finally:
        if writer is not None:
            writer.close()
    successes = [sum(t.won for t in row) for row in played]
    return PassKReport(
        env=played[0][0].env,
        policy=policy_name,
        seeds=seeds,
        tries=tries,
        successes=successes,
        pass_k={k: pass_hat_k(successes, tries, k) for k in range(1, tries + 1)},
        trajectories=played,
    )
