"""Golden and synthetic input batches, the export shape, and the names of the inputs and outputs they carry.

Golden inputs are the recipe's real texts (tokenized together, so with padding) plus synthetic
batches at the recipe's shapes, each with rows of different lengths (padding again). At least one
batch differs from the export shape in batch size and one in sequence length, so a shape baked
into a graph shows. Generation tasks' prompts are left-padded as batched generation pads them and
carry ``max_new_tokens``; image tasks' batches are ``pixel_values`` of seeded synthetic images.

A leaf: numpy only (tokenizers and image processors are passed in). It makes inputs and saves
them; it never runs a model or compares outputs (pipeline/parity.py does).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifact import Outputs

# optimum's ONNX exporter traces with batch 2, sequence 16 (optimum.utils.DEFAULT_DUMMY_SHAPES).
EXPORT_SHAPE = (2, 16)
TEXTS = "texts"  # the golden batch made of the recipe's real texts
PIXELS = "pixel_values"
DECODE_STEPS = 4  # greedy tokens generated per golden batch of a generation task
GENERATED = "generated_ids"  # integer output of a generation task: the greedy tokens
STEP_LOGITS = "step_logits"  # the logits each greedy token was picked from
MAX_NEW_TOKENS = "max_new_tokens"  # golden input: how many greedy steps to take
# The inputs a text model's golden batches carry (synthetic_batch makes these).
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")



@dataclass(frozen=True)
class GoldenBatch:
    name: str
    inputs: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        """[batch, sequence] of a token batch, [batch, channels, height, width] of an image batch."""
        main = self.inputs["input_ids"] if "input_ids" in self.inputs else self.inputs[PIXELS]
        return tuple(int(d) for d in main.shape)

    @property
    def padded_tokens(self) -> int:
        return int((self.inputs["attention_mask"] == 0).sum()) if "attention_mask" in self.inputs else 0


def golden_batches(texts: Sequence[str], shapes: Sequence[tuple[int, int]], tokenizer: Any,
                   max_positions: int | None, seed: int = 0) -> list[GoldenBatch]:
    """The recipe's texts as one padded batch, then one synthetic batch per shape.

    Synthetic rows have lengths from the full sequence down to a few tokens; ids are drawn from
    the tokenizer's ordinary (non-special) vocabulary, framed by its special tokens if it has them.
    """
    limit = min(max_positions or 512, getattr(tokenizer, "model_max_length", 512) or 512)
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="np")
    batches = [GoldenBatch(TEXTS, {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()})]
    names = set(encoded)
    rng = np.random.default_rng(seed)
    wanted = list(shapes)
    if all(b == EXPORT_SHAPE[0] for b, _ in [batches[0].shape, *wanted]) or \
            all(s == EXPORT_SHAPE[1] for _, s in [batches[0].shape, *wanted]):
        wanted.append((EXPORT_SHAPE[0] + 1, EXPORT_SHAPE[1] + 7))  # never only the export shape
    for b, s in wanted:
        s = min(s, limit)
        batches.append(GoldenBatch(f"synthetic_{b}x{s}", synthetic_batch(tokenizer, names, b, s, rng)))
    return batches


def synthetic_batch(tokenizer: Any, names: set[str], batch: int, seq: int, rng: np.random.Generator,
                    lengths: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Random ordinary tokens framed by the special tokens, rows of ``lengths`` real tokens (by
    default the first row full and the others shorter and shorter), padded to ``seq``."""
    special = set(tokenizer.all_special_ids)
    ordinary = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((batch, seq), pad, dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    if lengths is None:  # the first row is full length; the others shrink, so 2+ rows have padding
        lengths = [seq] + [max(1, int(seq * (batch - i) / (batch + 1))) for i in range(1, batch)]
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.choice(ordinary, size=n)
        if n >= 2 and tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None:
            ids[row, 0], ids[row, n - 1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        elif n >= 2 and tokenizer.bos_token_id is not None and tokenizer.eos_token_id is not None:
            ids[row, 0], ids[row, n - 1] = tokenizer.bos_token_id, tokenizer.eos_token_id
        mask[row, :n] = 1
    out = {"input_ids": ids}
    if "attention_mask" in names:
        out["attention_mask"] = mask
    if "token_type_ids" in names:
        out["token_type_ids"] = np.zeros_like(ids)
    return out


def prompt(inputs: Mapping[str, np.ndarray], left: bool) -> dict[str, np.ndarray]:
    """input_ids and attention_mask only (generate takes no token_type_ids), padding moved to the
    left for decoder-only models: batched generation continues every row from its last column."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if left:  # trailing padding moves to the front (a tokenizer that pads left has none)
        shifts = np.argmax(mask[:, ::-1] == 1, axis=1)  # trailing zeros of each row
        ids = np.stack([np.roll(row, int(n)) for row, n in zip(ids, shifts, strict=True)])
        mask = np.stack([np.roll(row, int(n)) for row, n in zip(mask, shifts, strict=True)])
    return {"input_ids": ids, "attention_mask": mask}


def image_batches(processor: Any, shapes: Sequence[tuple[int, int]], seed: int = 0) -> list[GoldenBatch]:
    """One batch of seeded random RGB images per recipe shape (its batch size; images of several
    sizes, so the processor resizes), as ``pixel_values`` from the checkpoint's image processor.
    At least one batch size differs from the export's."""
    rng = np.random.default_rng(seed)
    sizes = list(dict.fromkeys(b for b, _ in shapes))
    if all(b == EXPORT_SHAPE[0] for b in sizes):
        sizes.append(EXPORT_SHAPE[0] + 1)
    batches = []
    for b in sizes:
        images = [rng.integers(0, 256, size=(24 + 8 * (i % 3), 40 - 6 * (i % 2), 3), dtype=np.uint8)
                  for i in range(b)]
        pixels = np.asarray(processor(images=images, return_tensors="np")[PIXELS], dtype=np.float32)
        batches.append(GoldenBatch(f"images_{b}", {PIXELS: pixels}))
    return batches


def save_golden(path_inputs: Path, path_outputs: Path, batches: Sequence[GoldenBatch],
                reference: Sequence[Outputs]) -> None:
    """Golden inputs and eager outputs as ``<batch>/<tensor>`` entries of two .npz files.

    Written byte-for-byte deterministically (fixed zip timestamps), so manifests of two builds of
    the same recipe agree.
    """
    _write_npz(path_inputs, {f"{b.name}/{k}": v for b in batches for k, v in b.inputs.items()})
    _write_npz(path_outputs, {f"{b.name}/{k}": v for b, out in zip(batches, reference, strict=True)
                              for k, v in out.items()})


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_golden(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a golden .npz back as ``{batch: {tensor: array}}`` (no pickles)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            batch, name = key.split("/", 1)
            out.setdefault(batch, {})[name] = data[key]
    return out
