"""`labkit.pages` without a browser: what counts as a page that works, and bad input."""

import pytest

from labkit.pages import PageCheck, main


def test_a_page_is_ok_only_with_no_raw_formula_every_figure_drawn_and_no_error():
    assert PageCheck("a.html", formulas=3, figures=2, drawn=2).ok
    assert not PageCheck("a.html", raw_latex=1).ok
    assert not PageCheck("a.html", figures=2, drawn=1).ok
    assert not PageCheck("a.html", errors=["request failed: https://cdn.example/x.js"]).ok
    line = str(PageCheck("a.html", figures=2, drawn=1, errors=["figure 2 of 2 not drawn"]))
    assert line.startswith("FAIL a.html") and "1/2 figures drawn" in line and "not drawn" in line


def test_a_folder_without_pages_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path)])
    assert stop.value.code == 2
    assert "no HTML page there; give an exported page or its folder" in capsys.readouterr().err


def test_without_a_browser_the_error_says_what_to_install_and_nothing_else(
    tmp_path, capsys, monkeypatch
):
    (tmp_path / "a.html").write_text("<html></html>")
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "apt-get install chromium" in err and "usage:" not in err
