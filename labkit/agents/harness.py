"""Run a policy in an environment, record what happened, save it, replay it, and evaluate.

    run_episode(policy, env, seed) -> Trajectory        one episode, never losing a step
    evaluate(policy, env, seeds) -> EvalReport          success rate with a 95% Wilson interval
    TrajectoryWriter / save_trajectory / load_trajectories / replay
    (pass^k over repeated tries of each task: labkit.agents.evaluation)

Rules the harness applies, in this order, after each decision:
- An action outside `info["admissible_actions"]` is not sent to the environment: the step is
  recorded (note "not admissible: skipped"), counted in `Trajectory.invalid_actions` and against
  `max_steps`, and the policy acts again on the same observation. (Mapping free text onto an
  admissible action is the policy's job; it says so in `Decision.note`.)
- The episode stops when the environment says terminated ("won" if info["won"], else "lost") or
  truncated ("truncated"); when the same (observation, action) pair has been seen `loop_k` times
  ("loop"); after `max_steps` steps ("truncated"); or when the environment or the policy raises
  ("error": the exception goes into `reason`; every step before it is kept).

Each step is a dict: step (1-based), observation (what the policy saw), action, reward, score,
probs, note, admissible (what was admissible then), expert (the expert's action then), valid
(the action was admissible and sent), done. That dict is also what policies get as `history`.

Trajectory files are JSON lines: a header object, one object per step, an end object; the writer
flushes after each line, so a crash keeps every step written so far (a file without an end object
loads with outcome "error", `unfinished` set, and says so). A file may hold several trajectories one
after another. A process that dies mid-write leaves its last line cut short (no newline at its end):
`load_trajectories` keeps everything before it and warns (DamagedTailWarning); a damaged line
anywhere else is an error naming the line. `replay` re-runs the actions and checks every
observation, reward, score and the ending against the file.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit.agents.core import Decision, Env, Policy

OUTCOMES = ("won", "lost", "truncated", "loop", "error")
FORMAT_VERSION = 1  # of the trajectory JSON lines


@dataclass
class Trajectory:
    """One episode: who played what, every step, and how it ended."""

    env: str  # the environment's name
    seed: int | None  # the seed passed to env.reset
    policy: str  # the policy's name
    goal: str = ""  # info["goal"] at reset
    max_steps: int = 100  # the harness's step limit for this episode
    loop_k: int = 3  # the loop detector's repeat count (0 = off)
    steps: list[dict[str, Any]] = field(default_factory=list)  # one dict per step (module doc)
    outcome: str = ""  # one of OUTCOMES ("" while running)
    reason: str = ""  # why it ended, in words
    total_reward: float = 0.0  # sum of rewards
    score: float = 0.0  # info["score"] at the end
    max_score: float = 0.0  # info["max_score"] at the end
    invalid_actions: int = 0  # actions outside the admissible set (skipped)
    final_observation: str = ""  # the observation after the last step
    unfinished: bool = False  # loaded from a file that has no end line for it (the run stopped)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def won(self) -> bool:
        return self.outcome == "won"

    def header(self) -> dict[str, Any]:
        """The fields known before the first step, as written on a file's header line."""
        keys = ("env", "seed", "policy", "goal", "max_steps", "loop_k")
        return {"type": "header", "format": FORMAT_VERSION, **{k: getattr(self, k) for k in keys}}

    def ending(self) -> dict[str, Any]:
        """The fields known at the end, as written on a file's end line."""
        keys = ("outcome", "reason", "total_reward", "score", "max_score", "invalid_actions")
        return {"type": "end", "final_observation": self.final_observation} | {
            k: getattr(self, k) for k in keys
        }


