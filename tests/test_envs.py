"""The environments: the Env contract, experts that win, TextWorld's cache, the tool-use rules."""

import shutil

import pytest

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.calendar_assistant import CalendarEnv
from labkit.agents.core import INFO_KEYS, Env, EnvError
from labkit.agents.customer_service import CustomerServiceEnv
from labkit.agents.harness import evaluate, replay, run_episode, save_trajectory
from labkit.agents.registry import ENV_NAMES, make_env
from labkit.agents.textworld_env import (
    COMPILE_AHEAD_MIN,
    TextWorldEnv,
    cached_game_path,
    default_cache_dir,
    game_file,
    story_file_problem,
)

TEXTWORLD = ("coin_collector", "treasure_hunter", "tw_simple", "tw_cooking")
TOOL_USE = ("customer_service", "calendar")


@pytest.fixture(scope="session")
def tw_cache(tmp_path_factory):
    """One tiny game per TextWorld kind (level 1, seed 0), generated once per test session."""
    cache = tmp_path_factory.mktemp("textworld")
    for kind in TEXTWORLD:
        game_file(kind, level=1, seed=0, cache_dir=cache)
    return cache


def build(name, tw_cache, **kwargs):
    if name in TEXTWORLD:
        kwargs["cache_dir"] = tw_cache
    return make_env(name, **kwargs)


def check_info(info):
    assert set(INFO_KEYS) <= set(info)
    assert isinstance(info["goal"], str) and info["goal"]
    assert all(isinstance(a, str) for a in info["admissible_actions"])
    assert isinstance(info["score"], float) and isinstance(info["max_score"], float)
    assert isinstance(info["won"], bool) and isinstance(info["lost"], bool)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_every_env_resets_and_steps_with_all_info_keys(name, tw_cache):
    env = build(name, tw_cache)
    assert isinstance(env, Env) and env.name == name
    observation, info = env.reset(0)
    assert isinstance(observation, str) and observation
    check_info(info)
    assert len(info["admissible_actions"]) >= 2
    assert info["expert_action"] in info["admissible_actions"]
    result = env.step(info["admissible_actions"][0])
    assert len(result) == 5
    observation, reward, terminated, truncated, info = result
    assert isinstance(observation, str) and isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    check_info(info)
    env.close()


@pytest.mark.parametrize("name", ENV_NAMES)
def test_expert_wins_every_environment(name, tw_cache):
    seeds = [0] if name in TEXTWORLD else range(40)
    report = evaluate(ExpertPolicy(), build(name, tw_cache), seeds)
    assert report.successes == report.episodes, report.per_seed
    assert all(t.score == t.max_score > 0 for t in report.trajectories)


@pytest.mark.parametrize("name", TOOL_USE)
def test_random_policy_wins_less_often_than_the_expert(name):
    random = evaluate(RandomPolicy(0), lambda: make_env(name), range(30))
    expert = evaluate(ExpertPolicy(), lambda: make_env(name), range(30))
    assert random.success_rate < 0.5 < expert.success_rate == 1.0


def test_textworld_step_becomes_five_tuple_with_score_changes_as_rewards(tw_cache):
    # TextWorld's step returns (state, cumulative score, done); tw_simple level 1 has dense rewards.
    env = TextWorldEnv("tw_simple", level=1, cache_dir=tw_cache)
    _, info = env.reset(0)
    rewards = []
    terminated = False
    while not terminated:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        assert not truncated
        rewards.append(reward)
    assert sum(rewards) == info["score"] == info["max_score"] > 1
    assert rewards.count(0.0) < len(rewards) and set(rewards) <= {0.0, 1.0}
    assert info["won"] and info["admissible_actions"] == [] and info["expert_action"] is None
    assert info["walkthrough"] and info["walkthrough"][-1] in " ".join(info["walkthrough"])
    with pytest.raises(EnvError, match="reset"):
        env.step("look")


def test_textworld_truncates_at_max_steps_and_observations_are_clean(tw_cache):
    env = TextWorldEnv("coin_collector", level=1, max_steps=2, cache_dir=tw_cache)
    observation, info = env.reset(0)
    assert observation.startswith(info["goal"]) and "$$" not in observation  # no ASCII banner
    _, reward, terminated, truncated, _ = env.step("look")
    assert (reward, terminated, truncated) == (0.0, False, False)
    observation, reward, terminated, truncated, info = env.step("inventory")
    assert (terminated, truncated) == (False, True) and info["admissible_actions"] == []
    assert not observation.rstrip().endswith(">")  # Inform's prompt and status line are stripped
    env.reset(0)  # same game again, from the start
    observation, reward, terminated, _, info = env.step("take coin")
    assert (reward, terminated, info["won"]) == (1.0, True, True)
    assert "RESTART" not in observation


def test_textworld_expert_recovers_after_a_detour(tw_cache):
    env = TextWorldEnv("treasure_hunter", level=1, cache_dir=tw_cache)
    _, info = env.reset(0)
    detour = next(a for a in info["admissible_actions"] if a.startswith("go "))
    _, _, _, _, info = env.step(detour)
    back = info["expert_action"]  # policy_commands are recomputed from the current state
    assert back != detour and back.startswith("go ")
    trajectory = run_episode(ExpertPolicy(), env, seed=0)
    assert trajectory.won


