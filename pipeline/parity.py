"""Golden inputs, eager reference outputs, and the comparison that gates every artifact.

Golden inputs are the recipe's real texts (tokenized together, so with padding) plus synthetic
batches at the recipe's shapes, each with rows of different lengths (padding again). At least one
batch differs from the export shape in batch size and one in sequence length, so a shape baked
into a graph shows. This module compares numbers; it does not build or run artifacts itself.

The kind of task decides what a golden batch holds and what eager computes (:func:`golden`):

- text (encoders): token batches, right-padded; every output of the eager forward.
- generation (decoder-only, ``text-generation*``): prompts left-padded as batched generation pads
  them, plus ``max_new_tokens``; eager gives ``logits`` at prefill (every prompt position, positions
  counted over real tokens as ``generate`` counts them) and ``generate(do_sample=False)``'s tokens
  (``generated_ids``) and the logits each was picked from (``step_logits``).
- seq2seq (``text2text-generation*``): right-padded encoder inputs; the encoder's
  ``encoder_last_hidden_state`` and the greedy ``generated_ids``/``step_logits``.
- image (``image-*``): ``pixel_values`` from the checkpoint's image processor on seeded synthetic
  images of several sizes, one batch per recipe shape (its batch size); eager forward outputs.

Integer outputs (``generated_ids``) must equal eager exactly; an artifact of a generation task that
returns no ``generated_ids`` fails its gate.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.artifact import Outputs, Runner
from pipeline.batches import (  # noqa: F401  (GoldenBatch, load_golden, PIXELS…: also read from here)
    DECODE_STEPS,
    EXPORT_SHAPE,
    GENERATED,
    LONG_BATCHES,
    MAX_NEW_TOKENS,
    PIXELS,
    STEP_LOGITS,
    TEXTS,
    GoldenBatch,
    golden_batches,
    image_batches,
    load_golden,
    prompt,
    save_golden,
    synthetic_batch,
)
from pipeline.gate import Gate
from pipeline.loaded import LoadedSource
from pipeline.pooling import OUTPUT as POOLED_OUTPUT
from pipeline.pooling import TOKEN_OUTPUT, Pooling, pool
from pipeline.tasks import GENERATION, IMAGE, SEQ2SEQ, TEXT, task_kind  # noqa: F401  (task_kind: also read from here)


def golden(source: LoadedSource, texts: Sequence[str], shapes: Sequence[tuple[int, int]],
           seed: int = 0, max_seq_length: int | None = None) -> tuple[list[GoldenBatch], list[Outputs]]:
    """Golden batches (pipeline/batches.py) for ``source`` and the eager model's outputs on them, as the
    kind of its task asks (see the module docstring). Encoders' batches end with long texts at
    ``max_seq_length`` (what sentence-transformers truncates to; default the model's positions)."""
    kind = task_kind(source.task)
    if kind == IMAGE:
        batches = image_batches(source.processor, shapes, seed)
    else:
        max_positions = getattr(source.config, "max_position_embeddings", None)
        if kind == GENERATION and max_positions:
            max_positions -= DECODE_STEPS  # room for the generated tokens
        tokenizer = source.tokenizer
        if kind == GENERATION and tokenizer.pad_token_id is None:  # GPT-2 has none: generation pads with eos
            import copy

            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = tokenizer.eos_token
        batches = golden_batches(texts, shapes, tokenizer, max_positions, seed=seed,
                                 long_length=long_length(max_seq_length) if kind == TEXT else None)
        if kind in (GENERATION, SEQ2SEQ):
            steps = np.array([DECODE_STEPS], dtype=np.int64)
            batches = [GoldenBatch(b.name, {**prompt(b.inputs, left=kind == GENERATION), MAX_NEW_TOKENS: steps})
                       for b in batches]
    return batches, eager_outputs(source.model, batches, kind=kind, pooling=source.pooling)


def long_length(max_seq_length: int | None) -> int:
    """Tokens of the long golden batches: what consumers truncate to, else the model's own limit (512 at most)."""
    return max_seq_length or 512


def gates_batch(gate: Gate, batch: str) -> bool:
    """Whether ``gate`` gates golden batch ``batch`` (the others are reported only).

    The recipe's texts always; synthetic batches where the gate says ``all``; the long-text batches
    (:data:`pipeline.batches.LONG_BATCHES`, what consumers send: texts at max_seq_length, a long text
    batched with short ones) where a gate in task terms says ``texts`` and sets a cosine, as a lossy
    artifact's does. An elementwise fp32 gate only reports them: fp32 accumulation over 256 tokens
    differs from eager by more than 1e-4 (2.6e-4 measured) with nothing wrong."""
    if batch in LONG_BATCHES:
        return gate.batches == TEXTS and (gate.min_pooled_cosine is not None or gate.min_cosine is not None)
    return gate.batches == "all" or batch == TEXTS


def eager_outputs(model: Any, batches: Sequence[GoldenBatch], kind: str = TEXT,
                  pooling: Pooling | None = None) -> list[Outputs]:
    """Run the eager PyTorch model on every batch; tensors of its output, as float32 numpy
    (generation kinds: see :func:`_eager_generation`).

    With ``pooling`` (the recipe's sentence_embedding), also ``sentence_embedding``: the eager token
    embeddings pooled by the same code the exported graph runs (:func:`pipeline.pooling.pool`).
    """
    import torch

    if kind in (GENERATION, SEQ2SEQ):
        return _eager_generation(model, batches, kind)
    accepted = set(inspect.signature(model.forward).parameters)
    results = []
    with torch.inference_mode():
        for batch in batches:
            feed = {k: torch.from_numpy(v) for k, v in batch.inputs.items() if k in accepted}
            out = model(**feed)
            tensors = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
            if pooling is not None:
                mask = feed.get("attention_mask", torch.ones_like(feed["input_ids"]))
                tensors[POOLED_OUTPUT] = pool(tensors[TOKEN_OUTPUT], mask, pooling)
            results.append({k: v.detach().float().numpy() for k, v in tensors.items()})
    return results


def _eager_generation(model: Any, batches: Sequence[GoldenBatch], kind: str) -> list[Outputs]:
    """``model.generate`` with ``do_sample=False`` for ``max_new_tokens`` steps: the tokens and the
    raw logits each was picked from; plus prefill logits (decoder-only) or the encoder's output.

    generate runs under a plain greedy generation config (no end-of-sequence stop, no logits
    processors such as a checkpoint's repetition penalty), so every step is the argmax of raw logits:
    the reference an artifact's step-by-step decoding can be compared with for every step.
    """
    import torch
    from transformers import GenerationConfig

    config = model.config
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    pad = config.pad_token_id if config.pad_token_id is not None else (eos if eos is not None else 0)
    plain = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=pad,
                             bos_token_id=config.bos_token_id,
                             decoder_start_token_id=getattr(config, "decoder_start_token_id", None))
    saved, model.generation_config = model.generation_config, plain
    results = []
    try:
        with torch.inference_mode():
            for batch in batches:
                ids = torch.from_numpy(batch.inputs["input_ids"])
                mask = torch.from_numpy(batch.inputs["attention_mask"])
                steps = int(batch.inputs[MAX_NEW_TOKENS].reshape(-1)[0])
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps,
                                     output_logits=True, return_dict_in_generate=True)
                generated = out.sequences[:, -steps:]
                result = {GENERATED: generated.numpy().astype(np.int64),
                          STEP_LOGITS: torch.stack(out.logits, dim=1).float().numpy()}
                if kind == GENERATION:
                    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
                    result["logits"] = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits \
                        .float().numpy()
                else:
                    result["encoder_last_hidden_state"] = model.get_encoder()(
                        input_ids=ids, attention_mask=mask).last_hidden_state.float().numpy()
                results.append(result)
    finally:
        model.generation_config = saved
    return results


