"""Tiny generative and vision checkpoints built locally: GPT-2, Llama, BART and ViT.

Random weights from small configs (hidden 32, 2 layers, 4 heads, intermediate 37, as transformers'
own model testers), saved as safetensors; tokenizers written here from a byte-level vocabulary
(no merges: every byte is a token), ViT's image processor from its defaults at a tiny size.
Nothing here downloads anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.tiny import SIZES, _bytelevel_bpe

# (architecture, task) pairs this module builds, in the order the fixtures build them
GENERATIVE = (("gpt2", "text-generation-with-past"), ("llama", "text-generation-with-past"),
              ("bart", "text2text-generation-with-past"), ("vit", "image-classification"))
IMAGE_SIZE = 30  # ViT: 15x15 patches of 2 pixels, as transformers' ViT tester


def _llama_tokenizer(folder: Path) -> object:
    """A byte-level BPE ``tokenizer.json`` (the format Llama-3 style checkpoints ship) wrapped in a
    ``PreTrainedTokenizerFast``, with ``<s>``/``</s>`` and left padding, as Llama chat models pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials + list(bytes_to_unicode().values()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left", model_max_length=128)


def make_generative_checkpoint(folder: Path, arch: str, seed: int = 0) -> Path:
    """Write a tiny ``arch`` checkpoint (gpt2, llama, bart or vit) to ``folder``."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        BartConfig,
        BartTokenizerFast,
        GPT2Config,
        GPT2TokenizerFast,
        LlamaConfig,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / ".vocab"
    work.mkdir(exist_ok=True)
    torch.manual_seed(seed)
    if arch == "gpt2":  # GPT-2's own tokenizer: byte-level BPE, no pad token (the generator pads with eos)
        vocab, merges = _bytelevel_bpe(work)
        tokenizer = GPT2TokenizerFast(vocab_file=str(vocab), merges_file=str(merges), bos_token="<s>",
                                      eos_token="</s>", unk_token="<unk>", model_max_length=128)
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=4,
                            n_inner=37, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = AutoModelForCausalLM.from_config(config)
    elif arch == "llama":  # grouped-query attention (2 kv heads for 4 heads) and rotary positions
        tokenizer = _llama_tokenizer(work)
        config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=128, num_key_value_heads=2,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **SIZES)
        model = AutoModelForCausalLM.from_config(config)
    elif arch == "bart":
        vocab, merges = _bytelevel_bpe(work)
        tokenizer = BartTokenizerFast(vocab_file=str(vocab), merges_file=str(merges), model_max_length=128)
        config = BartConfig(vocab_size=len(tokenizer), max_position_embeddings=128, d_model=32, encoder_layers=2,
                            decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                            encoder_ffn_dim=37, decoder_ffn_dim=37, pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None)
        model = AutoModelForSeq2SeqLM.from_config(config)
    elif arch == "vit":
        tokenizer = ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        config = ViTConfig(image_size=IMAGE_SIZE, patch_size=2, num_labels=3, **SIZES)
        model = ViTForImageClassification(config)
    else:
        raise ValueError(f"no tiny {arch}")
    shutil.rmtree(work)
    model.eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def generation_config(folder: Path) -> dict[str, object]:
    return json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
