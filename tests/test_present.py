"""`labkit present` without a server: parameters reach the notebook as papermill's would, names the
notebook does not declare are refused, and the page template asks nothing of a CDN."""

import nbformat
import pytest

from labkit.present import (
    TEMPLATE_DIR,
    find_notebook,
    inject,
    main,
    parameter_hook,
    query_parameters,
)


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import labkit as lk"),
        nbformat.v4.new_code_cell("seed = 0\nname = 'a'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(seed)"),
    ]
    return nb


def test_inject_puts_the_values_after_the_parameters_cell_of_a_copy():
    nb = _notebook()
    out = inject(nb, {"seed": 3, "name": "b c"})
    assert len(nb.cells) == 3  # the original is untouched
    assert out.cells[2].source.splitlines()[1:] == ["seed = 3", "name = 'b c'"]
    assert out.cells[2].metadata["tags"] == ["injected-parameters"]


def test_the_address_sets_declared_parameters_only_as_literals():
    args = {"seed": [b"3"], "name": [b"x"], "os": [b"__import__('os')"], "empty": []}
    assert query_parameters(args, {"seed", "name", "empty"}) == {"seed": 3, "name": "x"}


def test_the_hook_lets_the_address_override_the_command_line(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(_notebook(), path)
    hook = parameter_hook(path, {"seed": 1})

    class Request:  # what Voila hands the hook: the tornado handler
        request = type("R", (), {"query_arguments": {"seed": [b"7"], "other": [b"1"]}})()

    out = hook(Request(), _notebook(), str(tmp_path))
    assert "seed = 7" in out.cells[2].source and "other" not in out.cells[2].source


def test_an_undeclared_parameter_is_refused_with_the_valid_ones(capsys):
    assert main(["06", "-p", "sede", "3"]) == 2
    err = capsys.readouterr().err
    assert "does not declare sede" in err and "seed" in err


def test_an_unknown_notebook_is_refused(tmp_path, capsys):
    assert main([str(tmp_path / "none.ipynb")]) == 2
    assert "no notebook" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        find_notebook("99")


def test_the_page_template_drops_the_cdn_stylesheets():
    template = (TEMPLATE_DIR / "index.html.j2").read_text()
    assert "extends 'lab/index.html.j2'" in template
    assert template.count("cdn.jsdelivr.net") == 2 and template.count("data:text/css,") == 2
