"""The one rule for paths that come from outside: they stay inside their root.

A path read from a checkpoint (``modules.json``), a downloaded manifest (artifact folders and
files, the files a runner opens), ``parity.json`` or an npz entry name is untrusted. It is
accepted only if it is a relative POSIX path that, resolved under its root, stays inside the root
and passes through no symbolic link that leaves it. :func:`inside` applies the rule to one path,
:func:`regular_files` to a whole folder. A Hugging Face cache snapshot is a folder of symlinks into
the repo's ``blobs/``; ``links_within`` names that wider folder links may point into.

This module imports only the standard library and :mod:`pipeline.errors`; it reads file metadata
(``lstat``), never file contents, and writes nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Literal

from pipeline.errors import EXIT_BAD_INPUT, PipelineError

Kind = Literal["file", "dir", "any"]


class UnsafePath(PipelineError):
    """A path from outside that is absolute, leaves its root, or is not the kind of entry expected.

    ``path`` is the path as given, ``reason`` what is wrong with it. Callers usually re-raise it as
    their own error (a recipe problem, a repo that fails verification) with ``reason`` in the text.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path: object, reason: str, *, what: str = "path") -> None:
        self.path = path
        self.reason = reason
        self.what = what
        super().__init__(f"{what} {_shown(path)}: {reason}")


class MissingPath(UnsafePath):
    """The path keeps the rule but names nothing (``kind`` "file" or "dir" asked for an entry)."""


def _shown(path: object) -> str:
    text = repr(path) if isinstance(path, str) else repr(str(path)) if isinstance(path, os.PathLike) else \
        f"of type {type(path).__name__}"
    return text if len(text) <= 120 else text[:117] + "..."


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def parts(path: object, *, what: str = "path") -> tuple[str, ...]:
    """The components of an untrusted relative path, after the lexical checks (no filesystem access).

    Raises:
        UnsafePath: not a string, empty, absolute, with a NUL byte or a backslash, or one whose
            ``..`` components climb above its start.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise UnsafePath(path, "expected a relative path (a string)", what=what)
    if not path or path.strip() == "":
        raise UnsafePath(path, "empty path", what=what)
    if "\0" in path:
        raise UnsafePath(path, "contains a NUL byte", what=what)
    if "\\" in path:
        raise UnsafePath(path, "contains a backslash: expected a relative POSIX path", what=what)
    pure = PurePosixPath(path)
    if pure.is_absolute() or (len(path) > 1 and path[1] == ":"):
        raise UnsafePath(path, "is an absolute path; expected a path relative to its folder", what=what)
    depth = 0
    for part in pure.parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise UnsafePath(path, "leaves its folder ('..')", what=what)
    return tuple(p for p in pure.parts if p != ".")


def inside(root: Path, path: object, *, what: str = "path", kind: Kind = "any",
           links_within: Path | None = None) -> Path:
    """``root / path`` with every symlink resolved, after checking it stays inside ``root``.

    Each component is looked at in turn: ``..`` may not climb above ``root``, and a component that
    is a symlink must resolve inside ``links_within`` (default: ``root``). ``kind`` ``"file"``
    requires an existing regular file (not a FIFO, device or socket: reading one could block or
    never end), ``"dir"`` an existing folder; ``"any"`` accepts a missing entry.

    Raises:
        UnsafePath: the path breaks the rule, or is not of the ``kind`` asked for.
        MissingPath: (an UnsafePath) ``kind`` is "file" or "dir" and there is nothing there.
    """
    names = parts(path, what=what)
    real_root = os.path.realpath(root)
    allowed = os.path.realpath(links_within) if links_within is not None else real_root
    current = real_root
    walked: list[str] = []
    for name in names:
        walked.append(name)
        if name == "..":
            if current == real_root:
                raise UnsafePath(path, "leaves its folder ('..')", what=what)
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, name)
        if os.path.islink(step):
            target = os.path.realpath(step)
            if not _is_within(target, allowed):
                link = "/".join(walked)
                raise UnsafePath(path, (f"is a symlink to {target}, outside its folder" if link == "/".join(names)
                                        else f"passes through {link}, a symlink to {target} outside its folder"),
                                 what=what)
            current = target
        else:
            current = step
        if not _is_within(current, real_root) and not _is_within(current, allowed):
            raise UnsafePath(path, "leaves its folder", what=what)
    if kind != "any":
        try:
            mode = os.stat(current).st_mode
        except FileNotFoundError:
            raise MissingPath(path, "does not exist", what=what) from None
        except OSError as e:
            raise UnsafePath(path, f"cannot be read ({e.strerror})", what=what) from None
        if kind == "file" and not stat.S_ISREG(mode):
            raise UnsafePath(path, "is not a regular file", what=what)
        if kind == "dir" and not stat.S_ISDIR(mode):
            raise UnsafePath(path, "is not a folder", what=what)
    return Path(current)


def regular_files(root: Path, *, links_within: Path | None = None,
                  skip: Iterable[str] = ()) -> dict[str, Path]:
    """Every file below ``root``: ``{relative POSIX path: resolved path}``, sorted.

    Symlinks are followed only where they resolve inside ``links_within`` (default ``root``); a
    folder reached through a link is not descended into (a link cycle cannot loop). Components named
    in ``skip`` (e.g. ``.cache``) are left out.

    Raises:
        UnsafePath: a symlink resolving outside, or an entry that is neither a regular file nor a
            folder (FIFO, socket, device).
    """
    skipped = set(skip)
    found: dict[str, Path] = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        rel_top = os.path.relpath(top, root)
        dirs[:] = sorted(d for d in dirs if d not in skipped)
        for name in sorted([*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]):
            if name in skipped:
                continue
            rel = name if rel_top == "." else f"{rel_top}/{name}".replace(os.sep, "/")
            resolved = inside(root, rel, what="file", kind="any", links_within=links_within)
            mode = os.stat(resolved).st_mode if os.path.exists(resolved) else 0
            if stat.S_ISDIR(mode):
                continue  # a linked folder inside the root: its files are listed where they really are
            if not stat.S_ISREG(mode):
                raise UnsafePath(rel, "is not a regular file" if mode else "is a broken symlink", what="file")
            found[rel] = resolved
    return dict(sorted(found.items()))
