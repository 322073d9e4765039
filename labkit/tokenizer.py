"""Tokenizers: characters, words, and byte-level BPE, behind one interface.

Every kind reserves ids 0..3 for <pad> <unk> <bos> <eos>, encodes text to a list of ints, decodes
ids back to text, and saves itself as JSON with a "kind" field so that `load_tokenizer` can rebuild
it. What the round trip decode(encode(text)) guarantees differs by kind:

- char: exact for text made of characters seen in training; other characters become <unk>.
- word: the same tokens, not the same bytes: spaces and tabs are normalised (one space between
  words, none before punctuation), and rare or unseen words become <unk>.
- bpe: exact for any string, since byte-level BPE can spell any UTF-8 byte.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from labkit.corpus import line_blocks

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")  # ids 0, 1, 2, 3 in every kind
KINDS = ("char", "word", "lower", "lower_typos", "bpe")  # "lower": words in lower case
DEFAULT_VOCAB_SIZE = {
    "char": None,
    "word": 10000,
    "lower": 10000,
    "lower_typos": 10000,
    "bpe": 2000,
}  # None: every character seen
BYTE_ALPHABET = 256  # byte-level BPE starts from every byte value
ENCODE_CHUNK_CHARS = 4096  # BPE encodes line-aligned chunks in parallel; larger ones are slower


class _TokenizerBase:
    """What every kind shares: the special ids, encode/decode around the kind's own mapping, save.

    Each kind provides `kind`, `vocab_size`, `_encode(text)`, `_decode(ids)`, `_token(i)` and
    `to_json()`.
    """

    pad_id, unk_id, bos_id, eos_id = range(len(SPECIAL_TOKENS))

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`, optionally framed by <bos> and <eos>.

        Raises:
            TypeError: `text` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(
                f"encode expects a str, got {type(text).__name__}; to turn ids into text, use decode."
            )
        ids = self._encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """The text of `ids` (a list or a 1-D tensor). With skip_special, <pad>, <bos> and <eos> are
        dropped; <unk> always shows as "<unk>", since dropping it would hide that text is missing.

        Raises:
            ValueError: an id outside 0..vocab_size-1.
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # a tensor or a sequence
        if ids and not 0 <= min(ids) <= max(ids) < self.vocab_size:
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(
                f"id {bad} is outside this {self.kind} tokenizer's vocabulary (0..{self.vocab_size - 1}):"
                " were these ids made by another tokenizer?"
            )
        if skip_special:
            drop = {self.pad_id, self.bos_id, self.eos_id}
            ids = [i for i in ids if i not in drop]
        return self._decode(ids)

    def id_to_token(self, i: int) -> str:
        """The text of id `i` (for bpe, a piece of a multi-byte character shows as U+FFFD).

        Raises:
            IndexError: `i` is outside the vocabulary.
        """
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"id {i} is outside the vocabulary (0..{self.vocab_size - 1}).")
        return self._token(i)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (read it back with `load_tokenizer`)."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class _TableTokenizer(_TokenizerBase):
    """A tokenizer whose vocabulary is a list of strings: the specials, then `tokens`."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos = list(SPECIAL_TOKENS) + list(tokens)  # id -> token
        self.stoi = {t: i for i, t in enumerate(self.itos)}  # token -> id
        if len(self.stoi) != len(self.itos):
            raise ValueError(f"the {self.kind} vocabulary repeats a token or a special token.")

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def _token(self, i: int) -> str:
        return self.itos[i]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokens": self.itos[len(SPECIAL_TOKENS) :]})


class CharTokenizer(_TableTokenizer):
    """One token per character; the vocabulary is the training text's characters, sorted."""

    kind = "char"

    def _encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(c, unk) for c in text]

    def _decode(self, ids: list[int]) -> str:
        return "".join([self.itos[i] for i in ids])


# "<unk>" (so that decode's "<unk>" reads back as <unk>, and a word blanked out on purpose reads as
# one unknown word), each digit alone (so any number is spelt from ten tokens: an order id or a
# time never seen in training is still read and written), words (with inner apostrophes: know'st, o'er), newlines,
# and each other non-space character alone.
WORD_PATTERN = re.compile(r"<unk>|\d|[^\W\d]+(?:['’][^\W\d]+)*|\n|[^\w\s]")
_NO_SPACE_BEFORE = set(".,;:!?)]}”’-\n")
_NO_SPACE_AFTER = set("([{“‘'-\n")


