"""Notebooks are committed clean and keep the series' shape (title, parameters, summary, exercises)."""

import json
from pathlib import Path

import pytest

from labkit.nbhygiene import CHECK_MARK, clean, main, problems

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_series_exists_in_order():
    assert len(NOTEBOOKS) >= 4
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == sorted(set(numbers))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_shaped(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert problems(nb) == [], (
        f"{path.name} is dirty: run `python -m labkit.nbhygiene --fix {path}`"
    )
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and _text(cells[0]).startswith("# ")
    markdown = "\n".join(_text(c) for c in cells if c["cell_type"] == "markdown")
    assert "## Summary" in markdown and "## Exercises" in markdown
    assert "papermill" in markdown, "the markdown should show the papermill command for a full run"
    first_code = next(_text(c) for c in cells if c["cell_type"] == "code")
    assert "import labkit as lk" in first_code and "lk.setup(" in first_code
    checked = [c for c in cells if c["cell_type"] == "code" and CHECK_MARK in _text(c)]
    assert checked and all(c["outputs"] for c in checked), "nbval must compare stored outputs"


def test_clean_strips_what_git_should_not_keep():
    nb = {
        "metadata": {"kernelspec": {"name": "python3"}, "widgets": {"state": {}}},
        "nbformat": 4,
        "nbformat_minor": 5,
        "cells": [
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"], "scrolled": True},
                "execution_count": 3,
                "source": "steps = 10\n",
                "outputs": [],
            },
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": 4,
                "source": "print(1)",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}],
            },
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": 5,
                "source": f"{CHECK_MARK}\nprint(2)",
                "outputs": [
                    {
                        "output_type": "execute_result",
                        "execution_count": 5,
                        "metadata": {},
                        "data": {"text/plain": "2"},
                    }
                ],
            },
        ],
    }
    found = problems(nb)
    assert any("widgets" in p for p in found) and any("execution count" in p for p in found)
    assert any("not marked" in p for p in found)
    cleaned = clean(nb)
    assert problems(cleaned) == []
    assert cleaned["cells"][1]["outputs"] == [] and cleaned["cells"][2]["outputs"]


def test_parameters_cell_must_hold_literals():
    nb = {
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "execution_count": None,
                "source": "steps = 10\nlr = steps * 2\n",
                "outputs": [],
            }
        ],
    }
    assert any("not `name = literal`" in p for p in problems(nb))


def test_a_missing_notebook_is_named_in_a_usage_error_not_a_traceback(tmp_path, capsys):
    assert main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().out
    assert main([]) == 2  # no files: the usage
