"""One fingerprint-and-reuse rule for every step of a build (golden, each stage, parity, bench, package).

As dvc and Olive key their stages and passes: a step's key is the sha256 of its kind and version,
its params, the keys of its inputs (other steps' keys, files' sha256) and the versions of the
libraries it declares (beyond pipeline.versions.BASE, which shape every step). A step is reused when
its record holds the same key and its output files still hash as recorded; otherwise it reruns and
the build says why. A damaged record (unreadable, not a record) is reported once and treated as a
miss, never trusted. This module decides reuse; it runs nothing and writes no outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.versions import library_versions

Emit = Callable[[str, str], None]  # (step, message)


@dataclass(frozen=True)
class Step:
    """What a step's output depends on. ``inputs`` holds the keys of what it reads (another step's key,
    a file's sha256), ``params`` its own settings, ``libraries`` the distributions it declares."""

    kind: str
    version: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    libraries: Iterable[str] = ()

    def key(self) -> str:
        blob = json.dumps({"kind": self.kind, "version": self.version, "params": self.params, "inputs": self.inputs,
                           "libraries": library_versions(self.libraries), "pipeline": __version__},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Reasons:
    """How the build says why a step reruns (the wording users and tests know)."""

    forced: str = "forced"
    missing: str = "no finished output yet"
    changed: str = "its inputs or settings changed"
    damaged: str = "its record is damaged"


class Records:
    """Reads step records and decides reuse, for one build."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self._reported: set[Path] = set()

    def read(self, path: Path) -> tuple[dict[str, Any] | None, bool]:
        """A record, and whether it was damaged (reported once per build; a missing one is not damaged)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, False
        except (OSError, ValueError) as e:
            self._damaged(path, f"{type(e).__name__}")
            return None, True
        if not isinstance(data, dict):
            self._damaged(path, "not a record")
            return None, True
        return data, False  # (one without a fingerprint, e.g. bench.json of `convert bench`, matches no key)

    def _damaged(self, path: Path, why: str) -> None:
        if path not in self._reported:
            self._reported.add(path)
            self.emit("cache", f"{path}: damaged record ({why}), treated as a miss")

    def reuse(self, path: Path, key: str, *, forced: bool = False, reasons: Reasons = Reasons(),
              check: Callable[[dict[str, Any]], str | None] | None = None) -> tuple[dict[str, Any] | None, str]:
        """The record at ``path`` if the step keyed ``key`` can be reused, else None and why it must run.

        ``check`` looks at the outputs the record names and returns why they cannot be trusted, if so.
        """
        if forced:
            return None, reasons.forced
        record, damaged = self.read(path)
        if record is None:
            return None, reasons.damaged if damaged else reasons.missing
        if record.get("fingerprint") != key:
            return None, reasons.changed
        try:
            why = check(record) if check is not None else None
        except (KeyError, TypeError, AttributeError, ValueError):  # a record without what it must name
            self._damaged(path, "incomplete")
            return None, reasons.damaged
        if why:
            return None, why
        return record, ""
