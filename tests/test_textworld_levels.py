"""TextWorld levels: every level a different game, and an expert that wins every level.

The games of these tests (seed 0 of Coin Collector and Treasure Hunter levels 1-10, and of every
tw_simple and tw_cooking level: 28 games) are generated into the package's own cache
(`default_cache_dir()`, i.e. $LABKIT_CACHE/textworld), where the notebooks and `bench.agent_eval`
find them too: about 100 s on a fresh 2-core machine, a second or two once cached. Set
LABKIT_TEXTWORLD_ALL_LEVELS=1 to play the expert on every level instead (Coin Collector 1-100,
Treasure Hunter 1-30: tens of minutes, Treasure Hunter level 30 alone takes minutes to generate).
"""

import json
import os

import pytest

from labkit.agents.baselines import ExpertPolicy
from labkit.agents.harness import run_episode
from labkit.agents.textworld_env import (
    LEVELS,
    TextWorldEnv,
    WalkthroughGuide,
    game_file,
    treasure_hunter_settings,
)

ALL_LEVELS = os.environ.get("LABKIT_TEXTWORLD_ALL_LEVELS", "") not in ("", "0")
# Coin Collector and Treasure Hunter: the levels the recipes train and evaluate on (or all of them).
LEVELS_PLAYED = {kind: LEVELS[kind] if ALL_LEVELS else min(LEVELS[kind], 10) for kind in LEVELS}
CASES = [(kind, level) for kind, top in LEVELS_PLAYED.items() for level in range(1, top + 1)]


def signature(kind, level, seed=0):
    """What tells two games apart cheaply: rooms, quest length and walkthrough, from the .json."""
    meta = json.loads(game_file(kind, level, seed).with_suffix(".json").read_text())["metadata"]
    return meta["world_size"], meta["quest_length"], tuple(meta["walkthrough"])


def test_treasure_hunter_levels_grow_and_never_repeat():
    # TextWorld rounds linspace(1, 5, 10) to quest lengths 1,1,2,2,...: a tie gets one more room.
    easy = [treasure_hunter_settings(level) for level in range(1, 11)]
    assert [(s["rooms"], s["quest_length"]) for s in easy] == [
        (5, 1), (6, 1), (6, 2), (7, 2), (7, 3), (8, 3), (8, 4), (9, 4), (9, 5), (10, 5),
    ]  # fmt: skip
    for first in (1, 11, 21):  # each tier: easy, medium, hard
        tier = [treasure_hunter_settings(level) for level in range(first, first + 10)]
        assert len({s["mode"] for s in tier}) == 1
        for before, after in zip(tier, tier[1:], strict=False):
            assert after["rooms"] >= before["rooms"]
            assert after["quest_length"] >= before["quest_length"]
            assert after != before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["coin_collector", "treasure_hunter"])
def test_adjacent_levels_give_different_games(kind):
    games = [signature(kind, level) for level in range(1, LEVELS_PLAYED[kind] + 1)]
    for level, (before, after) in enumerate(zip(games, games[1:], strict=False), start=1):
        assert before != after, f"{kind} levels {level} and {level + 1} give the same game"
    rooms = [rooms for rooms, _, _ in games]
    assert rooms == sorted(rooms)  # harder levels never have fewer rooms


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "level"), CASES, ids=[f"{k}-{lv}" for k, lv in CASES])
def test_expert_wins_every_level(kind, level):
    env = TextWorldEnv(kind, level=level, max_steps=100 if level <= 10 else 300)
    trajectory = run_episode(ExpertPolicy(), env, seed=0, max_steps=env.max_steps)
    env.close()
    assert trajectory.won, (trajectory.outcome, trajectory.reason)
    assert trajectory.score == trajectory.max_score > 0


@pytest.mark.slow
def test_walkthrough_expert_undoes_detours_and_admits_when_lost():
    env = TextWorldEnv("tw_cooking", level=5, max_steps=100)  # no TextWorld policy at this level
    _, info = env.reset(0)
    assert info["expert_action"] == "inventory" == info["walkthrough"][0]
    moves = [a for a in info["admissible_actions"] if a.startswith("go ")]
    _, _, _, _, info = env.step(moves[0])  # a detour
    assert info["expert_action"].startswith("go ") and info["expert_action"] != moves[0]
    _, _, _, _, info = env.step(info["expert_action"])  # back where it started
    assert info["expert_action"] == "inventory"
    trajectory = run_episode(ExpertPolicy(), env, seed=0)
    assert trajectory.won
    env.close()


def test_walkthrough_guide_passes_over_commands_the_game_does_not_admit():
    guide = WalkthroughGuide(["open door", "go east", "take key"])
    assert guide.next(["go east", "look"]) == "go east"  # the door is open already
    guide.played("go east", ["go east", "look"])
    guide.played("examine key", ["examine key", "take key"])  # changes nothing
    assert guide.next(["take key", "go west"]) == "take key"
    guide.played("drop key", ["drop key", "take key"])  # off the walkthrough: the place is lost
    assert guide.next(["take key"]) is None
