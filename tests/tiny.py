"""Tiny checkpoints built locally: random weights from small configs, tokenizers from small vocabs.

Sizes follow transformers' own model testers (hidden 32, 2 layers, 4 heads, intermediate 37).
Nothing here downloads anything.
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
ARCHITECTURES = ("bert", "roberta", "distilbert")


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


def make_checkpoint(folder: Path, arch: str = "bert", task: str = "feature-extraction", seed: int = 0,
                    num_labels: int = 3) -> Path:
    """Write a tiny ``arch`` checkpoint for ``task`` (safetensors, config, fast tokenizer) to ``folder``."""
    import torch
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        BertConfig,
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertTokenizerFast,
        RobertaConfig,
        RobertaTokenizerFast,
    )

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / ".vocab"
    work.mkdir(exist_ok=True)
    if arch == "bert":
        tokenizer = BertTokenizerFast(vocab_file=str(_wordpiece_vocab(work)))
        config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, **SIZES)
    elif arch == "distilbert":
        tokenizer = DistilBertTokenizerFast(vocab_file=str(_wordpiece_vocab(work)))
        config = DistilBertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, dim=32, n_layers=2,
                                  n_heads=4, hidden_dim=37)
    elif arch == "roberta":
        vocab, merges = _bytelevel_bpe(work)
        tokenizer = RobertaTokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
        config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130, pad_token_id=1,
                               bos_token_id=0, eos_token_id=2, **SIZES)
    else:
        raise ValueError(f"no tiny {arch}")
    tokenizer.model_max_length = 128
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    if task == "text-classification":
        config.num_labels = num_labels
        auto = AutoModelForSequenceClassification
    else:
        auto = AutoModel
    torch.manual_seed(seed)
    model = auto.from_config(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
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