class TrajectoryWriter:
    """Appends trajectories to a JSON-lines file, one line per step, flushed as it goes.

    Use as a context manager, or call close(). `run_episode(..., writer=w)` drives it.
    """

    def __init__(self, path: str | Path, append: bool = False) -> None:
        """Open `path` for writing (append=True keeps what is there); creates parent folders."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a" if append else "w", encoding="utf-8")

    def _write(self, obj: dict[str, Any]) -> None:
        self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._file.flush()

    def begin(self, trajectory: Trajectory) -> None:
        self._write(trajectory.header())

    def step(self, record: dict[str, Any]) -> None:
        self._write({"type": "step"} | record)

    def end(self, trajectory: Trajectory) -> None:
        self._write(trajectory.ending())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_trajectory(trajectory: Trajectory, path: str | Path, append: bool = False) -> None:
    """Write a finished trajectory as JSON lines (header, steps, end)."""
    with TrajectoryWriter(path, append) as writer:
        writer.begin(trajectory)
        for record in trajectory.steps:
            writer.step(record)
        writer.end(trajectory)


class DamagedTailWarning(UserWarning):
    """A trajectory file's last line was cut short mid-write; everything before it was loaded."""


def load_trajectories(path: str | Path) -> list[Trajectory]:
    """Read every trajectory in a JSON-lines file.

    The writer puts down each line with its newline in one write and flushes, so a line without a
    newline at its end that is not JSON can only be the last one, cut short when the process died
    mid-write. Such a damaged tail is skipped with a DamagedTailWarning naming the file and line,
    and every trajectory before it loads as written; the one it belonged to has no end line, so it
    loads unfinished. A damaged line anywhere else (or a damaged last line that does end in a
    newline) was not cut by a crash, and is an error. To refuse a damaged tail too, turn the
    warning into an error: `warnings.simplefilter("error", DamagedTailWarning)`.

    Returns:
        The trajectories in file order; one without an end line has outcome "error", a reason
        starting "incomplete:" and `unfinished` True.
    Raises:
        ValueError: a line other than a cut-short last one is not a trajectory line (not UTF-8,
            not a JSON object with a "type"), or a step or end line comes before any header (the
            message names the file and line).
    Warns:
        DamagedTailWarning: the last line is cut short (the message names the file and line).
    """
    lines = Path(path).read_bytes().split(b"\n")  # not splitlines: text may hold U+2028 and such
    trajectories: list[Trajectory] = []
    cut_at = 0  # the number of a cut-short last line, if any
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
            kind = obj.pop("type")
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            if number == len(lines) and isinstance(exc, ValueError):  # no newline after it
                cut_at = number
                warnings.warn(
                    f"{path}:{number}: the last line is cut short ({len(line)} bytes, not JSON: "
                    f"{exc}): the process that wrote it stopped mid-write. Loaded the "
                    f"{len(trajectories)} trajectories before it; skipped the cut line.",
                    DamagedTailWarning,
                    stacklevel=2,
                )
                break
            raise ValueError(
                f"{path}:{number} is not a trajectory line ({exc}); the file is corrupt or not "
                "written by TrajectoryWriter."
            ) from exc
        if kind == "header":
            obj.pop("format", None)
            try:
                trajectories.append(Trajectory(**obj))
            except TypeError as exc:
                raise ValueError(f"{path}:{number}: a header with unknown fields ({exc}).") from exc
        elif not trajectories:
            raise ValueError(f"{path}:{number}: a {kind!r} line before any header line.")
        elif kind == "step":
            trajectories[-1].steps.append(obj)
        else:
            for key, value in obj.items():
                setattr(trajectories[-1], key, value)
    for trajectory in trajectories:
        if not trajectory.outcome:
            trajectory.outcome, trajectory.unfinished = "error", True
            trajectory.reason = "incomplete: the file has no end line (the run stopped early)"
    if cut_at and trajectories and trajectories[-1].unfinished:
        trajectories[-1].reason = (
            f"incomplete: the file has no end line, and its last line ({path}:{cut_at}) is cut "
            "short (the run stopped mid-write)"
        )
    return trajectories


def load_trajectory(path: str | Path) -> Trajectory:
    """Read a file holding exactly one trajectory.

    Raises:
        ValueError: the file holds no trajectory or several (use load_trajectories).
    """
    trajectories = load_trajectories(path)
    if len(trajectories) != 1:
        raise ValueError(
            f"{path} holds {len(trajectories)} trajectories; load_trajectory expects one. "
            "Use load_trajectories(path) for several."
        )
    return trajectories[0]


