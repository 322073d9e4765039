"""How much batched action scoring buys: decisions per second, batched against one at a time.

    python -m bench.agent_speed                         # 10 candidates, a ~700-character prompt
    python -m bench.agent_speed --candidates 20 --hidden 512 --device cuda

A decision scores every admissible action. Batched (what LMPolicy does): the prompt is encoded
once and all candidates are read from its final state in one padded batch (score_continuations).
One at a time (the baseline, measured in the same run): each candidate is scored by its own pass
over prompt + candidate (sequence_loglik), as code without the shared state would do. A second
baseline keeps the shared prompt state but reads the candidates one by one, to separate the two
savings. The model is randomly initialised: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from labkit.agents.policies import END_OF_ACTION, format_prompt
from labkit.likelihood import score_continuations, sequence_loglik
from labkit.model import LSTMLanguageModel, ModelConfig
from labkit.runtime import pick_device, seed_everything, set_cpu_threads
from labkit.tokenizer import train_tokenizer

GOAL = (
    "Welcome to TextWorld! Here is your task for today. First step, take a trip east. If you can "
    "accomplish that, go to the north. With that done, lift the coin from the floor of the cellar."
)
OBSERVATION = (
    "-= Cubicle =-\nI am sorry to announce that you are now in the cubicle. The room seems oddly "
    "familiar, as though it were only superficially different from the other rooms in the building."
    "\nYou need an unguarded exit? You should try going north. There is an exit to the west."
)
ACTIONS = [
    "go north", "go south", "go east", "go west", "look", "inventory", "take coin",
    "examine coin", "open door", "close door", "drop coin", "go up", "go down", "wait",
    "examine room", "take key", "unlock door", "eat apple", "read note", "sleep",
]  # fmt: skip


def _time(fn, repeats: int) -> float:
    """Median seconds per call over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.agent_speed", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--candidates", type=int, default=10, help="admissible actions per decision"
    )
    parser.add_argument("--hidden", type=int, default=256, help="LSTM hidden size")
    parser.add_argument("--layers", type=int, default=1, help="LSTM layers")
    parser.add_argument("--repeats", type=int, default=20, help="timed decisions per method")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = default)")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if not 1 <= opts.candidates <= len(ACTIONS):
        parser.error(f"--candidates must be in 1..{len(ACTIONS)}")

    seed_everything(opts.seed)
    set_cpu_threads(opts.threads)  # one decision is small work: extra threads mostly synchronise
    device = pick_device(opts.device)
    history = [{"observation": OBSERVATION.replace("Cubicle", "Washroom"), "action": "go east"}]
    prompt = format_prompt(GOAL, history, OBSERVATION, history_steps=1)
    actions = ACTIONS[: opts.candidates]
    tokenizer = train_tokenizer("char", prompt + " ".join(actions) + END_OF_ACTION)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, embed_dim=64, hidden_dim=opts.hidden,
        num_layers=opts.layers, dropout=0.0,
    )  # fmt: skip
    model = LSTMLanguageModel(config).to(device).eval()
    context = tokenizer.encode(prompt, bos=True)
    candidates = [tokenizer.encode(a + END_OF_ACTION) for a in actions]
    ctx = torch.tensor(context, device=device)

    def batched() -> torch.Tensor:
        return score_continuations(model, ctx, candidates)

    def each_full() -> list[float]:
        return [sequence_loglik(model, ctx, c) for c in candidates]

    @torch.no_grad()
    def each_shared() -> list[float]:
        features, state = model(ctx.view(1, -1))  # (1, C, H): the prompt once
        first = model.log_distribution(features[:, -1])[0]  # (V,)
        scores = []
        for c in candidates:
            ids = torch.tensor([c], device=device)  # (1, L)
            logp = first[c[0]]
            if len(c) > 1:
                feats, _ = model(ids[:, :-1], state)  # (1, L-1, H)
                logp = logp + model.target_logprobs(feats, ids[:, 1:]).sum()
            scores.append(float(logp))
        return scores

    reference = batched()
    assert torch.allclose(reference, torch.tensor(each_full()), atol=1e-4)
    assert torch.allclose(reference, torch.tensor(each_shared()), atol=1e-4)

    seconds = {
        "batched (prompt once, one batch)": _time(batched, opts.repeats),
        "one at a time (prompt + action each)": _time(each_full, opts.repeats),
        "one at a time (prompt once, shared state)": _time(each_shared, opts.repeats),
    }
    print(
        f"{opts.candidates} candidates, prompt {len(context)} tokens, LSTM {opts.layers}x"
        f"{opts.hidden}, {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'method':<44}{'decisions/s':>12}{'ms/decision':>13}")
    for name, s in seconds.items():
        print(f"{name:<44}{1 / s:>12.1f}{1000 * s:>13.2f}")
    names = list(seconds)
    print(f"\nspeed-up of batched over one at a time: {seconds[names[1]] / seconds[names[0]]:.1f}x")
    print(
        f"speed-up of batched over shared-state one by one: {seconds[names[2]] / seconds[names[0]]:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
