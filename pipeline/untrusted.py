"""The one reader of structured files the project does not control: recipes, files inside a
checkpoint (config.json, modules.json, README front matter), files a recipe names (texts,
calibration) and files of a downloaded repo (manifest.json, parity.json).

Every read is bounded before it starts: only a regular file is read (opened non-blocking and
checked with ``fstat``, so a FIFO or a device cannot hang the reader), at most ``max_bytes`` of it.
YAML and JSON are then parsed under limits on nesting depth and on the number of values (YAML's
aliases counted as expanded, so an alias bomb is refused before it is built); duplicate keys and
YAML tags (``!!binary``, ``!!python/…``) are refused. This module reads; it decides nothing about
what the values mean.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError

MAX_VALUES = 100_000  # values (scalars, lists, mappings), YAML aliases expanded
MAX_DEPTH = 64  # levels of nesting
CHUNK = 1 << 20
PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map"))


class Refused(PipelineError):
    """A file, or a value in it, over a limit or of a kind that is not read. ``line``/``col`` (1-based)
    say where when known; ``kind`` is one of ``folder``, ``special``, ``size``, ``limit``, ``syntax``."""

    def __init__(self, reason: str, *, kind: str, line: int | None = None, col: int | None = None,
                 size: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.kind, self.line, self.col, self.size = reason, kind, line, col, size


@dataclass(frozen=True)
class Issue:
    """A problem at one place of a parsed YAML document that does not stop the parse (a duplicate
    key, an overlong value, a tag): the caller reports every one."""

    line: int
    col: int
    field: str
    message: str


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_values: int = MAX_VALUES
    max_depth: int = MAX_DEPTH
    max_chars: int | None = None  # characters in one string value (YAML)
    what: str = "a file"  # for messages: "over the limit of 64 levels in a recipe"


CHECKPOINT_JSON = Limits(max_bytes=16 * 2**20, max_values=1_000_000, what="a checkpoint's JSON file")


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``.

    Raises:
        Refused: a folder (``kind="folder"``), a FIFO, socket or device (``"special"``), or larger
            than ``max_bytes`` (``"size"``, with ``size``; checked before reading and while reading).
        OSError: the file cannot be opened (FileNotFoundError, PermissionError, ...).
    """
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise Refused("is a folder, expected a file", kind="folder")
        if not stat.S_ISREG(info.st_mode):
            raise Refused("is not a regular file (a FIFO, socket or device is never read)", kind="special")
        if info.st_size > max_bytes:
            raise Refused(f"{info.st_size} bytes: over the limit of {max_bytes} bytes", kind="size",
                          size=info.st_size)
        chunks, total = [], 0
        while chunk := os.read(fd, min(CHUNK, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew since fstat
                raise Refused(f"more than {max_bytes} bytes: over the limit of {max_bytes} bytes", kind="size",
                              size=total)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, max_bytes: int) -> str:
    """:func:`read_bytes` decoded as UTF-8 (raises UnicodeDecodeError as decoding does)."""
    return read_bytes(path, max_bytes).decode("utf-8")


# --- YAML -----------------------------------------------------------------------------------


class _Count:
    """Values visited so far (an alias re-entering a node counts it again) and whether any was an alias."""

    def __init__(self) -> None:
        self.values = 0
        self.seen: set[int] = set()
        self.aliased = False


def _explicit_tag(loader: Any, node: yaml.Node) -> str | None:
    """The tag written in the document (``!!binary``, ``!foo``), or None where the tag is the one
    YAML resolves by itself (plain scalars, quoted strings, plain lists and mappings)."""
    if isinstance(node, yaml.ScalarNode):
        implicit = loader.resolve(yaml.ScalarNode, node.value, (True, False)) if not node.style \
            else "tag:yaml.org,2002:str"
        if node.tag == implicit:
            return None
    elif isinstance(node, yaml.SequenceNode) and node.tag == "tag:yaml.org,2002:seq":
        return None
    elif isinstance(node, yaml.MappingNode) and node.tag == "tag:yaml.org,2002:map":
        return None
    return node.tag.replace("tag:yaml.org,2002:", "!!")


def _walk(loader: Any, node: yaml.Node, loc: tuple[str, ...], out: dict[tuple[str, ...], tuple[int, int]],
          issues: list[Issue], limits: Limits, count: _Count) -> None:
    count.values += 1
    if id(node) in count.seen:
        count.aliased = True
    count.seen.add(id(node))
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if count.values > limits.max_values:  # counted as constructed: an alias re-enters the nodes it names
        how = " once its aliases are expanded" if count.aliased else ""
        raise Refused(f"more than {limits.max_values} values{how}: over the limit of {limits.max_values} values "
                      f"in {limits.what}", kind="limit", line=line, col=col)
    if len(loc) > limits.max_depth:
        raise Refused(f"nested more than {limits.max_depth} levels deep: over the limit of {limits.max_depth} "
                      f"levels in {limits.what}", kind="limit", line=line, col=col)
    out[loc] = (line, col)
    tag = _explicit_tag(loader, node)
    if tag is not None:
        issues.append(Issue(line, col, ".".join(loc), f"the YAML tag {tag[:40]!r} is not accepted (only plain "
                                                      "strings, numbers, true/false, lists and mappings)"))
    if isinstance(node, yaml.ScalarNode) and limits.max_chars is not None and len(node.value) > limits.max_chars:
        issues.append(Issue(line, col, ".".join(loc), f"a value of {len(node.value)} characters: over the limit "
                                                      f"of {limits.max_chars} characters for one value"))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_line, key_col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key in seen:
                issues.append(Issue(key_line, key_col, ".".join((*loc, key)),
                                    f"duplicate key (first given on line {seen[key]})"))
            seen.setdefault(key, key_line)
            out[(*loc, key, "<key>")] = (key_line, key_col)
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(Issue(key_line, key_col, ".".join(loc), "a key must be a plain value, not a list "
                                                                      "or mapping"))
                continue
            _walk(loader, value_node, (*loc, key), out, issues, limits, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(loader, item, (*loc, str(i)), out, issues, limits, count)


def parse_yaml(text: str, limits: Limits) -> tuple[Any, dict[tuple[str, ...], tuple[int, int]], list[Issue]]:
    """One YAML document as Python data, the (line, col) of every value and key (keys as
    ``(*loc, key, "<key>")``), and the issues found (duplicate keys, tags, overlong values).

    With issues, the data is None: a document with a duplicate key or a tag is never constructed.

    Raises:
        Refused: over a limit (``kind="limit"``) or not YAML (``"syntax"``); line and col when known.
    """
    loader = None
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml: 10k values parse in ~0.1 s
        node = loader.get_single_node()
        positions: dict[tuple[str, ...], tuple[int, int]] = {}
        if node is None:
            return None, positions, []
        issues: list[Issue] = []
        _walk(loader, node, (), positions, issues, limits, _Count())
        if issues:
            return None, positions, issues
        return loader.construct_document(node), positions, []
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise Refused(f"invalid YAML: {what}", kind="syntax", line=mark.line + 1 if mark else None,
                      col=mark.column + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow; it knows where
        raise Refused(f"invalid YAML: character {e.character!r} at position {e.position} is not allowed",
                      kind="syntax") from None
    except yaml.YAMLError as e:
        raise Refused(f"invalid YAML: {e}", kind="syntax") from None
    except RecursionError:
        raise Refused(f"nested more than {limits.max_depth} levels deep: over the limit of {limits.max_depth} "
                      f"levels in {limits.what}", kind="limit") from None
    finally:
        if loader is not None:
            loader.dispose()


# --- JSON -----------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Refused(f"duplicate key {key[:80]!r} (a reader could take either value)", kind="syntax")
        out[key] = value
    return out


def parse_json(raw: bytes, limits: Limits) -> Any:
    """JSON ``raw`` (UTF-8) as Python data: duplicate keys refused, depth and value count bounded.

    Raises:
        Refused: not UTF-8 or not JSON (``kind="syntax"``), a duplicate key (``"syntax"``), or over
            a limit (``"limit"``).
    """
    if len(raw) > limits.max_bytes:
        raise Refused(f"{len(raw)} bytes: over the limit of {limits.max_bytes} bytes", kind="size", size=len(raw))
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise Refused(f"not UTF-8 text (byte {e.start})", kind="syntax") from None
    except RecursionError:
        raise Refused(f"nested more than {limits.max_depth} levels deep: over the limit of {limits.max_depth} "
                      f"levels in {limits.what}", kind="limit") from None
    except ValueError as e:
        raise Refused(f"not valid JSON: {str(e).splitlines()[0][:200]}", kind="syntax") from None
    values, stack = 0, [(data, 0)]
    while stack:  # iterative: the depth is what is being checked
        value, depth = stack.pop()
        values += 1
        if depth > limits.max_depth:
            raise Refused(f"nested more than {limits.max_depth} levels deep: over the limit of {limits.max_depth} "
                          f"levels in {limits.what}", kind="limit")
        if values > limits.max_values:
            raise Refused(f"more than {limits.max_values} values: over the limit of {limits.max_values} values in "
                          f"{limits.what}", kind="limit")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return data


def read_json(path: Path, limits: Limits) -> Any:
    """:func:`read_bytes` then :func:`parse_json` (raises what they raise)."""
    return parse_json(read_bytes(path, limits.max_bytes), limits)
