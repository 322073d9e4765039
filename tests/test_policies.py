"""Policies driven by a language model: prompt format, scoring, choice, fallbacks and bad input."""

import math

import pytest
import torch

from labkit.agents.policies import (
    ACTION_MARK,
    END_OF_ACTION,
    GenerativePolicy,
    LMPolicy,
    LSTMScorer,
    format_example,
    format_prompt,
    map_to_admissible,
)
from labkit.likelihood import score_continuations, sequence_loglik
from labkit.model import LSTMLanguageModel, ModelConfig
from labkit.tokenizer import train_tokenizer

ACTIONS = ["go north", "go south", "take coin", "look", "go"]
INFO = {"goal": "take the coin", "admissible_actions": ACTIONS}
HISTORY = [
    {"observation": "-= Hall =-\nAn exit to the north.", "action": "go north"},
    {"observation": "-= Attic =-\n\n\n   An exit to the south.  ", "action": "look"},
]
OBS = "-= Attic =-\nThere is a coin on the floor."


@pytest.fixture(scope="module")
def tokenizer():
    text = format_example(INFO["goal"], HISTORY, OBS, " ".join(ACTIONS)) + "xyz"
    return train_tokenizer("char", text)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_dim=32, num_layers=1)
    return LSTMLanguageModel(cfg).eval()


class FixedScorer:
    """A stand-in language model whose scores and written text are set by the test."""

    def __init__(self, scores, text=""):
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.text = text
        self.prompts = []

    def score(self, prompt, continuations):
        self.prompts.append(prompt)
        lengths = torch.tensor([len(c) + 1 for c in continuations], dtype=torch.float32)
        return self.scores[: len(continuations)], lengths

    def write(self, prompt, max_new_tokens, greedy, temperature, seed):
        self.prompts.append(prompt)
        return self.text


def test_prompt_shows_goal_recent_history_and_ends_where_the_action_begins():
    prompt = format_prompt("take the coin", HISTORY, OBS, history_steps=1)
    assert prompt.startswith("Goal: take the coin\n")
    assert prompt.endswith(f"There is a coin on the floor.\n{ACTION_MARK}")
    assert "go north" not in prompt  # only the last pair is shown
    assert "-= Attic =-\nAn exit to the south.\n> look\n" in prompt  # layout whitespace squeezed
    assert "Hall" in format_prompt("g", HISTORY, OBS, history_steps=2)
    assert "Attic" not in format_prompt("g", HISTORY, "here", history_steps=0)
    assert format_prompt("g", HISTORY, OBS, history_steps=5) == format_prompt("g", HISTORY, OBS)
    example = format_example("take the coin", HISTORY, OBS, "take coin", history_steps=1)
    assert example == prompt + "take coin" + END_OF_ACTION


def test_the_layout_switches_drop_the_goal_and_restate_the_last_action():
    prompt = format_prompt("take the coin", HISTORY, OBS, 0, show_goal=False, last_action=True)
    assert "Goal" not in prompt and "take the coin" not in prompt
    assert prompt.endswith(f"There is a coin on the floor.\nLast action: look\n{ACTION_MARK}")
    first = format_prompt("g", [], OBS, 0, last_action=True)
    assert first.startswith("Goal: g\n") and first.endswith(f"Last action: none\n{ACTION_MARK}")
    scorer = FixedScorer([0.0] * len(ACTIONS))
    policy = LMPolicy(scorer, history_steps=0, show_goal=False, last_action=True)
    policy.act(OBS, INFO, HISTORY)
    assert policy.last_prompt == format_prompt(
        INFO["goal"], HISTORY, OBS, 0, show_goal=False, last_action=True
    )


