"""Run the notebook series headless: papermill executes each notebook, nbconvert exports HTML.

    python -m labkit.series                      # the main job: every notebook at its demo size
    python -m labkit.series --quick              # the notebooks' own quick parameters (smoke run)
    python -m labkit.series --only 03 -p max_minutes 10 -p device cuda

Every notebook has two sizes. Its `parameters` cell holds the *quick* values, which nbval (`make
test`) runs so that the tests stay fast. The *demo* size, the one the main job (`make series`) runs
by default, makes the results worth looking at (a model whose samples read like the plays, agents
that win); the values live in one place, `DEMO_PARAMETERS` below. `--quick` leaves them out; `-p KEY
VALUE` overrides both. A notebook receives only the parameters its `parameters` cell declares.

Each executed notebook and its HTML page land in the output folder (the pages share `_static/` and
open offline: labkit/export.py); one line is printed when a
notebook starts and one when it ends (wall time, ok or the error), then a summary table, also
written as summary.json. A failing notebook does not stop the others; the exit code is 1 if any
failed.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

# The demo size of each notebook, by file name without ".ipynb": what `python -m labkit.series`
# passes unless --quick is given (-p overrides). A notebook missing here runs at its quick values,
# which already show its results. Every name must be declared in the notebook's `parameters` cell
# (tests/test_series.py checks). "{run_dir}" in a string becomes the run folder (the output folder
# unless -p run_dir says otherwise). The whole main job must stay within 15 minutes on the
# project's 2-core CPU machine.
DEMO_PARAMETERS: dict[str, dict[str, object]] = {
    # `labkit train`'s CPU default (README, "The CPU default"): the whole corpus, 2,000 AdamW steps
    # at lr 0.015, about 2 minutes on 2 cores; the notebook asserts validation bits/char <= 2.3.
    # Measured: 2.151 at step 2,000 (deterministic for the seed); 2.320 at step 1,000, 2.251 when
    # max_minutes stopped a run on a loaded machine at step 1,369.
    "03_training": {
        "max_chars": 0,
        "lr": 0.015,
        "max_steps": 2000,
        "eval_every": 250,
        "max_minutes": 4.0,  # a guard for a slow machine: the loop needs about 2 minutes
        "target_bpc": 2.3,
    },
    # Samples from and scores notebook 03's demo model instead of training a small one; the whole
    # corpus, so that its test split is text that model never trained on.
    "04_sampling_and_scoring": {
        "checkpoint": "{run_dir}/03_training/best.pt",
        "max_chars": 0,
    },
    # Agents trained in the run by their recipes (labkit/agents/recipes.py) on the recipes' expert
    # episodes, with fewer optimizer steps than the benchmark's so that the whole job fits; the
    # notebook asserts that each agent beats the random policy on unseen episodes. Coin Collector
    # learns its rooms between steps 750 and 1,250 (README, TextWorld). The desk's recipe (composed
    # requests read twice, lr 0.002) on seed 0, 100 episodes each: at 700 steps validation loss
    # 0.096, unseen 0.88, held-out 0.72, injected 0.83; at 1,000 steps 0.032, 1.00, 0.76, 1.00
    # (at 1,200: 0.98, 0.90, 0.99; at its 3,000: 1.00, 0.97, 1.00); the calendar's validation
    # loss is 0.011-0.012 at step 250.
    # Measured: 05 took 491 s with 1,250 / 1,000 / 500 steps on a day the whole job took 16 min
    # 28 s, hence these.
    "05_agents": {
        "tasks": ["coin_collector", "customer_service", "calendar"],
        "train_episodes": 0,
        "train_steps": {"coin_collector": 1100, "customer_service": 1000, "calendar": 250},
        "threads": 2,  # the main job has the machine to itself: 1.6x faster than one thread
        "eval_episodes": 12,
        "guard_episodes": 60,
        "check_claims": True,
    },
    # The demos are driven by notebook 05's desk agent.
    "06_interactive_demos": {"agent_run": "{run_dir}/05-customer_service"},
    # Canaries in more of the plays, trained longer (two character models of about 40 s each),
    # five-digit secrets ranked exactly among 10^5; the minimal pairs scored by 03's model, the
    # fairness and misuse counts played by 05's desk agent.
    "07_risks": {
        "max_chars": 150000,
        "max_steps": 600,
        "repeats": [0, 1, 4, 16, 64],
        "canaries_per_count": 2,
        "digits": 5,
        "samples": 4000,
        "bias_checkpoint": "{run_dir}/03_training/best.pt",
        "agent_run": "{run_dir}/05-customer_service",
        "cases": 16,
        "misuse_episodes": 60,
    },
}


def list_notebooks(folder: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    """The series in order (file names start with their number), optionally filtered by prefix.

    Raises:
        FileNotFoundError: no notebooks, or a prefix in `only` that matches none.
    """
    books = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not books:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {folder}")
    if only:
        missing = [o for o in only if not any(p.name.startswith(o) for p in books)]
        if missing:
            names = ", ".join(p.name for p in books)
            raise FileNotFoundError(f"no notebook starts with {missing}; the series is: {names}")
        books = [p for p in books if any(p.name.startswith(o) for o in only)]
    return books


def literal_value(text: str) -> object:
    """`-p key value` values: JSON literals where they parse (numbers, true/false), else strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_parameter_option(parser: argparse.ArgumentParser, help: str) -> None:
    """The `-p KEY VALUE` option (papermill's), repeatable; read the values with literal_value."""
    parser.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help=help
    )


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged `parameters`.

    Read with `ast` rather than papermill's inspector, which gives up on comments holding `=` or `'`.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for node in ast.parse(source).body:
                target = node.target if isinstance(node, ast.AnnAssign) else None
                targets = [target] if target else getattr(node, "targets", [])
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def demo_parameters(path: Path, run_dir: str) -> dict[str, object]:
    """The notebook's demo size from DEMO_PARAMETERS, "{run_dir}" filled in ({} if it has none).

    Raises:
        ValueError: a demo parameter the notebook does not declare (a typo, or a renamed parameter).
    """
    demo = DEMO_PARAMETERS.get(path.stem, {})
    undeclared = sorted(set(demo) - declared_parameters(path))
    if undeclared:
        raise ValueError(
            f"DEMO_PARAMETERS[{path.stem!r}] sets {', '.join(undeclared)}, which {path.name} does "
            f"not declare in its parameters cell; fix the name in labkit/series.py or the notebook."
        )
    return {
        key: value.replace("{run_dir}", run_dir) if isinstance(value, str) else value
        for key, value in demo.items()
    }


class _DropPapermillParsingNoise(logging.Filter):
    """Drop papermill's "Unable to parse line" and "Passed unknown parameter" warnings.

    Its parameter inspector gives up on comments holding `=` or `'`, so it warns about parameters
    a notebook does declare; `declared_parameters` reads the cell properly and main() refuses the
    ones no notebook declares.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not text.startswith(("Unable to parse line", "Passed unknown parameter"))