@dataclass
class OutputCheck:
    output: str
    shape: list[int]
    max_abs: float
    max_rel: float
    min_cosine: float
    min_pooled_cosine: float | None
    argmax_agreement: float | None
    over_tolerance: int
    elements: int
    gated: bool = True
    failures: list[str] = field(default_factory=list)
    non_finite: int = 0  # NaN or inf in the artifact's output where eager's is finite, or in eager's own


@dataclass
class BatchCheck:
    batch: str
    shape: list[int]
    padded_tokens: int
    outputs: list[OutputCheck]


@dataclass
class ArtifactParity:
    artifact: str
    gate: dict[str, float | None]
    compared: str
    batches: list[BatchCheck]
    failures: list[str]
    # per CPU class the build gated it as (pipeline/regate.py): {class: {how, passed, offered, figures, ...}}
    cpu_classes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactParity:
        batches = [BatchCheck(b["batch"], b["shape"], b["padded_tokens"], [OutputCheck(**o) for o in b["outputs"]])
                   for b in data["batches"]]
        return cls(artifact=data["artifact"], gate=data["gate"], compared=data["compared"], batches=batches,
                   failures=data["failures"], cpu_classes=data.get("cpu_classes") or {})


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token embeddings over real tokens, as sentence-transformers pools."""
    weights = mask.astype(np.float64)[..., None]
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def _row_cosine(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Cosine of each row pair; NaN where either row holds a non-finite value (never 1.0 by default)."""
    flat_a, flat_e = a.reshape(a.shape[0], -1), e.reshape(e.shape[0], -1)
    finite = np.isfinite(flat_a).all(axis=1) & np.isfinite(flat_e).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(flat_a, axis=1) * np.linalg.norm(flat_e, axis=1)
        cos = np.clip(np.where(norms > 0, (flat_a * flat_e).sum(axis=1) / np.maximum(norms, 1e-300), 1.0), -1.0, 1.0)
    return np.where(finite, cos, np.nan)


