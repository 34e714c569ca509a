"""Weight-only quantization (model.quantization): weights_bytes is what the quantized tensors really
store (packed data, scales, zero points), the tied embedding/LM head stays unquantized and shared,
and the quantized model still runs a memory method."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao", reason="model.quantization needs torchao (pip install 'memharness[quant]')")

from harness.models import ModelConfig, load  # noqa: E402
from harness.registry import ConfigError, build_config  # noqa: E402
from methods import REGISTRY  # noqa: E402
from methods.base import Context, Question  # noqa: E402


def _lm(kind: str, family: str = "gemma3"):
    return load(ModelConfig(name="tiny_random", source="tiny_random", family=family, dtype="float32", device="cpu", quantization=kind))


def _expected(model: torch.nn.Module, kind: str) -> int:
    """Bytes from the shapes: each Linear but the tied head stores int8 values (one per byte, int4
    included on CPU), fp32 scales and int8 zero points; everything else stays fp32, the tied matrix once."""
    head = model.get_output_embeddings()
    head = head if head.weight is model.get_input_embeddings().weight else None  # only a tied head stays unquantized
    total, seen = 0, set()
    for mod in model.modules():
        for name, p in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(mod, torch.nn.Linear) and mod is not head and name == "weight":
                out, inp = p.shape
                groups = 1 if kind == "int8" else inp // 32
                total += out * inp + out * groups * 4 + out * groups * 1
            else:
                total += p.numel() * p.element_size()
    return total


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_weights_bytes_are_the_quantized_storages(kind: str, family: str) -> None:
    lm, ref = _lm(kind, family), _lm("none", family)
    assert lm.weights_bytes == _expected(lm.model, kind)
    assert lm.weights_bytes < ref.weights_bytes
    tied = lm.model.get_output_embeddings().weight is lm.model.get_input_embeddings().weight  # gemma3 ties, llama does not
    assert lm.quant_info["quantization"] == kind
    assert lm.quant_info["quantized_linear_layers"] == 7 * 4 + (0 if tied else 1)  # q k v o gate up down × 4 layers (+ the head)


def test_tied_head_stays_shared_with_the_embedding() -> None:
    lm = _lm("int8", "gemma3")
    assert lm.model.get_output_embeddings().weight is lm.model.get_input_embeddings().weight
    assert lm.model.get_output_embeddings().weight.dtype == torch.float32
    assert "kept" in lm.quant_info["tied_head"]


@pytest.mark.parametrize("method,cfg", [("full_kv", {}), ("deltamem", {"window": 32, "adapter": None})])
def test_quantized_model_answers(method: str, cfg: dict) -> None:
    """Also δ-mem's fresh init, which reads the (dequantized) base q/o weights."""
    lm = _lm("int8")
    cls = REGISTRY.get(method)
    m = cls(build_config(cls.Config, {"chunk_size": 32, **cfg}, "method"), lm)
    m.reset()
    m.ingest(Context(prefix_ids=[1], chunk_ids=[list(range(3, 100))], chunk_texts=[""]))
    toks = [int(t) for t in m.answer(Question(ids=[5, 6, 7], text=""), 4)]
    assert len(toks) == 4 and all(0 <= t < lm.model.config.vocab_size for t in toks)


def test_unknown_quantization_names_the_field() -> None:
    with pytest.raises(ConfigError, match="model.quantization"):
        ModelConfig(name="x", source="tiny_random", quantization="int3")