def test_the_goal_may_close_the_prompt_after_every_action_so_far():
    # Treasure Hunter's layout: where the agent is in the goal's list of instructions is how many
    # actions it has taken, read just before the goal that decides.
    prompt = format_prompt("go north, then take coin", HISTORY, OBS, 0, show_goal="bottom",
                           last_action="all")  # fmt: skip
    actions = ", ".join(step["action"] for step in HISTORY)
    assert prompt.endswith(
        f"on the floor.\nActions so far: {actions}\nGoal: go north, then take coin\n{ACTION_MARK}"
    )
    assert prompt.count("Goal:") == 1 and not prompt.startswith("Goal")
    first = format_prompt("g", [], OBS, 0, show_goal="bottom", last_action="all")
    assert first.endswith(f"Actions so far: none\nGoal: g\n{ACTION_MARK}")
    with pytest.raises(ValueError, match="show_goal must be"):
        format_prompt("g", [], OBS, show_goal="middle")
    with pytest.raises(ValueError, match="last_action must be"):
        format_prompt("g", [], OBS, last_action="some")


def test_the_goal_may_stand_above_the_actions_so_far_with_no_room_between():
    # Treasure Hunter's layout: the instructions, then the ones carried out, then the decision.
    prompt = format_prompt("go north, then take coin", HISTORY, OBS, 0, show_goal="top",
                           show_observation=False, last_action="all")  # fmt: skip
    actions = ", ".join(step["action"] for step in HISTORY)
    assert prompt == f"Goal: go north, then take coin\nActions so far: {actions}\n{ACTION_MARK}"
    assert "Attic" not in prompt
    first = format_prompt("g", [], OBS, 0, show_goal="top", show_observation=False,
                          last_action="all")  # fmt: skip
    assert first == f"Goal: g\nActions so far: none\n{ACTION_MARK}"
    with pytest.raises(ValueError, match="show_observation=False needs the goal shown"):
        format_prompt("g", [], OBS, show_goal=False, show_observation=False)


def test_with_the_whole_history_each_prompt_extends_the_previous_example():
    for i in range(len(HISTORY)):
        step = HISTORY[i]
        example = format_example("g", HISTORY[:i], step["observation"], step["action"])
        later = format_prompt("g", HISTORY[: i + 1], OBS)
        assert later.startswith(example) and later != example


def test_empty_prompt_is_a_clear_error(model, tokenizer):
    with pytest.raises(ValueError, match="prompt would be empty"):
        format_prompt("  ", [], "\n")
    with pytest.raises(ValueError, match="prompt is empty"):
        LSTMScorer(model, tokenizer).score("", ACTIONS)


def test_tokenizer_that_does_not_match_the_model_names_both_sizes(model):
    other = train_tokenizer("char", "abc")
    with pytest.raises(
        ValueError, match=rf"{other.vocab_size} tokens .* built for {model.config.vocab_size}"
    ):
        LSTMScorer(model, other)


def test_batched_scores_equal_scoring_each_action_alone(model, tokenizer):
    prompt = format_prompt(INFO["goal"], HISTORY, OBS)
    scores, lengths = LSTMScorer(model, tokenizer).score(prompt, ACTIONS)
    context = tokenizer.encode(prompt, bos=True)
    alone = [sequence_loglik(model, context, tokenizer.encode(a + END_OF_ACTION)) for a in ACTIONS]
    assert torch.allclose(scores, torch.tensor(alone), atol=1e-5)
    assert lengths.tolist() == [len(a) + 1 for a in ACTIONS]  # one char each, plus the newline


def test_policy_takes_the_action_the_model_makes_most_likely(model, tokenizer):
    policy = LMPolicy(LSTMScorer(model, tokenizer), history_steps=2)
    decision = policy.act(OBS, INFO, HISTORY)
    context = tokenizer.encode(format_prompt(INFO["goal"], HISTORY, OBS), bos=True)
    logp = score_continuations(
        model, context, [tokenizer.encode(a + END_OF_ACTION) for a in ACTIONS]
    )
    expected = torch.softmax(logp.double(), dim=0)
    assert list(decision.probs) == ACTIONS
    assert math.isclose(sum(decision.probs.values()), 1.0, rel_tol=1e-9)
    assert torch.allclose(torch.tensor(list(decision.probs.values()), dtype=torch.double), expected)
    assert decision.action == ACTIONS[int(logp.argmax())]
    assert policy.last_prompt == format_prompt(INFO["goal"], HISTORY, OBS)


