"""The harness: episodes under its rules, trajectories on disk, replay, and evaluation."""

import json
import math
from dataclasses import replace

import pytest

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.core import Decision
from labkit.agents.harness import (
    ReplayError,
    TrajectoryWriter,
    evaluate,
    load_trajectories,
    load_trajectory,
    replay,
    run_episode,
    save_trajectory,
    wilson_interval,
)
from labkit.agents.tooluse import CalendarEnv, CustomerServiceEnv


class CounterEnv:
    """Count up to a target: "inc" adds one, "wait" does nothing. Won at the target."""

    name = "counter"

    def __init__(self, target: int = 3, max_steps: int = 50) -> None:
        self.target, self.max_steps = target, max_steps

    def reset(self, seed=None):
        self.n, self.steps = 0, 0
        return "n=0", self._info()

    def _info(self):
        won = self.n >= self.target
        return {
            "goal": f"reach {self.target}",
            "admissible_actions": [] if won else ["inc", "wait"],
            "expert_action": None if won else "inc",
            "score": float(self.n),
            "max_score": float(self.target),
            "won": won,
            "lost": False,
        }

    def step(self, action):
        self.steps += 1
        self.n += action == "inc"
        info = self._info()
        truncated = not info["won"] and self.steps >= self.max_steps
        return f"n={self.n}", float(action == "inc"), info["won"], truncated, info

    def close(self):
        pass


class CrashingEnv(CounterEnv):
    """Breaks on its second step, like an engine that dies mid-episode."""

    def step(self, action):
        if self.steps == 1:
            raise RuntimeError("engine died")
        return super().step(action)


class Scripted:
    """Plays a fixed list of actions."""

    name = "scripted"

    def __init__(self, actions):
        self.actions = actions

    def reset(self):
        pass

    def act(self, observation, info, history):
        return Decision(self.actions[len(history)])


def test_expert_wins_the_counter_and_the_trajectory_adds_up():
    streamed = []
    trajectory = run_episode(ExpertPolicy(), CounterEnv(), seed=5, on_step=streamed.append)
    assert trajectory.outcome == "won" and trajectory.num_steps == 3
    assert trajectory.total_reward == trajectory.score == 3.0 and trajectory.seed == 5
    assert streamed == trajectory.steps  # on_step saw every step, in order
    first = trajectory.steps[0]
    assert first["observation"] == "n=0" and first["action"] == "inc" and first["step"] == 1
    assert first["probs"] == {"inc": 1.0} and first["admissible"] == ["inc", "wait"]
    assert [s["done"] for s in trajectory.steps] == [False, False, True]


def test_action_outside_admissible_is_recorded_skipped_and_counted():
    env = CounterEnv()
    trajectory = run_episode(Scripted(["dance", "inc", "inc", "inc"]), env)
    assert trajectory.outcome == "won" and trajectory.invalid_actions == 1
    skipped = trajectory.steps[0]
    assert not skipped["valid"] and "skipped" in skipped["note"] and skipped["reward"] == 0.0
    assert trajectory.steps[1]["observation"] == "n=0"  # the env never saw "dance"
    assert env.steps == 3


def test_env_raising_mid_episode_keeps_the_steps_so_far(tmp_path):
    path = tmp_path / "crash.jsonl"
    with TrajectoryWriter(path) as writer:
        trajectory = run_episode(ExpertPolicy(), CrashingEnv(), writer=writer)
    assert trajectory.outcome == "error" and trajectory.num_steps == 1
    assert "RuntimeError" in trajectory.reason and "engine died" in trajectory.reason
    assert "step 2" in trajectory.reason
    assert load_trajectory(path) == trajectory


def test_policy_raising_ends_the_episode_as_error():
    trajectory = run_episode(Scripted(["inc"]), CounterEnv())  # runs out of actions at step 2
    assert trajectory.outcome == "error" and trajectory.num_steps == 1
    assert "policy 'scripted' raised IndexError" in trajectory.reason


def test_loop_detection_stops_a_stuck_policy():
    trajectory = run_episode(Scripted(["wait"] * 10), CounterEnv(), loop_k=3)
    assert trajectory.outcome == "loop" and trajectory.num_steps == 3
    off = run_episode(Scripted(["wait"] * 10), CounterEnv(), max_steps=6, loop_k=0)
    assert off.outcome == "truncated" and off.num_steps == 6 and "max_steps=6" in off.reason
    env_limit = run_episode(Scripted(["wait"] * 10), CounterEnv(max_steps=4), loop_k=0)
    assert env_limit.outcome == "truncated" and env_limit.num_steps == 4
    invalid = run_episode(Scripted(["dance"] * 10), CounterEnv(), loop_k=2)
    assert invalid.outcome == "loop" and invalid.invalid_actions == 2


