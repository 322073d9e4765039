"""Run the notebook series headless: papermill executes each notebook, nbconvert exports HTML.

    python -m labkit.series                      # every notebook, quick defaults, into runs/series/
    python -m labkit.series --only 03 -p max_minutes 10 -p device cuda

Each executed notebook and its HTML export land in the output folder; a summary table (notebook,
seconds, status) is printed and written as summary.json. A failing notebook does not stop the others;
the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


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


def _literal(text: str) -> object:
    """`-p key value` values: JSON literals where they parse (numbers, true/false), else strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


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
    """Write an HTML copy of an executed notebook beside it (figures embedded, works offline)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.series", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="runs/series", help="output folder (default runs/series)")
    parser.add_argument("--only", nargs="*", help="notebook prefixes to run, e.g. 01 03")
    parser.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="parameter for every notebook that declares KEY (papermill -p)",
    )
    parser.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    args = parser.parse_args(argv)

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Executed notebooks keep their figures: "notebook" embeds plotly.js so the HTML works offline,
    # "plotly_mimetype" lets JupyterLab render them natively when the .ipynb is opened.
    os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook")
    parameters = {k: _literal(v) for k, v in args.p}
    parameters.setdefault("run_dir", str(out_dir))  # checkpoints go beside the executed notebooks
    summary = []
    for path in list_notebooks(only=args.only):
        print(f"running {path.name} ...", flush=True)
        try:
            seconds = run_notebook(path, out_dir, parameters, html=not args.no_html)
            status = "ok"
        except Exception as e:  # report and go on: one broken notebook should not hide the rest
            seconds, status = float("nan"), f"failed: {type(e).__name__}: {str(e).splitlines()[0]}"
        summary.append({"notebook": path.name, "seconds": round(seconds, 1), "status": status})
        print(f"  {status} ({seconds:.1f} s)", flush=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    total = sum(s["seconds"] for s in summary if s["status"] == "ok")
    print(f"\n{'notebook':<40} {'seconds':>8}  status")
    for s in summary:
        print(f"{s['notebook']:<40} {s['seconds']:>8}  {s['status']}")
    print(f"{'total':<40} {total:>8.1f}\nexecuted notebooks and HTML in {out_dir}")
    return 0 if all(s["status"] == "ok" for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