def test_end_of_action_keeps_a_prefix_from_winning():
    # "go" is a prefix of "go north": without END_OF_ACTION, P("go") >= P("go north") always.
    scorer = FixedScorer([-1.0, -1.0])
    LMPolicy(scorer).act(OBS, {"goal": "g", "admissible_actions": ["go", "go north"]}, [])
    assert scorer.prompts[0].endswith(ACTION_MARK)


def test_temperature_and_length_normalisation_reshape_the_distribution():
    info = {"goal": "g", "admissible_actions": ["ab", "abcdefgh"]}  # lengths 3 and 9
    scores = [-3.0, -6.0]
    sharp = LMPolicy(FixedScorer(scores), temperature=0.5).act("o", info, []).probs
    flat = LMPolicy(FixedScorer(scores), temperature=2.0).act("o", info, []).probs
    assert sharp["ab"] > flat["ab"] > 0.5
    normed = LMPolicy(FixedScorer(scores), length_norm=True).act("o", info, [])
    assert normed.action == "abcdefgh"  # -6/9 per token beats -3/3
    assert normed.probs["abcdefgh"] == pytest.approx(1 / (1 + math.exp(-1 + 6 / 9)))


def test_sampling_is_seeded_and_follows_the_distribution():
    info = {"goal": "g", "admissible_actions": ["a", "b"]}
    scores = [math.log(0.8), math.log(0.2)]

    def draws(seed):
        policy = LMPolicy(FixedScorer(scores), greedy=False, seed=seed)
        return [policy.act("o", info, []).action for _ in range(400)]

    first = draws(1)
    assert first == draws(1)
    assert 0.7 < first.count("a") / 400 < 0.9


def test_zero_probability_everywhere_falls_back_to_uniform_with_a_note():
    info = {"goal": "g", "admissible_actions": ["a", "b", "c"]}
    decision = LMPolicy(FixedScorer([-math.inf, math.nan, -math.inf])).act("o", info, [])
    assert decision.action == "a"
    assert list(decision.probs.values()) == pytest.approx([1 / 3] * 3)
    assert "zero probability" in decision.note and "uniform" in decision.note


def test_mass_outside_the_admissible_set_is_noted_but_the_ranking_kept():
    info = {"goal": "g", "admissible_actions": ["a", "b"]}
    decision = LMPolicy(FixedScorer([-30.0, -20.0])).act("o", info, [])
    assert decision.action == "b"
    assert "of its probability on the admissible actions" in decision.note
    assert LMPolicy(FixedScorer([-0.1, -3.0])).act("o", info, []).note == ""


def test_no_admissible_actions_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="no admissible actions"):
        LMPolicy(FixedScorer([])).act("o", {"goal": "g", "admissible_actions": []}, [])
    with pytest.raises(ValueError, match="temperature must be above 0"):
        LMPolicy(FixedScorer([]), temperature=0)
    with pytest.raises(ValueError, match="history_steps"):
        LMPolicy(FixedScorer([]), history_steps=-1)


def test_map_to_admissible_states_its_rule():
    assert map_to_admissible("  Take   COIN ", ACTIONS) == ("take coin", "")
    action, note = map_to_admissible("tak coin", ACTIONS)
    assert action == "take coin" and "'tak coin'" in note and "similarity" in note
    action, note = map_to_admissible("", ["look", "go"])
    assert action == "look" and "generated no text" in note  # ties go to the first listed
    with pytest.raises(ValueError, match="no admissible actions"):
        map_to_admissible("look", [])


def test_generative_policy_maps_invalid_text_and_records_it():
    policy = GenerativePolicy(FixedScorer([], text="tak coin"))
    decision = policy.act(OBS, INFO, HISTORY)
    assert decision.action == "take coin"
    assert "mapped to 'take coin'" in decision.note
    assert policy.last_prompt == format_prompt(INFO["goal"], HISTORY, OBS)
    exact = GenerativePolicy(FixedScorer([], text="go south")).act(OBS, INFO, HISTORY)
    assert (exact.action, exact.note) == ("go south", "")


