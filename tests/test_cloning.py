"""Behaviour cloning end to end on a tiny corridor game: expert -> transcripts -> LSTM -> agent."""

import pytest
from conftest import Corridor

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.cloning import (
    agent_config,
    clone_expert,
    encode_examples,
    example_segments,
    examples,
    expert_episodes,
    load_agent,
)
from labkit.agents.harness import evaluate, run_episode
from labkit.agents.policies import LAYOUT_DEFAULTS, LMPolicy, format_prompt
from labkit.batching import batchify
from labkit.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def cloned(tmp_path_factory):
    episodes = expert_episodes(Corridor(), range(12))
    config = agent_config(
        run_dir=str(tmp_path_factory.mktemp("runs")), name="corridor", embed_dim=16,
        hidden_dim=64, batch_size=16, bptt=32, lr=2e-2, max_steps=120, eval_every=40,
        device="cpu", seed=0,
    )  # fmt: skip
    policy, history = clone_expert(episodes, config, history_steps=1)
    return policy, history, config


def test_transcripts_are_the_prompts_the_policy_acts_on():
    episode = run_episode(ExpertPolicy(), Corridor(), 0)
    texts = examples(episode, history_steps=1)
    assert len(texts) == episode.num_steps == 3  # two moves east, then the coin
    second = episode.steps[1]
    prompt = format_prompt(episode.goal, episode.steps[:1], second["observation"], 1)
    assert texts[1] == prompt + "go east\n"
    (whole,) = examples(episode)  # the whole history: one text holds every decision
    assert whole.count("\n> ") == episode.num_steps and whole.endswith("> take coin\n")
    assert all(
        whole.startswith(format_prompt(episode.goal, episode.steps[:i], s["observation"]))
        for i, s in enumerate(episode.steps)
    )
    tokenizer = train_tokenizer("char", "".join(texts))
    stream, _ = encode_examples(example_segments(episode, history_steps=1), tokenizer)
    assert (stream == tokenizer.bos_id).sum() == len(texts)  # each example opens with <bos>


@pytest.mark.parametrize("history_steps", [None, 1])
@pytest.mark.parametrize("kind", ["char", "word"])
def test_the_target_mask_marks_exactly_the_expert_actions(history_steps, kind):
    episode = run_episode(ExpertPolicy(), Corridor(), 2)  # 4 moves east, then the coin
    segments = example_segments(episode, history_steps)
    texts = examples(episode, history_steps)
    tokenizer = train_tokenizer(kind, "".join(texts))
    ids, mask = encode_examples(segments, tokenizer)
    # Encoding the pieces apart gives the tokens of the whole texts: nothing shifts at a seam.
    assert ids.tolist() == [i for text in texts for i in tokenizer.encode(text, bos=True)]
    actions = "".join(s["action"] + "\n" for s in episode.steps)
    learnt = tokenizer.decode(ids[mask].tolist())
    assert learnt.split() == actions.split()  # each action (and its newline) once, nothing else