def compare(actual: np.ndarray, expected: np.ndarray, gate: Gate, logits: bool,
            mask: np.ndarray | None = None, pooled_output: bool = False) -> tuple[OutputCheck, list[str]]:
    """Metrics of one output against the eager one, and why it fails ``gate`` (empty if it passes).

    ``mask`` (the batch's attention mask) enables the pooled-embedding cosine for token-level
    outputs shaped ``[batch, sequence, hidden]``; an output that already is a pooled embedding
    (``pooled_output``, shaped ``[batch, hidden]``) is compared as its own pooled embedding.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    # a NaN compares false with every bound and makes a norm NaN: counted and failed outright, never passed
    bad_reference = int((~np.isfinite(e)).sum())
    bad_output = int((~np.isfinite(a) & np.isfinite(e)).sum())
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, NaN comparisons: counted above
        delta = np.abs(a - e)
        scale = np.abs(e)
        finite_scale = scale[np.isfinite(scale)]
        significant = np.isfinite(scale) & (scale > 1e-3 * (finite_scale.max() if finite_scale.size else 0.0))
        max_rel = float((delta[significant] / scale[significant]).max()) if significant.any() else 0.0
        atol, rtol = gate.atol, gate.rtol or 0.0
        over = int((~(delta <= atol + rtol * scale)).sum()) if atol is not None else 0  # NaN is over
        cos = _row_cosine(a, e)
        pooled = None
        if mask is not None and a.ndim == 3 and a.shape[:2] == mask.shape:
            pooled = float(_row_cosine(mean_pool(a, mask), mean_pool(e, mask)).min())
        elif pooled_output and a.ndim == 2:
            pooled = float(cos.min())
        agreement = float((a.argmax(-1) == e.argmax(-1)).mean()) if logits else None
    check = OutputCheck(output="", shape=list(a.shape), max_abs=float(delta.max()) if delta.size else 0.0,
                        max_rel=max_rel, min_cosine=float(cos.min()) if cos.size else 1.0, min_pooled_cosine=pooled,
                        argmax_agreement=agreement, over_tolerance=over, elements=int(delta.size),
                        non_finite=bad_reference + bad_output)
    why = []
    if bad_reference:
        why.append(f"the reference holds {bad_reference} non-finite values (NaN or inf) of {delta.size}: nothing "
                   "can be compared with it")
    if bad_output:
        why.append(f"{bad_output} of {delta.size} values are not finite (NaN or inf) where the reference is finite")
    if over:
        why.append(f"max |Δ| {check.max_abs:.1e} > atol {atol:.0e}"
                   + (f" + rtol {rtol:.0e}·|eager|" if rtol else "") + f" at {over} of {delta.size} values")
    if gate.min_cosine is not None and not check.min_cosine >= gate.min_cosine - 1e-12:  # float64 rounding
        why.append(f"cosine {check.min_cosine:.6f} < {gate.min_cosine}")
    if gate.min_pooled_cosine is not None:
        if pooled is None:
            why.append("no pooled embedding to compare (needs a [batch, sequence, hidden] output and a mask)")
        elif not pooled >= gate.min_pooled_cosine - 1e-12:
            why.append(f"pooled-embedding cosine {pooled:.6f} < {gate.min_pooled_cosine}")
    if agreement is not None and gate.min_argmax_agreement is not None and agreement < gate.min_argmax_agreement:
        why.append(f"argmax agreement {agreement:.3f} < {gate.min_argmax_agreement}")
    return check, why


def compare_exact(actual: np.ndarray, expected: np.ndarray) -> tuple[OutputCheck, list[str]]:
    """Integer outputs (generated token ids, ``[batch, step]``): every value must equal eager's."""
    a, e = np.asarray(actual), np.asarray(expected)
    differ = a != e
    over = int(differ.sum())
    agreement = float((~differ).mean()) if differ.size else 1.0
    check = OutputCheck(output="", shape=list(a.shape), max_abs=float(np.abs(a.astype(np.float64) - e).max())
                        if a.size else 0.0, max_rel=0.0, min_cosine=0.0 if over else 1.0,
                        min_pooled_cosine=None, argmax_agreement=agreement, over_tolerance=over,
                        elements=int(a.size))
    why = []
    if over:
        row, step = (int(i) for i in np.argwhere(differ.reshape(a.shape[0], -1))[0])
        why.append(f"{over} of {a.size} tokens differ from eager greedy generation (first: row {row}, step {step})")
    return check, why


