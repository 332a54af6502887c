"""Scale: `convert build` (ONNX target) of a BERT-large-sized encoder and a ~1B-parameter Llama-style decoder.

Both checkpoints are made locally with random weights (fp32 safetensors) in a temporary folder, by a
separate process so this one stays small. Each build runs as a fresh `convert build` process; its
wall time and peak RSS (``os.wait4`` rusage of that process) are reported, the peak as a multiple
of the weights' size, against the goal ``peak RSS <= 3 x weights + 600 MB``.

Where the peak is: inside the build process a thread reads its ``VmRSS`` and ``VmHWM``
(``/proc/self/status``) every 50 ms together with the main thread's Python stack, and charges each
reading to the innermost pipeline function on that stack and the library call under it
(``peak_where``: the step the high-water mark was reached in; ``peak_rss_by_step``: each step's
highest reading). A long C++ call holds the GIL, so its memory is charged to the first Python line
that runs after it (still inside the same step). A graph over 2 GB
must come out of the exporter with ONNX external data (``model.onnx_data``) and still pass its
parity gate (for the decoder: prefill logits and greedy decode steps): the script checks the
package lists that file and the gate passed.

    nice python benchmarks/scale.py [--only bert-large|llama-1b] [--json out.json] [--keep DIR]

Needs about 3x the largest checkpoint in free RAM (the 1B decoder: ~4 GB of weights) and minutes
of CPU; run it with `nice`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# (name, model kind, task, config): BERT-large (~335M parameters) and a TinyLlama-shaped decoder
# with 20 layers (~1.0B parameters, grouped-query attention).
MODELS: dict[str, tuple[str, str, dict[str, int]]] = {
    "bert-large": ("bert", "feature-extraction",
                   {"vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                    "intermediate_size": 4096, "max_position_embeddings": 512}),
    "llama-1b": ("llama", "text-generation-with-past",
                 {"vocab_size": 32000, "hidden_size": 2048, "num_hidden_layers": 20, "num_attention_heads": 32,
                  "num_key_value_heads": 4, "intermediate_size": 5632, "max_position_embeddings": 2048}),
}

MAKE = r'''
import json, sys
from pathlib import Path
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import (AutoModel, AutoModelForCausalLM, BertConfig, BertTokenizerFast, LlamaConfig,
                          PreTrainedTokenizerFast)

kind, folder, config = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
folder.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
if kind == "bert":
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    tokens += [f"w{i}" for i in range(config["vocab_size"] - len(tokens))]  # the full vocabulary size
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=512)
    model = AutoModel.from_config(BertConfig(**config))
else:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tokens = specials + list(bytes_to_unicode().values())
    tokens += [f"w{i}" for i in range(config["vocab_size"] - len(tokens))]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", padding_side="left", model_max_length=2048,
                                        model_input_names=["input_ids", "attention_mask"])
    model = AutoModelForCausalLM.from_config(LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=3, **config))
model.eval().save_pretrained(folder, safe_serialization=True, max_shard_size="20GB")
tokenizer.save_pretrained(folder)
print(sum(p.numel() for p in model.parameters()))
'''


# Runs `convert ARGS` in this process with a thread sampling its memory and the main thread's stack;
# writes {"peak_where", "by_step"} to TRACE_FILE when the command ends.
TRACE = r'''
import json, os, sys, threading, time, traceback
trace_file, args = sys.argv[1], sys.argv[2:]
repo = os.getcwd() + os.sep
main_id = threading.main_thread().ident
by_step, where = {}, {"label": None, "hwm": 0.0}

def status():
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) / 1024
    return values

def label():
    frame = sys._current_frames().get(main_id)
    stack = traceback.extract_stack(frame) if frame is not None else []
    inside = [i for i, f in enumerate(stack) if f.filename.startswith(repo + "pipeline" + os.sep)]
    if not inside:
        return "(outside the pipeline: start-up, imports)"
    f = stack[inside[-1]]
    step = f"{os.path.relpath(f.filename, repo)}:{f.name}"
    below = [g for g in stack[inside[-1] + 1:] if "site-packages" in g.filename]
    def name(g):
        return g.filename.split("site-packages" + os.sep)[-1].removesuffix(".py").replace(os.sep, ".") + "." + g.name
    if below:
        calls = [name(below[0])] + ([name(below[-1])] if len(below) > 1 else [])
        step += " > " + " > ".join(calls)
    return step

def sample():
    hwm = 0.0
    while True:
        s = status()
        here = label()
        value = s["VmHWM"] if s["VmHWM"] > hwm else s["VmRSS"]
        if s["VmHWM"] > hwm:
            hwm = s["VmHWM"]
            where.update(label=here, hwm=round(hwm))
        by_step[here] = max(by_step.get(here, 0), round(value))
        time.sleep(0.05)

threading.Thread(target=sample, daemon=True).start()
from pipeline.cli import main
try:
    main(args, prog_name="convert")
finally:
    top = dict(sorted(by_step.items(), key=lambda kv: -kv[1])[:8])
    with open(trace_file, "w") as f:
        json.dump({"peak_where": where["label"], "peak_hwm_mb": where["hwm"], "by_step": top}, f, indent=1)
'''


def measure_build(cmd: list[str], cwd: Path) -> tuple[float, float, str, int]:
    """(wall seconds, peak RSS MB, stdout, exit code) of one child process; its output goes to
    temporary files so that ``wait4`` (which gives that process's own peak RSS) can reap it."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            sys.stderr.write(err.read().decode(errors="replace")[-3000:])
        return wall, usage.ru_maxrss / 1024, out.read().decode(errors="replace"), code


def scale(name: str, work: Path) -> dict[str, object]:
    kind, task, config = MODELS[name]
    folder = work / name / "checkpoint"
    t = time.perf_counter()
    made = subprocess.run([sys.executable, "-c", MAKE, kind, str(folder), json.dumps(config)], check=True,
                          capture_output=True, text=True)
    params = int(made.stdout.strip().splitlines()[-1])
    make_s = time.perf_counter() - t
    weights_mb = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**20
    recipe = work / name / "recipe.yaml"
    recipe.write_text(json.dumps({  # JSON is YAML
        "name": name, "source": {"path": "checkpoint"}, "task": task, "targets": {"onnx": {"opset": 18}},
        "validation": {"texts": ["A man is eating food.", "A plane is taking off."], "shapes": [[1, 7], [3, 24]]},
    }), encoding="utf-8")
    trace = work / name / "memory.json"
    wall, peak_mb, stdout, code = measure_build(
        [sys.executable, "-c", TRACE, str(trace), "build", str(recipe), "--out", str(work / name / "out"), "--json"],
        REPO)
    memory = json.loads(trace.read_text()) if trace.is_file() else {}
    result: dict[str, object] = {
        "model": name, "task": task, "parameters": params, "weights_mb": round(weights_mb, 1),
        "make_checkpoint_s": round(make_s, 1), "build_exit_code": code, "build_wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1), "peak_rss_x_weights": round(peak_mb / weights_mb, 2),
        "goal_mb": round(3 * weights_mb + 600, 1), "within_goal": peak_mb <= 3 * weights_mb + 600,
        "peak_where": memory.get("peak_where"), "peak_rss_by_step_mb": memory.get("by_step"),
    }
    if code == 0:
        data = json.loads(stdout)
        pkg = Path(data["package_dir"])
        onnx_files = {p.name: round(p.stat().st_size / 2**20, 1) for p in (pkg / "onnx").iterdir()}
        report = data["parity"]["artifacts"]["onnx"]
        worst = max((o["max_abs"] for b in report["batches"] for o in b["outputs"] if o["output"] != "generated_ids"),
                    default=0.0)
        result.update({
            "onnx_files_mb": onnx_files, "external_data": any(n.endswith("_data") for n in onnx_files),
            "parity_passed": report["passed"], "parity_worst_max_abs": worst,
            "timings_s": data["timings"],
        })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), action="append", help="build only these (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp dir)")
    args = parser.parse_args()
    names = args.only or list(MODELS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="convert-scale-"))
    results = []
    try:
        for name in names:
            print(f"{name}: making the checkpoint and building ...", flush=True)
            results.append(scale(name, work))
            print(json.dumps(results[-1], indent=2), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'model':12}{'params':>9}{'weights':>10}{'build':>9}{'peak RSS':>11}{'x weights':>11}{'goal':>10}"
          f"{'ext data':>10}{'parity':>8}")
    for r in results:
        print(f"{r['model']:12}{r['parameters'] / 1e6:>8.0f}M{r['weights_mb']:>8.0f}MB{r['build_wall_s']:>8.0f}s"
              f"{r['peak_rss_mb']:>9.0f}MB{r['peak_rss_x_weights']:>10.2f}x{r['goal_mb']:>8.0f}MB"
              f"{str(r.get('external_data', '-')):>10}{str(r.get('parity_passed', '-')):>8}")
    for r in results:
        print(f"{r['model']}: peak in {r['peak_where']}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cores": os.cpu_count()}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
