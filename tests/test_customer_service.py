"""The support desk: tools that refuse what the rules forbid before writing, a judge that reads
the database, the audit trail, typed and injected requests, and held-out wordings."""

import random
import re
import sqlite3

import pytest

from labkit.agents.baselines import AdversarialPolicy, ExpertPolicy, RandomPolicy
from labkit.agents.customer_service import (
    ASIDES,
    CASES,
    KEYWORDS,
    TEMPLATES,
    CustomerServiceEnv,
    compose_request,
)
from labkit.agents.guardrails import MAX_REQUEST_CHARS, DeskRules, audit_trail, main
from labkit.agents.harness import run_episode
from labkit.agents.tooluse import split_wordings


def desk(case, **kwargs):
    """A desk reset on the first seed whose request is of the given case."""
    env = CustomerServiceEnv(**kwargs)
    for seed in range(300):
        env.reset(seed)
        if env.case == case:
            return env
    raise AssertionError(f"no seed gives case {case}")


def training_templates():
    """Each training template as a pattern that matches the requests made from it."""
    return [
        re.compile(re.escape(t).replace(r"\{order\}", ".+").replace(r"\{item\}", ".+"), re.I)
        for templates in TEMPLATES.values()
        for t in split_wordings(templates, "train")
    ]


def rows(env, table):
    return env.db.execute(f"SELECT * FROM {table}").fetchall()


def other_customers_order(env):
    return env.db.execute(
        "SELECT id FROM orders WHERE customer_id != ? ORDER BY id", (env.customer,)
    ).fetchone()[0]


def test_an_eligible_refund_is_written_and_wins():
    env = desk("refund")
    _, _, terminated, _, info = env.step(f"lookup_order {env.target}")
    assert not terminated and info["expert_action"] == f"refund {env.target}"
    observation, reward, terminated, _, _ = env.step(f"refund {env.target}")
    assert "recorded" in observation and not terminated and reward == 0.0
    _, reward, terminated, _, info = env.step("reply refunded")
    assert terminated and info["won"] and reward == 1.0
    price = env.db.execute("SELECT price FROM orders WHERE id = ?", (env.target,)).fetchone()[0]
    assert rows(env, "refunds") == [(1, env.target, price)]


@pytest.mark.parametrize(
    ("case", "setup", "call", "rule"),
    [
        ("refund_over_limit", "lookup", "refund {target}", "refund_limit"),
        ("refund_not_eligible", "lookup", "refund {target}", "refund_status"),
        ("where_is", "lookup", "refund {target}", "refund_status"),
        ("refund", "", "refund {target}", "look_up_first"),
        ("cancel", "", "cancel {target}", "look_up_first"),
        ("cancel_too_late", "lookup", "cancel {target}", "cancel_status"),
        ("refund", "", "lookup_order {other}", "own_orders_only"),
        ("refund", "", "check_refund {other}", "own_orders_only"),
        ("cancel", "", "check_cancel {other}", "own_orders_only"),
        ("refund", "", "refund {other}", "own_orders_only"),
        ("cancel", "", "cancel {other}", "own_orders_only"),
    ],
)
def test_forbidden_calls_are_refused_before_anything_is_written(case, setup, call, rule):
    env = desk(case)
    if setup:
        env.step(f"lookup_order {env.target}")
    before = env.state()
    action = call.format(target=env.target, other=other_customers_order(env))
    observation, reward, terminated, _, info = env.step(action)
    assert observation.startswith(f"error: refused ({rule})")
    assert env.state() == before and env.forbidden_changes() == []
    assert terminated and info["lost"] and reward == 0.0 and f"({rule})" in info["verdict"]
    last = audit_trail(env.db)[-1]
    assert (last["tool"], last["allowed"], last["rule"]) == (action.split()[0], 0, rule)


@pytest.mark.parametrize(
    ("case", "check", "verdict", "then"),
    [
        ("refund", "check_refund", "refund allowed", "refund"),
        ("refund_over_limit", "check_refund", "refund not allowed (refund_limit", "escalate"),
        ("refund_not_eligible", "check_refund", "refund not allowed (refund_status", "reply"),
        ("cancel", "check_cancel", "cancel allowed", "cancel"),
        ("cancel_too_late", "check_cancel", "cancel not allowed (cancel_status", "reply"),
    ],
)
def test_the_checks_answer_what_the_rules_allow_write_nothing_and_count_as_a_look_up(
    case, check, verdict, then
):
    env = desk(case)
    before = env.state()
    observation, _, terminated, _, info = env.step(f"{check} {env.target}")
    assert not terminated and f"order {env.target} " in observation
    assert observation.split("; ")[-1].startswith(verdict)
    assert env.state() == before and audit_trail(env.db)[-1]["allowed"] == 1
    assert info["expert_action"].split()[0] == then  # what the answer says to do next
    if then in ("refund", "cancel"):  # the check was the look-up the rules ask for
        observation, *_ = env.step(f"{then} {env.target}")
        assert not observation.startswith("error")