def test_generative_policy_with_an_lstm_always_returns_an_admissible_action(model, tokenizer):
    policy = GenerativePolicy(LSTMScorer(model, tokenizer), max_new_tokens=12, greedy=False)
    for _ in range(3):
        decision = policy.act(OBS, INFO, HISTORY)
        assert decision.action in ACTIONS
        assert decision.note == "" or "mapped to" in decision.note


def test_values_are_read_by_reference_the_same_in_prompt_and_actions():
    from labkit.agents.policies import by_reference

    prompt = 'Ana writes: "Where is my order 7972? Also 5123." order 7972: status shipped'
    actions = ["lookup_order 7972", "lookup_order 5123", "lookup_order 8001", "escalate"]
    read, candidates, written = by_reference(prompt, actions, r"\b\d{4,}\b")
    assert "7972" not in read and read.count("value_a") == 2 and "value_b" in read
    assert candidates == ["lookup_order value_a", "lookup_order value_b", "lookup_order 8001",
                          "escalate"]  # fmt: skip
    assert written == {"value_a": "7972", "value_b": "5123"}
    read, candidates, _ = by_reference("Move Friday 10:30 to friday", ["move friday 10:30"],
                                       r"\b\d\d:\d\d\b|\bfriday\b")  # fmt: skip
    assert read == "Move value_a value_b to value_a" and candidates == ["move value_a value_b"]
    assert by_reference(prompt, actions, "") == (prompt, actions, {})
    # Named groups type the placeholders, counted per type: the day stays day_a whatever the
    # order in which a request names things.
    typed = r"(?P<time>\b\d\d:\d\d\b)|\b(?P<day>monday|friday)\b"
    read, candidates, written = by_reference("At 10:30 or 11:00 on Friday, not Monday",
                                             ["move friday 11:00", "move monday 09:00"], typed)  # fmt: skip
    assert read == "At time_a or time_b on day_a, not day_b"
    assert candidates == ["move day_a time_b", "move day_b 09:00"]
    assert written == {"time_a": "10:30", "time_b": "11:00", "day_a": "Friday", "day_b": "Monday"}


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("Book half an hour with Ana", "Book 30 minutes with Ana"),
        ("a free half-hour slot", "a free 30-minute slot"),
        ("a half hour call", "30 minutes call"),
        ("a one-hour meeting", "a 60-minute meeting"),
        ("my first hour-long gap", "my first 60-minute gap"),
        ("I need an hour", "I need 60 minutes"),
        ("thirty minutes, or 1 hour", "30 minutes, or 60 minutes"),
        ("2 hours; 45 mins; (30 min)", "120 minutes; 45 minutes; (30 minutes)"),
        ("a 30-minute slot, 60 minutes free", "a 30-minute slot, 60 minutes free"),
        ("Hour by hour, on the hour", "Hour by hour, on the hour"),  # no length: unchanged
    ],
)
def test_lengths_of_time_are_read_as_minutes_however_spelt(written, read):
    from labkit.agents.policies import in_minutes

    assert in_minutes(written) == read