class WordTokenizer(_TableTokenizer):
    """Words, digits, punctuation marks and newlines; the most frequent words of the training text.

    Not byte-exact: decode puts one space between words and none before closing punctuation, after
    opening brackets and quotes, around hyphens, between digits, or next to a newline. What it keeps is the token
    sequence: encode(decode(ids)) == ids for any ids ("<unk>" reads back as <unk>).
    """

    kind = "word"

    def _encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(w, unk) for w in WORD_PATTERN.findall(text)]

    def _decode(self, ids: list[int]) -> str:
        parts: list[str] = []
        prev = before = "\n"  # the start of the text acts like the start of a line
        for i in ids:
            token = self.itos[i]
            number = token.isdigit() and (prev.isdigit() or (prev == ":" and before.isdigit()))
            if prev not in _NO_SPACE_AFTER and token not in _NO_SPACE_BEFORE and not number:
                parts.append(" ")  # (digits of one number, and times such as 09:30, stay joined)
            parts.append(token)
            before, prev = prev, token
        return "".join(parts)


TYPO_MIN_LETTERS = 4  # "lower_typos" reads an unknown word this long as a known word one typo away
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def one_typo_away(word: str) -> set[str]:
    """The strings one typo from `word`: a letter dropped, added, changed, or two swapped.

    Damerau's four single edits, which cover most misspellings people make (Damerau 1964).
    """
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    dropped = {a + b[1:] for a, b in splits if b}
    swapped = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    changed = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    added = {a + c + b for a, b in splits for c in _LETTERS}
    return (dropped | swapped | changed | added) - {word}


class LowerWordTokenizer(WordTokenizer):
    """Words read in lower case: "Friday", "FRIDAY" and "friday" are one token. For requests that
    people type (an agent's tool calls are lower case; its users' shift key is not)."""

    kind = "lower"

    def _encode(self, text: str) -> list[int]:
        return super()._encode(text.lower())


class LowerTypoTokenizer(LowerWordTokenizer):
    """Words read in lower case, and an unknown word of TYPO_MIN_LETTERS letters or more that is
    one typo away from a known word ("refnud", "cncel") read as that word (the most frequent one
    if several are). Where the deciding words of a request are few and common (the desk's
    "refund", "cancel", "manager") a typo then no longer hides them; where unknown words are
    mostly new words rather than typos, reading them as a near known word misleads (the
    calendar's held-out wordings: 0.92 with "lower", 0.79 with this; README, Agents)."""

    kind = "lower_typos"

    def __init__(self, tokens: Sequence[str]) -> None:
        super().__init__(tokens)
        self._read_as: dict[str, int] = {}  # unknown word -> the id it is read as

    def _encode(self, text: str) -> list[int]:
        get = self.stoi.get
        words = WORD_PATTERN.findall(text.lower())
        return [i if (i := get(w)) is not None else self._typo(w) for w in words]

    def _typo(self, word: str) -> int:
        """The id of the known word one typo from an unknown `word`, or <unk>."""
        if word not in self._read_as:
            known = []
            if len(word) >= TYPO_MIN_LETTERS and word.isalpha():
                known = [self.stoi[w] for w in one_typo_away(word) if w in self.stoi]
            # ids follow frequency (the vocabulary is most frequent first): min is the likeliest
            self._read_as[word] = min(known, default=self.unk_id)
        return self._read_as[word]


class BPETokenizer(_TokenizerBase):
    """Byte-level BPE from Hugging Face `tokenizers` (the GPT-2 scheme), wrapped in our interface."""

    kind = "bpe"

    def __init__(self, hf: HFTokenizer) -> None:
        for i, token in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(token) != i:
                raise ValueError(f"this BPE tokenizer does not have {token} at id {i}.")
        # Text that spells "<bos>" is encoded as plain text, never as the control token.
        hf.encode_special_tokens = True
        self.hf = hf  # the Hugging Face tokenizer

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def _encode(self, text: str) -> list[int]:
        chunks = line_blocks(text, ENCODE_CHUNK_CHARS)
        return [
            i for enc in self.hf.encode_batch(chunks, add_special_tokens=False) for i in enc.ids
        ]

    def _decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=False)

    def _token(self, i: int) -> str:
        return self._decode([i])

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": self.hf.to_str()})


Tokenizer = CharTokenizer | WordTokenizer | LowerWordTokenizer | BPETokenizer


def _frequent(counts: collections.Counter, vocab_size: int | None, min_freq: int) -> list[str]:
    """Tokens seen at least min_freq times, most frequent first (ties by token), capped so that
    the vocabulary including the specials has at most vocab_size entries."""
    kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
    return kept if vocab_size is None else kept[: vocab_size - len(SPECIAL_TOKENS)]


