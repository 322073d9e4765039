"""The harness: episodes under its rules, trajectories on disk, replay, and evaluation."""

import json
import math
import warnings
from dataclasses import replace

import pytest
from conftest import CounterEnv, CrashingEnv

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.core import Decision
from labkit.agents.harness import (
    DamagedTailWarning,
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
from labkit.agents.registry import make_env


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
    trajectory = run_episode(RandomPolicy(0), make_env("customer_service"), seed=0)
    assert trajectory.outcome == "lost" and trajectory.reason
    assert trajectory.steps[-1]["done"] and trajectory.score == 0.0


def test_trajectory_jsonl_round_trip_and_streaming(tmp_path):
    path = tmp_path / "runs" / "cal.jsonl"
    lines_seen = []

    def count_lines(record):  # each step is on disk before the callback runs
        lines_seen.append(len(path.read_text().splitlines()))

    with TrajectoryWriter(path) as writer:
        trajectory = run_episode(
            RandomPolicy(3), make_env("calendar"), seed=4, on_step=count_lines, writer=writer
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
    recorded = run_episode(ExpertPolicy(), make_env("calendar"), seed=11)
    save_trajectory(recorded, path)
    replayed = replay(path, make_env("calendar"))
    assert [s["observation"] for s in replayed.steps] == [s["observation"] for s in recorded.steps]
    assert replayed.outcome == recorded.outcome == "won" and replayed.policy == "replay"

    lines = path.read_text().splitlines()
    step2 = json.loads(lines[2])
    step2["observation"] = "something else"
    lines[2] = json.dumps(step2)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReplayError, match="step 2") as error:
        replay(path, make_env("calendar"))
    assert error.value.step == 2

    with pytest.raises(ReplayError, match="step 1"):  # another seed: another request
        replay(replace(recorded, seed=12), make_env("calendar"))


def _episodes_on_file(path, count, env_name="customer_service"):
    """Play `count` real episodes (expert and random in turn) into one file; return them."""
    env = make_env(env_name)
    played = []
    with TrajectoryWriter(path) as writer:
        for seed in range(count):
            policy = ExpertPolicy() if seed % 2 == 0 else RandomPolicy(seed)
            played.append(run_episode(policy, env, seed=seed, writer=writer))
    return played


def test_damaged_tail_keeps_every_complete_episode(tmp_path):
    path = tmp_path / "t.jsonl"
    played = _episodes_on_file(path, 4)
    lines = path.read_bytes().split(b"\n")[:-1]  # the file ends with a newline
    # the process died while writing the last episode's last step: no end line, a cut step line
    kept, cut = lines[:-2], lines[-2][: len(lines[-2]) // 2]
    path.write_bytes(b"\n".join(kept) + b"\n" + cut)
    with pytest.warns(DamagedTailWarning, match=rf"t\.jsonl:{len(kept) + 1}: the last line is cut"):
        loaded = load_trajectories(path)
    assert loaded[:3] == played[:3] and not any(t.unfinished for t in loaded[:3])
    last = loaded[3]
    assert last.unfinished and last.outcome == "error" and last.num_steps == played[3].num_steps - 1
    assert "incomplete" in last.reason and f"t.jsonl:{len(kept) + 1}" in last.reason
    assert last.steps == played[3].steps[:-1]

    # cut inside the next episode's header, and inside a multi-byte character: the same
    header = json.dumps(played[0].header()).encode()
    for tail in (header[:20], '{"type": "step", "note": "caf\u00e9'.encode()[:-1]):
        path.write_bytes(b"\n".join(lines) + b"\n" + tail)
        with pytest.warns(DamagedTailWarning, match=rf"t\.jsonl:{len(lines) + 1}"):
            assert load_trajectories(path) == played
    with warnings.catch_warnings():  # a caller can refuse a damaged tail
        warnings.simplefilter("error", DamagedTailWarning)
        with pytest.raises(DamagedTailWarning):
            load_trajectories(path)


def test_damaged_line_in_the_middle_is_an_error_naming_it(tmp_path):
    path = tmp_path / "t.jsonl"
    _episodes_on_file(path, 2)
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:15]  # the first episode's second step, cut short
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:3 is not a trajectory line"):
        load_trajectories(path)
    lines[2] = '["a list, not a step"]'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:3"):
        load_trajectories(path)


def test_text_with_unicode_line_separators_round_trips(tmp_path):
    trajectory = run_episode(ExpertPolicy(), make_env("calendar"), seed=2)
    trajectory.steps[0]["note"] = "two\u2028lines\x85and a \u00e9"  # str.splitlines splits on these
    save_trajectory(trajectory, tmp_path / "t.jsonl")
    assert load_trajectory(tmp_path / "t.jsonl") == trajectory


def test_replay_of_an_unfinished_recording_says_so(tmp_path):
    path = tmp_path / "t.jsonl"
    (recorded,) = _episodes_on_file(path, 1)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # killed before the end line
    with pytest.raises(ReplayError, match="unfinished") as error:
        replay(path, make_env("customer_service"))
    assert error.value.unfinished and error.value.step == recorded.num_steps + 1
    replayed = replay(path, make_env("customer_service"), allow_unfinished=True)
    assert [s["observation"] for s in replayed.steps] == [s["observation"] for s in recorded.steps]

    path.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:30])  # killed mid-line
    with pytest.warns(DamagedTailWarning), pytest.raises(ReplayError, match="cut short"):
        replay(path, make_env("customer_service"))

    step1 = json.loads(lines[1])  # a changed step is a divergence, unfinished or not
    step1["reward"] = 7.0
    path.write_text("\n".join([lines[0], json.dumps(step1), *lines[2:-1]]) + "\n")
    with pytest.raises(ReplayError, match="reward 0.0 != recorded 7.0") as error:
        replay(path, make_env("customer_service"), allow_unfinished=True)
    assert not error.value.unfinished and error.value.step == 1


def test_replay_of_a_recorded_crash_reproduces_it():
    recorded = run_episode(ExpertPolicy(), CrashingEnv())  # the end line says "error"
    replayed = replay(recorded, CrashingEnv())
    assert replayed.outcome == recorded.outcome == "error" and not recorded.unfinished


@pytest.mark.parametrize(
    ("line", "key", "value", "message"),
    [
        ("first step", "reward", 1.0, "reward 0.0 != recorded 1.0"),
        ("first step", "score", 1.0, "score 0.0 != recorded 1.0"),
        ("first step", "done", True, "done False != recorded True"),
        ("end", "outcome", "lost", "replay ended 'won'"),
        ("end", "total_reward", 2.0, "final total_reward 1.0 != recorded 2.0"),
        ("end", "score", 0.5, "final score 1.0 != recorded 0.5"),
    ],
)
def test_replay_detects_a_tampered_reward_score_or_outcome(tmp_path, line, key, value, message):
    path = tmp_path / "t.jsonl"
    recorded = run_episode(ExpertPolicy(), make_env("customer_service"), seed=3)
    assert recorded.outcome == "won" and recorded.num_steps >= 2
    save_trajectory(recorded, path)
    replay(path, make_env("customer_service"))  # untouched, it replays
    lines = path.read_text().splitlines()
    index = 1 if line == "first step" else len(lines) - 1
    tampered = json.loads(lines[index]) | {key: value}
    lines[index] = json.dumps(tampered)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReplayError, match=message) as error:
        replay(path, make_env("customer_service"))
    assert error.value.step == (1 if line == "first step" else recorded.num_steps)


def test_replay_lists_every_difference(tmp_path):
    recorded = run_episode(ExpertPolicy(), make_env("customer_service"), seed=3)
    tampered = replace(recorded, steps=[dict(s) for s in recorded.steps], total_reward=5.0)
    tampered.steps[0]["reward"] = 3.0
    tampered.steps[-1]["score"] = 0.0
    with pytest.raises(ReplayError, match="step 1: reward") as error:
        replay(tampered, make_env("customer_service"))
    last = recorded.num_steps
    assert [step for step, _ in error.value.differences] == [1, last, last]
    assert "final total_reward 1.0 != recorded 5.0" in str(error.value)


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
    expert = evaluate(
        ExpertPolicy(), lambda: make_env("calendar"), seeds, save_to=tmp_path / "e.jsonl"
    )
    assert (expert.successes, expert.episodes, expert.success_rate) == (12, 12, 1.0)
    assert expert.ci_high == 1.0 and math.isclose(expert.ci_low, wilson_interval(12, 12)[0])
    assert [row["seed"] for row in expert.per_seed] == list(seeds)
    assert len(load_trajectories(tmp_path / "e.jsonl")) == 12
    assert "12/12 won" in expert.summary() and "trajectories" not in expert.to_dict()
    random = evaluate(RandomPolicy(0), make_env("calendar"), seeds)  # one env reused across seeds
    assert random.successes < expert.successes
    assert sum(row["outcome"] == "won" for row in random.per_seed) == random.successes
    assert random.mean_steps > 0 and 0.0 <= random.mean_score <= 1.0
    with pytest.raises(ValueError, match="seed"):
        evaluate(ExpertPolicy(), make_env("calendar"), [])


class RewardingLoss:
    """A one-step environment that pays a reward but ends lost: the outcome must follow `won`."""

    name = "rewarding_loss"

    def reset(self, seed=None):
        return "start", self._info(False)

    def step(self, action):
        return "the end", 1.0, True, False, self._info(True)

    def _info(self, done):
        return {
            "goal": "lose",
            "admissible_actions": [] if done else ["go"],
            "expert_action": None if done else "go",
            "score": 1.0 if done else 0.0,
            "max_score": 1.0,
            "won": False,
            "lost": done,
        }

    def close(self):
        pass


def test_the_outcome_follows_won_not_the_reward():
    trajectory = run_episode(ExpertPolicy(), RewardingLoss(), seed=0)
    assert trajectory.total_reward == 1.0 and trajectory.outcome == "lost" and not trajectory.won
    assert evaluate(ExpertPolicy(), RewardingLoss(), [0, 1]).successes == 0
