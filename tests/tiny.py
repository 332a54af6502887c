"""Tiny checkpoints built locally: random weights from small configs, tokenizers from small vocabs.

Sizes follow transformers' own model testers (hidden 32, 2 layers, 4 heads, intermediate 37).
Encoders (``ENCODERS``) with the head of any encoder task: WordPiece vocabularies for BERT,
DistilBERT and ELECTRA, byte-level BPE for RoBERTa, SentencePiece-style Unigram tokenizer.json files
(built with ``tokenizers``) for XLM-RoBERTa and DeBERTa-v2, and a DeBERTa-v3 layout whose tokenizer
is only an ``spm.model`` trained here with ``sentencepiece``. Nothing here downloads anything.
Generative and vision builders are in tests/tiny_gen.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

WORDS = ("a man is eating food the girl carrying baby plane taking off over city at dawn and passengers are "
         "asleep hi piece of bread harbour while still finding their seats on in to with it this that was "
         "for as by be").split()
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}
ARCHITECTURES = ("bert", "roberta", "distilbert")  # the `checkpoints` fixture's
# every encoder with a tiny builder, and the encoder tasks each is built and consumed for (tests/test_encoders.py)
ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2")
ENCODER_TASKS = ("feature-extraction", "text-classification", "token-classification", "question-answering",
                 "fill-mask")


def _wordpiece_vocab(folder: Path) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, *(f"##{c}" for c in LETTERS), *WORDS]
    path = folder / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return path


def _bytelevel_bpe(folder: Path) -> tuple[Path, Path]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokens = specials + list(bytes_to_unicode().values())
    vocab = folder / "vocab.json"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    merges = folder / "merges.txt"
    merges.write_text("#version: 0.2\n", encoding="utf-8")
    return vocab, merges


def _unigram(folder: Path, specials: list[str], unk: str, mask: str, single: str, pair: str) -> Path:
    """A SentencePiece-style Unigram tokenizer.json (Metaspace pre-tokenizer) from the small word list,
    built with `tokenizers` alone: no sentencepiece model file, nothing downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces = list(dict.fromkeys(["▁", *(f"▁{w}" for w in WORDS), *LETTERS, *(f"▁{c}" for c in LETTERS)]))
    tokens = [*specials, *pieces, mask]
    # whole words score higher than single characters, so words stay whole and unknown words split
    vocab = [(t, 0.0 if t in specials or t == mask else -1.0 if len(t) > 2 else -5.0) for t in tokens]
    tok = Tokenizer(models.Unigram(vocab, unk_id=tokens.index(unk)))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    specials_used = sorted({t for t in (single + " " + pair).split() if t in tokens}, key=tokens.index)
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, tokens.index(t)) for t in specials_used])
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


def _tokenizer_and_config(arch: str, work: Path) -> tuple[object, object]:
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        DebertaV2Config,
        DebertaV2TokenizerFast,
        DistilBertConfig,
        DistilBertTokenizerFast,
        ElectraConfig,
        ElectraTokenizerFast,
        RobertaConfig,
        RobertaTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaTokenizerFast,
    )

    if arch == "bert":
        tokenizer = BertTokenizerFast(vocab_file=str(_wordpiece_vocab(work)))
        return tokenizer, BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, **SIZES)
    if arch == "distilbert":
        tokenizer = DistilBertTokenizerFast(vocab_file=str(_wordpiece_vocab(work)))
        return tokenizer, DistilBertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, dim=32,
                                           n_layers=2, n_heads=4, hidden_dim=37)
    if arch == "electra":  # embedding_size < hidden_size: the embeddings projection is exercised too
        tokenizer = ElectraTokenizerFast(vocab_file=str(_wordpiece_vocab(work)))
        return tokenizer, ElectraConfig(vocab_size=len(tokenizer), max_position_embeddings=128, embedding_size=16,
                                        **SIZES)
    if arch == "roberta":
        vocab, merges = _bytelevel_bpe(work)
        tokenizer = RobertaTokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
        return tokenizer, RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130, pad_token_id=1,
                                        bos_token_id=0, eos_token_id=2, **SIZES)
    if arch == "xlm-roberta":
        path = _unigram(work, ["<s>", "<pad>", "</s>", "<unk>"], "<unk>", "<mask>",
                        "<s> $A </s>", "<s> $A </s> </s> $B </s>")
        tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(path))
        return tokenizer, XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130, pad_token_id=1,
                                           bos_token_id=0, eos_token_id=2, **SIZES)
    if arch == "deberta-v2":  # DeBERTa-v3's layout: relative attention (c2p, p2c), no absolute positions
        path = _unigram(work, ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[UNK]", "[MASK]",
                        "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1")
        tokenizer = DebertaV2TokenizerFast(tokenizer_file=str(path), do_lower_case=False)
        return tokenizer, DebertaV2Config(
            vocab_size=len(tokenizer), max_position_embeddings=128, relative_attention=True,
            pos_att_type=["p2c", "c2p"], position_biased_input=False, max_relative_positions=-1,
            position_buckets=32, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
            pad_token_id=0, **SIZES)
    raise ValueError(f"no tiny {arch}")


