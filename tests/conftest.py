"""Shared test set-up: one thread, a tiny model, a tiny training run and fake environments.

The test models are tiny: one intra-op thread runs them faster than two that contend for the two
cores of a CI machine (measured: the likelihood tests took 52 s with two threads, 18 s with one).
Test files import the helpers by name (`from conftest import tiny_config`); the `model` fixture is
the tiny model with each softmax kind; `drawn_bars` reads an action-bars chart.
"""

import html
import re
from pathlib import Path

import pytest
import torch

from labkit.config import from_dict, to_dict
from labkit.model import LSTMLanguageModel, ModelConfig
from labkit.train import TrainConfig, build_model, prepare, train

torch.set_num_threads(1)

# ---- a tiny model ------------------------------------------------------------------------------

V = 11  # the tiny model's vocabulary
SOFTMAX_KINDS = {"full": (), "adaptive": (4, 8)}


def tiny_model(cutoffs: tuple[int, ...] = (), seed: int = 0, **overrides) -> LSTMLanguageModel:
    """A 2-layer LSTM over V tokens in eval mode; the same weights for the same arguments."""
    torch.manual_seed(seed)
    # hidden_dim 16 keeps every adaptive tail cluster at least 1 wide (16 // 4**2 = 1).
    sizes = dict(vocab_size=V, embed_dim=6, hidden_dim=16, num_layers=2, dropout=0.0)
    return LSTMLanguageModel(ModelConfig(**(sizes | overrides), adaptive_cutoffs=cutoffs)).eval()


@pytest.fixture(params=list(SOFTMAX_KINDS), ids=list(SOFTMAX_KINDS))
def model(request) -> LSTMLanguageModel:
    """The tiny model, once with the full softmax and once with the adaptive one."""
    return tiny_model(SOFTMAX_KINDS[request.param])


# ---- a tiny training run -----------------------------------------------------------------------

SENTENCE = "the king and queen of night ride over hills where wind and water sing to stone"
WORDS = SENTENCE.split()  # the vocabulary of the test corpus


def write_corpus(folder: Path, train_lines: int = 120) -> Path:
    """A small deterministic corpus as train.txt, valid.txt and test.txt; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    def lines(n: int) -> str:
        picks = torch.randint(len(WORDS), (n, 6), generator=g).tolist()
        return "".join(" ".join(WORDS[i] for i in row) + ".\n" for row in picks)

    for name, n in (("train.txt", train_lines), ("valid.txt", 12), ("test.txt", 12)):
        (folder / name).write_text(lines(n), encoding="utf-8")
    return folder


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    """A config that trains in a second or two on a CPU: a small model on the small corpus."""
    values = dict(
        corpus=str(write_corpus(tmp_path / "corpus")),
        embed_dim=16,
        hidden_dim=32,
        batch_size=4,
        bptt=16,
        lr=3e-2,
        warmup_steps=3,
        max_steps=40,
        eval_every=10,
        checkpoint_every=5,
        device="cpu",
        threads=1,
        run_dir=str(tmp_path / "runs"),
        name="tiny",
        progress=False,
        seed=0,
    )
    values.update(overrides)
    return from_dict(TrainConfig, values)


def as_argv(config: TrainConfig) -> list[str]:
    """The `--key value` arguments that rebuild `config` on the command line."""
    text = {
        k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
        for k, v in to_dict(config).items()
    }
    return [arg for key, value in text.items() for arg in (f"--{key}", value)]


def run(config: TrainConfig, callback=None):
    """prepare + build_model + train; returns (model, history)."""
    tokenizer, data = prepare(config)
    model = build_model(config, tokenizer.vocab_size)
    return model, train(model, data, config, tokenizer, callback)


# ---- fake environments -------------------------------------------------------------------------


class CounterEnv:
    """Count up to a target: "inc" adds one, "wait" does nothing. Won at the target."""

    name = "counter"

    def __init__(self, target: int = 3, max_steps: int = 50) -> None:
        self.target, self.max_steps = target, max_steps

    def reset(self, seed=None):
        self.n, self.steps = 0, 0
        return "n=0", self._info()

    def _info(self):
        won = self.n >= self.target
        return {
            "goal": f"reach {self.target}",
            "admissible_actions": [] if won else ["inc", "wait"],
            "expert_action": None if won else "inc",
            "score": float(self.n),
            "max_score": float(self.target),
            "won": won,
            "lost": False,
        }

    def step(self, action):
        self.steps += 1
        self.n += action == "inc"
        info = self._info()
        truncated = not info["won"] and self.steps >= self.max_steps
        return f"n={self.n}", float(action == "inc"), info["won"], truncated, info

    def close(self):
        pass


class CrashingEnv(CounterEnv):
    """Breaks on its second step, like an engine that dies mid-episode."""

    def step(self, action):
        if self.steps == 1:
            raise RuntimeError("engine died")
        return super().step(action)


class Corridor:
    """A corridor of 3 to 5 identical rooms with a coin in the last; the expert walks east, then
    takes the coin. A random walk (east, west, wait) rarely gets there in 10 steps."""

    name = "corridor"

    def __init__(self):
        self.rooms, self.room, self.done = 3, 0, True

    def _info(self, won=False):
        coin = self.room == self.rooms - 1
        actions = ["go east", "go west", "wait"] + (["take coin"] if coin else [])
        return {
            "goal": "take the coin",
            "admissible_actions": [] if self.done else actions,
            "expert_action": None if self.done else ("take coin" if coin else "go east"),
            "score": float(won),
            "max_score": 1.0,
            "won": won,
            "lost": False,
        }

    def _describe(self):
        return "A corridor." + (" A coin lies here." if self.room == self.rooms - 1 else "")

    def reset(self, seed=None):
        self.rooms, self.room, self.done = 3 + (seed or 0) % 3, 0, False
        return self._describe(), self._info()

    def step(self, action):
        if action == "take coin":
            self.done = True
            return "You take the coin.", 1.0, True, False, self._info(won=True)
        step = {"go east": 1, "go west": -1}.get(action, 0)
        self.room = min(max(self.room + step, 0), self.rooms - 1)
        return self._describe(), 0.0, False, False, self._info()

    def close(self):
        pass


# ---- the action bars drawn ---------------------------------------------------------------------

_BAR_ROW = re.compile(r"<tr data-action='([^']*)' data-p='([^']*)'( class=chosen)?>")


def drawn_bars(value: str) -> list[tuple[str, float, bool]]:
    """The bars of a `labkit.plots.action_bars_html` chart: (action, probability, highlighted)."""
    return [(html.unescape(a), float(p), bool(c)) for a, p, c in _BAR_ROW.findall(value)]