for _name in ("papermill", "papermill.translators"):  # a logger's filters miss its children's
    logging.getLogger(_name).addFilter(_DropPapermillParsingNoise())


def run_notebook(
    path: Path, out_dir: Path, parameters: dict[str, object], html: bool = True
) -> float:
    """Execute one notebook with the parameters it declares; write .ipynb (and .html) to out_dir.

    Returns:
        Wall-clock seconds.
    Raises:
        papermill.PapermillExecutionError: a cell failed (the executed notebook is still written).
    """
    import papermill as pm

    declared = declared_parameters(path)
    params = {k: v for k, v in parameters.items() if k in declared}
    out = out_dir / path.name
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(out),
            parameters=params,
            cwd=str(path.parent),
            progress_bar=False,
            kernel_name="python3",
        )
    finally:
        if html and out.exists():
            export_html(out)
    return time.perf_counter() - start


def export_html(notebook: Path) -> Path:
    """Write an HTML page of an executed notebook beside it that opens offline (labkit.export)."""
    from labkit.export import export_html as offline_page

    return offline_page(notebook)


def failure(e: Exception) -> str:
    """The status line of a notebook that failed: the error the notebook raised, on one line."""
    if hasattr(e, "ename") and hasattr(e, "evalue"):  # papermill's PapermillExecutionError
        name, message = e.ename, e.evalue
    else:
        name, message = type(e).__name__, str(e)
    return f"failed: {name}: {' '.join(str(message).split())}".rstrip()


