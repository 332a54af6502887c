"""Write-then-rename helpers: a reader never sees a half-written file or folder.

Every output of a build goes through here. A folder is filled under a hidden temporary name next
to its target and renamed into place only when complete; the previous good folder is replaced
only at that moment. A crash leaves at most a ``.tmp-*`` folder, which the next write removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target``, on error it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (outputs are never modified in place, so sharing is safe), or
    copy it where links are impossible (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_json(path: Path, data: Any) -> None:
    """Write JSON (sorted keys, trailing newline) through a temporary file and a rename."""
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def write_bytes(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sweep_temporaries(folder: Path, *, file_age_s: float = 60.0) -> list[Path]:
    """Remove the ``.<name>.tmp-*`` and ``.<name>.old-*`` entries directly in ``folder``: what writes
    killed mid-way (SIGKILL, power loss) left. Folders (stage outputs, the package: written only under
    the build's lock, which the caller holds) always; files only when older than ``file_age_s`` (a
    ``convert bench`` beside the build writes its report without that lock, and is done in
    milliseconds). Returns what was removed."""
    import time

    removed = []
    for stale in sorted([*folder.glob(".*.tmp-*"), *folder.glob(".*.old-*")]) if folder.is_dir() else []:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            try:
                if time.time() - stale.lstat().st_mtime < file_age_s:
                    continue
                stale.unlink()
            except FileNotFoundError:
                continue
        removed.append(stale)
    return removed
