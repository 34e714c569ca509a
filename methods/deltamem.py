"""deltamem: δ-mem (arXiv 2605.12357) on the frozen backbone — a per-layer r×r fp32 state written by
a delta rule while the context streams through, read back as low-rank corrections to q (before
q_norm/RoPE) and to the attention output (after o_proj). The mechanism is in docs/deltamem.md; the
pieces live in ``methods/_deltamem``.

Two protocols, kept apart in reports (docs/deltamem.md §7):
- ``method.window=W`` (state-only): the backbone keeps only the last W tokens of KV (+ ``sinks``),
  with the window method's cache layer (original positions); everything older reaches the answer through the state.
- ``method.window=null`` (paper protocol, "context + state"): the full KV stays and the state is
  written as well.

The same public API works outside the harness::

    from methods.deltamem import attach, detach, reset_state, read_state
    attach(model, rank=8)             # or attach(model, adapter="adapters/gemma3_270m_deltamem")
    model.generate(...)               # runs with δ-mem; reset_state(model) between sequences
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.registry import ConfigError, check
from methods._deltamem import attach, detach, get_adapter, install, queue_ids, read_state, reset_state, set_default_write
from methods._deltamem.adapter import load as load_adapter, save as save_adapter
from methods._deltamem.attach import build
from methods._deltamem.layer import Spec
from methods._lm import cache_bytes, cache_tokens, compact_sliding, forward_chunks, greedy, storage_bytes
from methods.base import Context, Method, MethodConfig, Question

__all__ = ["DeltaMem", "DeltaMemConfig", "attach", "detach", "reset_state", "read_state", "queue_ids",
           "set_default_write", "install", "save_adapter", "load_adapter"]

WRITE_MODES = ("tsw", "ssw", "msw")
SHIPPED = Path(__file__).resolve().parents[1] / "adapters"
# model -> protocol -> rank -> adapter; each trained under the protocol it is used for (a state-only
# adapter hurts the paper protocol: see methods/_deltamem/README.md). A missing folder means fresh init.
SHIPPED_FOR = {"gemma3_270m": {"state_only": {8: SHIPPED / "gemma3_270m_deltamem", 32: SHIPPED / "gemma3_270m_deltamem_r32"},
                               "paper": {8: SHIPPED / "gemma3_270m_deltamem_paper"}}}


@dataclass
class DeltaMemConfig(MethodConfig):
    rank: int = 8
    alpha: float = 16.0
    write_mode: str = "tsw"  # tsw | ssw | msw
    num_states: int = 4  # msw only
    ssw_fallback: str | None = None  # null: SSW on a single-chunk sample is an error; "tsw": fall back, reported
    window: int | None = 256  # state-only protocol: KV keeps the last W tokens; null: full context (paper protocol)
    sinks: int = 0
    write_during_decode: bool = True
    write_question: bool = False  # the read segment is not written, as in training
    heads: list[str] = field(default_factory=lambda: ["q", "o"])
    kernel: str = "auto"  # kernels.deltamem implementation: auto (Triton on CUDA, PyTorch reference otherwise) | reference | triton
    adapter: str | None = "auto"  # auto: the shipped adapter for this model and protocol if any, else fresh init; null: fresh; or a folder

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.rank, int) and self.rank > 0, "method.rank", "a positive integer", self.rank)
        check(isinstance(self.alpha, (int, float)) and self.alpha > 0, "method.alpha", "a positive number", self.alpha)
        check(self.write_mode in WRITE_MODES, "method.write_mode", f"one of {', '.join(WRITE_MODES)}", self.write_mode)
        check(isinstance(self.num_states, int) and self.num_states > 0, "method.num_states", "a positive integer", self.num_states)
        check(self.ssw_fallback in (None, "tsw"), "method.ssw_fallback", "null or tsw", self.ssw_fallback)
        check(self.window is None or (isinstance(self.window, int) and self.window > 0), "method.window", "null or a positive integer", self.window)
        check(isinstance(self.sinks, int) and self.sinks >= 0, "method.sinks", "an integer >= 0", self.sinks)
        check(self.kernel in ("auto", "reference", "triton"), "method.kernel", "one of auto, reference, triton", self.kernel)
        check(set(self.heads) <= {"q", "k", "v", "o"} and len(self.heads) > 0, "method.heads", "a non-empty subset of [q, k, v, o]", self.heads)

    def spec(self) -> Spec:
        return Spec(rank=self.rank, alpha=float(self.alpha), num_states=self.num_states if self.write_mode == "msw" else 1,
                    granularity="message" if self.write_mode == "ssw" else "token", heads=tuple(self.heads))


class DeltaMem(Method):
    name = "deltamem"
    Config = DeltaMemConfig

    def __init__(self, cfg: DeltaMemConfig, lm: Any) -> None:
        super().__init__(cfg, lm)
        self.ad, self.note = self._adapter(cfg, lm)
        self.ad.impl = cfg.kernel
        detach(lm.model)  # hooks are installed only while this method ingests or answers
        self.cache: Any = None
        self._peak = self._attended = self._fallbacks = 0

    def _adapter(self, cfg: DeltaMemConfig, lm: Any) -> tuple[Any, str]:
        want = cfg.spec()
        protocol = "paper" if cfg.window is None else "state_only"
        path = SHIPPED_FOR.get(lm.cfg.name, {}).get(protocol, {}).get(cfg.rank) if cfg.adapter == "auto" else cfg.adapter
        if path is not None and (cfg.adapter != "auto" or Path(path).exists()):
            ad = load_adapter(lm.model, path)
            got = ad.spec
            for f in ("rank", "num_states", "granularity", "heads"):
                if getattr(got, f) != getattr(want, f):
                    detach(lm.model)
                    if cfg.adapter == "auto":
                        break
                    raise ConfigError(f"invalid value for 'method.adapter': {path} has {f}={getattr(got, f)!r} but the method "
                                      f"config asks for {getattr(want, f)!r}; set method.rank/write_mode/num_states/heads to match")
            else:
                proto = ad.info.get("training", {}).get("protocol", "")
                return ad, f"trained adapter {path}" + (f" (trained {proto.split(';')[0]})" if proto else "")
        note = f"fresh init (untrained): no trained adapter for model '{lm.cfg.name}' with this config"
        if cfg.adapter is None:
            note = "fresh init (untrained): method.adapter=null"
        if lm.cfg.source != "tiny_random":
            print(f"[memharness] deltamem: {note}", file=sys.stderr, flush=True)
        return build(lm.model, want), note

    @contextmanager
    def _hooks(self) -> Iterator[None]:
        install(self.lm.model, self.ad)
        try:
            yield
        finally:
            detach(self.lm.model)

    def validate(self, context_tokens: int) -> None:
        if self.cfg.kernel == "triton" and not next(self.lm.model.parameters()).is_cuda:
            from kernels.deltamem import interpreting

            if not interpreting():
                raise ConfigError("invalid value for 'method.kernel': triton needs the model on a CUDA device (or "
                                  "TRITON_INTERPRET=1 for the slow CPU interpreter); use method.kernel=auto or reference")
        super().validate(context_tokens)

    @classmethod
    def context_problem(cls, cfg: DeltaMemConfig, context_tokens: int) -> str | None:
        if cfg.window is not None and cfg.window + cfg.sinks >= context_tokens:
            return (f"invalid value for 'method.window': {cfg.window} (+ sinks {cfg.sinks}) is not smaller than the context "
                    f"({context_tokens} tokens); expected a window below the context length, or method.window=null (context + state)")
        return None

    def make_cache(self) -> Any:
        from transformers import DynamicCache

        from methods.window import SinkWindowLayer

        cache = DynamicCache(config=self.lm.model.config)
        if self.cfg.window is None:
            return cache
        keep = self.cfg.window + self.cfg.sinks
        for i, layer in enumerate(cache.layers):
            if getattr(layer, "is_sliding", False) and getattr(layer, "sliding_window", keep + 1) <= keep:
                continue  # a native sliding layer already within the window
            cache.layers[i] = SinkWindowLayer(self.cfg.window, self.cfg.sinks)
        return cache

    def _evict(self, cache: Any) -> None:
        for layer in cache.layers:
            if hasattr(layer, "evict"):
                layer.evict()

    def _track(self, cache: Any) -> None:
        self._peak = max(self._peak, self.state_bytes())  # before eviction: the chunk just appended is held
        self._evict(cache)
        compact_sliding(cache, slack=1)  # native sliding layers (paper protocol): see methods._lm

    def _write_ids(self, context: Context) -> list[int]:
        if self.cfg.write_mode != "ssw":
            return [0] * context.num_tokens
        msgs = [c for c in context.chunk_ids if c]
        self.ad.granularity = None
        if len(msgs) < 2:
            if self.cfg.ssw_fallback != "tsw":
                raise ConfigError(
                    f"method.write_mode=ssw needs a context of several messages (chunks); this sample has {len(msgs)}. "
                    "Use write_mode=tsw, or set method.ssw_fallback=tsw to fall back (reported in describe())"
                )
            self.ad.granularity, self._fallbacks = "token", self._fallbacks + 1
            return [0] * context.num_tokens
        out = [-1] * len(context.prefix_ids)
        for m, chunk in enumerate(context.chunk_ids):
            out += [m] * len(chunk)
        return out

    def reset(self) -> None:
        self.ad.reset()
        self.cache, self._peak, self._attended = None, 0, 0

    def ingest(self, context: Context) -> None:
        self.cache = self.make_cache()
        ids = context.all_ids()
        with self._hooks():
            self.ad.set_default_write(True)
            self.ad.queue_ids(self._write_ids(context))
            forward_chunks(self.lm.model, self.cache, ids, self.cfg.chunk_size, self._track)
        compact_sliding(self.cache)

    def answer(self, question: Question, max_new_tokens: int) -> Iterator[Any]:
        if self.cache is None:
            self.cache = self.make_cache()
        self._attended = cache_tokens(self.cache) + len(question.ids)
        wq = self.cfg.write_question and self.cfg.write_mode != "ssw"
        with self._hooks():
            self.ad.queue_ids([0 if wq else -1] * len(question.ids))
            self.ad.set_default_write(self.cfg.write_during_decode)
            after = self._evict if self.cfg.window is not None else None
            yield from greedy(self.lm.model, self.cache, question.ids, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size, after)

    def states(self) -> list[Any]:
        return [layer.state for layer in self.ad.layers.values()]

    def state_bytes(self) -> int:
        return storage_bytes(self.states()) + cache_bytes(self.cache)

    def state_bytes_peak(self) -> int:
        return self._peak

    persistable = True

    def save_memory(self, folder) -> dict[str, int]:
        """Two parts, reported apart: ``state`` (per δ-mem layer [B, N, r, r] fp32) and ``window_kv``
        (the KV the backbone keeps: the window in the state-only protocol, all of it in the paper one)."""
        from harness import persist as _persist

        layers = {k: l for k, l in self.ad.layers.items() if l.state is not None}
        keys = {k: [l._key[0], str(l._key[2]).replace("torch.", "")] for k, l in layers.items()}
        kv, kv_layers = _persist.cache_parts(self.cache)
        meta = {"method": self.name, "layers": kv_layers, "state_keys": keys, "granularity": self.ad.granularity}
        # after decode steps the states are views of one stacked tensor (methods/_deltamem/decode.py);
        # safetensors refuses tensors that share memory, so each is saved as its own copy
        return _persist.write(folder, {"state": {k: l.state.clone() for k, l in layers.items()}, "window_kv": kv}, meta)

    def load_memory(self, folder) -> None:
        import torch

        from harness import persist as _persist

        parts, meta = _persist.read(folder, self.name)
        self.cache = self.make_cache()
        _persist.fill_cache(self.cache, parts["window_kv"], meta["layers"], self.lm.device)
        for k, (batch, dtype) in meta["state_keys"].items():
            if k not in self.ad.layers:
                raise ValueError(f"{folder}: saved δ-mem state for layer {k}, which this adapter does not have")
            layer, state = self.ad.layers[k], parts["state"][k].to(self.lm.device)
            if tuple(state.shape[1:]) != (layer.spec.num_states, layer.spec.rank, layer.spec.rank):
                raise ValueError(f"{folder}: δ-mem state of layer {k} has shape {tuple(state.shape)}, the adapter needs [B, "
                                 f"{layer.spec.num_states}, {layer.spec.rank}, {layer.spec.rank}]")
            layer.state, layer._key = state, (batch, self.lm.device, getattr(torch, dtype))
        self.ad.granularity = meta.get("granularity")

    def attended_tokens(self) -> int:
        return self._attended

    def extra_bytes(self) -> int:
        return storage_bytes(self.ad.parameters())

    def _kernel(self) -> str:
        """The scan/step implementation that runs: 'auto' resolved for this model's device."""
        if self.cfg.kernel != "auto":
            return self.cfg.kernel
        cuda = next(self.lm.model.parameters()).is_cuda
        return "triton (auto: CUDA)" if cuda else "reference (auto: no CUDA)"

    @classmethod
    def trainer(cls) -> Any:
        from methods._deltamem.train import Trainer

        return Trainer

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        protocol = "context + state (paper)" if c.window is None else f"state-only: KV window {c.window}" + (f" + {c.sinks} sinks" if c.sinks else "")
        d = {**super().describe(), "protocol": protocol, "write_mode": c.write_mode, "rank": self.ad.spec.rank,
             "num_states": self.ad.spec.num_states, "alpha": self.ad.spec.alpha, "heads": list(self.ad.spec.heads), "adapter": self.note,
             "write_during_decode": c.write_during_decode, "kernel": self._kernel()}
        t = self.ad.info.get("training")
        if t:  # how the adapter was trained, from its adapter.json
            d["adapter_training"] = {k: t[k] for k in ("command", "steps", "cpu_minutes", "wall_minutes", "date", "protocol") if k in t}
        if c.write_mode == "ssw":
            d["ssw_fallback"] = c.ssw_fallback
            d["ssw_fallback_samples"] = self._fallbacks  # samples that ran as TSW because they had < 2 messages
        return d