def check_artifact(name: str, runner: Runner, batches: Sequence[GoldenBatch],
                   reference: Sequence[Outputs], gate: Gate, skips_padding: bool = False,
                   token_outputs: Collection[str] | None = None, numerics: str | None = None) -> ArtifactParity:
    """Run ``runner`` on every golden batch and compare each output it shares with eager.

    Every failure is collected (not just the first); a runner that raises or returns a wrong
    shape is a failure with its reason, not a crash. With ``skips_padding``, token-level outputs
    are compared at real tokens only: the artifact leaves padding positions undefined, and eager's
    values there feed nothing downstream. ``token_outputs`` names them, as the artifact declares;
    without it, outputs shaped ``[batch, sequence, ...]`` are taken for token-level (a per-sample
    ``[batch, n]`` output whose ``n`` equals the sequence length would then be masked too).
    ``numerics`` says with which arithmetic the runner computes (an int8 graph's kernels), for the report.
    """
    checks, failures = [], []
    returned: set[str] = set()  # every output name the artifact gave
    for batch, expected in zip(batches, reference, strict=True):
        shape = "x".join(map(str, batch.shape))
        try:
            actual = runner(batch.inputs)
            returned.update(actual)
        except Exception as e:  # a runtime error on an unseen shape is the finding, not a crash
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            failures.append(f"{name}: fails to run at {shape} ({batch.name}): {type(e).__name__}: {reason}"
                            + _baked_hint(batch.shape))
            continue
        common = [k for k in actual if k in expected]
        if GENERATED in expected and GENERATED not in actual:  # prefill logits alone would not show a bad cache
            failures.append(f"{name}: generates no tokens at {shape} ({batch.name}): a generation task's artifact "
                            f"must return {GENERATED!r} (outputs: {', '.join(actual)})")
            continue
        if not common:
            failures.append(f"{name}: no output in common with eager at {shape} "
                            f"(artifact: {', '.join(actual)}; eager: {', '.join(expected)})")
            continue
        outputs = []
        for key in common:
            if tuple(actual[key].shape) != tuple(expected[key].shape):
                failures.append(f"{name}: output {key!r} at {shape} ({batch.name}) has shape "
                                f"{tuple(actual[key].shape)}, eager {tuple(expected[key].shape)}"
                                + _baked_hint(batch.shape))
                continue
            got, want = actual[key], expected[key]
            mask = batch.inputs.get("attention_mask")
            # (a pooled [batch, hidden] embedding is per sample: its shape matching the mask's is chance)
            tokens_shaped = mask is not None and got.ndim >= 2 and got.shape[:2] == mask.shape
            declared = key in token_outputs if token_outputs is not None else key != POOLED_OUTPUT
            if skips_padding and tokens_shaped and declared:
                keep = mask.astype(bool)
                # real tokens only; rows stay rows so per-sample cosine still means one sample
                got = np.where(keep.reshape(*keep.shape, *([1] * (got.ndim - 2))), got, 0)
                want = np.where(keep.reshape(*keep.shape, *([1] * (want.ndim - 2))), want, 0)
            if np.issubdtype(np.asarray(want).dtype, np.integer):  # token ids: equal, or wrong
                check, why = compare_exact(got, want)
            else:
                check, why = compare(got, want, gate, logits=key.endswith("logits"), mask=mask,
                                     pooled_output=key == POOLED_OUTPUT)
            check.output = key
            gated = gates_batch(gate, batch.name)
            check.gated = gated
            check.failures = why if gated else []
            outputs.append(check)
            if not gated:
                continue
            failures.extend(f"{name}: output {key!r} at {shape} ({batch.name}) differs from eager: {w}"
                            for w in why)
        checks.append(BatchCheck(batch.name, list(batch.shape), batch.padded_tokens, outputs))
    compared = ("token-level outputs at real tokens only (padding positions excluded: the artifact skips "
                "them)" if skips_padding else "all positions, padding included")
    if gate.batches == TEXTS:
        long = " and long texts at max_seq_length" if any(gates_batch(gate, b.name) for b in batches
                                                          if b.name in LONG_BATCHES) else ""
        compared += f"; gated on the recipe's texts{long}, other batches reported only"
    if any(GENERATED in r for r in reference):
        compared += (f"; generation: {GENERATED} must equal eager generate(do_sample=False) token for token, "
                     f"{STEP_LOGITS} (the logits of every greedy step, the artifact decoding with its own cache) "
                     "and prefill logits / encoder output under the gate")
    if numerics:
        compared += f"; computed with {numerics}"
    unmatched = sorted({k for r in reference for k in r} - returned)
    if returned and unmatched:  # e.g. BERT's pooler_output, or sentence_embedding from a target without it
        compared += f"; eager outputs the artifact does not return (not compared): {', '.join(unmatched)}"
    return ArtifactParity(artifact=name, gate=gate.model_dump(), compared=compared,
                          batches=checks, failures=failures)


def _baked_hint(shape: tuple[int, ...]) -> str:
    return (" — the artifact may have baked in its export shape "  # token batches: images have no 2x16 export
            f"{EXPORT_SHAPE[0]}x{EXPORT_SHAPE[1]}" if len(shape) == 2 and shape != EXPORT_SHAPE else "")