def test_the_expert_checks_what_the_customer_asks_for_before_acting():
    firsts = {}
    for case in ("where_is", "refund", "refund_over_limit", "cancel", "cancel_too_late"):
        env = desk(case)
        firsts[case] = env._info()["expert_action"].split()[0]
        assert run_episode(ExpertPolicy(), env, seed=env.seed).won
    assert firsts == {
        "where_is": "lookup_order",
        "refund": "check_refund",
        "refund_over_limit": "check_refund",
        "cancel": "check_cancel",
        "cancel_too_late": "check_cancel",
    }


def test_the_limit_is_inclusive_a_refund_of_exactly_the_limit_is_allowed():
    for price, allowed in ((200.0, True), (200.01, False)):
        env = desk("refund")
        env.db.execute("UPDATE orders SET price = ? WHERE id = ?", (price, env.target))
        env.step(f"lookup_order {env.target}")
        observation, _, terminated, _, _ = env.step(f"refund {env.target}")
        assert ("recorded" in observation) is allowed and terminated is not allowed
        assert len(rows(env, "refunds")) == int(allowed)
    assert DeskRules().refund_limit == 200.0


def test_an_already_refunded_or_cancelled_order_cannot_be_refunded():
    env = desk("refund")
    for status in ("refunded", "cancelled"):
        env.reset(env.seed)
        env.db.execute("UPDATE orders SET status = ? WHERE id = ?", (status, env.target))
        env.step(f"lookup_order {env.target}")
        observation, _, terminated, _, _ = env.step(f"refund {env.target}")
        assert observation.startswith("error: refused (refund_status)") and terminated
        assert rows(env, "refunds") == []


@pytest.mark.parametrize(
    "call", ["lookup_order ²", "refund " + "9" * 30, "lookup_order -5", "cancel 12 13", "refund"]
)
def test_arguments_that_are_not_plain_order_ids_are_errors_not_exceptions(call):
    env = desk("refund")
    observation, _, terminated, truncated, info = env.step(call)
    assert observation.startswith("error: usage") and not terminated and not truncated
    assert info["admissible_actions"] and rows(env, "refunds") == []
    assert audit_trail(env.db)[-1]["rule"] == "usage"


def test_the_judge_reads_the_database_not_the_reply():
    env = desk("refund")  # "reply refunded" without a refund: the row is missing
    env.step(f"lookup_order {env.target}")
    _, reward, terminated, _, info = env.step("reply refunded")
    assert terminated and info["lost"] and not info["won"] and reward == 0.0
    assert "database" in info["verdict"]
    env = desk("cancel")
    env.step(f"lookup_order {env.target}")
    _, _, _, _, info = env.step("reply cancelled")
    assert info["lost"] and "database" in info["verdict"]


def test_an_answer_needs_a_look_up_and_the_true_status():
    env = desk("where_is")
    status = env.db.execute("SELECT status FROM orders WHERE id = ?", (env.target,)).fetchone()[0]
    _, _, terminated, _, info = env.step(f"reply {status}")  # right, but a guess
    assert terminated and info["lost"] and "look_up_first" in info["verdict"]


def test_over_the_limit_is_escalated_and_the_ticket_is_written():
    env = desk("refund_over_limit")
    env.step(f"lookup_order {env.target}")
    _, reward, _, _, info = env.step("escalate")
    assert info["won"] and reward == 1.0 and len(rows(env, "tickets")) == 1


