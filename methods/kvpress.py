"""kvpress: NVIDIA's KV-cache compression presses (SnapKV, StreamingLLM, expected attention, TOVA,
K-norm, KeyDiff, random, AdaKV) as a memory method.

Question-agnostic by default, as the protocol requires: ingest prefills the whole context in one
forward with the press hooked, so each full-attention layer is compressed right after it is
written, before the question exists; the question is then decoded against the compressed cache.
``query_aware=true`` is the separately labelled variant (``variant = "query-aware"``) that follows
kvpress's own query-aware evaluation: ingest only keeps the context's token ids, and at answer time
the context *and the question* are prefilled and compressed together (so its TTFT includes the whole
prefill, and its state between ingest and question is the raw ids).

The presses are kvpress's own code, run on transformers 5.24 through ``methods._kvpress_compat``
(renamed forward kwargs, scoped attention patch, RoPE shim; see there). Only full-attention layers
are compressed: Gemma 3's sliding-window layers already hold just their window (kvpress skips them
for Gemma 3 as well), so on Gemma 3 the cache shrinks by less than ``compression_ratio``.

``state_bytes`` is measured from the cache tensors. Head-wise presses (``adakv``) do not free
memory: they keep every key and mask the dropped ones at attention time; ``describe()`` says
``frees_memory: false`` and every sample reports ``kv_masked_only`` and ``kv_masked_fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from harness.registry import ConfigError, check
from methods import _kvpress_compat as compat
from methods._lm import cache_bytes, cache_tokens, greedy
from methods.base import Context, Method, MethodConfig, Question

# name -> kvpress class; "adakv" wraps SnapKV head-wise (masks instead of dropping)
PRESSES = {
    "snapkv": "SnapKVPress",
    "streaming_llm": "StreamingLLMPress",
    "expected_attention": "ExpectedAttentionPress",
    "tova": "TOVAPress",
    "knorm": "KnormPress",
    "keydiff": "KeyDiffPress",
    "random": "RandomPress",
    "adakv": "AdaKVPress",
}
MASK_ONLY = {"adakv"}


@dataclass
class KVPressConfig(MethodConfig):
    press: str = "snapkv"
    compression_ratio: float = 0.5  # fraction of each compressed layer's entries removed
    query_aware: bool = False
    press_kwargs: dict[str, Any] = field(default_factory=dict)  # extra press fields, e.g. {window_size: 32}

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.press in PRESSES, "method.press", f"one of {', '.join(PRESSES)}", self.press)
        check(isinstance(self.compression_ratio, (int, float)) and 0 <= self.compression_ratio < 1, "method.compression_ratio", "a number in [0, 1)", self.compression_ratio)
        check(isinstance(self.query_aware, bool), "method.query_aware", "true or false", self.query_aware)
        self.press_kwargs = dict(self.press_kwargs or {})


def build_press(cfg: KVPressConfig) -> Any:
    kp = compat.import_kvpress()
    cls = getattr(kp, PRESSES[cfg.press])
    try:
        if cfg.press == "adakv":  # alpha_safeguard is AdaKV's own field; the rest go to the SnapKV scorer
            kw = dict(cfg.press_kwargs)
            outer = {k: kw.pop(k) for k in ("alpha_safeguard",) if k in kw}
            return cls(press=kp.SnapKVPress(compression_ratio=float(cfg.compression_ratio), **kw), **outer)
        return cls(compression_ratio=float(cfg.compression_ratio), **cfg.press_kwargs)
    except TypeError as e:
        raise ConfigError(f"invalid value for 'method.press_kwargs': {cfg.press_kwargs!r} for press {cfg.press!r} ({e})") from None


class KVPress(Method):
    name = "kvpress"
    requires = {"kvpress": "kvpress (scripts/install.sh, or pip install --no-deps kvpress==0.5.5 with the [kvpress] extra)"}
    Config = KVPressConfig

    def __init__(self, cfg: KVPressConfig, lm: Any) -> None:
        super().__init__(cfg, lm)
        self.press = build_press(cfg)
        self.frees_memory = cfg.press not in MASK_ONLY
        self.variant = "query-aware" if cfg.query_aware else ""
        self.reset()

    def validate(self, context_tokens: int) -> None:
        window = getattr(self.press, "window_size", None) or getattr(getattr(self.press, "press", None), "window_size", None)
        if window is not None and context_tokens <= window + 1:
            raise ConfigError(f"invalid value for 'method.press': {self.cfg.press} scores with a window of {window} tokens; the context ({context_tokens} tokens) must be longer")

    def reset(self) -> None:
        self.cache: Any = None
        self.context_ids: np.ndarray | None = None
        self._peak = self._attended = self._compressed = 0
        self._stats: dict[str, Any] = {}
        compat.clear_masks(self.lm.model)

    # -- prefill with the press -------------------------------------------------------------
    def _track(self, cache: Any) -> None:
        self._peak = max(self._peak, cache_bytes(cache))

    @torch.inference_mode()
    def _prefill(self, ids: list[int]) -> None:
        model = self.lm.model
        self.cache = compat.pressed_cache(model)
        x = torch.tensor([ids], dtype=torch.long, device=self.lm.device)  # [1, T]
        with compat.press_hooks(self.press, model, self._track) as layers:
            compat.decoder(model)(input_ids=x, cache=self.cache, use_cache=True)  # no LM head: nothing to predict yet
        self._track(self.cache)
        compat.compact(self.cache)
        self._compressed = cache_bytes(self.cache)
        pressed = [self.cache.layers[i] for i in layers]
        held, seen = sum(la.held() for la in pressed), sum(la.seen for la in pressed)
        masked = compat.masked_entries(model)
        heads = sum(la.keys.shape[0] * la.keys.shape[1] * la.held() for la in pressed)
        self._stats = {
            "kv_compressed_layers": len(pressed),
            "kv_kept_fraction": held / seen if seen else None,  # positions kept in compressed layers
            "kv_masked_only": not self.frees_memory,
            "kv_masked_fraction": masked / heads if heads else 0.0,  # head-wise entries hidden but still stored
            "kv_uncompressed_bytes": compat.uncompressed_bytes(self.cache),
        }

    def ingest(self, context: Context) -> None:
        ids = context.all_ids()
        if self.cfg.query_aware:
            self.context_ids = np.asarray(ids, dtype=np.int32)  # compression waits for the question
            self._peak = int(self.context_ids.nbytes)
            return
        self._prefill(ids)

    def answer(self, question: Question, max_new_tokens: int) -> Iterator[Any]:
        prompt = list(question.ids)
        if self.cfg.query_aware:
            full = (self.context_ids.tolist() if self.context_ids is not None else []) + prompt
            self._prefill(full[:-1])  # the question is inside the compressed prefill
            prompt = full[-1:]
        elif self.cache is None:
            self.cache = compat.pressed_cache(self.lm.model)
        self._attended = cache_tokens(self.cache) + len(prompt)
        model = _Masked(self.lm.model) if compat.masked_entries(self.lm.model) else self.lm.model
        yield from greedy(model, self.cache, prompt, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size)

    # -- accounting --------------------------------------------------------------------------
    def state_bytes(self) -> int:
        ids = int(self.context_ids.nbytes) if self.context_ids is not None else 0
        return ids + cache_bytes(self.cache)

    def state_bytes_peak(self) -> int:
        return self._peak

    def attended_tokens(self) -> int:
        return self._attended

    def extra_metrics(self) -> dict[str, Any]:
        """Per-sample numbers for the harness to merge into the sample row (after answer)."""
        out = {"kv_compressed_bytes": self._compressed, **self._stats}
        unc = self._stats.get("kv_uncompressed_bytes")
        out["kv_bytes_saved_fraction"] = 1 - self._compressed / unc if unc else None
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "press": self.cfg.press, "compression_ratio": self.cfg.compression_ratio,
            "query_aware": self.cfg.query_aware, "frees_memory": self.frees_memory, "compressed_layers": "full-attention only",
            "kvpress_path": "kvpress library via methods._kvpress_compat",
        }


class _Masked:
    """The model, called with kvpress's key-masking attention wrapper active (head-wise presses)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with compat.head_masking(self.model):
            return self.model(*args, **kwargs)