def test_read_minutes_writes_the_whole_prompt_in_minutes_and_the_calendar_reads_it_by_reference():
    from labkit.agents.policies import by_reference
    from labkit.agents.recipes import CALENDAR_VALUES

    history = [{"observation": "Good morning, book half an hour with Ana on Friday afternoon.",
                "action": "free_slots friday 30 afternoon"}]  # fmt: skip
    answer = "friday afternoon, free for 30 minutes at: 13:00"
    plain = format_prompt("", history, answer, 0, show_request="bottom")
    assert "half an hour" in plain
    prompt = format_prompt("", history, answer, 0, show_request="bottom", read_minutes=True)
    assert prompt == plain.replace("half an hour", "30 minutes")
    read, candidates, _ = by_reference(prompt, ["schedule friday 13:00 30 ana"], CALENDAR_VALUES)
    # the length is one placeholder in the request, the answer and the call: chosen, not spelt;
    # "Good morning" greets, so the afternoon is the request's only half of the day (window_a)
    assert "book length_a minutes with person_a on day_a window_a" in read
    assert "Good morning" in read and "window_b" not in read
    assert candidates == ["schedule day_a time_a length_a person_a"]


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("Where is #4085?", "Where is order 4085?"),
        ("ORDER #4085 ARRIVED BROKEN", "order 4085 ARRIVED BROKEN"),
        ("complained twice about 4085", "complained twice about order 4085"),
        ("ordr 4085 and odrer # 5120", "order 4085 and order 5120"),  # a word one typo away
        ("cancel order 4085 now", "cancel order 4085 now"),  # already so: unchanged
        ("it cost $263.94 on 03/12", "it cost $263.94 on 03/12"),  # no id: fewer than 4 digits
    ],
)
def test_order_references_in_a_customers_words_are_read_as_order_and_id(written, read):
    from labkit.agents.policies import name_orders

    assert name_orders(f'Ana (customer 4) writes: "{written}"') == (
        f'Ana (customer 4) writes: "{read}"'
    )


def test_read_orders_changes_the_customers_words_only_and_every_form_reads_the_same():
    from labkit.agents.policies import by_reference
    from labkit.agents.recipes import ORDER_IDS

    answer = "order 4085 (customer 4, Ana Silva): desk lamp, $31.50, status delivered"
    read = set()
    for form in ("order 4085", "order #4085", "#4085", "4085"):
        request = f'Ana Silva (customer 4) writes: "My {form} arrived broken."'
        history = [{"observation": request, "action": "check_refund 4085"}]
        options = {"show_request": "top", "last_action": True, "show_goal": False}
        plain = format_prompt("", history, answer, 0, **options)
        prompt = format_prompt("", history, answer, 0, **options, read_orders=True)
        assert prompt == plain.replace(f"My {form} arrived", "My order 4085 arrived")
        assert answer in prompt and "Last action: check_refund 4085" in prompt  # not the quote's
        read.add(by_reference(prompt, ["refund 4085"], ORDER_IDS)[0])
    assert len(read) == 1 and "My order value_a arrived broken." in read.pop()


def test_read_twice_writes_the_request_twice_before_the_first_call_only():
    request = 'Ana Silva (customer 4) writes: "Where is my order 4085?"'
    options = {"show_request": "top", "last_action": True, "show_goal": False}
    first = format_prompt("", [], request, 0, **options, read_twice=True)
    assert first == f"{request}\n{request}\nLast action: none\n> "
    assert format_prompt("", [], request, 0, **options) == f"{request}\nLast action: none\n> "
    answer = "order 4085 (customer 4, Ana Silva): desk lamp, $31.50, status shipped"
    history = [{"observation": request, "action": "lookup_order 4085"}]
    later = format_prompt("", history, answer, 0, **options, read_twice=True)
    assert later == format_prompt("", history, answer, 0, **options)  # the request on top, once
    assert later.count("Where is my order") == 1


def test_a_policy_reading_values_by_reference_chooses_among_the_original_actions():
    class PrefersA:
        def score(self, prompt, continuations):
            logp = torch.tensor([0.0 if "value_a" in c else -5.0 for c in continuations])
            return logp, torch.ones(len(continuations))

    policy = LMPolicy(PrefersA(), history_steps=0, values=r"\b\d{4,}\b")
    info = {"goal": "g", "admissible_actions": ["lookup_order 5123", "lookup_order 7972"]}
    decision = policy.act("Where is order 7972?", info, [])
    assert decision.action == "lookup_order 7972" and set(decision.probs) == set(
        info["admissible_actions"]
    )
    assert "value_a" in policy.last_prompt and "7972" not in policy.last_prompt


def test_a_misspelt_layout_switch_is_refused_with_the_switches_there_are():
    with pytest.raises(TypeError, match="shw_goal: no prompt layout switch.*show_goal"):
        LMPolicy(FixedScorer([]), shw_goal=False)
    assert GenerativePolicy(FixedScorer([]), read_twice=True).prompt_options["read_twice"]
