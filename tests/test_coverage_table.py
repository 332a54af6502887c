"""The README coverage table: written only on request, checked against what a whole green run saved."""

from __future__ import annotations

from pathlib import Path

from tests import coverage
from tests.coverage import BEGIN, END, Row


def _repo(tmp_path: Path) -> Path:
    for folder in coverage.CODE:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text(f"# t\n\n{BEGIN}\n| old |\n{END}\n\nafter\n")
    return tmp_path


ROWS = [Row("bert", "fill-mask", "onnx", True, True, "ORTModelForMaskedLM"),
        Row("albert", "fill-mask", "torchscript", False, None, None, "not applicable: x")]


def test_check_fails_until_written_then_passes(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    rows_file = repo / "build" / "rows.json"
    coverage.save(ROWS, rows_file, root=repo)
    readme = repo / "README.md"
    recorded = coverage.load(rows_file, root=repo)
    assert [r.arch for r in recorded] == ["albert", "bert"]  # sorted, whatever order the tests recorded in
    assert not coverage.is_current(readme, recorded)
    assert coverage.rewrite_readme(readme, recorded)
    assert coverage.is_current(readme, recorded)
    text = readme.read_text()
    assert text.startswith("# t\n") and text.endswith(f"{END}\n\nafter\n")
    assert "| bert | fill-mask | onnx | yes | yes | ORTModelForMaskedLM |" in text


def test_rows_of_other_code_or_no_rows_are_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    rows_file = repo / "build" / "rows.json"
    try:
        coverage.load(rows_file, root=repo)
        raise AssertionError("no rows saved: must be refused")
    except coverage.NotRecorded as e:
        assert "does not exist" in str(e)
    coverage.save(ROWS, rows_file, root=repo)
    (repo / "pipeline" / "a.py").write_text("x = 2\n")  # the code changed after the run
    try:
        coverage.load(rows_file, root=repo)
        raise AssertionError("rows of other code: must be refused")
    except coverage.NotRecorded as e:
        assert "other code" in str(e)
    coverage.forget(rows_file)
    assert not rows_file.exists()


def test_running_tests_never_writes_the_readme() -> None:
    import inspect

    from tests import conftest

    source = inspect.getsource(conftest)
    assert "rewrite_readme" not in source and "write_text" not in source
