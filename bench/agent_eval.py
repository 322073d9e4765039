"""Behaviour cloning measured on unseen episodes: the LSTM agent against the random and expert policies.

    python -m bench.agent_eval                                  # every task (tens of minutes on CPU)
    python -m bench.agent_eval --tasks customer_service calendar
    python -m bench.agent_eval --tasks calendar -- --max_steps 400   # TrainConfig overrides

For each task the agent is trained by `labkit.agents.train_agent` with the environment's recipe
(`labkit.agents.recipes.RECIPES`: expert episodes on the recipe's training seeds and levels, its
prompt layout, tokenizer and model), then evaluated greedily on unseen seeds (1000, 1001, ...) of
every evaluation level, which may include levels no training game had, beside the random policy
(seeded) and the expert. Tool-use tasks add rows for request wordings that training never saw
("heldout", typed as people type) and for requests carrying a prompt injection ("injected").
Reliability: pass^k for k = 1..4 of the agent sampling at temperature `--temperature` (4 tries of
each of `--passk-seeds` unseen tasks); the greedy agent's pass^k equals its pass^1.

Prints a table and writes <out>/agent_eval.json. Nothing here defines how an agent is trained.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.cloning import train_agent
from labkit.agents.evaluation import repeated_trials
from labkit.agents.harness import evaluate, wilson_interval
from labkit.agents.policies import LMPolicy
from labkit.agents.recipes import RECIPES, Recipe
from labkit.config import parse_overrides

TOOL_USE = ("customer_service", "calendar")
PASS_K_TRIES = 4


def _row(task: str, split: object, policy: str, won: int, played: int) -> dict:
    low, high = wilson_interval(won, played)
    return {
        "task": task,
        "split": split,
        "policy": policy,
        "won": won,
        "episodes": played,
        "success": round(won / played, 4),
        "ci95": [round(low, 4), round(high, 4)],
    }


def evaluate_split(
    task: str, recipe: Recipe, policies: list, split: str, **env_args: object
) -> list[dict]:
    """Rows for every policy on the recipe's evaluation levels (one per level, and "all")."""
    envs = recipe.make_envs(recipe.eval_levels, **env_args)
    rows = []
    for policy in policies:
        won = played = 0
        for level, env in envs:
            report = evaluate(policy, env, recipe.eval_seeds(), max_steps=recipe.max_steps)
            won, played = won + report.successes, played + report.episodes
            name = split if level is None else f"{split} L{level}"
            rows.append(_row(task, name, policy.name, report.successes, report.episodes))
        if len(envs) > 1:
            rows.append(_row(task, f"{split} all", policy.name, won, played))
    for _, env in envs:
        env.close()
    return rows


def pass_k_row(task: str, recipe: Recipe, agent: LMPolicy, temperature: float, seeds: int) -> dict:
    """pass^1..4 of the agent sampling at `temperature` on the first eval level's unseen seeds."""
    (_, env), *rest = recipe.make_envs(recipe.eval_levels)

    def sampling(try_index: int) -> LMPolicy:
        return LMPolicy(
            agent.scorer,
            agent.history_steps,
            greedy=False,
            temperature=temperature,
            seed=try_index,
            name=f"lstm T={temperature}",
            values=agent.values,
            **agent.prompt_options,
        )

    report = repeated_trials(
        sampling, env, recipe.eval_seeds(seeds), PASS_K_TRIES, max_steps=recipe.max_steps
    )
    for _, other in [(None, env), *rest]:
        other.close()
    return {"task": task, "temperature": temperature, "seeds": seeds, "pass_k": report.pass_k}


def run_task(task: str, out: Path, seed: int, overrides: dict, opts: argparse.Namespace) -> dict:
    """Train the task's agent by its recipe and evaluate it with the baselines."""
    recipe = RECIPES[task]
    start = time.perf_counter()
    agent, history = train_agent(task, run_dir=str(out), seed=seed, **overrides)
    best = min(history, key=lambda r: r["val_loss"])
    print(
        f"{task}: trained in {time.perf_counter() - start:.0f} s, best val loss "
        f"{best['val_loss']:.3f} at step {best['step']}",
        flush=True,
    )
    policies = [agent, RandomPolicy(seed=seed), ExpertPolicy()]
    rows = evaluate_split(task, recipe, policies, "unseen")
    if task in TOOL_USE:
        rows += evaluate_split(task, recipe, policies, "heldout", wordings="heldout", typed=1.0)
    if task == "customer_service":
        rows += evaluate_split(task, recipe, policies, "injected", injection=1.0)
    pass_k = pass_k_row(task, recipe, agent, opts.temperature, opts.passk_seeds)
    return {"rows": rows, "pass_k": pass_k, "train_seconds": round(time.perf_counter() - start)}


def print_table(results: dict) -> None:
    """task | split | agent | random | expert, each as won/episodes = rate [95% CI]; then pass^k."""
    width = 29  # "200/200 = 1.00 [0.98, 1.00]" and two spaces
    print(f"\n{'task':<18}{'split':<16}{'lstm agent':<{width}}{'random':<{width}}expert")
    for task, result in results.items():
        cells: dict[str, dict[str, str]] = {}
        for r in result["rows"]:
            low, high = r["ci95"]
            text = f"{r['won']}/{r['episodes']} = {r['success']:.2f} [{low:.2f}, {high:.2f}]"
            cells.setdefault(r["split"], {})[r["policy"]] = text
        for split, by in cells.items():
            line = f"{task:<18}{split:<16}"
            line += "".join(f"{by.get(p, '-'):<{width}}" for p in ("lstm", "random", "expert"))
            print(line.rstrip())
    print("\npass^k of the agent sampling (the greedy agent's pass^k = its pass^1 for every k)")
    for task, result in results.items():
        p = result["pass_k"]
        ks = "  ".join(f"pass^{k} {v:.2f}" for k, v in p["pass_k"].items())
        print(f"{task:<18}T={p['temperature']}, {p['seeds']} tasks x {PASS_K_TRIES} tries: {ks}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    own, train_args = (
        (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench.agent_eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tasks", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=0, help="training seed and random-policy seed")
    parser.add_argument("--temperature", type=float, default=0.5, help="sampling for pass^k")
    parser.add_argument("--passk-seeds", type=int, default=50, help="tasks for pass^k")
    parser.add_argument(
        "--out", default="runs/bench", help="folder for the agents' runs and results"
    )
    opts = parser.parse_args(own)
    overrides = parse_overrides(train_args)
    out = Path(opts.out)
    results = {}
    for task in opts.tasks:
        results[task] = run_task(task, out, opts.seed, overrides, opts)
        print_table(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_eval.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nresults written to {out / 'agent_eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
