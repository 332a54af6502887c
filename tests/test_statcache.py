"""The stat cache: an unchanged file is hashed once; a changed or replaced one is always hashed again."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from pipeline.filehash import RACY_NS, StatCache

OLD = time.time_ns() - 10 * RACY_NS  # a modification time the cache may trust


def _file(path: Path, data: bytes, mtime_ns: int = OLD) -> Path:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_unchanged_file_is_hashed_once_across_processes(tmp_path: Path) -> None:
    f = _file(tmp_path / "a.bin", b"a" * 1000)
    cache = StatCache(tmp_path / "state.json")
    assert cache.sha256(f) == _sha(b"a" * 1000) and cache.hashed == 1
    assert cache.sha256(f) == _sha(b"a" * 1000) and cache.hashed == 1
    cache.save()
    again = StatCache(tmp_path / "state.json")  # the next build
    assert again.sha256(f) == _sha(b"a" * 1000) and again.hashed == 0


def test_a_same_size_rewrite_is_caught_even_with_its_mtime_set_back(tmp_path: Path) -> None:
    f = _file(tmp_path / "a.bin", b"a" * 1000)
    cache = StatCache()
    cache.sha256(f)
    _file(f, b"b" * 1000, mtime_ns=OLD)  # same size, same mtime: ctime still moves
    assert cache.sha256(f) == _sha(b"b" * 1000) and cache.hashed == 2
    _file(f, b"c" * 1000, mtime_ns=time.time_ns())
    assert cache.sha256(f) == _sha(b"c" * 1000)


def test_a_replaced_file_is_caught(tmp_path: Path) -> None:
    f = _file(tmp_path / "a.bin", b"a" * 1000)
    cache = StatCache()
    cache.sha256(f)
    other = _file(tmp_path / "b.bin", b"z" * 1000)
    os.replace(other, f)  # another inode at the same path
    assert cache.sha256(f) == _sha(b"z" * 1000) and cache.hashed == 2


def test_a_touched_file_is_hashed_again_and_keeps_its_hash(tmp_path: Path) -> None:
    f = _file(tmp_path / "a.bin", b"a" * 1000)
    cache = StatCache()
    cache.sha256(f)
    os.utime(f, ns=(OLD + 5, OLD + 5))
    assert cache.sha256(f) == _sha(b"a" * 1000) and cache.hashed == 2


def test_a_racily_new_file_is_not_remembered(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"new")  # modified now: a change in the same tick could keep every stat field
    cache = StatCache()
    cache.sha256(f)
    cache.sha256(f)
    assert cache.hashed == 2


def test_a_damaged_cache_only_costs_hashing(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{nonsense", encoding="utf-8")
    f = _file(tmp_path / "a.bin", b"a")
    cache = StatCache(tmp_path / "state.json")
    assert cache.sha256(f) == _sha(b"a") and cache.hashed == 1
