"""sha256 of files: how every output of a build and every file of a package is identified.

:class:`StatCache` remembers each hash with the file's stat signature (size, mtime_ns, ctime_ns, inode,
device), as git's index and dvc's state do, so a no-op rebuild does not read an unchanged output
again. A changed or replaced file is still caught: writing changes mtime and ctime (setting mtime
back by hand changes ctime), a replaced file has another inode. A file modified (mtime) within
``RACY_NS`` of being hashed is not remembered (git's "racily clean" entries): a change made in the
same clock tick as the hash could leave every stat field as it was; a later write moves mtime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from pipeline.atomic import write_json

RACY_NS = 2_000_000_000  # a file younger than this when hashed is hashed again next time
FORMAT = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class StatCache:
    """sha256 of files, re-read only when a file's stat signature changed since it was hashed.

    ``path`` is where the cache is kept between processes (None: this process only). It is advisory:
    a missing or damaged one only costs hashing again, and a concurrent writer's entries are checked
    like any other. :meth:`save` keeps the entries used since it was loaded (stale ones drop out).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._known: dict[str, list] = {}
        self._used: dict[str, list] = {}
        self.hashed = 0  # files read (and hashed) by this cache, for tests and benchmarks
        if path is not None:
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("format") == FORMAT:
                    self._known = {str(k): list(v) for k, v in data["files"].items()}

    def sha256(self, path: Path) -> str:
        """The file's sha256, hashed only when it is not known with the same stat signature."""
        key = os.path.abspath(path)
        st = os.stat(key)
        sig = _signature(st)
        entry = self._known.get(key)
        if entry is not None and entry[:-1] == sig:
            self._used[key] = entry
            return str(entry[-1])
        now = time.time_ns()
        digest = sha256_file(Path(key))
        self.hashed += 1
        after = os.stat(key)
        # remembered only if it did not change while read and is not racily new
        if _signature(after) == sig and now - st.st_mtime_ns > RACY_NS:
            self._known[key] = self._used[key] = [*sig, digest]
        return digest

    def save(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            write_json(self.path, {"format": FORMAT, "files": self._used})