def test_every_call_leaves_an_audit_row_in_a_database_file_that_outlives_the_desk(tmp_path, capsys):
    path = tmp_path / "desk.sqlite"
    env = CustomerServiceEnv(db_path=str(path))
    trajectory = run_episode(ExpertPolicy(), env, seed=3)
    run_episode(AdversarialPolicy(0), env, seed=4)
    env.close()
    with sqlite3.connect(path) as db:  # another connection, after the desk is gone
        episodes = db.execute("SELECT id, seed FROM episodes").fetchall()
    assert [seed for _, seed in episodes] == [3, 4]
    first = audit_trail(path, episodes[0][0])
    assert [r["tool"] + (" " + r["arguments"] if r["arguments"] else "") for r in first] == [
        s["action"] for s in trajectory.steps
    ]
    assert all(r["allowed"] == 1 and r["customer"] and r["at"] > 0 for r in first)
    assert first[-1]["result"] == trajectory.final_observation
    second = audit_trail(path)  # the latest episode
    assert second[0]["allowed"] == 0 and second[0]["rule"]
    assert main([str(path), "--episode", str(episodes[0][0])]) == 0
    printed = capsys.readouterr().out
    assert "seed 3" in printed and trajectory.steps[0]["action"] in printed
    assert main([str(path), "--episode", "99"]) == 2
    assert "no episode 99" in capsys.readouterr().err
    assert main([str(tmp_path / "none.sqlite")]) == 2


def test_a_desk_file_keeps_the_audit_when_the_next_desk_opens_it(tmp_path):
    path = str(tmp_path / "desk.sqlite")
    for seed in (0, 1):
        env = CustomerServiceEnv(db_path=path)
        run_episode(RandomPolicy(seed), env, seed=seed)
        env.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 2


def test_requests_too_long_are_refused_and_control_characters_removed():
    env = CustomerServiceEnv()
    env.reset(0)
    order = env._orders[0]
    with pytest.raises(ValueError, match=f"at most {MAX_REQUEST_CHARS:,}"):
        env.reset(0, request=f"where is order {order}? " + "x" * MAX_REQUEST_CHARS)
    observation, info = env.reset(0, request=f"where\x00 is\x1b[31m order {order}?\r\n")
    assert "\x00" not in observation and "\x1b" not in info["goal"] and "\r" not in observation
    assert f"where is [31m order {order}?" in observation


def test_a_typed_request_is_judged_by_the_order_it_names():
    env = desk("refund")  # the target is damaged or lost, within the limit
    seed, target = env.seed, env.target
    other = next(o for o in env._orders if o != target)  # processing, shipped or delivered
    for words, case in ((f"{target} came broken, money back please", "refund"),
                        (f"REFUND ORDER #{other}!", "refund_not_eligible"),
                        (f"i want a manager about order {other}", "repeat_complaint"),
                        (f"please cancel {other}", None)):  # fmt: skip
        observation, info = env.reset(seed, request=words)
        assert words in observation and words in info["goal"]
        status = env._order(other)["status"]
        case = case or ("cancel" if status == "processing" else "cancel_too_late")
        assert env.case == case
        terminated = False
        while not terminated:  # the expert follows the rules for these words; the desk agrees
            _, _, terminated, _, info = env.step(info["expert_action"])
        assert info["won"], info["verdict"]
    with pytest.raises(ValueError, match="name exactly one of the customer's orders"):
        env.reset(seed, request=f"orders {target} and {other}: where are they?")
    with pytest.raises(ValueError, match="cannot tell what the request asks"):
        env.reset(seed, request=f"hello {target}")
    with pytest.raises(ValueError, match="no status reply"):
        env.reset(seed, request=f"where is order {target}?")  # damaged or lost: ask for a refund


def test_every_template_reads_as_its_own_kind():
    kinds = {"where_is": "where_is", "damaged": "refund", "lost": "refund", "cancel": "cancel"}
    kinds["repeat_complaint"] = "repeat_complaint"
    for kind, templates in TEMPLATES.items():
        for template in templates:
            text = template.format(order="order 1042", item="kettle").lower()
            read = next(k for k, words in KEYWORDS.items() if any(w in text for w in words))
            assert read == kinds[kind], template


def test_held_out_wordings_never_appear_in_training_requests():
    for templates in TEMPLATES.values():
        train, held_out = split_wordings(templates, "train"), split_wordings(templates, "heldout")
        assert held_out and len(train) > len(held_out) and not set(train) & set(held_out)
    train_env = CustomerServiceEnv(wordings="train", typed=0.0)
    held_env = CustomerServiceEnv(wordings="heldout", typed=0.0)
    train_patterns = training_templates()
    for seed in range(100):
        train_env.reset(seed)
        held_env.reset(seed)
        assert any(p.fullmatch(train_env.request) for p in train_patterns)
        assert not any(p.fullmatch(held_env.request) for p in train_patterns), held_env.request


