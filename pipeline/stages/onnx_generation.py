"""Greedy decoding over optimum's ONNX generation graphs, with onnxruntime only: the ONNX stage's
runners for ``text-generation(-with-past)`` and ``text2text-generation(-with-past)`` artifacts.

The graphs are driven step by step as optimum exports them: a decoder with ``past_key_values.*``
inputs and ``present.*`` outputs (an empty past at the first step), and for encoder-decoders an
encoder graph plus the merged decoder (``use_cache_branch``). Each runner returns what the parity
gate compares with eager ``generate(do_sample=False)``: ``logits`` (decoder-only: every prompt
position at prefill), ``step_logits`` (the logits each generated token was chosen from) and
``generated_ids``. Like the eager reference (see pipeline/parity.py) it picks the argmax for
exactly ``max_new_tokens`` steps; end-of-sequence does not stop it.

This module runs graphs; it does not export, compare or know about recipes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import settings
from pipeline.artifact import Outputs, Runner
from pipeline.batches import GENERATED, MAX_NEW_TOKENS, STEP_LOGITS


def session(path: Path, threads: int | None, session_config: Mapping[str, str] | None = None) -> Any:
    """An onnxruntime CPU session: every artifact runner of the ONNX stage opens its graphs here.

    ``threads`` (or ``CONVERT_THREADS``) fixes the intra-op threads; ``session_config`` entries (an
    int8 graph's exact-arithmetic setting) and ``CONVERT_ORT_SESSION_CONFIG``'s are added to the options.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = threads or settings.threads()
    if threads:
        options.intra_op_num_threads = threads
    for key, value in {**settings.ort_session_config(), **(session_config or {})}.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _empty_past(session: Any, batch: int) -> dict[str, np.ndarray]:
    """Zero-length past key/values for the first step, shaped from the graph's own inputs (heads
    and head size are static there; batch and the sequence axes are symbolic)."""
    past = {}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            dims = [batch if d == "batch_size" else (d if isinstance(d, int) else 0) for d in i.shape]
            past[i.name] = np.zeros(dims, dtype=np.float32)
    return past


def position_ids(mask: np.ndarray) -> np.ndarray:
    """Positions counted over real tokens (left padding skipped), as transformers' ``generate``
    derives them from the attention mask."""
    pos = np.cumsum(mask, axis=-1) - 1
    return np.where(mask == 0, 1, pos).astype(np.int64)


def causal_lm_runner(path: Path, threads: int | None = None) -> Runner:
    """Greedy decoding with a decoder-only graph (``model.onnx``), with or without past inputs."""
    graph = session(path, threads)
    names = {i.name for i in graph.get_inputs()}
    outputs = [o.name for o in graph.get_outputs()]
    with_past = any(n.startswith("past_key_values.") for n in names)

    def run(inputs: Mapping[str, np.ndarray]) -> Outputs:
        ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)), dtype=np.int64)
        steps = int(np.asarray(inputs[MAX_NEW_TOKENS]).reshape(-1)[0])
        past = _empty_past(graph, ids.shape[0]) if with_past else {}
        feed_ids, prefill, step_logits, tokens = ids, None, [], []
        for step in range(steps):
            pos = position_ids(mask)[:, -feed_ids.shape[1]:]
            feed = {"input_ids": feed_ids, "attention_mask": mask, "position_ids": pos, **past}
            result = dict(zip(outputs, graph.run(outputs, {k: v for k, v in feed.items() if k in names}),
                              strict=True))
            logits = result["logits"]
            if prefill is None:
                prefill = logits
            step_logits.append(logits[:, -1])
            token = step_logits[-1].argmax(-1).astype(np.int64)
            tokens.append(token)
            if step == steps - 1:
                break
            mask = np.concatenate([mask, np.ones((mask.shape[0], 1), dtype=np.int64)], axis=1)
            if with_past:
                past = {k.replace("present.", "past_key_values.", 1): v for k, v in result.items()
                        if k.startswith("present.")}
                feed_ids = token[:, None]
            else:  # no cache: the whole sequence again
                feed_ids = np.concatenate([feed_ids, token[:, None]], axis=1)
        return {"logits": prefill, STEP_LOGITS: np.stack(step_logits, axis=1), GENERATED: np.stack(tokens, axis=1)}

    return run


def seq2seq_runner(encoder: Path, decoder: Path, decoder_start_token_id: int, threads: int | None = None) -> Runner:
    """Greedy decoding with optimum's encoder graph and its merged decoder (``use_cache_branch``
    false at the first step, true after), as ``ORTModelForSeq2SeqLM`` runs them."""
    enc = session(encoder, threads)
    dec = session(decoder, threads)
    enc_names = {i.name for i in enc.get_inputs()}
    dec_names = {i.name for i in dec.get_inputs()}
    dec_outputs = [o.name for o in dec.get_outputs()]

    def run(inputs: Mapping[str, np.ndarray]) -> Outputs:
        ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)), dtype=np.int64)
        steps = int(np.asarray(inputs[MAX_NEW_TOKENS]).reshape(-1)[0])
        feed = {k: v for k, v in {"input_ids": ids, "attention_mask": mask}.items() if k in enc_names}
        (hidden,) = enc.run(["last_hidden_state"], feed)
        past = _empty_past(dec, ids.shape[0])
        token = np.full((ids.shape[0],), decoder_start_token_id, dtype=np.int64)
        step_logits, tokens = [], []
        for step in range(steps):
            feed = {"input_ids": token[:, None], "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
                    "use_cache_branch": np.array([step > 0]), **past}
            result = dict(zip(dec_outputs, dec.run(dec_outputs, {k: v for k, v in feed.items() if k in dec_names}),
                              strict=True))
            step_logits.append(result["logits"][:, -1])
            token = step_logits[-1].argmax(-1).astype(np.int64)
            tokens.append(token)
            if step > 0:  # the cross-attention keys/values of the first step are kept, as optimum does
                encoder_kv = {k: v for k, v in past.items() if ".encoder." in k}
            else:
                encoder_kv = {}
            past = {k.replace("present.", "past_key_values.", 1): v for k, v in result.items()
                    if k.startswith("present.")}
            past.update(encoder_kv)
        return {"encoder_last_hidden_state": hidden, STEP_LOGITS: np.stack(step_logits, axis=1),
                GENERATED: np.stack(tokens, axis=1)}

    return run
