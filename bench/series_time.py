"""Notebook series wall time: the main command end to end at its quick defaults.

    python -m bench.series_time                  # python -m labkit.series, HTML exports included
    python -m bench.series_time --no-html --only 01 02

Times `python -m labkit.series --quick --out <tmp>` (the quick sizes the tests run), and reads each notebook's seconds
from its summary.json. The reference, measured in the same run, is a notebook that only starts a
kernel, imports labkit and calls lk.setup (executed and exported the same way): the fixed price of
one notebook, so "x empty" says how much work a notebook does beyond starting up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from bench.common import REPO, header, print_table, ratio
from labkit.series import run_notebook


def empty_notebook_seconds(folder: Path, html: bool) -> float:
    """Seconds to execute (and export) a notebook that imports labkit and calls lk.setup."""
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("import labkit as lk\n\ndevice = lk.setup(seed=0)")]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "00_empty.ipynb"
    nbformat.write(book, path)
    out = folder / "out"
    out.mkdir()
    return run_notebook(path, out, {}, html=html)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.series_time", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    parser.add_argument("--only", nargs="*", default=[], help="notebook prefixes, e.g. 01 03")
    opts = parser.parse_args(argv)
    header("notebook series wall time (python -m labkit.series)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        empty = empty_notebook_seconds(Path(tmp), html=not opts.no_html)
        out = Path(tmp) / "series"
        command = [sys.executable, "-m", "labkit.series", "--quick", "--out", str(out)]
        command += ["--no-html"] * opts.no_html + (["--only", *opts.only] if opts.only else [])
        print("  " + " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if not (out / "summary.json").exists():
            raise RuntimeError(f"labkit.series wrote no summary:\n{proc.stderr[-3000:]}")
        summary = json.loads((out / "summary.json").read_text())
    rows: list[dict[str, Any]] = [
        {"notebook": "empty notebook (kernel, import labkit)", "seconds": empty, "x_empty": 1.0,
         "status": "ok"},
    ]  # fmt: skip
    for s in summary:
        rows.append({**s, "x_empty": ratio(s["seconds"], empty)})
    rows.append(
        {"notebook": "series end to end (process wall time)", "seconds": wall,
         "x_empty": ratio(wall, empty * len(summary)), "status": f"exit code {proc.returncode}"}
    )  # fmt: skip
    print()
    print_table(
        rows,
        [
            ("notebook", "notebook", ""),
            ("seconds", "seconds", ",.1f"),
            ("x_empty", "x empty", ".1f"),
            ("status", "status", ""),
        ],
    )
    print(
        f"\nx empty: seconds over the empty notebook's; for the whole series, over {len(summary)} "
        f"empty notebooks (the part of the wall time that is start-up). HTML exports "
        f"{'off' if opts.no_html else 'on'}."
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
