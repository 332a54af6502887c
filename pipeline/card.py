"""The package's model card (README.md) through huggingface_hub's ModelCard and ModelCardData.

Metadata: base model, library (``sentence-transformers`` where the package is a sentence-transformers
repo), pipeline tag, tags, license from the source's own card (read by pipeline.carry), and a
``model-index`` carrying every artifact's gate result. Body: provenance, the parity table, the
benchmark table and chart when the build measured one, the recommended artifact, and copy-paste
usage for each consumer. Renders text only; it never validates against or talks to the Hub
(``ModelCard.validate`` would call huggingface.co).
"""

from __future__ import annotations

from typing import Any

from pipeline.cpu import CLASSES, summary
from pipeline.pooling import OUTPUT as POOLED_OUTPUT
from pipeline.stages import get_stage


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
    sentence_repo = bool(manifest.get("sentence_transformers"))
    embeds = sentence_repo or any(POOLED_OUTPUT in a.get("metadata", {}) for a in artifacts.values())
    stages = [get_stage(stage) for stage in by_stage(artifacts)]  # in package (registry) order
    # the library that loads the package: sentence-transformers for its repos, else the first target's that
    # names one (the registry orders them)
    library = "sentence-transformers" if sentence_repo else next((s.library_name for s in stages if s.library_name),
                                                                  None)
    tags = {"parity-gated", *(s.name for s in stages), *(t for s in stages for t in s.card_tags),
            *(["sentence-transformers"] if sentence_repo else [])}
    data = ModelCardData(
        base_model=base_model, library_name=library, pipeline_tag="sentence-similarity" if embeds else task,
        license=license, tags=sorted(tags),
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
    if manifest.get("gated_on"):
        lines += [f"Gated on: {summary(manifest['gated_on'])}.", ""]
    lines += _class_section(manifest)
    for stage, entries in by_stage(artifacts).items():  # what a target says about its files (int8 and CPUs, …)
        lines += get_stage(stage).card_section(entries)
    if bench:
        lines += _bench_section(bench)
    lines += ["## Usage", ""] + _sentence_transformers_usage(repo, manifest) + _usage(repo, task, artifacts,
                                                                                      recommended)
    return "\n".join(lines) + "\n"


METRIC_NAMES = {"min_pooled_cosine": "pooled cosine", "min_cosine": "cosine", "argmax_agreement": "argmax agreement",
                "max_abs": "max |Δ|"}


def _class_cell(record: dict[str, Any] | None) -> str:
    """One artifact on one CPU class: its worst gated figure (and where), offered or not and why."""
    if record is None:
        return "not gated"
    metric, worst = METRIC_NAMES.get(record["metric"], record["metric"]), record.get("worst")
    at = min(record["by_batch"], key=record["by_batch"].get) if record["metric"] != "max_abs" and record["by_batch"] \
        else None
    figure = "-" if worst is None else (f"{metric} {worst:.1e}" if record["metric"] == "max_abs"
                                        else f"{metric} {worst:.4f}")
    where = f" (worst batch: {at}, {record['by_batch'][at]:.4f})" if at and not record["passed"] else ""
    if record["offered"]:
        return f"yes: {figure}"
    why = record["not_for"] if record["passed"] else "fails its gate"
    return f"**no**, {why}: {figure}{where}"


def _class_section(manifest: dict[str, Any]) -> list[str]:
    """Which file suits which CPU: every packaged file's gate figures per CPU class the build gated it as
    (pipeline/regate.py), a file not offered for a class saying why, and the recommendation per class."""
    artifacts = manifest["artifacts"]
    classes = sorted({c for entry in artifacts.values() for c in entry.get("cpu_classes", {})},
                     key=lambda c: CLASSES[c].rank if c in CLASSES else 99)
    if not classes:
        return []
    lines = ["## Which file suits which CPU", "",
             "Every file was gated once per CPU class below, computed as such a CPU computes it ("
             + "; ".join(f"`{c}`: {CLASSES[c].description}" for c in classes if c in CLASSES)
             + "). A file is offered for a class only where its gate holds there; the long-text batches "
             "(texts at `max_seq_length`, one long text batched with short ones) are gated for every lossy file. "
             "Classes not listed were not checked: nothing is promised for them.", "",
             "| artifact | " + " | ".join(f"`{c}`" for c in classes) + " |",
             "| --- | " + " | ".join("---" for _ in classes) + " |"]
    for art, entry in artifacts.items():
        records = entry.get("cpu_classes", {})
        lines.append(f"| `{art}` | " + " | ".join(_class_cell(records.get(c)).replace("|", "\\|")
                                                  for c in classes) + " |")
    by_class = manifest.get("recommended_by_class") or {}
    if any(by_class.values()):
        lines += ["", "Recommended per class (the benchmark's pick where it is offered, else the fastest file offered "
                  "there, at speeds measured on the building CPU): "
                  + ", ".join(f"`{c}`: " + (f"`{by_class[c]}`" if by_class.get(c) else "none") for c in classes) + "."]
    return [*lines, ""]


def _interval(ci: list[float] | None) -> str:
    return f"{ci[0]:.1f}–{ci[1]:.1f}" if ci else "-"


def _bench_section(bench: dict[str, Any]) -> list[str]:
    """Medians with their intervals, at fixed shapes and on real traffic, and how the recommendation was made."""
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


def by_stage(artifacts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The packaged artifacts (manifest entries) grouped by the stage that built them, in package order."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in artifacts.items():
        out.setdefault(entry["stage"], {})[name] = entry
    return out


def _sentence_transformers_usage(repo: str, manifest: dict[str, Any]) -> list[str]:
    """``SentenceTransformer(repo, backend=…)`` for every packaged file of a target that names a backend
    (:attr:`pipeline.stages.Stage.sentence_transformers_backend`), and ``backend="torch"`` where the source
    weights ship; with the CPUs each file suits. Nothing unless the package is a sentence-transformers repo."""
    record = manifest.get("sentence_transformers")
    if not record:
        return []
    rows: list[tuple[str, str | None, str, str]] = []  # backend, file, artifact, suits
    if (manifest.get("source_weights") or {}).get("shipped"):
        rows.append(("torch", None, "the source weights (`model.safetensors`)", "any CPU (eager PyTorch)"))
    for stage_name, entries in by_stage(manifest["artifacts"]).items():
        stage = get_stage(stage_name)
        if stage.sentence_transformers_backend is None:
            continue
        for art, entry in entries.items():
            file = entry.get("metadata", {}).get("file")
            if file:
                rows.append((stage.sentence_transformers_backend, f"{entry['folder']}/{file}", f"`{art}`",
                             stage.suits(entry)))
    if not rows:
        return []
    modules = " → ".join(record["modules"])
    length = f", `max_seq_length` {record['max_seq_length']}" if record.get("max_seq_length") else ""
    # sentence-transformers names its extras after its backends (sentence-transformers[onnx], …)
    extras = sorted({backend for backend, *_ in rows if backend != "torch"})
    install = f"sentence-transformers[{','.join(extras)}]" if extras else "sentence-transformers"
    lines = [f"With sentence-transformers (`pip install {install}`): the package is a "
             f"sentence-transformers repo ({modules}{length}; its configuration "
             f"{record['origin']}), and each line loads the file it names as it is, without exporting.", "",
             "| backend | file | artifact | suits |", "| --- | --- | --- | --- |"]
    lines += [f"| `{backend}` | {f'`{file}`' if file else '-'} | {art} | {suits} |"
              for backend, file, art, suits in rows]
    lines += ["", "```python", "from sentence_transformers import SentenceTransformer", ""]
    for backend, file, _, suits in rows:
        kwargs = f', model_kwargs={{"file_name": "{file}"}}' if file else ""
        lines.append(f'model = SentenceTransformer("{repo}", backend="{backend}"{kwargs})  # {suits}')
    lines += ['embeddings = model.encode(["A man is eating food.", "A plane is taking off."])', "```", ""]
    return lines


def _usage(repo: str, task: str, artifacts: dict[str, Any], recommended: str | None) -> list[str]:
    """Each target's own copy-paste usage of its packaged artifacts (:meth:`pipeline.stages.Stage.usage`)."""
    return [line for stage, entries in by_stage(artifacts).items()
            for line in get_stage(stage).usage(repo, task, entries, recommended)]
