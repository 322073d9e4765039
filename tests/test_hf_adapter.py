"""The Hugging Face adapter: a tiny random GPT-2 built and saved here (nothing downloaded)."""

import pytest
import torch

pytest.importorskip(
    "transformers", reason="transformers is an optional extra: pip install 'labkit[hf]'"
)
tokenizers = pytest.importorskip("tokenizers")

import transformers  # noqa: E402

from labkit.agents.hf import HFCausalLMScorer  # noqa: E402
from labkit.agents.policies import GenerativePolicy, LMPolicy  # noqa: E402

ACTIONS = ["go north", "go south", "take coin", "look"]
PROMPT = "Goal: find the coin\nYou are in a room. There is a coin.\n> "
INFO = {"goal": "find the coin", "admissible_actions": ACTIONS}


def _save_tiny_gpt2(folder, vocab_rows=None):
    """A byte-level BPE tokenizer trained on a few lines and a 2-layer GPT-2, saved to `folder`."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    text = [PROMPT + a + "\n" for a in ACTIONS] * 5
    bpe.train_from_iterator(text, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab_rows or len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2
    )
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return HFCausalLMScorer.from_folder(_save_tiny_gpt2(tmp_path_factory.mktemp("gpt2")))


def _full_sequence_logp(scorer, prompt, action):
    """log P(action + newline | prompt) from one plain forward pass over the whole sequence."""
    body = prompt.rstrip(" ")
    ctx = scorer._context(body)
    cont = scorer._ids(" " + action + "\n")
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(scorer.model(ids).logits[0].float(), dim=-1)  # (T, V)
    positions = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    return sum(float(logp[p, t]) for p, t in zip(positions, cont, strict=True))


def test_cached_batched_scores_match_full_forward_passes(scorer):
    scores, lengths = scorer.score(PROMPT, ACTIONS)
    assert scores.shape == (4,) and (lengths > 0).all()
    expected = torch.tensor([_full_sequence_logp(scorer, PROMPT, a) for a in ACTIONS])
    assert torch.allclose(scores, expected, atol=1e-4)


def test_lm_policy_runs_on_the_transformer(scorer):
    decision = LMPolicy(scorer).act("You are in a room. There is a coin.", INFO, [])
    assert decision.action in ACTIONS
    assert sum(decision.probs.values()) == pytest.approx(1.0)
    scores, _ = scorer.score(PROMPT, ACTIONS)
    assert decision.action == ACTIONS[int(scores.argmax())]


def test_generative_policy_maps_what_the_transformer_writes(scorer):
    policy = GenerativePolicy(scorer, max_new_tokens=5)
    decision = policy.act("You are in a room. There is a coin.", INFO, [])
    assert decision.action in ACTIONS  # a random model writes junk; it is mapped and noted
    assert decision.note == "" or "mapped to" in decision.note


def test_tokenizer_larger_than_the_model_is_rejected(tmp_path):
    folder = _save_tiny_gpt2(tmp_path, vocab_rows=10)
    with pytest.raises(ValueError, match="embedding table has 10 rows"):
        HFCausalLMScorer.from_folder(folder)


def test_missing_folder_says_how_to_save_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        HFCausalLMScorer.from_folder(tmp_path / "nothing")


def test_empty_prompt_is_an_error(scorer):
    with pytest.raises(ValueError, match="prompt is empty"):
        scorer.score("  ", ACTIONS)