def test_lost_episode_reason_is_the_envs_verdict():
    trajectory = run_episode(RandomPolicy(0), CustomerServiceEnv(), seed=0)
    assert trajectory.outcome == "lost" and trajectory.reason
    assert trajectory.steps[-1]["done"] and trajectory.score == 0.0


def test_trajectory_jsonl_round_trip_and_streaming(tmp_path):
    path = tmp_path / "runs" / "cal.jsonl"
    lines_seen = []

    def count_lines(record):  # each step is on disk before the callback runs
        lines_seen.append(len(path.read_text().splitlines()))

    with TrajectoryWriter(path) as writer:
        trajectory = run_episode(
            RandomPolicy(3), CalendarEnv(), seed=4, on_step=count_lines, writer=writer
        )
    assert lines_seen == [1 + n for n in range(1, trajectory.num_steps + 1)]
    assert load_trajectory(path) == trajectory
    save_trajectory(trajectory, tmp_path / "again.jsonl")
    save_trajectory(trajectory, tmp_path / "again.jsonl", append=True)
    assert load_trajectories(tmp_path / "again.jsonl") == [trajectory, trajectory]
    with pytest.raises(ValueError, match="load_trajectories"):
        load_trajectory(tmp_path / "again.jsonl")


def test_cut_short_file_loads_as_incomplete(tmp_path):
    path = tmp_path / "t.jsonl"
    save_trajectory(run_episode(ExpertPolicy(), CounterEnv()), path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # a crash before the end line
    loaded = load_trajectory(path)
    assert loaded.outcome == "error" and "incomplete" in loaded.reason and loaded.num_steps == 3
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:2"):
        load_trajectory(path)


def test_replay_reproduces_and_detects_divergence(tmp_path):
    path = tmp_path / "cal.jsonl"
    recorded = run_episode(ExpertPolicy(), CalendarEnv(), seed=11)
    save_trajectory(recorded, path)
    replayed = replay(path, CalendarEnv())
    assert [s["observation"] for s in replayed.steps] == [s["observation"] for s in recorded.steps]
    assert replayed.outcome == recorded.outcome == "won" and replayed.policy == "replay"

    lines = path.read_text().splitlines()
    step2 = json.loads(lines[2])
    step2["observation"] = "something else"
    lines[2] = json.dumps(step2)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReplayError, match="step 2") as error:
        replay(path, CalendarEnv())
    assert error.value.step == 2

    with pytest.raises(ReplayError, match="step 1"):  # another seed: another request
        replay(replace(recorded, seed=12), CalendarEnv())


def test_wilson_interval_known_values():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(5, 10)
    assert math.isclose(low, 0.2366, abs_tol=1e-4) and math.isclose(high, 0.7634, abs_tol=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and math.isclose(high, 0.2775, abs_tol=1e-4)
    low, high = wilson_interval(20, 20)
    assert math.isclose(low, 0.8389, abs_tol=1e-4) and high == 1.0
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_evaluate_reports_rates_per_seed_and_saves(tmp_path):
    seeds = range(12)
    expert = evaluate(ExpertPolicy(), CalendarEnv, seeds, save_to=tmp_path / "e.jsonl")
    assert (expert.successes, expert.episodes, expert.success_rate) == (12, 12, 1.0)
    assert expert.ci_high == 1.0 and math.isclose(expert.ci_low, wilson_interval(12, 12)[0])
    assert [row["seed"] for row in expert.per_seed] == list(seeds)
    assert len(load_trajectories(tmp_path / "e.jsonl")) == 12
    assert "12/12 won" in expert.summary() and "trajectories" not in expert.to_dict()
    random = evaluate(RandomPolicy(0), CalendarEnv(), seeds)  # one env reused across seeds
    assert random.successes < expert.successes
    assert sum(row["outcome"] == "won" for row in random.per_seed) == random.successes
    assert random.mean_steps > 0 and 0.0 <= random.mean_score <= 1.0
    with pytest.raises(ValueError, match="seed"):
        evaluate(ExpertPolicy(), CalendarEnv(), [])
