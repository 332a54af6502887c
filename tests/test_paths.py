"""pipeline.paths: the one rule for untrusted paths, table-driven."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.paths import UnsafePath, inside, regular_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a file, a folder, links that stay inside and links that leave; secret/ beside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("b")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token").write_text("hf_secret")
    (tmp_path / "root-sibling").mkdir()
    (tmp_path / "root-sibling" / "x").write_text("x")
    os.symlink("a.txt", root / "link-in")
    os.symlink("sub", root / "dirlink-in")
    os.symlink(tmp_path / "secret" / "token", root / "link-out")
    os.symlink("../secret", root / "dirlink-out")
    os.symlink("/etc/passwd", root / "passwd")
    os.symlink("no-such-file", root / "dangling")
    os.mkfifo(root / "fifo")
    return root


# (path, kind, expected: a path relative to root, or the reason fragment of the refusal)
CASES = [
    ("a.txt", "file", "a.txt"),
    ("sub/b.txt", "file", "sub/b.txt"),
    ("./sub/../a.txt", "file", "a.txt"),
    ("sub", "dir", "sub"),
    ("link-in", "file", "a.txt"),
    ("dirlink-in/b.txt", "file", "sub/b.txt"),
    ("missing.txt", "any", "missing.txt"),
    ("", "any", "empty path"),
    ("   ", "any", "empty path"),
    ("/etc/passwd", "any", "is an absolute path"),
    ("C:/x", "any", "is an absolute path"),
    ("..", "any", "leaves its folder ('..')"),
    ("../secret/token", "any", "leaves its folder ('..')"),
    ("sub/../../secret/token", "any", "leaves its folder ('..')"),
    ("sub\\..\\..\\x", "any", "contains a backslash"),
    ("a\0b", "any", "contains a NUL byte"),
    ("link-out", "any", "is a symlink to "),
    ("passwd", "file", "is a symlink to /etc/passwd, outside its folder"),
    ("dirlink-out/token", "any", "passes through dirlink-out, a symlink to "),
    ("dirlink-in/../../root-sibling/x", "any", "leaves its folder ('..')"),
    ("missing.txt", "file", "does not exist"),
    ("dangling", "file", "does not exist"),
    ("sub", "file", "is not a regular file"),
    ("a.txt", "dir", "is not a folder"),
    ("fifo", "file", "is not a regular file"),
    (None, "any", "expected a relative path (a string)"),
    (7, "any", "expected a relative path (a string)"),
    (["a.txt"], "any", "expected a relative path (a string)"),
]


@pytest.mark.parametrize("path,kind,expected", CASES, ids=[f"{c[0]!r}-{c[1]}" for c in CASES])
def test_inside(tree: Path, path: object, kind: str, expected: str) -> None:
    if expected.endswith((".txt", "sub")) or expected == "missing.txt":
        assert inside(tree, path, kind=kind) == Path(os.path.realpath(tree)) / expected  # type: ignore[arg-type]
    else:
        with pytest.raises(UnsafePath) as info:
            inside(tree, path, what="file", kind=kind)  # type: ignore[arg-type]
        assert expected in info.value.reason, info.value.reason
        assert str(info.value).startswith("file ")
        assert "\n" not in str(info.value)


def test_links_within_admits_a_wider_folder(tmp_path: Path) -> None:
    """A cache snapshot: its files are links into the repo's blobs/, outside the snapshot folder."""
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    os.symlink("../../blobs/abc", snapshot / "config.json")
    os.symlink(tmp_path, snapshot / "escape")
    assert inside(snapshot, "config.json", kind="file", links_within=repo) == repo / "blobs" / "abc"
    with pytest.raises(UnsafePath, match="outside its folder"):
        inside(snapshot, "config.json", kind="file")
    with pytest.raises(UnsafePath, match="outside its folder"):
        inside(snapshot, "escape", links_within=repo)


def test_regular_files_lists_real_files_and_refuses_links_out(tree: Path) -> None:
    refused = []
    for _ in range(5):  # one refusal at a time, each naming the entry
        with pytest.raises(UnsafePath) as info:
            regular_files(tree)
        refused.append(info.value.path)
        os.unlink(tree / info.value.path)
    assert sorted(refused) == ["dangling", "dirlink-out", "fifo", "link-out", "passwd"]
    files = regular_files(tree)
    assert list(files) == ["a.txt", "link-in", "sub/b.txt"]
    assert files["link-in"] == Path(os.path.realpath(tree / "a.txt"))
    (tree / ".cache").mkdir()
    (tree / ".cache" / "x").write_text("x")
    assert ".cache/x" not in regular_files(tree, skip=(".cache",))
