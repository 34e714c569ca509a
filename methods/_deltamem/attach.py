"""Attach δ-mem to a transformers causal LM with hooks, so its ordinary forward/generate run with it.

Why hooks on ``q_proj`` / ``o_proj`` and not a copied attention forward: in Gemma 3, Qwen3 and
Llama (transformers 5.24) ``q_proj`` receives exactly the normed hidden state x_t that δ-mem reads
(§2), its output goes into ``q_norm`` and RoPE afterwards, and ``o_proj``'s output is added to the
residual right after. A forward hook on ``q_proj`` therefore adds the q-side correction *before*
``q_norm`` and RoPE, and one on ``o_proj`` adds the o-side correction after it, without touching
the attention code, the mask logic or the KV cache (which 5.24 passes as ``cache=``).

The memory parameters live in a separate ``Adapter`` module stored on the model as an unregistered
attribute: the backbone's ``parameters()``, ``state_dict()`` and ``.to(dtype)`` never see them
(so weights are not double-counted and the adapter stays fp32).

Per forward call a pre-hook on the top-level model records the 2-D padding mask (validity of the
last T positions; never the 4-D mask) and pops the write ids for these T tokens from a queue.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from harness.registry import ConfigError
from methods._deltamem import decode as _decode
from methods._deltamem.layer import Io, MemoryLayer, Recording, Spec

SUPPORTED = ("Gemma3Attention", "Qwen3Attention", "LlamaAttention")
_ATTR = "_delta_mem"


def _plain(w: torch.Tensor) -> torch.Tensor:
    """A base weight as a plain tensor: quantized weights (torchao subclasses) are dequantized."""
    return w.dequantize() if type(w) is not torch.Tensor and type(w) is not nn.Parameter and hasattr(w, "dequantize") else w


class Adapter(nn.Module):
    """All δ-mem layers of one model plus the per-call plumbing (write ids, mask, write policy)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleDict()
        self.io = Io()
        self.default_write = True  # tokens without queued ids are written (TSW) / are one message (SSW, T=1)
        self._queue: torch.Tensor | None = None  # [B, L] write ids for upcoming tokens
        self.granularity: str | None = None  # per-sample override of spec.granularity (reported SSW fallback)
        self._handles: list[Any] = []
        self._attns: list[nn.Module] = []
        self.info: dict[str, Any] = {}  # provenance: where the weights came from
        # one-token inference forwards on the PyTorch path (decode.py): layers in forward order, their
        # decode operands, and the states of the last batched write ([L, B, N, r, r] and its views)
        self._slots: list[MemoryLayer] = []
        self._decode_cache: tuple | None = None
        self._state_stack: torch.Tensor | None = None
        self._state_views: tuple | None = None

    # Rewritten per token: skip nn.Module.__setattr__'s parameter/buffer bookkeeping for these.
    _PLAIN = frozenset({"_decode_cache", "_state_stack", "_state_views"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in Adapter._PLAIN:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def impl(self) -> str:
        """kernels.deltamem implementation every layer uses: auto | reference | triton."""
        return self.io.impl

    @impl.setter
    def impl(self, value: str) -> None:
        from kernels.deltamem import STEP_IMPLS

        if value not in STEP_IMPLS:
            raise ConfigError(f"δ-mem kernel must be one of {', '.join(STEP_IMPLS)}, got {value!r}")
        self.io.impl = value

    def set_default_write(self, on: bool) -> None:
        """Whether tokens fed without queued write ids are written (TSW) / form one message (SSW, T=1)."""
        self.default_write = bool(on)

    @contextmanager
    def record(self) -> Iterator[Recording]:
        """Keep per-token β, write masks and reads of every layer for the forward calls inside the block
        (with their autograd graph: a loss on them trains the memory). Decode steps then take the
        unfused path, so this is for training and probes, not for timing."""
        if self.io.record is not None:
            raise RuntimeError("δ-mem: Adapter.record() is already active")
        rec = self.io.record = Recording()
        try:
            yield rec
        finally:
            self.io.record = None

    def reset(self) -> None:
        """Zero every layer's state and drop queued ids and overrides."""
        self._queue, self.granularity = None, None
        self.io.plan, self._state_stack, self._state_views = None, None, None
        for layer in self.layers.values():
            layer.reset()

    def queue_ids(self, ids: torch.Tensor | list) -> None:
        """Write ids for the next tokens fed (consumed across forward calls): -1 = read only, ≥ 0 = written;
        in SSW equal ids ≥ 0 form one message."""
        t = torch.as_tensor(ids, dtype=torch.long)
        t = t[None] if t.dim() == 1 else t
        self._queue = t if self._queue is None or self._queue.shape[1] == 0 else torch.cat([self._queue, t], 1)

    def _pre_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs.get("inputs_embeds")
        B, T = x.shape[0], x.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() != 2:
            raise ValueError("δ-mem needs the 2-D padding mask [batch, positions] (or none); got a mask with shape "
                             f"{tuple(mask.shape)}")
        self.io.valid = None if mask is None else mask[:, -T:].to(device=x.device, dtype=torch.bool)
        if self._queue is not None and self._queue.shape[1] > 0:
            if self._queue.shape[1] < T:
                raise ValueError(f"δ-mem: {self._queue.shape[1]} queued write ids but the forward has {T} tokens")
            ids, self._queue = self._queue[:, :T], self._queue[:, T:]
            # queued ids live on the host (CPU): reading them here costs no device sync, and tells
            # every layer whether this call writes all, none or some of its tokens
            writes = None
            if ids.device.type == "cpu":
                writes = True if int(ids.min()) >= 0 else False if int(ids.max()) < 0 else None
            self.io.ids, self.io.writes = ids.expand(B, T).to(x.device), writes
        elif not self.default_write:
            self.io.ids, self.io.writes = None, False  # read only
        elif (self.granularity or self.spec.granularity) == "message" and T > 1:
            raise ConfigError(
                "δ-mem SSW (write_mode=ssw) needs message ids for a multi-token forward: call "
                "queue_ids(model, ids) first, or use write_mode=tsw"
            )
        else:
            self.io.ids, self.io.writes = torch.zeros(B, T, dtype=torch.long, device=x.device), True

        self.io.granularity = self.granularity
        self.io.step_masks = self.io.decode_masks = None
        # a plan left by a forward that raised is dropped: its layers' states stay as they were
        self.io.plan = _decode.plan(self, x, B) if _decode.applies(self, x, T) else None

    def _post_forward(self, *a: Any) -> None:
        if self.io.plan is not None:
            _decode.flush(self, self.io.plan)
        self.io.valid, self.io.ids, self.io.writes, self.io.step_masks, self.io.decode_masks = None, None, None, None, None
        self.io.plan = None
        for layer in self.layers.values():
            layer._reads, layer._corr, layer._dts = None, None, None


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    mods = [m for m in model.modules() if type(m).__name__ in SUPPORTED]
    if not mods:
        kinds = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
        raise ConfigError(f"δ-mem supports attention classes {', '.join(SUPPORTED)}; this model has {kinds or 'none'}")
    return mods


def get_adapter(model: nn.Module) -> Adapter:
    a = model.__dict__.get(_ATTR)
    if a is None:
        raise ValueError("no δ-mem attached to this model; call attach(model, ...) first")
    return a


def build(model: nn.Module, spec: Spec, seed: int = 0) -> Adapter:
    """Create fresh (initialised) memory layers for ``spec`` and install the hooks."""
    ad = Adapter(spec)
    attns = _attention_modules(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for attn in attns:
            i = attn.layer_idx
            if spec.layers is not None and i not in spec.layers:
                continue
            layer = MemoryLayer(spec, attn.q_proj.in_features, attn.q_proj.out_features, attn.k_proj.out_features, i)
            layer.init_from_base({"q": _plain(attn.q_proj.weight), "o": _plain(attn.o_proj.weight)})
            ad.layers[str(i)] = layer
    if spec.layers is not None and set(spec.layers) - {int(k) for k in ad.layers}:
        raise ConfigError(f"δ-mem target layers {sorted(set(spec.layers) - {int(k) for k in ad.layers})} do not exist in this model")
    ad.to(next(model.parameters()).device)
    ad._attns = [a for a in attns if str(a.layer_idx) in ad.layers]
    install(model, ad)
    return ad


def install(model: nn.Module, ad: Adapter) -> None:
    """(Re-)install the hooks of an existing Adapter; its state is kept (the inverse of ``detach``)."""
    if _ATTR in model.__dict__:
        raise ValueError("δ-mem is already attached to this model; detach(model) first")
    io = ad.io
    ad._slots = [ad.layers[str(attn.layer_idx)] for attn in ad._attns]
    for i, (attn, layer) in enumerate(zip(ad._attns, ad._slots)):
        layer._slot = i

        def q_hook(mod, args, out, layer=layer):
            if io.plan is not None:  # one-token inference forward on the PyTorch path (decode.py)
                return layer.decode(args[0], out, io.plan)
            layer._reads = layer.read_write(args[0], io)  # [B, T, N*r]
            return layer.correction("q", out) if "q" in layer.delta else out

        ad._handles.append(attn.q_proj.register_forward_hook(q_hook))
        for h in ("k", "v", "o"):
            if h in layer.delta:
                ad._handles.append(getattr(attn, f"{h}_proj").register_forward_hook(
                    lambda mod, args, out, layer=layer, h=h: layer.correction(h, out)))
    ad._handles.append(model.register_forward_pre_hook(ad._pre_forward, with_kwargs=True))
    ad._handles.append(model.register_forward_hook(ad._post_forward))
    model.__dict__[_ATTR] = ad


def detach(model: nn.Module) -> Adapter:
    """Remove δ-mem's hooks from ``model`` (the model is bare again); returns the Adapter, whose
    weights and state survive, so ``install(model, adapter)`` resumes exactly where it stopped."""
    ad = get_adapter(model)
    for h in ad._handles:
        h.remove()
    ad._handles.clear()
    del model.__dict__[_ATTR]
    return ad


def reset_state(model: nn.Module) -> None:
    """Zero every layer's state (explicit reset; a new batch size/device/dtype requires this)."""
    get_adapter(model).reset()


def read_state(model: nn.Module) -> dict[int, torch.Tensor | None]:
    """Per-layer states {layer index: [B, N, r, r] fp32} (None before the first forward)."""
    return {int(i): layer.state for i, layer in get_adapter(model).layers.items()}


def queue_ids(model: nn.Module, ids: Any) -> None:
    get_adapter(model).queue_ids(ids)


def set_default_write(model: nn.Module, on: bool) -> None:
    """Whether tokens fed without queued ids are written (e.g. decode steps)."""
    get_adapter(model).set_default_write(on)