def _train_bpe(text: str, vocab_size: int, min_freq: int) -> BPETokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_freq,
        special_tokens=list(SPECIAL_TOKENS),  # first, so they take ids 0..3
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: no <unk> needed
        show_progress=False,
    )
    # The same line-aligned chunks that encoding uses, so merges are learnt on what they will see.
    hf.train_from_iterator(line_blocks(text, ENCODE_CHUNK_CHARS), trainer)
    return BPETokenizer(hf)


_WORD_KINDS = {
    "word": WordTokenizer,
    "lower": LowerWordTokenizer,
    "lower_typos": LowerTypoTokenizer,
}


def train_tokenizer(
    kind: str, text: str, vocab_size: int | None = None, min_freq: int = 1
) -> Tokenizer:
    """Build a tokenizer of `kind` from training text.

    Args:
        kind: "char", "word", "lower" (words, read in lower case), "lower_typos" (the same, one-letter
            typos read as the word meant) or "bpe".
        text: the training text (use the train split only, so held-out text stays unseen).
        vocab_size: most ids, the 4 specials included; None gives the kind's default (char: every
            character seen; word: 10000; bpe: 2000).
        min_freq: characters or words seen fewer times become <unk>; for bpe, the fewest
            occurrences of a pair to merge it.
    Returns:
        The tokenizer.
    Raises:
        ValueError: an unknown kind, empty text, or a vocab_size or min_freq out of range.
        TypeError: `text` is not a str.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if not isinstance(text, str):
        raise TypeError(
            f"train_tokenizer expects the training text as a str, got {type(text).__name__}."
        )
    if not text.strip():
        raise ValueError(
            f"cannot train a {kind} tokenizer: the training corpus is empty. "
            "Check the corpus path and --max_chars."
        )
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}.")
    if vocab_size is None:
        vocab_size = DEFAULT_VOCAB_SIZE[kind]
    smallest = len(SPECIAL_TOKENS) + (BYTE_ALPHABET if kind == "bpe" else 1)
    if vocab_size is not None and vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a {kind} tokenizer: use at least {smallest}"
            + (" (4 specials + 256 bytes)." if kind == "bpe" else " (4 specials + 1 token).")
        )
    if kind == "char":
        return CharTokenizer(sorted(_frequent(collections.Counter(text), vocab_size, min_freq)))
    if kind in _WORD_KINDS:
        words = WORD_PATTERN.findall(text if kind == "word" else text.lower())
        counts = collections.Counter(w for w in words if w != "<unk>")  # <unk> has its id
        return _WORD_KINDS[kind](_frequent(counts, vocab_size, min_freq))
    return _train_bpe(text, vocab_size, min_freq)


def tokenizer_from_json(s: str, source: str = "the JSON text") -> Tokenizer:
    """Rebuild a tokenizer from `to_json()` output; `source` names it in error messages.

    Raises:
        ValueError: not JSON, an unknown kind, or a missing or malformed field.
    """
    try:
        data = json.loads(s)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source} is not a saved tokenizer: invalid JSON ({err}).") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(
            f'{source} has no "kind" field, so it is not a tokenizer saved by labkit '
            "(Tokenizer.save writes one)."
        )
    kind = data["kind"]
    if kind not in KINDS:
        raise ValueError(
            f"{source} has unknown tokenizer kind {kind!r}: expected one of {', '.join(KINDS)}."
        )
    field = "tokenizer" if kind == "bpe" else "tokens"
    value = data.get(field)
    if kind == "bpe":
        valid = isinstance(value, str)
    else:
        valid = isinstance(value, list) and all(isinstance(t, str) for t in value)
    if not valid:
        raise ValueError(
            f"{source}: the {kind} tokenizer lacks the field {field!r} or it has the wrong type; "
            "save the tokenizer again with Tokenizer.save."
        )
    try:
        if kind == "char":
            return CharTokenizer(value)
        if kind in _WORD_KINDS:
            return _WORD_KINDS[kind](value)
        return BPETokenizer(HFTokenizer.from_str(value))
    except Exception as err:  # HFTokenizer.from_str raises a bare Exception on malformed JSON
        raise ValueError(
            f"{source}: field {field!r} does not hold a valid {kind} tokenizer ({err})."
        ) from None


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer written by `save`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a saved tokenizer (the message names the file and field).
    """
    return tokenizer_from_json(Path(path).read_text(encoding="utf-8"), source=str(path))
