"""Find values in a recipe that look like credentials, before anything copies or prints them.

A recipe is copied, normalized, into the published manifest and model card, and schema errors
quote values: a token pasted into it would be published. :func:`find` walks parsed recipe data and
names every field (never the value) whose value matches a token pattern — Hugging Face
(``hf_…``), GitHub (``ghp_…``, ``github_pat_…``), AWS access key ids (``AKIA…``) — or is a
high-entropy string under a key like ``*_token``, ``*_secret``, ``password``, ``api_key``.

Standard library only; it reads data, never files, and reports no value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Any

PATTERNS = (
    ("a Hugging Face token (hf_…)", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("a Hugging Face token (api_org_…)", re.compile(r"\bapi_org_[A-Za-z0-9]{30,}")),
    ("a GitHub token (ghp_/gho_/ghu_/ghs_/ghr_…)", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}")),
    ("a GitHub token (github_pat_…)", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("an AWS access key id (AKIA…)", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
)
SECRET_KEY = re.compile(r"(?:^|[_-])(?:token|secret|password|passwd|api[_-]?key|access[_-]?key)$", re.IGNORECASE)
MIN_SECRET_LENGTH = 16
MIN_ENTROPY_BITS = 3.0  # per character; English words and ids sit below, random tokens above


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values()) if text else 0.0


def kind_of(value: str, key: str | None = None) -> str | None:
    """What credential ``value`` (under mapping key ``key``) looks like, or None."""
    for kind, pattern in PATTERNS:
        if pattern.search(value):
            return kind
    if key is not None and SECRET_KEY.search(key) and len(value) >= MIN_SECRET_LENGTH and " " not in value \
            and entropy(value) >= MIN_ENTROPY_BITS:
        return f"a secret (a high-entropy value under {key!r})"
    return None


def find(data: Any, *, public: Collection[str] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(location, kind)`` of every value in ``data`` that looks like a credential, except at the
    dotted locations listed in ``public``. A mapping key that looks like one is reported at its
    mapping's location with kind prefixed "a key that is"."""
    def walk(node: Any, loc: tuple[str, ...], key: str | None) -> Iterator[tuple[tuple[str, ...], str]]:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and (kind := kind_of(k)) is not None and ".".join(loc) not in public:
                    yield loc, f"a key that is {kind}"
                    continue
                yield from walk(v, (*loc, str(k)), str(k))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, (*loc, str(i)), key)
        elif isinstance(node, str) and ".".join(loc) not in public and (kind := kind_of(node, key)) is not None:
            yield loc, kind

    yield from walk(data, (), None)