def run_episode(
    policy: Policy,
    env: Env,
    seed: int | None = None,
    max_steps: int = 100,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    loop_k: int = 3,
    writer: TrajectoryWriter | None = None,
) -> Trajectory:
    """Play one episode under the rules in the module docstring.

    Args:
        policy: chooses actions; reset() is called first.
        env: reset(seed) is called first.
        seed: passed to env.reset.
        max_steps: the harness's step limit (the env may stop earlier with its own).
        on_step: called with each step's dict as soon as it is recorded (streaming).
        loop_k: stop when one (observation, action) pair has occurred this many times; 0 = never.
        writer: if given, the episode is written to it line by line.
    Returns:
        The trajectory, with outcome in OUTCOMES. Exceptions from env or policy end the episode
        as "error"; exceptions raised by `on_step` propagate.
    Raises:
        ValueError: max_steps < 1 or loop_k < 0.
    """
    if max_steps < 1 or loop_k < 0:
        raise ValueError(f"need max_steps >= 1 and loop_k >= 0, got {max_steps} and {loop_k}.")
    trajectory = Trajectory(
        env=env.name, seed=seed, policy=policy.name, max_steps=max_steps, loop_k=loop_k
    )
    try:
        policy.reset()
        observation, info = env.reset(seed)
    except Exception as exc:
        why = f"policy.reset() or env.reset({seed}) raised {type(exc).__name__}: {exc}"
        _finish(trajectory, "error", why, writer, begin=True)
        return trajectory
    trajectory.goal = str(info.get("goal", ""))
    trajectory.final_observation = observation
    trajectory.score, trajectory.max_score = info["score"], info["max_score"]
    if writer is not None:
        writer.begin(trajectory)
    seen: dict[tuple[str, str], int] = {}
    for number in range(1, max_steps + 1):
        admissible = list(info["admissible_actions"])
        try:
            decision: Decision = policy.act(observation, info, trajectory.steps)
        except Exception as exc:
            why = f"policy {policy.name!r} raised {type(exc).__name__} at step {number}: {exc}"
            _finish(trajectory, "error", why, writer)
            return trajectory
        action = decision.action
        record = {
            "step": number,
            "observation": observation,
            "action": action,
            "reward": 0.0,
            "score": trajectory.score,
            "probs": dict(decision.probs),
            "note": decision.note,
            "admissible": admissible,
            "expert": info.get("expert_action"),
            "valid": action in admissible,
            "done": False,
        }
        terminated = truncated = False
        if record["valid"]:
            try:
                observation, reward, terminated, truncated, info = env.step(action)
            except Exception as exc:
                why = f"env.step({action!r}) raised {type(exc).__name__} at step {number}: {exc}"
                _finish(trajectory, "error", why, writer)
                return trajectory
            record.update(reward=float(reward), score=info["score"], done=terminated or truncated)
            trajectory.total_reward += float(reward)
            trajectory.score, trajectory.max_score = info["score"], info["max_score"]
            trajectory.final_observation = observation
        else:
            trajectory.invalid_actions += 1
            record["note"] = "; ".join(filter(None, [decision.note, "not admissible: skipped"]))
        trajectory.steps.append(record)
        if writer is not None:
            writer.step(record)
        if on_step is not None:
            on_step(record)
        key = (record["observation"], action)
        seen[key] = seen.get(key, 0) + 1
        if terminated:
            outcome = "won" if info["won"] else "lost"
            why = info.get("verdict") or f"the environment ended the episode: {outcome}"
            _finish(trajectory, outcome, why, writer)
            return trajectory
        if truncated:
            _finish(trajectory, "truncated", "the environment's step limit", writer)
            return trajectory
        if loop_k and seen[key] >= loop_k:
            why = f"the pair (observation, {action!r}) occurred {loop_k} times"
            _finish(trajectory, "loop", why, writer)
            return trajectory
    _finish(trajectory, "truncated", f"the harness's max_steps={max_steps}", writer)
    return trajectory


def _finish(
    trajectory: Trajectory,
    outcome: str,
    reason: str,
    writer: TrajectoryWriter | None,
    begin: bool = False,
) -> None:
    trajectory.outcome, trajectory.reason = outcome, reason
    if writer is not None:
        if begin:
            writer.begin(trajectory)
        writer.end(trajectory)


