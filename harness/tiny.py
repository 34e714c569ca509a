"""Tiny randomly initialised models (Gemma 3, Qwen3, Llama) with a byte-level tokenizer.

They load in milliseconds with no files, so the contract tests can exercise every method on every
supported attention family. Their outputs are meaningless; only behaviour is tested on them.
"""

from __future__ import annotations

from typing import Any

import torch

SPECIALS = ["<pad>", "<bos>", "<eos>"]


def byte_tokenizer() -> Any:
    """A byte-level tokenizer: 256 byte symbols + <pad>, <bos>, <eos>; one token per UTF-8 byte."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def tiny_config(family: str, vocab_size: int, attn_implementation: str = "sdpa") -> Any:
    common = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=8192, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    if family == "gemma3":
        from transformers import Gemma3TextConfig

        cfg = Gemma3TextConfig(**common, sliding_window=32, layer_types=["sliding_attention", "full_attention"] * 2, query_pre_attn_scalar=16)
    elif family == "qwen3":
        from transformers import Qwen3Config

        cfg = Qwen3Config(**common, tie_word_embeddings=True)
    elif family == "llama":
        from transformers import LlamaConfig

        cfg = LlamaConfig(**common)
    else:
        raise ValueError(f"unknown tiny_random family {family!r}; valid: gemma3, qwen3, llama")
    cfg._attn_implementation = attn_implementation
    return cfg


def tiny_model(family: str, seed: int = 0, attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    tok = byte_tokenizer()
    cfg = tiny_config(family, len(tok), attn_implementation)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok
