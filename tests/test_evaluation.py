"""pass^k: the unbiased estimator by hand, its properties, and repeated tries of real policies."""

import json
import random
from fractions import Fraction

import pytest
import torch

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.evaluation import pass_hat_k, repeated_trials
from labkit.agents.harness import load_trajectories
from labkit.agents.policies import LMPolicy
from labkit.agents.registry import make_env


def test_pass_hat_k_by_hand():
    counts = [4, 2, 0]  # successes of 4 tries on three tasks
    assert pass_hat_k(counts, 4, 1) == 0.5  # (4/4 + 2/4 + 0/4) / 3
    assert pass_hat_k(counts, 4, 2) == float(Fraction(6 + 1 + 0, 6) / 3)  # C(c,2)/C(4,2) = 7/18
    assert pass_hat_k(counts, 4, 3) == float(Fraction(4 + 0 + 0, 4) / 3)  # C(c,3)/C(4,3) = 1/3
    assert pass_hat_k(counts, 4, 4) == float(Fraction(1, 3))  # only the task won every time
    assert pass_hat_k([3, 1], 3, 2) == 0.5  # (C(3,2) + C(1,2)) / C(3,2) / 2 = (3 + 0) / 3 / 2
    assert pass_hat_k([5], 5, 5) == 1.0 and pass_hat_k([0, 0], 2, 1) == 0.0


def test_pass_hat_k_does_not_increase_with_k():
    rng = random.Random(0)
    for _ in range(50):
        tries = rng.randint(1, 10)
        counts = [rng.randint(0, tries) for _ in range(rng.randint(1, 8))]
        values = [pass_hat_k(counts, tries, k) for k in range(1, tries + 1)]
        assert all(a >= b for a, b in zip(values, values[1:], strict=False)), (counts, values)
        assert values[0] == pytest.approx(sum(counts) / (tries * len(counts)))


@pytest.mark.parametrize(
    ("counts", "tries", "k", "message"),
    [
        ([1, 2], 2, 3, "k must be an integer in 1..tries = 1..2, got 3"),
        ([1, 2], 2, 0, "k must be .* got 0"),
        ([1, 2], 2, -1, "k must be"),
        ([1, 3], 2, 1, "0..tries = 0..2; got task 1: 3"),
        ([-1, 0], 2, 1, "task 0: -1"),
        ([1.5], 2, 1, "task 0: 1.5"),
        ([], 2, 1, "at least one task"),
        ([0], 0, 1, "tries must be an integer >= 1, got 0"),
        ([1], 2, 1.0, "k must be an integer"),
    ],
)
def test_pass_hat_k_rejects_bad_arguments(counts, tries, k, message):
    with pytest.raises(ValueError, match=message):
        pass_hat_k(counts, tries, k)


def test_greedy_expert_has_pass_k_equal_to_pass_1(tmp_path):
    report = repeated_trials(
        lambda t: ExpertPolicy(),
        lambda: make_env("customer_service"),
        range(5),
        tries=3,
        save_to=tmp_path / "e.jsonl",
    )
    assert report.successes == [3] * 5 and report.pass_k == {1: 1.0, 2: 1.0, 3: 1.0}
    assert report.env == "customer_service" and report.policy == "expert"
    assert len(load_trajectories(tmp_path / "e.jsonl")) == 15
    assert [t.seed for row in report.trajectories for t in row] == [
        s for s in range(5) for _ in "abc"
    ]
    assert "5 seeds x 3 tries" in report.summary() and "pass^3 1.00" in report.summary()
    json.dumps(report.to_dict())  # JSON-ready


class UniformScorer:
    """Scores every action the same: a sampling LMPolicy on it picks uniformly by its own seed."""

    def score(self, prompt, continuations):
        n = len(continuations)
        return torch.zeros(n), torch.ones(n, dtype=torch.long)


def test_sampling_lm_policy_tries_are_independent_and_reproducible():
    env = make_env("calendar")
    seeds = range(6)

    def sampling(t):
        return LMPolicy(UniformScorer(), greedy=False, seed=t, name="sampling")

    report = repeated_trials(sampling, env, seeds, tries=4, max_steps=10)
    again = repeated_trials(sampling, env, seeds, tries=4, max_steps=10)
    assert again.successes == report.successes and again.pass_k == report.pass_k
    actions = [[tuple(s["action"] for s in t.steps) for t in row] for row in report.trajectories]
    assert all(len(set(row)) > 1 for row in actions)  # the tries of a task play differently
    values = list(report.pass_k.values())
    assert values == [pass_hat_k(report.successes, 4, k) for k in range(1, 5)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))

    greedy = repeated_trials(
        lambda t: LMPolicy(UniformScorer(), greedy=True, seed=t), env, seeds, tries=4
    )
    assert all(c in (0, 4) for c in greedy.successes)
    assert len(set(greedy.pass_k.values())) == 1  # deterministic: pass^k = pass^1


class NoisyExpert:
    """Plays the expert's action, except with probability `slip` a random admissible one."""

    name = "noisy expert"

    def __init__(self, seed, slip=0.15):
        self.rng, self.slip = random.Random(seed), slip

    def reset(self):
        pass

    def act(self, observation, info, history):
        if self.rng.random() < self.slip:
            return RandomPolicy(self.rng.random()).act(observation, info, history)
        return ExpertPolicy().act(observation, info, history)


def test_an_unreliable_policy_loses_pass_k_as_k_grows():
    report = repeated_trials(lambda t: NoisyExpert(t), make_env("customer_service"), range(10), 4)
    assert any(0 < c < 4 for c in report.successes)  # some tasks won on some tries only
    assert report.pass_k[1] > report.pass_k[2] > report.pass_k[3] > report.pass_k[4]
    assert report.pass_k[1] == sum(report.successes) / 40


def test_repeated_trials_rejects_bad_arguments():
    env = make_env("calendar")
    with pytest.raises(ValueError, match="seed"):
        repeated_trials(lambda t: RandomPolicy(t), env, [], tries=3)
    with pytest.raises(ValueError, match="tries"):
        repeated_trials(lambda t: RandomPolicy(t), env, [0], tries=0)
    with pytest.raises(ValueError, match="make_policy"):
        repeated_trials(RandomPolicy(0), env, [0], tries=2)