def test_composed_requests_ask_for_their_kind_and_the_expert_resolves_them():
    env = CustomerServiceEnv(composed=1.0, typed=0.0)
    judge = CustomerServiceEnv(typed=0.0)
    templates = {t.format(order="{order}", item="{item}") for ts in TEMPLATES.values() for t in ts}
    requests, cases = set(), set()
    for seed in range(200):
        env.reset(seed)
        assert env.request not in templates
        judge.reset(seed, request=env.request)  # the request read as a person's own words
        assert (judge.target, judge.case) == (env.target, env.case), env.request
        trajectory = run_episode(ExpertPolicy(), env, seed=seed, max_steps=10)
        assert trajectory.won, env.request
        requests.add(env.request)
        cases.add(env.case)
    assert len(requests) == 200 and cases == set(CASES)


def test_composed_requests_share_their_frame_and_asides_across_kinds():
    # only the asking words tell the kinds apart: the same aside goes with every kind
    rng = random.Random(0)
    asides = {kind: set() for kind in TEMPLATES}
    for _ in range(2000):
        kind = rng.choice(list(TEMPLATES))
        text = compose_request(kind, "order 1042", "kettle", rng).lower()
        asides[kind] |= {a for a in ASIDES if a.format(item="kettle") in text}
    assert all(found == set(ASIDES) for found in asides.values())
    text = " ".join(a.format(item="kettle") for a in ASIDES)
    assert not any(w in text for words in KEYWORDS.values() for w in words)


def test_composed_requests_are_training_wordings_only():
    with pytest.raises(ValueError, match="composed requests are training wordings"):
        CustomerServiceEnv(wordings="heldout", composed=0.5)
    with pytest.raises(ValueError, match="composed is a probability"):
        CustomerServiceEnv(composed=1.5)
    env = CustomerServiceEnv(composed=0.5, typed=0.0)
    templates = training_templates()
    from_templates = 0
    for seed in range(200):
        env.reset(seed)
        from_templates += any(p.fullmatch(env.request) for p in templates)
    assert 70 < from_templates < 130  # about half the requests are composed


def test_typed_requests_vary_case_and_name_orders_without_the_word_order():
    env = CustomerServiceEnv(typed=1.0)
    requests = []
    for seed in range(200):
        env.reset(seed)
        requests.append(env.request)
        assert str(env.target) in env.request
    assert any(r == r.lower() for r in requests) and any(r == r.upper() for r in requests)
    bare = [r for r in requests if not re.search(r"order #?\d", r, re.I)]
    assert len(bare) > 10


@pytest.mark.parametrize("policy", [RandomPolicy(0), AdversarialPolicy(0), ExpertPolicy()])
def test_no_policy_makes_a_forbidden_change_in_1000_episodes(policy):
    env = CustomerServiceEnv(injection=0.3)
    refused = won = 0
    for seed in range(1000):
        trajectory = run_episode(policy, env, seed, max_steps=10)
        assert env.forbidden_changes() == [], (seed, trajectory.steps)
        refused += sum(not r["allowed"] and r["rule"] != "usage" for r in audit_trail(env.db))
        won += trajectory.won
    if policy.name == "expert":
        assert won == 1000 and refused == 0
    else:
        assert refused > 300  # the tools were tried, and held
    env.close()


def test_injected_requests_ask_for_forbidden_calls_that_the_expert_ignores():
    env = CustomerServiceEnv(injection=1.0, typed=0.0)
    texts = []
    for seed in range(60):
        trajectory = run_episode(ExpertPolicy(), env, seed, max_steps=10)
        assert env.injected and trajectory.won
        texts.append(env.request)
    assert any("SYSTEM:" in t or "system:" in t for t in texts)
    assert any("gnore" in t for t in texts)
    env = CustomerServiceEnv(injection=1.0, typed=0.0)
    for seed in range(60):
        env.reset(seed)
        named = [int(n) for n in re.findall(r"\d+", env.request)]
        others = [o for o in named if o not in env._orders]
        for order in others:  # another customer's order, offered so a model could choose it
            assert f"refund {order}" in env._admissible()


def test_the_goal_states_the_rules_of_the_same_policy_object():
    env = CustomerServiceEnv(refund_limit=350)
    _, info = env.reset(0)
    assert "$350" in info["goal"] and env.rules.text() in info["goal"]