def make_checkpoint(folder: Path, arch: str = "bert", task: str = "feature-extraction", seed: int = 0,
                    num_labels: int = 3) -> Path:
    """Write a tiny ``arch`` checkpoint for ``task`` (safetensors, config, fast tokenizer) to ``folder``.

    The model class is the one optimum's task registry names for the task (AutoModel,
    AutoModelForSequenceClassification, …ForTokenClassification, …ForQuestionAnswering, …ForMaskedLM),
    with random weights; classification heads get ``num_labels`` labels.
    """
    import torch
    from optimum.exporters.tasks import TasksManager

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / ".vocab"
    work.mkdir(exist_ok=True)
    tokenizer, config = _tokenizer_and_config(arch, work)
    tokenizer.model_max_length = 128  # type: ignore[attr-defined]
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    task = TasksManager.map_from_synonym(task)
    if task in ("text-classification", "token-classification"):
        config.num_labels = num_labels  # type: ignore[attr-defined]
    auto = TasksManager.get_model_class_for_task(task, framework="pt", model_type=arch)
    torch.manual_seed(seed)
    model = auto.from_config(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def make_sentencepiece_checkpoint(folder: Path, task: str = "feature-extraction", seed: int = 0) -> Path:
    """A tiny DeBERTa-v2 checkpoint laid out like microsoft/deberta-v3-*: its tokenizer is only a
    SentencePiece model (``spm.model``, trained here on the word list), no tokenizer.json, so loading
    it converts the SentencePiece model to a fast tokenizer."""
    import sentencepiece
    from transformers import DebertaV2Tokenizer

    make_checkpoint(folder, "deberta-v2", task, seed)  # weights; its vocabulary covers the ids below
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    work = folder / ".spm"
    work.mkdir(exist_ok=True)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join([" ".join(LETTERS), *(" ".join(WORDS[i:i + 7]) for i in range(len(WORDS)))]),
                      encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(work / "spm"), vocab_size=120, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
        bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"], minloglevel=2,
        num_threads=1)
    tokenizer = DebertaV2Tokenizer(vocab_file=str(work / "spm.model"))
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(folder)  # spm.model, tokenizer_config.json, special_tokens_map.json
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    return folder


def write_sentence_transformers_files(folder: Path, pooling: str = "mean", normalize: bool = True,
                                      extra_modules: tuple[str, ...] = ()) -> Path:
    """Make ``folder`` look like a sentence-transformers checkpoint: modules.json (Transformer, Pooling,
    optionally Normalize and ``extra_modules`` types) and 1_Pooling/config.json enabling ``pooling``."""
    hidden = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    hidden_size = hidden.get("hidden_size") or hidden.get("dim")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    for kind in (*extra_modules, *(["sentence_transformers.models.Normalize"] if normalize else [])):
        idx = len(modules)
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_{kind.rsplit('.', 1)[1]}", "type": kind})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {"pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean",
             "pooling_mode_max_tokens": pooling == "max", "pooling_mode_mean_sqrt_len_tokens": pooling == "sqrt"}
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden_size, **flags}, indent=2), encoding="utf-8")
    return folder


