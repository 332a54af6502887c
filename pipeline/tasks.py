"""Task names and what they mean to the pipeline: the one table of task kinds every layer reads.

optimum's names (``TasksManager``) are the recipe's; a ``-with-past`` suffix asks optimum's exporter
for a cache and does not change the kind. This module is a leaf: it imports nothing of the pipeline
and no library, and it knows no target.
"""

from __future__ import annotations

TEXT, GENERATION, SEQ2SEQ, IMAGE = "text", "generation", "seq2seq", "image"

# Encoder tasks whose model takes token batches and gives its outputs in one forward pass.
TEXT_TASKS = ("feature-extraction", "text-classification", "token-classification", "question-answering",
              "fill-mask")
# Tasks whose model outputs token embeddings a sentence embedding can be pooled from (optimum's names).
EMBEDDING_TASKS = ("feature-extraction", "sentence-similarity")
# optimum's synonym: a sentence-similarity model is a feature-extraction model (transformers.js knows only that)
SYNONYMS = {"sentence-similarity": "feature-extraction"}


def base_task(task: str) -> str:
    """The task without optimum's ``-with-past`` suffix."""
    return task.removesuffix("-with-past")


def task_kind(task: str) -> str:
    """``text``, ``generation`` (decoder-only), ``seq2seq`` or ``image``: what golden inputs look like."""
    base = base_task(task)
    if base == "text-generation":
        return GENERATION
    if base == "text2text-generation":
        return SEQ2SEQ
    if base.startswith("image-"):
        return IMAGE
    return TEXT


def one_forward(task: str | None) -> bool:
    """Whether the task's outputs come from one forward pass over token batches (no greedy decoding,
    no pixels, no per-choice batches): what a traced or exported forward can reproduce."""
    base = base_task(task or "")
    return task_kind(base) == TEXT and base != "multiple-choice"


def is_embedding(task: str) -> bool:
    return task in EMBEDDING_TASKS
