"""The calendar assistant: a free/busy query, refusals of double bookings and off-grid times before
anything changes, a judge that reads the calendar, and held-out wordings."""

import pytest

from labkit.agents.baselines import AdversarialPolicy, ExpertPolicy, RandomPolicy
from labkit.agents.calendar_assistant import TEMPLATES, CalendarEnv, Event, hhmm, parse_time
from labkit.agents.core import EnvError
from labkit.agents.guardrails import audit_trail
from labkit.agents.harness import run_episode
from labkit.agents.tooluse import split_wordings


def calendar(case, **kwargs):
    """A calendar reset on the first seed whose request is of the given case."""
    env = CalendarEnv(**kwargs)
    for seed in range(200):
        env.reset(seed)
        if env.case == case:
            return env
    raise AssertionError(f"no seed gives case {case}")


def test_free_slots_lists_every_start_where_the_time_fits_earliest_first():
    env = calendar("find_slot")
    for day in ("monday", "friday"):
        for minutes in (30, 60):
            observation, *_ = env.step(f"free_slots {day} {minutes} afternoon")
            listed = observation.split(": ")[1].split()
            fits = [
                hhmm(s)
                for s in range(13 * 60, 17 * 60 - minutes + 1, 30)
                if not any(e.overlaps(Event(day, s, minutes, "x")) for e in env.events)
            ]
            assert listed == (fits or ["none"])
            env.reset(env.seed)


def test_a_slot_must_be_the_earliest_free_one_and_the_day_looked_at():
    env = calendar("find_slot")
    query = env._query
    observation, *_ = env.step(query)
    free = observation.split(": ")[1].split()
    assert env.answer == f"{env.day} {free[0]}"
    if len(free) > 1:
        _, _, terminated, _, info = env.step(f"reply {env.day} {free[1]}")  # free, not earliest
        assert terminated and info["lost"]
    env.reset(env.seed)
    _, _, terminated, _, info = env.step(f"reply {env.answer}")  # right, but a guess
    assert terminated and info["lost"] and "without looking" in info["verdict"]
    env.reset(env.seed)
    env.step(query)
    _, reward, terminated, _, info = env.step(f"reply {env.answer}")
    assert terminated and info["won"] and reward == 1.0


def test_a_double_booking_is_refused_before_the_calendar_changes():
    env = calendar("schedule")
    before = set(env.events)
    busy = next(e for e in sorted(env.events) if e.minutes == 30 and e.start < 16 * 60 + 30)
    observation, _, terminated, _, info = env.step(f"schedule {busy.day} {hhmm(busy.start)} 30 ana")
    assert observation.startswith("error: refused (no_double_booking)") and env.events == before
    assert terminated and info["lost"] and "no_double_booking" in info["verdict"]
    row = audit_trail(env.db)[-1]
    assert (row["tool"], row["allowed"], row["rule"]) == ("schedule", 0, "no_double_booking")


@pytest.mark.parametrize(
    ("call", "rule"),
    [
        ("schedule monday 08:00 30 ana", "working_hours"),
        ("schedule monday 16:30 60 ana", "working_hours"),
        ("schedule monday 10:15 30 ana", "working_hours"),
        ("schedule monday 10:00 45 ana", "working_hours"),
        ("schedule monday 10:00 " + "9" * 30 + " ana", "working_hours"),
        ("schedule monday ²:00 30 ana", "working_hours"),
        ("free_slots monday 45 morning", "usage"),
        ("free_slots monday 30 evening", "usage"),
        ("list_events sunday", "usage"),
        ("schedule monday 10:00", "usage"),
    ],
)
def test_bad_times_and_arguments_are_refused_and_change_nothing(call, rule):
    env = calendar("schedule")
    before = set(env.events)
    observation, _, terminated, _, _ = env.step(call)
    assert observation.startswith("error:") and env.events == before
    assert audit_trail(env.db)[-1]["rule"] == rule
    assert terminated is (rule != "usage")  # a forbidden change ends the episode; a typo not


def test_a_schedule_is_judged_on_the_calendar():
    env = calendar("schedule")
    before = set(env.events)
    env.step(env._query)
    _, _, terminated, _, info = env.step("reply done")  # claims done before doing it
    assert terminated and info["lost"]
    trajectory = run_episode(ExpertPolicy(), env, seed=env.seed)
    assert trajectory.won and env.events == env.expected
    assert env.events > before and len(env.events - before) == 1


def test_a_move_changes_only_that_event_into_the_other_half_of_the_day():
    env = calendar("move")
    before = set(env.events)
    trajectory = run_episode(ExpertPolicy(), env, seed=env.seed)
    assert trajectory.won and [s["action"].split()[0] for s in trajectory.steps] == [
        "move_options", "move", "reply"
    ]  # fmt: skip
    moved, original = next(iter(env.events - before)), next(iter(before - env.events))
    assert len(env.events) == len(before)
    assert (moved.day, moved.title, moved.minutes) == (
        original.day,
        original.title,
        original.minutes,
    )
    assert (moved.start >= 13 * 60) == (original.start < 12 * 60)


def test_parse_time_accepts_only_grid_times_in_working_hours():
    assert [parse_time(t) for t in ("09:00", "16:30", "17:00", "08:30", "9:5", "10:15")] == [
        540, 990, None, None, None, None
    ]  # fmt: skip


def test_tool_env_truncates_at_max_steps():
    env = CalendarEnv(max_steps=2)
    env.reset(0)
    _, _, terminated, truncated, _ = env.step("list_events monday")
    assert (terminated, truncated) == (False, False)
    _, _, terminated, truncated, info = env.step("list_events monday")
    assert (terminated, truncated) == (False, True) and info["admissible_actions"] == []
    with pytest.raises(EnvError):
        env.step("list_events monday")


def test_held_out_wordings_are_disjoint_and_used():
    for templates in TEMPLATES.values():
        train, held_out = split_wordings(templates, "train"), split_wordings(templates, "heldout")
        assert held_out and not set(train) & set(held_out)
    train = {CalendarEnv(typed=0.0).reset(s)[0] for s in range(50)}
    held = {CalendarEnv(wordings="heldout", typed=0.0).reset(s)[0] for s in range(50)}
    assert not train & held


@pytest.mark.parametrize("policy", [RandomPolicy(0), AdversarialPolicy(0), ExpertPolicy()])
def test_no_policy_double_books_in_1000_episodes(policy):
    env = CalendarEnv()
    won = 0
    for seed in range(1000):
        trajectory = run_episode(policy, env, seed, max_steps=10)
        events = sorted(env.events)
        assert not any(a.overlaps(b) for a, b in zip(events, events[1:], strict=False))
        assert all(e.start >= 9 * 60 and e.start + e.minutes <= 17 * 60 for e in events)
        won += trajectory.won
    assert (won == 1000) is (policy.name == "expert")
