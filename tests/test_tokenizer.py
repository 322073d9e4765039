"""Tokenizers: specials, round trips, unknown tokens, save/load, and the errors on bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch

from labkit.corpus import load_corpus
from labkit.tokenizer import (
    KINDS,
    SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    tokenizer_from_json,
    train_tokenizer,
)

TEXT = """RODERIGO:
Tush! never tell me; I take it much unkindly
That thou, Iago, who hast had my purse
As if the strings were thine, shouldst know of this.

IAGO:
'Sblood, but you will not hear me:
If ever I did dream of such a matter, Abhor me.

RODERIGO:
Thou told'st me thou didst hold him in thy hate.

IAGO:
Despise me, if I do not. Three great ones of the city,
In personal suit to make me his lieutenant,
Off-capp'd to him: and, by the faith of man,
I know my price, I am worth no worse a place.
"""

# Characters and words the training text never shows, and more than one UTF-8 byte per character.
UNSEEN = "Zoë says 你好 to the 🦜\tparrot\r\n<bos> & {x}~\n\n"


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, CharTokenizer | WordTokenizer | BPETokenizer]:
    return {
        kind: train_tokenizer(kind, TEXT, vocab_size=300 if kind == "bpe" else None)
        for kind in KINDS
    }


def _no_inline_space(text: str) -> str:
    return re.sub(r"[^\S\n]+", "", text)


@pytest.mark.parametrize("kind", KINDS)
def test_specials_take_ids_0_to_3_and_frame_the_text(tokenizers, kind):
    tok = tokenizers[kind]
    assert tok.kind == kind
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    ids = tok.encode("Iago", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert ids[1:-1] == tok.encode("Iago")
    name = "iago" if kind.startswith("lower") else "Iago"
    assert tok.decode(ids) == name  # bos and eos are dropped by default
    assert tok.decode([tok.pad_id, *ids]) == name
    shown = f"<bos> {name} <eos>" if kind in ("word", "lower", "lower_typos") else "<bos>Iago<eos>"
    assert tok.decode(ids, skip_special=False) == shown


def test_char_round_trip_is_exact_and_vocabulary_is_sorted_characters(tokenizers):
    tok = tokenizers["char"]
    assert tok.vocab_size == 4 + len(set(TEXT))
    assert [tok.id_to_token(i) for i in range(4, tok.vocab_size)] == sorted(set(TEXT))
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT


def test_char_unseen_characters_become_unk(tokenizers):
    tok = tokenizers["char"]
    ids = tok.encode("Zoë")
    assert ids == [tok.unk_id, tok.encode("o")[0], tok.unk_id]
    assert tok.decode(ids) == "<unk>o<unk>"  # <unk> stays visible: text is missing there


def test_char_vocab_size_and_min_freq_keep_the_most_frequent_characters():
    text = "aaaabbbccd"
    assert [t for t in train_tokenizer("char", text, vocab_size=6).stoi if len(t) == 1] == [
        "a",
        "b",
    ]
    assert train_tokenizer("char", text, min_freq=3).encode("abcd") == [4, 5, 1, 1]


def test_bpe_round_trip_is_exact_on_any_string(tokenizers):
    tok = tokenizers["bpe"]
    for text in (TEXT, UNSEEN, "", " ", "\n\n\n", "  leading and trailing  ", TEXT + UNSEEN):
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == text
    # Text that spells a special token is plain text, not the control token.
    assert tok.bos_id not in tok.encode("<bos>")


def test_bpe_learns_merges_within_its_vocab_size(tokenizers):
    tok = tokenizers["bpe"]
    assert 4 + 256 < tok.vocab_size <= 300
    assert len(tok.encode(TEXT)) < len(TEXT.encode("utf-8")) * 0.7  # merges shorten the text
    again = train_tokenizer("bpe", TEXT, vocab_size=300)
    assert again.encode(TEXT + UNSEEN) == tok.encode(TEXT + UNSEEN)  # training is deterministic


def test_bpe_encodes_long_text_in_chunks_without_changing_it(tokenizers):
    tok = tokenizers["bpe"]
    long_text = TEXT * 200  # many encoding chunks
    assert tok.decode(tok.encode(long_text)) == long_text


def test_word_round_trip_keeps_tokens_and_text_up_to_spacing(tokenizers):
    tok = tokenizers["word"]
    ids = tok.encode(TEXT)
    assert tok.unk_id not in ids
    text = tok.decode(ids)
    assert tok.encode(text) == ids
    assert _no_inline_space(text) == _no_inline_space(TEXT)
    assert text.splitlines()[:3] == TEXT.splitlines()[:3]  # sensible spacing: these lines survive


def test_word_decode_spacing():
    tok = train_tokenizer("word", "Hello , world ! ( aside ) well-met \n\n Go")
    assert tok.decode(tok.encode("Hello ,  world !\n\n( aside )   well - met")) == (
        "Hello, world!\n\n(aside) well-met"
    )


def test_word_rare_and_unseen_words_become_unk():
    tok = train_tokenizer("word", "the cat and the dog and the bird", min_freq=2)
    assert tok.vocab_size == 4 + 2  # "the" and "and"
    assert tok.encode("the cat and a fish") == [4, 1, 5, 1, 1]
    capped = train_tokenizer("word", "the cat and the dog and the bird", vocab_size=5)
    assert capped.id_to_token(4) == "the"


def test_word_unknown_rate_on_held_out_shakespeare():
    corpus = load_corpus("shakespeare", max_chars=200_000)
    tok = train_tokenizer("word", corpus.train)
    held_out = tok.encode(corpus.valid)
    rate = held_out.count(tok.unk_id) / len(held_out)
    assert 0.0 < rate < 0.1  # held-out text has unseen words, but few
    assert tok.encode(corpus.train).count(tok.unk_id) == 0  # min_freq=1 keeps every training word


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_give_the_same_tokenizer(tokenizers, tmp_path, kind):
    tok = tokenizers[kind]
    path = tmp_path / f"{kind}.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.encode(TEXT + UNSEEN) == tok.encode(TEXT + UNSEEN)
    assert loaded.to_json() == tok.to_json()
    assert json.loads(path.read_text())["kind"] == kind


def test_decode_accepts_a_tensor_and_rejects_ids_outside_the_vocabulary(tokenizers):
    tok = tokenizers["char"]
    ids = tok.encode(TEXT)
    assert tok.decode(torch.tensor(ids)) == TEXT
    with pytest.raises(ValueError, match="outside"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="outside"):
        tok.decode([-1])
    with pytest.raises(IndexError, match="outside"):
        tok.id_to_token(tok.vocab_size)


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(ValueError, match="char, word, lower, lower_typos, bpe"):
        train_tokenizer("sentencepiece", TEXT)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", ["", " \n\t\n"])
def test_training_on_empty_text_is_refused(kind, text):
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer(kind, text)


@pytest.mark.parametrize("kind", KINDS)
def test_vocab_size_and_min_freq_out_of_range_are_refused(kind):
    with pytest.raises(ValueError, match="vocab_size=4 is too small"):
        train_tokenizer(kind, TEXT, vocab_size=4)
    with pytest.raises(ValueError, match="min_freq"):
        train_tokenizer(kind, TEXT, min_freq=0)


def test_bpe_needs_room_for_every_byte():
    with pytest.raises(ValueError, match="256 bytes"):
        train_tokenizer("bpe", TEXT, vocab_size=259)


@pytest.mark.parametrize("kind", KINDS)
def test_encode_refuses_what_is_not_text(tokenizers, kind):
    with pytest.raises(TypeError, match="expects a str"):
        tokenizers[kind].encode([1, 2, 3])
    with pytest.raises(TypeError, match="as a str"):
        train_tokenizer(kind, b"bytes")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "invalid JSON"),
        ('{"tokens": ["a"]}', 'no "kind" field'),
        ('{"kind": "sentencepiece"}', "unknown tokenizer kind 'sentencepiece'"),
        ('{"kind": "char"}', "lacks the field 'tokens'"),
        ('{"kind": "word", "tokens": "abc"}', "lacks the field 'tokens'"),
        ('{"kind": "bpe"}', "lacks the field 'tokenizer'"),
        ('{"kind": "bpe", "tokenizer": "{}"}', "field 'tokenizer' does not hold a valid bpe"),
        ('{"kind": "char", "tokens": ["a", "a"]}', "repeats a token"),
    ],
)
def test_loading_a_bad_file_names_the_file_and_the_field(tmp_path, payload, message):
    path = tmp_path / "tok.json"
    path.write_text(payload)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        load_tokenizer(path)
    assert str(path) in str(err.value)


def test_from_json_names_its_source_in_errors():
    with pytest.raises(ValueError, match="^run42/tokenizer.json has unknown"):
        tokenizer_from_json('{"kind": "x"}', source="run42/tokenizer.json")


def test_word_tokens_spell_numbers_digit_by_digit_so_unseen_ids_are_read():
    tokenizer = train_tokenizer("word", "lookup_order 1042\nreply monday 09:30\nrefund 5678\n")
    ids = tokenizer.encode("lookup_order 7731\nreply monday 16:00")
    assert tokenizer.unk_id not in ids  # 7731 and 16:00 were never seen, their digits were
    assert tokenizer.decode(ids) == "lookup_order 7731\nreply monday 16:00"


def test_the_lower_kind_reads_any_case_as_one_word_and_round_trips_through_json(tmp_path):
    tokenizer = train_tokenizer("lower", "Move my standup on Friday\n")
    assert tokenizer.encode("FRIDAY friday Friday") == [tokenizer.encode("friday")[0]] * 3
    tokenizer.save(tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json")
    assert again.kind == "lower" and again.encode("MOVE") == tokenizer.encode("move")


def test_one_typo_away_is_damerau_single_edits():
    from labkit.tokenizer import one_typo_away

    near = one_typo_away("cancel")
    assert {"cancl", "cnacel", "cancell", "cancek"} <= near  # dropped, swapped, added, changed
    assert "cancel" not in near and "cnacle" not in near  # two swaps are two typos


def test_lower_reads_a_typo_of_a_known_word_as_that_word_and_keeps_unknown_words_unknown(tmp_path):
    text = "please cancel my order\nrefund the kettle\ncancel it\nthe cat\n"
    tokenizer = train_tokenizer("lower_typos", text)
    assert train_tokenizer("lower", text).encode("cncel")[0] == tokenizer.unk_id  # "lower" does not
    typed = "PLEASE cncel my ordre\nrefnud the ketle"
    assert tokenizer.decode(tokenizer.encode(typed)) == "please cancel my order\nrefund the kettle"
    assert tokenizer.encode("xyzzy cta") == [tokenizer.unk_id] * 2  # no near word; too short
    tokenizer.save(tmp_path / "tok.json")
    assert load_tokenizer(tmp_path / "tok.json").encode(typed) == tokenizer.encode(typed)


def test_a_word_tokenizer_reads_the_text_unk_as_the_unknown_token():
    tokenizer = train_tokenizer("lower", "the <unk> word\n")
    assert tokenizer.encode("the <unk> word") == [tokenizer.stoi["the"], 1, tokenizer.stoi["word"]]
    assert "<unk>" not in tokenizer.itos[4:]  # not a word of the vocabulary as well