class ReplayError(AssertionError):
    """A replay diverged from its recording, or the recording has no ending to check.

    `step` is the first step that differs (for an unfinished recording, the step after its last);
    `differences` lists every (step, what differs) found; `unfinished` says the recording has no
    end line.
    """

    def __init__(
        self,
        step: int,
        message: str,
        differences: list[tuple[int, str]] | None = None,
        unfinished: bool = False,
    ) -> None:
        what = "replay of an unfinished recording stopped" if unfinished else "replay diverged"
        super().__init__(f"{what} at step {step}: {message}")
        self.step = step
        self.differences = differences if differences is not None else [(step, message)]
        self.unfinished = unfinished


class _Scripted:
    """Plays a fixed list of actions (the policy that replay uses)."""

    name = "replay"

    def __init__(self, actions: list[str]) -> None:
        self.actions = actions

    def reset(self) -> None:
        pass

    def act(self, observation: str, info: dict[str, Any], history: list[dict[str, Any]]):
        if len(history) >= len(self.actions):
            raise IndexError(f"the recording has only {len(self.actions)} actions")
        return Decision(self.actions[len(history)])


def _differs(a: Any, b: Any) -> bool:
    """True when two recorded values differ (numbers up to float rounding)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a != b


def replay(source: str | Path | Trajectory, env: Env, allow_unfinished: bool = False) -> Trajectory:
    """Re-run a recorded episode's actions in `env` with the same seed and limits, and check the
    recording against what happens: each step's observation, validity, reward, score and done
    flag, then the ending (outcome, number of steps, total reward, score, max score, invalid
    actions, final observation).

    The replay stops at the first observation that differs (what follows is another episode);
    any other difference is noted and the replay goes on, so that one error lists them all.

    Args:
        source: a trajectory, or a JSON-lines file holding exactly one.
        env: a fresh environment of the kind recorded.
        allow_unfinished: for a recording without its end line (`unfinished`, e.g. the run was
            killed): False raises ReplayError saying so, after checking the recorded steps;
            True returns the replay of the recorded steps (its ending then says where the
            recording stopped: "error" when the recorded actions ran out).
    Returns:
        The replayed trajectory (policy "replay").
    Raises:
        ReplayError: anything differs (`step` is the first step that differs, `differences`
            lists them all), or the recording is unfinished and allow_unfinished is False.
    """
    recorded = source if isinstance(source, Trajectory) else load_trajectory(source)
    differences: list[tuple[int, str]] = []

    def check(record: dict[str, Any]) -> None:
        number = record["step"]  # never past the recording: _Scripted runs out of actions
        expected = recorded.steps[number - 1]
        if record["observation"] != expected["observation"]:
            differences.append(
                (
                    number,
                    f"observation {record['observation']!r} != recorded "
                    f"{expected['observation']!r}",
                )
            )
            raise ReplayError(differences[0][0], _describe(differences), differences)
        for key in ("valid", "reward", "score", "done"):
            if key in expected and _differs(record[key], expected[key]):
                differences.append((number, f"{key} {record[key]!r} != recorded {expected[key]!r}"))

    actions = [step["action"] for step in recorded.steps]
    replayed = run_episode(
        _Scripted(actions), env, recorded.seed, recorded.max_steps, check, recorded.loop_k
    )
    if recorded.unfinished:
        if differences:
            raise ReplayError(differences[0][0], _describe(differences), differences)
        if allow_unfinished:
            return replayed
        raise ReplayError(
            recorded.num_steps + 1,
            f"the recording is unfinished ({recorded.reason}): its {recorded.num_steps} steps "
            "replay as recorded, but it has no end line to check the ending against; pass "
            "allow_unfinished=True to accept the replay of the recorded steps.",
            unfinished=True,
        )
    last = recorded.num_steps
    if replayed.num_steps != recorded.num_steps or replayed.outcome != recorded.outcome:
        same_length = replayed.num_steps == recorded.num_steps
        differences.append(
            (
                last if same_length else min(replayed.num_steps, recorded.num_steps) + 1,
                f"replay ended {replayed.outcome!r} after {replayed.num_steps} steps "
                f"({replayed.reason}); the recording ended {recorded.outcome!r} after "
                f"{recorded.num_steps}",
            )
        )
    else:
        for key in ("total_reward", "score", "max_score", "invalid_actions"):
            mine, theirs = getattr(replayed, key), getattr(recorded, key)
            if _differs(mine, theirs):
                differences.append((last, f"final {key} {mine!r} != recorded {theirs!r}"))
        if replayed.final_observation != recorded.final_observation:
            differences.append((last, "the final observation differs"))
    if differences:  # in step order
        raise ReplayError(differences[0][0], _describe(differences), differences)
    return replayed


def _describe(differences: list[tuple[int, str]]) -> str:
    """The first difference, then the others with their steps."""
    (_, first), rest = differences[0], differences[1:]
    return "; ".join([first] + [f"at step {step}: {what}" for step, what in rest])


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (default: 95%).

    Returns:
        (low, high); (0.0, 1.0) when n == 0.
    Raises:
        ValueError: successes outside 0..n.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}.")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class EvalReport:
    """Results of one policy on one environment over a list of seeds."""

    env: str  # environment name
    policy: str  # policy name
    episodes: int  # number of seeds played
    successes: int  # episodes won
    success_rate: float  # successes / episodes
    ci_low: float  # 95% Wilson interval, low end
    ci_high: float  # 95% Wilson interval, high end
    mean_steps: float  # mean steps per episode
    mean_score: float  # mean final info["score"]
    per_seed: list[dict[str, Any]]  # {seed, outcome, steps, score} per episode
    trajectories: list[Trajectory] = field(default_factory=list, repr=False)  # every episode

    def summary(self) -> str:
        """One line: 'env policy: 12/20 won = 0.60 [0.39, 0.78] ...'."""
        return (
            f"{self.env} {self.policy}: {self.successes}/{self.episodes} won = "
            f"{self.success_rate:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}] (95% Wilson), "
            f"mean steps {self.mean_steps:.1f}, mean score {self.mean_score:.2f}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the trajectories."""
        return {k: v for k, v in asdict(self).items() if k != "trajectories"}


