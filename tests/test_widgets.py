"""The interactive demos, driven as a person would: set widget values, click buttons, read the
bars drawn."""

import pytest
import torch
from conftest import drawn_bars

from labkit.agents.baselines import AdversarialPolicy, ExpertPolicy, RandomPolicy
from labkit.agents.calendar_assistant import CalendarEnv
from labkit.agents.core import InvalidActionError
from labkit.agents.customer_service import CustomerServiceEnv
from labkit.agents.policies import LMPolicy, LSTMScorer
from labkit.model import LSTMLanguageModel, ModelConfig
from labkit.tokenizer import train_tokenizer
from labkit.widgets import AgentDemo, ServiceChat


def _lm_policy():
    tokenizer = train_tokenizer("char", "abcdefghijklmnopqrstuvwxyz0123456789 _:.>\n")
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=16, num_layers=1)
    return LMPolicy(LSTMScorer(LSTMLanguageModel(cfg), tokenizer))


@pytest.fixture
def demo():
    envs = {"customer_service": CustomerServiceEnv, "calendar": CalendarEnv}
    policies = {"expert": ExpertPolicy(), "random": RandomPolicy(seed=0), "lm": _lm_policy()}
    return AgentDemo(envs, policies, seed=3)


def _bars(chart):
    """The bars the chart draws: (actions, probabilities), read from its HTML, which must agree
    with what it was asked to show."""
    drawn = drawn_bars(chart.value)
    assert [(a, p) for a, p, _ in drawn] == [(a, pytest.approx(p)) for a, p in chart.probs.items()]
    return [a for a, _, _ in drawn], [p for _, p, _ in drawn]


def _highlighted(chart):
    """The actions drawn highlighted (the chosen one's bar)."""
    return [a for a, _, chosen in drawn_bars(chart.value) if chosen]


def test_the_chart_shows_the_chosen_policys_distribution(demo):
    assert demo.trajectory.env == "customer_service" and demo.trajectory.seed == 3
    assert _bars(demo.chart) == ([demo.info["expert_action"]], [1.0])
    demo.policy_name.value = "lm"
    actions, probs = _bars(demo.chart)
    assert actions == demo.info["admissible_actions"]
    assert sum(probs) == pytest.approx(1.0)
    assert demo.override.value == demo.pending.action == actions[probs.index(max(probs))]
    assert _highlighted(demo.chart) == [demo.pending.action] == [demo.chart.chosen]
    before = _bars(demo.chart)
    demo.step(demo.info["expert_action"])  # a safe call, overriding the untrained model
    assert _bars(demo.chart) != before  # the next decision's bars replace these
    assert _bars(demo.chart)[0] == demo.info["admissible_actions"]
    assert _highlighted(demo.chart) == [demo.pending.action]


def test_step_override_and_run_play_the_episode(demo):
    first = demo.info["expert_action"]
    demo.step_button.click()
    assert demo.trajectory.num_steps == 1 and demo.trajectory.steps[0]["action"] == first
    assert first in demo.transcript.value
    agent_choice = demo.pending.action
    other = next(a for a in demo.info["admissible_actions"] if a != agent_choice)
    demo.override.value = other
    demo.override_button.click()
    step = demo.trajectory.steps[1]
    assert step["action"] == other and f"the agent chose {agent_choice!r}" in step["note"]
    demo.run_button.click()
    assert demo.done and demo.step_button.disabled and demo.override.options == ()
    assert demo.trajectory.outcome in ("won", "lost", "truncated")
    assert demo.trajectory.outcome in demo.status.value
    assert _bars(demo.chart) == ([], [])


def test_expert_run_wins_and_reset_moves_to_the_next_game(demo):
    demo.run_button.click()
    assert demo.trajectory.won
    demo.reset_button.click()
    assert demo.trajectory.seed == 4 and demo.trajectory.num_steps == 0 and not demo.done
    assert len(demo.trajectories) == 2  # the finished episode is kept


def test_choosing_another_environment_starts_it(demo):
    demo.env_name.value = "calendar"
    assert demo.trajectory.env == "calendar"
    assert demo.override.options == tuple(demo.info["admissible_actions"])
    assert "calendar" in demo.status.value


def test_an_action_outside_the_admissible_set_is_refused(demo):
    with pytest.raises(InvalidActionError, match="not admissible now"):
        demo.step("fly to the moon")
    assert demo.trajectory.num_steps == 0


def test_chat_runs_an_episode_from_the_typed_request():
    chat = ServiceChat(ExpertPolicy(), seed=5)
    assert chat.request.value and "Your orders" in chat.orders.value
    chat.send_button.click()  # the suggested request: judged by the desk
    trajectory = chat.trajectories[-1]
    assert trajectory.won
    assert "Customer:" in chat.conversation.value and "Tool:" in chat.conversation.value
    assert _bars(chat.chart) == ([trajectory.steps[-1]["action"]], [1.0])
    assert _highlighted(chat.chart) == [trajectory.steps[-1]["action"]]
    assert "Audit trail" in chat.audit.value  # every call of this conversation, and its verdict
    assert chat.audit.value.count("  allowed  ") == trajectory.num_steps  # the verdict column
    chat.new_button.click()
    assert _bars(chat.chart) == ([], []) and "no decision to show" in chat.chart.value


def test_chat_shows_a_refused_call_in_the_audit_trail():
    chat = ServiceChat(AdversarialPolicy(0), seed=5)
    trajectory = chat.send()
    assert trajectory.outcome == "lost" and "refused" in trajectory.final_observation
    assert "REFUSED (" in chat.audit.value
    assert chat.desk.forbidden_changes() == []


def test_chat_judges_the_typed_words_and_refuses_what_it_cannot_read():
    chat = ServiceChat(ExpertPolicy(), seed=5)
    env = CustomerServiceEnv()
    env.reset(5)
    order = env._orders[-1]
    chat.request.value = f"Please cancel order {order}."  # a request of the person's own
    trajectory = chat.send()
    assert f"Please cancel order {order}." in trajectory.goal
    assert trajectory.won  # the expert follows the rules for these words, and the desk agrees
    status = env._order(order)["status"]
    expected = f"cancel {order}" if status == "processing" else "reply cannot_cancel"
    assert expected in [s["action"] for s in trajectory.steps]
    env.close()
    for words, problem in (("Hello, can you check my last order?", "name exactly one"),
                           (f"I like order {order}.", "cannot tell what the request asks")):  # fmt: skip
        chat.request.value = words
        with pytest.raises(ValueError, match=problem):
            chat.send()
        assert "Desk:" in chat.conversation.value
    chat.request.value = "   "
    with pytest.raises(ValueError, match="request is empty"):
        chat.send()
    assert "Type a request first" in chat.conversation.value
    chat.new_button.click()
    assert chat.seed == 6 and chat.conversation.value == ""
