"""The package's model card (README.md) through huggingface_hub's ModelCard and ModelCardData.

Metadata: base model, library, pipeline tag, tags, license from the source's own card, and a
``model-index`` carrying every artifact's gate result. Body: provenance, the parity table, the
benchmark table and chart when the build measured one, the recommended artifact, and copy-paste
usage for each consumer. Renders text only; it never validates against or talks to the Hub
(``ModelCard.validate`` would call huggingface.co).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ORT_CLASSES = {
    "feature-extraction": "ORTModelForFeatureExtraction",
    "sentence-similarity": "ORTModelForFeatureExtraction",  # optimum's synonym of feature-extraction
    "text-classification": "ORTModelForSequenceClassification",
    "token-classification": "ORTModelForTokenClassification",
    "question-answering": "ORTModelForQuestionAnswering",
    "fill-mask": "ORTModelForMaskedLM",
    "text-generation": "ORTModelForCausalLM",
    "text2text-generation": "ORTModelForSeq2SeqLM",
    "image-classification": "ORTModelForImageClassification",
}


def source_license(folder: Path) -> str | None:
    """The ``license`` of the checkpoint's own README front matter, if it has one."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1])
    except (yaml.YAMLError, IndexError):
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    return str(value) if value else None


def _worst(report: dict[str, Any], key: str, pick: Any) -> float | None:
    values = [o[key] for b in report["batches"] for o in b["outputs"] if o.get(key) is not None]
    return pick(values) if values else None