def evaluate(
    policy: Policy,
    env: Env | Callable[[], Env],
    seeds: Iterable[int],
    max_steps: int = 100,
    loop_k: int = 3,
    progress: bool = False,
    save_to: str | Path | None = None,
) -> EvalReport:
    """Play one episode per seed and summarise.

    Args:
        env: an environment (reused across seeds) or a zero-argument factory (a fresh
            environment per seed, closed after its episode).
        progress: show a tqdm.auto bar.
        save_to: if given, every trajectory is written to this JSON-lines file as it is played.
    Returns:
        The report; `trajectories` holds every episode.
    Raises:
        ValueError: no seeds.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("evaluate needs at least one seed, e.g. seeds=range(20).")
    if progress:
        from tqdm.auto import tqdm

        seeds_iter: Iterable[int] = tqdm(seeds, desc=f"{policy.name}", unit="episode")
    else:
        seeds_iter = seeds
    fresh = isinstance(env, type) or not isinstance(env, Env)  # a class or function: a factory
    if not fresh and hasattr(env, "compile_games"):  # TextWorld: the games compiled side by side
        env.compile_games(seeds)
    writer = TrajectoryWriter(save_to) if save_to is not None else None
    trajectories = []
    try:
        for seed in seeds_iter:
            instance = env() if fresh else env
            try:
                trajectories.append(
                    run_episode(policy, instance, seed, max_steps, loop_k=loop_k, writer=writer)
                )
            finally:
                if instance is not env:
                    instance.close()
    finally:
        if writer is not None:
            writer.close()
    successes = sum(t.won for t in trajectories)
    low, high = wilson_interval(successes, len(trajectories))
    return EvalReport(
        env=trajectories[0].env,
        policy=policy.name,
        episodes=len(trajectories),
        successes=successes,
        success_rate=successes / len(trajectories),
        ci_low=low,
        ci_high=high,
        mean_steps=sum(t.num_steps for t in trajectories) / len(trajectories),
        mean_score=sum(t.score for t in trajectories) / len(trajectories),
        per_seed=[
            {"seed": t.seed, "outcome": t.outcome, "steps": t.num_steps, "score": t.score}
            for t in trajectories
        ],
        trajectories=trajectories,
    )