def make_sentence_transformers_checkpoint(folder: Path, pooling: str = "mean", normalize: bool = True,
                                          max_seq_length: int = 24, license: str | None = None, seed: int = 0) -> Path:
    """A tiny BERT saved as sentence-transformers saves a model: :func:`make_checkpoint`, then modules.json,
    1_Pooling/config.json (``pooling``), Normalize when ``normalize``, sentence_bert_config.json with a
    ``max_seq_length`` shorter than the model's positions (so truncation shows), config_sentence_transformers.json,
    and a README whose front matter names ``license`` (none: no README)."""
    make_checkpoint(folder, "bert", "feature-extraction", seed)
    write_sentence_transformers_files(folder, pooling=pooling, normalize=normalize)
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2), encoding="utf-8")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"__version__": {"sentence_transformers": "5.7.0"}, "prompts": {}, "default_prompt_name": None,
         "similarity_fn_name": "cosine"}, indent=2), encoding="utf-8")
    if license is not None:
        (folder / "README.md").write_text(
            f"---\nlicense: {license}\nlibrary_name: sentence-transformers\n---\n# tiny\n", encoding="utf-8")
    return folder


def write_recipe(path: Path, source_folder: Path | None = None, **overrides: object) -> Path:
    """A recipe file at ``path`` whose source is ``source_folder`` (written relative to the recipe)."""
    import os

    data: dict[str, object] = {
        "name": "tiny",
        "source": {"path": os.path.relpath(source_folder, path.parent)} if source_folder else {"path": "model"},
        "task": "feature-extraction",
        "targets": {"onnx": {"opset": 17}},
        "validation": {"texts": ["a man is eating food.", "hi", "the girl is carrying a baby on a plane at dawn"],
                       "shapes": [[1, 5], [3, 24]]},
    }
    data.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


DEMO_SHAPED_TARGETS = {
    "onnx": {"opset": 17, "variants": ["fp32", "optimized", "int8", "int8-avx2", "int8-avx512_vnni"]},
    "torchscript": {}, "torch_export": {}, "bettertransformer": {},
}


def demo_shaped_recipe(path: Path, checkpoint: Path, **overrides: object) -> Path:
    """A recipe shaped like the demo's (recipes/all-minilm-l6-v2.yaml) on a tiny BERT: a copy of
    ``checkpoint`` made a sentence-transformers checkpoint (mean pooling, Normalize), the pooled
    ``sentence_embedding`` in the graph, and every target: ONNX with optimized and int8 variants
    (per-CPU ones too), TorchScript, torch.export and BetterTransformer."""
    import shutil

    folder = path.parent / "demo-shaped-checkpoint"
    if not folder.exists():
        shutil.copytree(checkpoint, folder)
        write_sentence_transformers_files(folder)
    return write_recipe(path, folder, **{"sentence_embedding": {}, "targets": DEMO_SHAPED_TARGETS, **overrides})


def build_ok(recipe: Path, out: Path, *extra: str) -> dict:
    """``convert build RECIPE --out OUT --json [extra]`` in process; asserts it exited 0 and returns its JSON."""
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, ["build", str(recipe), "--out", str(out), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def class_promise(manifest: dict, artifact: str) -> dict | None:
    """What the manifest promises about ``artifact`` on the CPU class this process computes as (pipeline/cpu.py;
    ``ONEDNN_MAX_CPU_ISA`` caps it): that class's gate record (``offered``, figures), or None where the build
    gated no class (not x86-64). A consumer test asserts a lossy file's gate only where it is offered."""
    from pipeline import cpu

    return manifest["artifacts"][artifact].get("cpu_classes", {}).get(cpu.current_class())
