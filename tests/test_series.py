"""The series runner: demo sizes, failures carry the notebook's error, unknown parameters, strict
summary.json.

Tiny notebooks in a temporary folder stand in for the real series, so each test takes seconds.
"""

import json
from pathlib import Path

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from labkit import series


def write_notebook(folder: Path, name: str, parameters: str, body: str) -> Path:
    """A notebook with a `parameters` cell and one code cell."""
    book = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    book.cells = [cell, nbformat.v4.new_code_cell(body)]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / name
    nbformat.write(book, path)
    return path


@pytest.fixture
def books(tmp_path, monkeypatch):
    """Two notebooks, 01 (declares steps) passes and 02 (declares width) fails; the runner's folder."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder, "01_ok.ipynb", "steps = 1", "assert steps == 3, steps")
    write_notebook(
        folder, "02_broken.ipynb", "width = 2",
        'raise ValueError("the corpus is empty;\\nuse a longer one")',
    )  # fmt: skip
    monkeypatch.setattr(series, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(series, "DEMO_PARAMETERS", {})  # the real notebooks' sizes do not apply
    monkeypatch.setenv("PLOTLY_RENDERER", "json")  # main() would set it for the whole process
    return folder


@pytest.fixture
def sized(tmp_path, monkeypatch):
    """A notebook whose quick size is steps=1 and demo size steps=3, and which records what it got."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder, "01_sized.ipynb", 'steps = 1\nlabel = "quick"\nrun_dir = "."',
        'import json, pathlib\n'
        'pathlib.Path(run_dir, "seen.json").write_text(json.dumps([steps, label]))',
    )  # fmt: skip
    monkeypatch.setattr(series, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(series, "DEMO_PARAMETERS", {"01_sized": {"steps": 3, "label": "demo"}})
    monkeypatch.setenv("PLOTLY_RENDERER", "json")
    return folder


def seen(out: Path) -> list:
    """What the `sized` notebook's parameters were when it ran: [steps, label]."""
    return json.loads((out / "seen.json").read_text())


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in summary.json"))


def test_a_failed_notebook_reports_its_error_and_the_summary_is_strict_json(books, tmp_path):
    out = tmp_path / "out"
    assert series.main(["--out", str(out), "--no-html", "-p", "steps", "3"]) == 1
    summary = strict_json((out / "summary.json").read_text())
    assert [row["notebook"] for row in summary] == ["01_ok.ipynb", "02_broken.ipynb"]
    assert summary[0]["status"] == "ok" and summary[0]["seconds"] > 0  # steps=3 reached it
    assert summary[1]["status"] == "failed: ValueError: the corpus is empty; use a longer one"
    assert summary[1]["seconds"] is None
    assert (out / "02_broken.ipynb").is_file()  # the executed notebook is kept to read


def test_a_parameter_no_selected_notebook_declares_is_refused(books, tmp_path, capsys):
    out = tmp_path / "out"
    assert series.main(["--out", str(out), "-p", "step", "3", "-p", "width", "4"]) == 2
    err = capsys.readouterr().err
    assert "no selected notebook declares step; they declare steps, width." in err
    assert series.main(["--out", str(out), "--only", "01", "-p", "width", "4"]) == 2
    assert "no selected notebook declares width; they declare steps." in capsys.readouterr().err
    assert not out.exists()  # nothing ran


def test_an_unknown_notebook_prefix_exits_2(books, tmp_path, capsys):
    assert series.main(["--out", str(tmp_path / "out"), "--only", "09"]) == 2
    assert "no notebook starts with ['09']" in capsys.readouterr().err


def test_the_failure_line_takes_the_notebooks_error_not_papermills_banner():
    error = PapermillExecutionError(
        cell_index=1, exec_count=1, source="", ename="ConfigError",
        evalue="lr must be positive, got 0.0; set --lr to a value above 0.", traceback=["..."],
    )  # fmt: skip
    assert str(error).startswith("\n")  # why the first line of str() was empty
    assert series.failure(error) == (
        "failed: ConfigError: lr must be positive, got 0.0; set --lr to a value above 0."
    )
    assert series.failure(OSError("disk full")) == "failed: OSError: disk full"


def test_the_demo_size_reaches_the_notebook_by_default(sized, tmp_path, capsys):
    out = tmp_path / "out"
    assert series.main(["--out", str(out), "--no-html"]) == 0
    assert seen(out) == [3, "demo"]
    row = strict_json((out / "summary.json").read_text())[0]
    assert row["size"] == "demo" and row["parameters"]["steps"] == 3
    printed = capsys.readouterr().out  # one line as it starts, one as it ends
    assert "[1/1] 01_sized.ipynb: start, demo size (steps=3, label='demo')" in printed
    assert "[1/1] 01_sized.ipynb: ok after " in printed


def test_quick_runs_the_notebooks_own_parameters(sized, tmp_path):
    out = tmp_path / "out"
    assert series.main(["--out", str(out), "--no-html", "--quick"]) == 0
    assert seen(out) == [1, "quick"]
    row = strict_json((out / "summary.json").read_text())[0]
    assert row["size"] == "quick" and "steps" not in row["parameters"]


def test_p_overrides_the_demo_size(sized, tmp_path):
    out = tmp_path / "out"
    assert series.main(["--out", str(out), "--no-html", "-p", "steps", "5"]) == 0
    assert seen(out) == [5, "demo"]  # -p wins for steps; the demo size still sets label
    assert series.main(["--out", str(out), "--no-html", "--quick", "-p", "label", "x"]) == 0
    assert seen(out) == [1, "x"]


def test_a_demo_parameter_the_notebook_does_not_declare_is_refused(sized, tmp_path, capsys):
    series.DEMO_PARAMETERS["01_sized"]["stpes"] = 4  # monkeypatched: undone after the test
    out = tmp_path / "out"
    assert series.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "DEMO_PARAMETERS['01_sized'] sets stpes, which 01_sized.ipynb does not declare" in err
    assert not out.exists()  # nothing ran
    assert series.main(["--out", str(out), "--no-html", "--quick"]) == 0  # --quick needs none


def test_run_dir_in_a_demo_value_becomes_the_run_folder(sized, tmp_path):
    series.DEMO_PARAMETERS["01_sized"]["label"] = "{run_dir}/03/best.pt"
    out = tmp_path / "out"
    assert series.main(["--out", str(out), "--no-html"]) == 0
    assert seen(out) == [3, f"{out.resolve()}/03/best.pt"]


def test_the_real_demo_sizes_name_notebooks_and_parameters_they_declare():
    books = {path.stem: path for path in series.list_notebooks()}
    for stem in series.DEMO_PARAMETERS:
        assert stem in books, f"DEMO_PARAMETERS names {stem!r}, not a notebook of the series"
        assert series.demo_parameters(books[stem], "runs/series")  # raises on an undeclared name
