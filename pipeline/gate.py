"""The gate: tolerances an artifact's outputs must meet against the eager model, and the shared policies.

A leaf (pydantic only): the recipe's ``validation.gates``, every stage's default gate and the parity
comparison all read this one model. :func:`lossy_gate` is the gate any stage gives a lossy variant
(fp16, int8, …): task terms, not elementwise tolerances.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.strict import StrictModel
from pipeline.tasks import IMAGE, task_kind


class Gate(StrictModel):
    """Tolerances an artifact's outputs must meet against the eager model.

    ``atol``/``rtol`` apply elementwise as ``|a - e| <= atol + rtol * |e|``; ``min_cosine`` to the
    cosine similarity of each sample's flattened output; ``min_pooled_cosine`` to the cosine of
    each sample's mean-pooled token embeddings (attention mask applied, as sentence-transformers
    pools); ``min_argmax_agreement`` to the share of positions whose argmax over the last axis
    agrees (only for outputs named ``*logits``). A field left out (None) is not gated. ``batches``
    says which golden batches the gate applies to (:func:`pipeline.parity.gates_batch`); metrics are
    reported for all of them.
    """

    atol: float | None = Field(default=None, ge=0, description="absolute tolerance")
    rtol: float | None = Field(default=None, ge=0, description="relative tolerance")
    min_cosine: float | None = Field(default=None, ge=-1, le=1,
                                     description="lowest per-sample cosine similarity")
    min_pooled_cosine: float | None = Field(default=None, ge=-1, le=1,
                                            description="lowest per-sample cosine of mean-pooled embeddings")
    min_argmax_agreement: float | None = Field(default=None, ge=0, le=1,
                                               description="lowest share of equal argmax (logits)")
    batches: Literal["all", "texts"] = Field(
        default="all", description="gate every golden batch but the long-text ones, or only real texts: the "
                                   "recipe's, and with a cosine threshold also long texts at max_seq_length")

    def merged(self, override: Gate | None) -> Gate:
        """This gate with the fields ``override`` sets replacing ours."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


# fp32-class artifacts: elementwise, and every argmax of a logits output equal
EXACT = Gate(atol=1e-4, rtol=1e-4, min_cosine=0.9999, min_argmax_agreement=1.0)


def lossy_gate(task: str) -> Gate:
    """The gate of a lossy variant (fp16 or int8 weights), in task terms: a sentence embedding's pooled
    cosine for embedding models, argmax agreement (and a loose atol) for the others; on the recipe's
    real texts, or on every batch for image tasks (which have no texts)."""
    if task == "feature-extraction":
        return Gate(min_pooled_cosine=0.99, batches="texts")
    return Gate(min_argmax_agreement=1.0, atol=0.1, rtol=0.0, batches="all" if task_kind(task) == IMAGE else "texts")