@pytest.mark.parametrize("block", [48, 96])
def test_packed_examples_never_straddle_a_training_window(block):
    # Truncated backpropagation cuts the gradient at each window: an action in the window after
    # its prompt's words would be learnt without them. Packed, every text lies inside one window
    # (a text longer than a block runs on across windows, as it does unpacked).
    episodes = [run_episode(ExpertPolicy(), Corridor(), seed) for seed in range(4)]
    segments = [e for episode in episodes for e in example_segments(episode, history_steps=1)]
    tokenizer = train_tokenizer("char", "".join(t for e in segments for t, _ in e))
    ids, mask = encode_examples(segments, tokenizer, block=block, rows=3)
    plain_ids, plain_mask = encode_examples(segments, tokenizer)
    assert ids[mask].tolist() == plain_ids[plain_mask].tolist()  # the same targets, in order
    inputs, _ = batchify(ids, 3, mask=mask)
    assert inputs.size(1) % block == 0  # each stream a whole number of windows
    starts = (ids == tokenizer.bos_id).nonzero().flatten().tolist()
    lengths = [len(tokenizer.encode("".join(t for t, _ in e), bos=True)) for e in segments]
    assert len(starts) == len(segments) and any(n > block // 2 for n in lengths)
    for start, length in zip(starts, lengths, strict=True):
        if length <= block:
            assert start // block == (start + length - 1) // block  # one window
    # Where no text fits in a block, packing has nothing to do: the stream is left as it is.
    assert encode_examples(segments, tokenizer, block=min(lengths) - 1, rows=3)[0].equal(plain_ids)


def test_only_won_expert_episodes_are_kept():
    episodes = expert_episodes(Corridor(), range(3), max_steps=2)  # too short to reach the coin
    assert episodes == []


def test_cloned_agent_beats_the_random_policy(cloned):
    policy, history, _ = cloned
    assert isinstance(policy, LMPolicy) and policy.history_steps == 1
    # The validation loss is over the held-out actions only, and falls as they are learnt.
    assert history[-1]["val_loss"] < 0.2 * history[0]["val_loss"]
    seeds = range(100, 112)  # unseen seeds
    # The rooms look alike, so the loop detector (same observation and action) is off.
    agent = evaluate(policy, Corridor, seeds, max_steps=10, loop_k=0)
    chance = evaluate(RandomPolicy(seed=0), Corridor, seeds, max_steps=10, loop_k=0)
    assert agent.success_rate >= 0.9 > chance.success_rate


def test_the_trained_agent_loads_back_from_its_run_folder(cloned):
    policy, _, config = cloned
    again = load_agent(config.run_path)
    obs, info = Corridor().reset(1)
    assert again.history_steps == policy.history_steps
    assert again.act(obs, info, []).probs == pytest.approx(policy.act(obs, info, []).probs)


def test_a_layout_with_the_last_action_gives_one_text_per_decision(tmp_path):
    episode = run_episode(ExpertPolicy(), Corridor(), 1)
    options = {"show_goal": False, "last_action": True}
    texts = examples(episode, None, **options)  # whole history, yet one text per decision
    assert len(texts) == episode.num_steps
    assert texts[1].endswith("Last action: go east\n> go east\n") and "Goal" not in texts[1]
    config = agent_config(
        run_dir=str(tmp_path), name="layout", embed_dim=8, hidden_dim=16, batch_size=4, bptt=16,
        max_steps=4, eval_every=2, device="cpu",
    )  # fmt: skip
    policy, _ = clone_expert(expert_episodes(Corridor(), range(4)), config, 1, **options)
    again = load_agent(config.run_path)
    assert (
        policy.prompt_options
        == again.prompt_options
        == {**LAYOUT_DEFAULTS, **options}  # every switch kept, the defaults filled in
    )
    obs, info = Corridor().reset(1)
    again.act(obs, info, [])
    assert again.last_prompt == "A corridor.\nLast action: none\n> "


def test_bad_cloning_input_is_explained(tmp_path):
    with pytest.raises(ValueError, match="at least two expert episodes"):
        clone_expert(expert_episodes(Corridor(), [0]))
    with pytest.raises(FileNotFoundError, match="not a behaviour-cloning run"):
        load_agent(tmp_path)


def test_train_agent_uses_the_environments_recipe(tmp_path):
    from labkit.agents.cloning import train_agent
    from labkit.agents.recipes import RECIPES

    recipe = RECIPES["calendar"]
    agent, history = train_agent(
        "calendar", run_dir=str(tmp_path), episodes=6, max_steps=4, eval_every=2
    )
    assert history[-1]["step"] == 4
    assert agent.history_steps == recipe.history_steps
    layout = {**agent.prompt_options, "values": agent.values}
    assert all(layout[k] == v for k, v in recipe.prompt.items())
    assert agent.scorer.tokenizer.kind == recipe.train["tokenizer"]
    again = load_agent(tmp_path / "agent-calendar")
    assert again.prompt_options == agent.prompt_options
    with pytest.raises(ValueError, match="recipes exist for"):
        train_agent("chess")


def test_no_recipe_trains_on_the_seeds_it_is_evaluated_on():
    from labkit.agents.recipes import RECIPES

    for recipe in RECIPES.values():
        train, evaluation = set(recipe.train_seeds()), set(recipe.eval_seeds())
        assert train and evaluation and not train & evaluation, recipe.env


def test_train_env_args_reach_the_experts_episodes_and_no_evaluation(tmp_path, monkeypatch):
    import dataclasses

    from labkit.agents import cloning, recipes

    recipe = dataclasses.replace(
        recipes.RECIPES["customer_service"], train_env_args={"composed": 1.0}
    )
    monkeypatch.setitem(recipes.RECIPES, "customer_service", recipe)
    [(_, training)] = recipe.training_envs()
    [(_, evaluation)] = recipe.make_envs(recipe.eval_levels)
    assert (training.composed, evaluation.composed) == (1.0, 0.0)
    played_on = []  # the environments train_agent plays the expert on
    play = cloning.expert_episodes
    monkeypatch.setattr(
        cloning, "expert_episodes", lambda env, *a: played_on.append(env) or play(env, *a)
    )
    monkeypatch.setattr(cloning, "clone_expert", lambda episodes, *a, **k: (episodes, []))
    episodes, _ = cloning.train_agent("customer_service", run_dir=str(tmp_path), episodes=5)
    assert [env.composed for env in played_on] == [1.0]
    assert len(episodes) == 5 and all(t.won for t in episodes)


def test_the_desk_learns_from_composed_requests_and_is_judged_on_templates_only():
    from labkit.agents.recipes import recipe_for

    recipe = recipe_for("customer_service")
    [(_, training)] = recipe.training_envs()
    splits = ({}, {"wordings": "heldout", "typed": 1.0}, {"injection": 1.0})
    evaluations = [recipe.make_envs((), **args)[0][1] for args in splits]
    assert training.composed > 0 and training.wordings == "train"
    assert [env.composed for env in evaluations] == [0.0, 0.0, 0.0]


def test_examples_read_values_as_the_policy_does_and_need_one_text_per_decision():
    from labkit.agents.registry import make_env

    episode = run_episode(ExpertPolicy(), make_env("customer_service"), seed=3)
    texts = examples(episode, 0, values=r"\b\d{4,}\b", last_action=True)
    assert all("value_a" in t for t in texts)
    assert texts[0].endswith(f"> {episode.steps[0]['action'].split()[0]} value_a\n")
    with pytest.raises(ValueError, match="each decision is a text of its own"):
        examples(episode, None, values=r"\d+")


def test_word_dropout_blanks_a_customers_words_and_nothing_else():
    import random
    import re

    from labkit.agents.cloning import blank_words
    from labkit.agents.recipes import RECIPES
    from labkit.agents.registry import make_env

    recipe = RECIPES["customer_service"]
    episode = run_episode(ExpertPolicy(), make_env("customer_service"), seed=3)
    texts = example_segments(episode, recipe.history_steps, **recipe.prompt)
    assert blank_words(texts[1], 0.0, random.Random(0)) == texts[1]
    blanked = blank_words(texts[1], 0.999, random.Random(0))
    quote = re.compile(r'writes: "(.*)"')
    for (text, is_action), (before, _) in zip(blanked, texts[1], strict=True):
        if is_action:
            assert text == before  # the action to learn is never blanked
            continue
        words = quote.search(text)[1]
        kept = {w for w in re.findall(r"<unk>|[^\W\d]+(?:'[^\W\d]+)*", words) if "'" not in w}
        assert kept <= {"<unk>", "value_a"}  # "order" of "order value_a" too
        assert quote.sub("", text) == quote.sub("", before)  # the tool's answer, the last call
    half = [blank_words(t, 0.5, random.Random(1)) for t in texts]
    assert half == [blank_words(t, 0.5, random.Random(1)) for t in texts]  # seeded


@pytest.fixture
def encoded(monkeypatch):
    """Every (texts, (ids, mask)) that clone_expert encodes: the training split's, then validation's."""
    import labkit.agents.cloning as cloning

    calls = []

    def recording(texts, *args):
        calls.append((texts, encode_examples(texts, *args)))
        return calls[-1][1]

    monkeypatch.setattr(cloning, "encode_examples", recording)
    return calls


def test_clone_expert_blanks_the_training_split_only(tmp_path, encoded):
    from labkit.agents.registry import make_env

    episodes = expert_episodes(make_env("customer_service"), range(10_000, 10_010))
    config = agent_config(run_dir=str(tmp_path), name="desk", max_steps=1, eval_every=1,
                          tokenizer="lower", min_freq=1, device="cpu")  # fmt: skip
    clone_expert(episodes, config, word_dropout=0.3)
    train, valid = ("".join(t for segments in texts for t, _ in segments) for texts, _ in encoded)
    assert "<unk>" in train and "<unk>" not in valid
    with pytest.raises(ValueError, match="word_dropout must be in"):
        clone_expert(episodes, config, word_dropout=1.0)


def test_without_carried_state_validation_texts_are_packed_as_training_texts(tmp_path, encoded):
    config = agent_config(run_dir=str(tmp_path), name="packed", embed_dim=8, hidden_dim=16,
                          batch_size=4, bptt=128, max_steps=2, eval_every=2, device="cpu",
                          carry_state=False)  # fmt: skip
    policy, _ = clone_expert(expert_episodes(Corridor(), range(12)), config, history_steps=1)
    for _, (ids, _) in encoded:  # every text (<bos> to the next <bos> or <pad>) inside one window
        starts = (ids == policy.scorer.tokenizer.bos_id).nonzero().flatten().tolist()
        ends = [*starts[1:], len(ids)]
        for start, end in zip(starts, ends, strict=True):
            end = start + int((ids[start:end] != policy.scorer.tokenizer.pad_id).sum())
            assert start // config.bptt == (end - 1) // config.bptt, (start, end)