def _finite(value: object) -> object:
    """`value`, with NaN and infinities (which JSON does not have) replaced by None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.series", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="runs/series", help="output folder (default runs/series)")
    parser.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 01 03")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run each notebook at its own quick parameters, not at the demo size (DEMO_PARAMETERS)",
    )
    add_parameter_option(
        parser,
        "parameter for every notebook that declares KEY (papermill -p); overrides the demo size",
    )
    parser.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    args = parser.parse_args(argv)

    try:
        books = list_notebooks(NOTEBOOK_DIR, only=args.only)
    except FileNotFoundError as e:
        print(f"python -m labkit.series: {e}", file=sys.stderr)
        return 2
    parameters = {k: literal_value(v) for k, v in args.p}
    declared = set().union(*(declared_parameters(path) for path in books))
    unknown = sorted(set(parameters) - declared)
    if unknown:  # a typo would otherwise be dropped in silence
        print(
            f"python -m labkit.series: no selected notebook declares {', '.join(unknown)}; they "
            f"declare {', '.join(sorted(declared)) or 'no parameters'}.",
            file=sys.stderr,
        )
        return 2
    out_dir = Path(args.out).resolve()
    parameters.setdefault("run_dir", str(out_dir))  # checkpoints go beside the executed notebooks
    plans = []  # (notebook, size, its parameters: the demo size unless --quick, -p on top)
    try:
        for path in books:
            demo = {} if args.quick else demo_parameters(path, str(parameters["run_dir"]))
            plans.append((path, "demo" if demo else "quick", {**demo, **parameters}))
    except ValueError as e:
        print(f"python -m labkit.series: {e}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    # Executed notebooks keep their figures: "plotly_mimetype" lets JupyterLab render them natively
    # when the .ipynb is opened; the HTML pages redraw them with the folder's shared plotly.js.
    os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook")
    summary = []
    for i, (path, size, params) in enumerate(plans, 1):
        passed = {k: v for k, v in params.items() if k in declared_parameters(path)}
        shown = ", ".join(f"{k}={v!r}" for k, v in passed.items() if k != "run_dir")
        label = f"[{i}/{len(plans)}] {path.name}:"
        print(f"{label} start, {size} size" + (f" ({shown})" if shown else ""), flush=True)
        start = time.perf_counter()
        try:
            seconds = round(run_notebook(path, out_dir, passed, html=not args.no_html), 1)
            status = "ok"
        except Exception as e:  # report and go on: one broken notebook should not hide the rest
            seconds, status = None, failure(e)
        wall = time.perf_counter() - start
        summary.append(
            {"notebook": path.name, "seconds": _finite(seconds), "status": status, "size": size,
             "parameters": {k: _finite(v) for k, v in passed.items()}}
        )  # fmt: skip
        print(f"{label} {status} after {wall if seconds is None else seconds:.1f} s", flush=True)
    text = json.dumps(summary, indent=2, allow_nan=False)  # strict JSON: null, never NaN
    (out_dir / "summary.json").write_text(text + "\n")
    total = sum(s["seconds"] for s in summary if s["status"] == "ok" and s["seconds"] is not None)
    print(f"\n{'notebook':<40} {'seconds':>8}  status")
    for s in summary:
        seconds = "-" if s["seconds"] is None else s["seconds"]
        print(f"{s['notebook']:<40} {seconds:>8}  {s['status']}")
    print(f"{'total':<40} {total:>8.1f}\nexecuted notebooks and HTML in {out_dir}")
    return 0 if all(s["status"] == "ok" for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
