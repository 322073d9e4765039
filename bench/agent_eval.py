"""Behaviour cloning measured on unseen games: the LSTM agent against the random and expert policies.

    python -m bench.agent_eval                                  # every task (tens of minutes on CPU)
    python -m bench.agent_eval --tasks coin_collector           # the headline figure only
    python -m bench.agent_eval --tasks calendar -- --max_steps 400 --hidden_dim 128

For each task an LSTM is trained only by likelihood on transcripts of the expert playing the
training seeds (0, 1, ...) of each level, then evaluated greedily on unseen seeds (1000, 1001, ...)
of the same levels, beside the random policy (seeded) and the expert. Arguments after `--` are
TrainConfig overrides for every task's agent. Prints a table and writes <out>/agent_eval.json.
TextWorld games are generated once and cached (see labkit.agents.textworld_env).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.agents.baselines import ExpertPolicy, RandomPolicy
from labkit.agents.cloning import agent_config, clone_expert, expert_episodes
from labkit.agents.harness import evaluate, wilson_interval
from labkit.agents.registry import make_env
from labkit.config import parse_overrides

EVAL_SEED_OFFSET = 1000  # evaluation seeds start here; training seeds start at 0


@dataclass
class Task:
    env: str  # registry name
    levels: tuple[int, ...]  # TextWorld levels; () for environments without levels
    train_per_level: int  # expert episodes per level to learn from
    eval_per_level: int  # unseen episodes per level to evaluate on
    max_steps: int  # the harness's step limit per episode
    tokenizer: str  # "word" where actions are few words; "char" where they carry numbers
    history_steps: int | None = None  # past (observation, action) pairs in each prompt
    prompt: dict = field(default_factory=dict)  # format_prompt's show_goal / last_action
    train: dict = field(default_factory=dict)  # TrainConfig overrides of AGENT_DEFAULTS


# Coin Collector: the room and the last move decide each step (the one exit not taken back), so the
# prompt is the room with the last action restated next to the decision, without the goal (which
# only restates the walkthrough). Word embeddings as wide as the state let the LSTM keep which
# direction words it read; with 64 it learnt neither the exits nor the way back (README, Agents).
TASKS = {
    "coin_collector": Task(
        "coin_collector", (2, 4, 6, 8, 10), 30, 20, 50, "word", history_steps=0,
        prompt={"show_goal": False, "last_action": True},
        train={"embed_dim": 256, "bptt": 128, "batch_size": 16, "max_steps": 1500,
               "eval_every": 250},
    ),
    "treasure_hunter": Task("treasure_hunter", (1, 2), 15, 10, 50, "word"),
    "customer_service": Task("customer_service", (), 200, 100, 10, "char"),
    "calendar": Task("calendar", (), 200, 100, 10, "char"),
}  # fmt: skip


def _envs(task: Task) -> list[tuple[int | None, object]]:
    """(level, environment) pairs of a task; level None where the environment has none."""
    if not task.levels:
        return [(None, make_env(task.env, max_steps=task.max_steps))]
    return [(lv, make_env(task.env, level=lv, max_steps=task.max_steps)) for lv in task.levels]


def run_task(
    name: str,
    task: Task,
    out: Path,
    seed: int,
    overrides: dict[str, str],
    history_steps: int | None = -1,
) -> list[dict]:
    """Train one agent for `task` and evaluate it with the baselines, level by level.

    history_steps: past steps in each prompt; -1 takes the task's own (None: the whole episode).

    Returns:
        One row per (level, policy) and one "all" row per policy.
    """
    envs = _envs(task)
    start = time.perf_counter()
    episodes = [
        t
        for _, env in envs
        for t in expert_episodes(env, range(task.train_per_level), task.max_steps)
    ]
    settings = {"tokenizer": task.tokenizer, **task.train, **overrides}
    config = agent_config(run_dir=str(out), name=f"agent-{name}", seed=seed, **settings)
    steps = task.history_steps if history_steps == -1 else history_steps
    agent, history = clone_expert(episodes, config, history_steps=steps, **task.prompt)
    train_s = time.perf_counter() - start
    print(
        f"{name}: {len(episodes)} expert episodes, val loss {history[-1]['val_loss']:.3f} "
        f"after {history[-1]['step']} steps, {train_s:.0f} s",
        flush=True,
    )
    eval_seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + task.eval_per_level)
    rows = []
    for policy in (agent, RandomPolicy(seed=seed), ExpertPolicy()):
        won = played = 0
        for level, env in envs:
            report = evaluate(policy, env, eval_seeds, max_steps=task.max_steps)
            won, played = won + report.successes, played + report.episodes
            rows.append(_row(name, level, policy.name, report.successes, report.episodes))
            rows[-1]["mean_steps"] = round(report.mean_steps, 2)
        if len(envs) > 1:
            rows.append(_row(name, "all", policy.name, won, played))
    for _, env in envs:
        env.close()
    return rows


def _row(task: str, level: object, policy: str, won: int, played: int) -> dict:
    low, high = wilson_interval(won, played)
    return {
        "task": task,
        "level": level if level is not None else "-",
        "policy": policy,
        "won": won,
        "episodes": played,
        "success": round(won / played, 4),
        "ci95": [round(low, 4), round(high, 4)],
    }


def print_table(rows: list[dict]) -> None:
    """task | level | agent | random | expert, each as won/episodes = rate [95% CI]."""
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        text = f"{r['won']}/{r['episodes']} = {r['success']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        cells.setdefault((r["task"], str(r["level"])), {})[r["policy"]] = text
    print(f"\n{'task':<18}{'level':>6}  {'lstm agent':<26}{'random':<26}{'expert':<26}")
    for (task, level), by in cells.items():
        line = f"{task:<18}{level:>6}  "
        line += "".join(f"{by.get(p, '-'):<26}" for p in ("lstm", "random", "expert"))
        print(line)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    own, train_args = (
        (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench.agent_eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seed", type=int, default=0, help="training seed and random-policy seed")
    parser.add_argument(
        "--history-steps", type=int, default=-1,
        help="past steps in each prompt (default: each task's, see TASKS)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default="runs/bench", help="folder for the agents' runs and results"
    )
    opts = parser.parse_args(own)
    overrides = parse_overrides(train_args)
    out = Path(opts.out)
    rows = []
    for name in opts.tasks:
        rows += run_task(name, TASKS[name], out, opts.seed, overrides, opts.history_steps)
        print_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_eval.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\nrows written to {out / 'agent_eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