def render(*, repo_id: str | None, manifest: dict[str, Any], parity: dict[str, Any], bench: dict[str, Any] | None,
           license: str | None) -> str:
    """The README.md text: YAML front matter from ModelCardData, then the body."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    task = manifest["task"]
    source = manifest["source"]
    name = manifest["name"]
    artifacts = manifest["artifacts"]
    base_model = source["id"] if source["kind"] == "hub" else None
    results = []
    for artifact, report in parity["artifacts"].items():
        if artifact not in artifacts:
            continue
        for metric, key, pick in (("max_abs_diff", "max_abs", max), ("min_cosine", "min_cosine", min)):
            value = _worst(report, key, pick)
            if value is not None:
                results.append(EvalResult(task_type=task, dataset_type="golden-inputs", dataset_name="golden inputs",
                                          metric_type=metric, metric_value=round(value, 8),
                                          metric_name=f"{artifact} {metric} vs eager PyTorch", verified=False))
    # a graph that outputs the pooled sentence embedding is what the Hub lists as sentence-similarity
    embeds = any("sentence_embedding" in a.get("metadata", {}) for a in artifacts.values())
    data = ModelCardData(
        base_model=base_model, library_name="onnx" if any(a["stage"] == "onnx" for a in artifacts.values())
        else "pytorch", pipeline_tag="sentence-similarity" if embeds else task, license=license,
        tags=sorted({"onnx", "optimum", "transformers.js", "parity-gated", *{a["stage"] for a in artifacts.values()}}),
        model_name=name, eval_results=results or None,
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{_body(repo_id or name, manifest, parity, bench)}")
    return str(card)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _body(repo: str, manifest: dict[str, Any], parity: dict[str, Any], bench: dict[str, Any] | None) -> str:
    task, source, artifacts = manifest["task"], manifest["source"], manifest["artifacts"]
    recommended = manifest.get("recommended")
    revision = f" at `{source['revision']}`" if source.get("revision") else ""
    lines = [
        f"# {manifest['name']}", "",
        f"CPU inference artifacts of `{source['id']}`{revision} ({source['kind']} source) for `{task}`, each checked "
        "against the eager PyTorch model before packaging. Built by `convert` from a recipe whose normalized form "
        f"and sha256 (`{manifest['recipe_sha256'][:16]}…`) are in `manifest.json`, with every file's sha256.", "",
        "## Artifacts", "",
        "| artifact | files | size |", "| --- | --- | --- |",
    ]
    sizes = manifest["files"]
    for art, entry in artifacts.items():
        size = sum(sizes[f]["size"] for f in entry["files"] if f in sizes) / 1e6
        star = " (recommended)" if art == recommended else ""
        lines.append(f"| `{art}`{star} | {', '.join(f'`{f}`' for f in entry['files'])} | {size:.1f} MB |")
    lines += ["", "## Parity with eager PyTorch", "",
              "Golden inputs: " + ", ".join(f"{g['batch']} ({g['shape'][0]}x{g['shape'][1]}, {g['padded_tokens']} "
                                            "padding tokens)" for g in parity["golden"]) + ".", "",
              "| artifact | gate | worst max \\|Δ\\| | worst cosine | worst pooled cosine | argmax agreement "
              "| result |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for art, report in parity["artifacts"].items():
        if art not in artifacts:
            continue
        gate = ", ".join(f"{k} {v}" for k, v in report["gate"].items() if v is not None and k != "batches")
        lines.append(f"| `{art}` | {gate} ({report['gate']['batches']}) | "
                     f"{_fmt(_worst(report, 'max_abs', max), '.1e')} | "
                     f"{_fmt(_worst(report, 'min_cosine', min), '.6f')} | "
                     f"{_fmt(_worst(report, 'min_pooled_cosine', min), '.6f')} | "
                     f"{_fmt(_worst(report, 'argmax_agreement', min), '.3f')} | passed |")
    lines += ["", "The shipped `golden_inputs.npz` and `golden_outputs.npz` (entries `<batch>/<tensor>`) let anyone "
              "re-check a download: `convert verify " + repo + "` (it re-gates every artifact on the CPU it runs "
              "on).", ""]
    from pipeline.cpu import summary

    if manifest.get("gated_on"):
        lines += [f"Gated on: {summary(manifest['gated_on'])}.", ""]
    int8 = {art: entry for art, entry in artifacts.items() if "numerics" in entry.get("metadata", {})}
    if int8:
        lines += ["### int8 files and CPUs", "",
                  "int8 numbers depend on the CPU's kernels: onnxruntime's U8S8 kernels (QInt8 weights) are exact on "
                  "x86-64 with VNNI or AMX and on ARM64, and can saturate on x86-64 without VNNI; U8U8 (QUInt8 "
                  "weights) and 7-bit weights are exact everywhere.", "",
                  "| artifact | file | weights | meant for | exact on | gated with |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for art, entry in int8.items():
            meta = entry["metadata"]
            n = meta["numerics"]
            weights = n["weights"] + (" (7-bit)" if n.get("reduce_range") else "")
            lines.append(f"| `{art}` | `{entry['folder']}/{meta['file']}` | {weights} | "
                         f"{meta.get('suits', 'any CPU' if n['exact_on'] == 'every CPU' else 'VNNI/AMX or ARM64')} | "
                         f"{n['exact_on']} | {n['gated_with']} |")
        lines.append("")
    if bench:
        lines += _bench_section(bench)
    lines += ["## Usage", ""] + _usage(repo, task, artifacts, recommended)
    return "\n".join(lines) + "\n"


def _interval(ci: list[float] | None) -> str:
    return f"{ci[0]:.1f}–{ci[1]:.1f}" if ci else "-"


def _bench_section(bench: dict[str, Any]) -> list[str]:
    """Medians with their intervals, at fixed shapes and on real traffic, and how the recommendation was made."""
    from pipeline.cpu import summary

    s = bench["settings"]
    decision = bench.get("decision") or {}
    level = f"{decision.get('confidence', 0.95):.0%}"
    measured_on = f" Measured on: {summary(bench['cpu'])}." if bench.get("cpu") else ""
    lines = ["## Benchmark", "",
             f"{s['threads']} thread{'s' * (s['threads'] != 1)}, {s['warmup']} warm-up runs, then {s['runs']} rounds "
             "that each run every "
             "artifact once on every workload, the artifacts interleaved (ABC, BCA, CAB, …) so that a slow moment "
             f"of the machine falls on all of them alike. Fixed shapes: padding {s['padding']:.0%}. Each figure is "
             f"the median of the rounds with its {level} bootstrap interval." + measured_on, ""]
    if decision:
        lines += [f"Recommended: **`{bench['recommended']}`**, decided on the {decision['basis']}: "
                  f"{decision['reason']}. The rule: {decision['rule']}.", ""]
    else:
        lines += [f"Recommended: **`{bench['recommended']}`**.", ""]
    lines += [f"| artifact | shape | median ms | {level} interval | p90 ms | × eager | GFLOP/s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in bench["results"]:
        lines.append(f"| `{r['artifact']}` | {r['shape'][0]}x{r['shape'][1]} | {r['p50_ms']:.1f} | "
                     f"{_interval(r.get('ci_ms'))} | {r['p90_ms']:.1f} | {r['speedup_vs_eager']:.2f} | "
                     f"{r['gflops']:.1f} |")
    t = bench.get("traffic")
    if t:
        sizes = ", ".join(f"{x['batch_size']} ({x['batches']} batch{'es' * (x['batches'] != 1)}, "
                          f"{x['padding_share']:.0%} padding)"
                          for x in t["sets"])
        order = "sorted longest first" if t["sort_by_length"] else "in their order"
        lines += ["", "### Real traffic", "",
                  f"{t['texts']} texts ({t['source']}), {order}, in batches of {sizes}, each batch padded to its "
                  "own longest row as consumers do. Every artifact ran the same batches; a pass runs them all.", "",
                  f"| artifact | batch size | ms per pass | {level} interval | ms per batch | sentences/s | × eager |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in t["results"]:
            lines.append(f"| `{r['artifact']}` | {r['batch_size']} | {r['pass_ms']:.1f} | {_interval(r['ci_ms'])} | "
                         f"{r['ms_per_batch']:.2f} | {r['sentences_per_s']:.1f} | {r['speedup_vs_eager']:.2f} |")
    noise = bench.get("noise")
    if noise and noise.get("max_ci_rel_width") is not None:
        lines += ["", f"Noise seen: intervals {noise['median_ci_rel_width']:.1%} of the median wide (median), "
                  f"{noise['max_ci_rel_width']:.1%} at most."]
    lines += ["", "![latency per artifact](bench.png)", ""]
    return lines


def _usage(repo: str, task: str, artifacts: dict[str, Any], recommended: str | None) -> list[str]:
    out: list[str] = []
    from pipeline.parity import task_kind

    onnx = {name: a for name, a in artifacts.items() if a["stage"] == "onnx"}
    kind = task_kind(task)
    if onnx and kind != "text":  # generation drives several steps, vision takes pixels: optimum's classes do it
        ort_class = ORT_CLASSES.get(task.removesuffix("-with-past"), "ORTModel")
        if kind == "image":
            prep = ["from transformers import AutoImageProcessor", "",
                    f'processor = AutoImageProcessor.from_pretrained("{repo}")',
                    f'model = {ort_class}.from_pretrained("{repo}", subfolder="onnx")',
                    'logits = model(**processor(images=[image], return_tensors="pt")).logits']
        else:
            prep = ["from transformers import AutoTokenizer", "",
                    f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
                    f'model = {ort_class}.from_pretrained("{repo}", subfolder="onnx")',
                    'ids = model.generate(**tokenizer(["A man is eating food."], return_tensors="pt"), '
                    "max_new_tokens=20, do_sample=False)",
                    "print(tokenizer.batch_decode(ids, skip_special_tokens=True))"]
        out += ["With optimum (`pip install optimum[onnxruntime]`):", "", "```python",
                f"from optimum.onnxruntime import {ort_class}", *prep, "```", ""]
    elif onnx:
        pick = recommended if recommended in onnx else next(iter(onnx))
        file = onnx[pick]["metadata"]["file"]
        ort_class = ORT_CLASSES.get(task, "ORTModel")
        out += ["With optimum (`pip install optimum[onnxruntime]`):", "", "```python",
                f"from optimum.onnxruntime import {ort_class}", "from transformers import AutoTokenizer", "",
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
                f'model = {ort_class}.from_pretrained("{repo}", subfolder="onnx", file_name="{file}")',
                'outputs = model(**tokenizer(["A man is eating food."], return_tensors="pt"))', "```", "",
                "With onnxruntime alone:", "", "```python", "import numpy as np, onnxruntime as ort",
                "from huggingface_hub import hf_hub_download", "from tokenizers import Tokenizer", "",
                f'session = ort.InferenceSession(hf_hub_download("{repo}", "onnx/{file}"))',
                f'tokenizer = Tokenizer.from_file(hf_hub_download("{repo}", "tokenizer.json"))',
                'enc = tokenizer.encode("A man is eating food.")',
                "feed = {'input_ids': np.array([enc.ids]), 'attention_mask': np.array([enc.attention_mask]),",
                "        'token_type_ids': np.array([enc.type_ids])}",
                "names = {i.name for i in session.get_inputs()}",
                "outputs = session.run(None, {k: v for k, v in feed.items() if k in names})",
                *(["(embedding,) = session.run(['sentence_embedding'], {k: v for k, v in feed.items() if k in names})"
                   "  # pooled (and normalized) in the graph"]
                  if "sentence_embedding" in onnx[pick]["metadata"].get("outputs", []) else []), "```", "",
                "With transformers.js:", "", "```js", 'import { pipeline } from "@huggingface/transformers";',
                # transformers.js has no sentence-similarity pipeline: optimum's synonym is feature-extraction
                f'const pipe = await pipeline("{"feature-extraction" if task == "sentence-similarity" else task}", '
                f'"{repo}"' + (', { dtype: "q8" }' if "onnx-int8" in onnx else "")
                + ");", 'const out = await pipe("A man is eating food.");', "```", ""]
    for name, a in artifacts.items():
        if a["stage"] in ("torchscript", "bettertransformer"):
            out += [f"`{name}` with torch alone:", "", "```python", "import torch",
                    "from huggingface_hub import hf_hub_download", "",
                    f'module = torch.jit.load(hf_hub_download("{repo}", "{a["files"][0]}"))', "```", ""]
        elif a["stage"] == "torch_export":
            out += [f"`{name}` with torch alone:", "", "```python", "import torch",
                    "from huggingface_hub import hf_hub_download", "",
                    f'program = torch.export.load(hf_hub_download("{repo}", "{a["files"][0]}"))',
                    "module = program.module()", "```", ""]
    return out