def test_missing_games_are_compiled_side_by_side_into_the_cache(tmp_path):
    env = TextWorldEnv("coin_collector", level=1, cache_dir=tmp_path)
    seeds = range(COMPILE_AHEAD_MIN)
    assert env.compile_games(seeds[:-1], processes=2) == 0  # too few: each reset compiles its own
    assert env.compile_games(seeds, processes=2) == len(seeds)
    paths = [cached_game_path("coin_collector", 1, seed, tmp_path) for seed in seeds]
    assert all(story_file_problem(path) is None for path in paths)
    stamps = [path.stat().st_mtime_ns for path in paths]
    assert env.compile_games(seeds, processes=2) == 0  # all cached: nothing compiled again
    assert [path.stat().st_mtime_ns for path in paths] == stamps
    assert env.reset(seeds[-1])[1]["expert_action"] is not None  # a game that loads and plays


def test_cache_hit_reuses_the_file_and_keys_differ(tw_cache):
    path = game_file("coin_collector", level=1, seed=0, cache_dir=tw_cache)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tw_cache.iterdir())
    again = game_file("coin_collector", level=1, seed=0, cache_dir=tw_cache)
    assert again == path and path.parent == tw_cache and story_file_problem(path) is None
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tw_cache.iterdir()) == before
    keys = {
        cached_game_path("coin_collector", 1, 0, tw_cache),
        cached_game_path("coin_collector", 1, 1, tw_cache),
        cached_game_path("coin_collector", 2, 0, tw_cache),
        cached_game_path("treasure_hunter", 1, 0, tw_cache),
        cached_game_path("tw_cooking", 1, 0, tw_cache, settings={"cut": True}),
        cached_game_path("tw_cooking", 1, 0, tw_cache),
    }
    assert len(keys) == 6
    assert not any(p.name.startswith(".tmp-") for p in tw_cache.iterdir())  # no leftovers


def test_cache_dir_comes_from_labkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "textworld"
    assert cached_game_path("coin_collector", 1, 0).parent == tmp_path / "textworld"
    monkeypatch.delenv("LABKIT_CACHE")
    assert default_cache_dir() == default_cache_dir().home() / ".cache" / "labkit" / "textworld"


def copy_game(tw_cache, tmp_path, kind="coin_collector"):
    path = cached_game_path(kind, 1, 0, tw_cache)
    for suffix in (".z8", ".json"):
        shutil.copy(path.with_suffix(suffix), tmp_path)
    return tmp_path / path.name


def test_corrupt_cached_game_is_regenerated(tw_cache, tmp_path):
    path = copy_game(tw_cache, tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:  # a crash mid-copy, or a bad disk: half a story file
        f.truncate(size // 2)
    assert "corrupt" in story_file_problem(path)
    with pytest.warns(UserWarning, match="regenerating"):
        env = TextWorldEnv("coin_collector", level=1, cache_dir=tmp_path)
        trajectory = run_episode(ExpertPolicy(), env, seed=0)
    assert trajectory.won and path.stat().st_size == size and story_file_problem(path) is None


def test_unloadable_game_raises_env_error_naming_the_file(tw_cache, tmp_path):
    path = copy_game(tw_cache, tmp_path)
    path.with_suffix(".json").write_text("{}")  # valid JSON, but not a game
    env = TextWorldEnv("coin_collector", level=1, cache_dir=tmp_path)
    with pytest.raises(EnvError, match="Delete") as error:
        env.reset(0)
    assert str(path) in str(error.value)


def test_textworld_rejects_bad_kind_and_level():
    with pytest.raises(ValueError, match="coin_collector"):
        TextWorldEnv("zork")
    with pytest.raises(ValueError, match=r"1\.\.30"):
        TextWorldEnv("treasure_hunter", level=31)


def test_registry_errors_list_the_valid_choices():
    with pytest.raises(ValueError, match="customer_service") as error:
        make_env("chess")
    assert all(name in str(error.value) for name in ENV_NAMES)
    with pytest.raises(ValueError, match="max_steps"):
        make_env("calendar", levle=3)


@pytest.mark.parametrize("cls", [CustomerServiceEnv, CalendarEnv])
def test_tool_envs_are_seeded(cls):
    env = cls()
    first = env.reset(7)
    assert env.reset(7) == first and env.reset(8) != first
    assert env.reset(None) == cls().reset(9)  # None: the next seed
    observation, reward, terminated, _, info = env.step("fly away")
    assert observation.startswith("error: unknown tool") and not terminated and reward == 0.0
    assert info["admissible_actions"]


def test_textworld_replay_sees_the_same_text(tw_cache, tmp_path):
    env = TextWorldEnv("treasure_hunter", level=1, max_steps=8, cache_dir=tw_cache)
    recorded = run_episode(RandomPolicy(2), env, seed=0)
    save_trajectory(recorded, tmp_path / "th.jsonl")
    fresh = TextWorldEnv("treasure_hunter", level=1, max_steps=8, cache_dir=tw_cache)
    replayed = replay(tmp_path / "th.jsonl", fresh)
    assert replayed.num_steps == recorded.num_steps and replayed.outcome == recorded.outcome


def test_failed_generation_is_an_env_error_and_leaves_no_file(tmp_path):
    with pytest.raises(EnvError, match="nothing was written"):
        game_file("coin_collector", level=1, seed=0, cache_dir=tmp_path, settings={"level": 400})
    assert list(tmp_path.iterdir()) == []
