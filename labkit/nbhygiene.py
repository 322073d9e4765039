"""Keep notebooks clean in git: no execution counts, no bulky outputs, trimmed metadata.

    python -m labkit.nbhygiene notebooks/*.ipynb          # report problems (exit 1 if any)
    python -m labkit.nbhygiene --fix notebooks/*.ipynb    # strip them in place

Only cells marked `# NBVAL_CHECK_OUTPUT` keep their (small) outputs: those are what nbval compares.
nbval skips ("Unrun reference cell has outputs") a cell whose execution count is null, so each checked
cell with outputs keeps the fixed count CHECKED_COUNT; every other cell has none.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
MAX_CHECKED_OUTPUT = 4000  # bytes of stored output per checked cell
CHECKED_COUNT = 1  # the execution count of checked cells: nbval needs one, git wants no churn
KEEP_NOTEBOOK_METADATA = {"kernelspec", "language_info"}
KEEP_CELL_METADATA = {"tags"}


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def problems(nb: dict) -> list[str]:
    """What is wrong with a notebook as stored in git (an empty list when it is clean)."""
    found = []
    cells = nb.get("cells", [])
    extra = set(nb.get("metadata", {})) - KEEP_NOTEBOOK_METADATA
    if extra:
        found.append(f"notebook metadata keeps {sorted(extra)}")
    code = [c for c in cells if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        found.append(f"{len(params)} cells tagged 'parameters' (papermill needs exactly one)")
    for c in params:
        try:
            tree = ast.parse(_source(c))
        except SyntaxError as e:
            found.append(f"parameters cell does not parse: {e}")
            continue
        for node in tree.body:
            ok = isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            if ok:
                try:
                    ast.literal_eval(node.value)
                except ValueError:
                    ok = False
            if not ok:
                found.append(f"parameters cell line {node.lineno} is not `name = literal`")
    for i, c in enumerate(cells):
        extra = set(c.get("metadata", {})) - KEEP_CELL_METADATA
        if extra:
            found.append(f"cell {i} metadata keeps {sorted(extra)}")
        if c["cell_type"] != "code":
            continue
        size = len(json.dumps(c.get("outputs", [])))
        checked = CHECK_MARK in _source(c)
        wanted = CHECKED_COUNT if checked and c.get("outputs") else None
        if c.get("execution_count") != wanted:
            found.append(
                f"cell {i} has execution count {c.get('execution_count')}, expected {wanted}"
            )
        if c.get("outputs") and not checked:
            found.append(f"cell {i} stores outputs but is not marked {CHECK_MARK}")
        elif size > MAX_CHECKED_OUTPUT:
            found.append(f"cell {i} stores {size} bytes of output (limit {MAX_CHECKED_OUTPUT})")
        for out in c.get("outputs", []):
            if out.get("execution_count") is not None:
                found.append(f"cell {i} output has an execution count")
    return found


def clean(nb: dict) -> dict:
    """Strip execution counts, metadata and the outputs of unchecked cells (in place; returns nb)."""
    nb["metadata"] = {
        k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_NOTEBOOK_METADATA
    }
    for c in nb.get("cells", []):
        c["metadata"] = {k: v for k, v in c.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        if c["cell_type"] != "code":
            continue
        if CHECK_MARK in _source(c):
            for out in c.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = None
                out.get("metadata", {}).clear()
        else:
            c["outputs"] = []
        c["execution_count"] = CHECKED_COUNT if c["outputs"] else None
    return nb


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or "-h" in args or "--help" in args:
        print(__doc__)
        return 0 if args else 2
    fix = "--fix" in args
    paths = [Path(a) for a in args if a != "--fix"]
    for path in paths:
        if not path.is_file():
            print(f"no notebook at {path}; give the .ipynb files to check, e.g. notebooks/*.ipynb")
            return 2
    bad = 0
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if fix:
            path.write_text(
                json.dumps(clean(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            nb = json.loads(path.read_text(encoding="utf-8"))
        for p in problems(nb):
            print(f"{path}: {p}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
