"""Every error the pipeline raises on purpose, and the exit code each one maps to.

A message says what failed, quoting the offending value, and what to do next. The CLI prints
``str(error)`` and exits with ``error.exit_code``; no traceback unless ``--debug``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EXIT_FAILED = 1  # the input was fine, the build or push failed
EXIT_BAD_INPUT = 2  # the recipe, source or command line is wrong


class PipelineError(Exception):
    """Base class. ``hint`` is the next step for the user, appended to the message."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def lines(self) -> list[str]:
        """The lines the CLI prints, one per problem."""
        return [str(self)]


@dataclass(frozen=True)
class Problem:
    """One problem in an input file: where it is and what is wrong."""

    path: str
    line: int | None
    col: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        # one problem, one line: a key or value from the file may hold line breaks or control characters
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InputError(PipelineError):
    """A command-line input other than a recipe is wrong (a git revision, a folder)."""

    exit_code = EXIT_BAD_INPUT


class RecipeError(PipelineError):
    """The recipe file is unreadable, not YAML, or does not match the schema."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class SourceError(PipelineError):
    """The source checkpoint is missing, unpinned, unsafe or unreadable."""

    exit_code = EXIT_BAD_INPUT


class UnsupportedModelError(SourceError):
    """The checkpoint loads but its architecture or task is not supported by a target."""


class StageError(PipelineError):
    """A stage could not produce its output."""

    def __init__(self, stage: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{stage}: {message}", hint=hint)
        self.stage = stage


class ParityError(StageError):
    """An artifact ran but its outputs differ from the eager model beyond its gate."""

    def __init__(self, failures: Sequence[str], report: Any) -> None:
        self.failures = list(failures)
        self.report = report
        super().__init__("parity", "; ".join(self.failures))

    def lines(self) -> list[str]:
        return [f"parity: {f}" for f in self.failures]


class DiskFullError(PipelineError):
    """The disk (or a quota, or the file-size limit) ran out while writing an output: the message
    names the output folder, the space free there and how much the build needed."""


class PublishError(PipelineError):
    """Pushing to the Hub failed or was refused."""

    def __init__(self, message: str, *, repo_id: str, request_id: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.repo_id = repo_id
        self.request_id = request_id
