"""δ-mem decode cost end to end: the bare backbone vs the same backbone with δ-mem attached.

Both run in this process on the same model and the same prompt, interleaved (bare, δ-mem, bare,
...) so drift and background load hit both alike. δ-mem runs the paper protocol (the full KV
cache stays and the state is written as well), so the only difference between the two is what
δ-mem adds per layer: the fused state step and the low-rank q/o corrections.

Per variant and repetition: prefill the context in chunks into a fresh cache (timed), then decode
greedily for --new-tokens tokens, each token stamped (CUDA events read out with one synchronise
at the end on GPU, perf_counter on CPU). One warm-up repetition of each is excluded. Reported:
median prefill seconds, median decode tokens/s (with the 2.5/97.5 percentiles over
repetitions), the δ-mem / bare ratios (goal on an H100 at 32k context: decode ≥ 0.9), and the
number of PyTorch operator calls one decode token makes (counted with a dispatch mode), which on
a GPU bounds the kernel launches δ-mem adds per layer.

    python benchmarks/deltamem_decode.py --context 2048 --new-tokens 32 --reps 5 \\
        [--kernel auto] [--out benchmarks/results/deltamem_decode_cpu.md]

`--model shape:gemma3-270m` or `shape:qwen3-4b` (the paper's backbone) builds that architecture
with random weights from its published configuration: decode cost does not depend on the weights'
values, so a GPU machine without the weights (or without a network) can still time the real
shapes, e.g. `--model shape:qwen3-4b --context 32768` on an H100.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.env import cpu_model
from harness.measure import Clock
from harness.models import ModelConfig, load
from harness.stats import describe
from methods._lm import forward_chunks
from methods.deltamem import attach, detach, install, reset_state


class OpCounter(TorchDispatchMode):
    """Counts the aten operator calls that compute (on a GPU each is a kernel launch, or a few):
    views, allocations, and conversions or reshapes that return their input's storage are free
    and not counted. Triton launches are not aten calls; δ-mem's fused step adds exactly one per
    layer (tests/test_kernels_deltamem.py::test_interp_decode_is_one_launch_per_layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    ALLOCATIONS = ("empty", "new_empty", "empty_like", "empty_strided", "set_")  # no kernel

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in self.ALLOCATIONS:
            return out
        if func.is_view or func.overloadpacket.__name__ in ("to", "reshape", "contiguous"):
            src = next((a for a in args if isinstance(a, torch.Tensor)), None)
            res = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(src, torch.Tensor) and isinstance(res, torch.Tensor) \
                    and res.untyped_storage().data_ptr() == src.untyped_storage().data_ptr():
                return out
        self.ops[str(func.overloadpacket.__name__)] += 1
        return out


# Published configurations (hidden sizes, layers, heads, attention pattern) of the backbones.
_GEMMA_TYPES = (["sliding_attention"] * 5 + ["full_attention"]) * 3
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "gemma3-270m": ("Gemma3TextConfig", dict(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, sliding_window=512, layer_types=_GEMMA_TYPES, query_pre_attn_scalar=256,
        max_position_embeddings=32768, rope_parameters={"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
                                                        "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}},
        tie_word_embeddings=True)),
    "qwen3-4b": ("Qwen3Config", dict(
        vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rope_parameters={"rope_theta": 5e6, "rope_type": "default"},
        tie_word_embeddings=True)),
}


def shaped_model(name: str, dtype: str) -> tuple[Any, torch.device, torch.dtype]:
    """A randomly initialised model of a published shape (see SHAPES), on CUDA when present."""
    import transformers

    from harness.models import resolve_device, resolve_dtype

    if name not in SHAPES:
        raise SystemExit(f"--model shape:NAME: NAME must be one of {', '.join(SHAPES)}, got {name!r}")
    cls, kw = SHAPES[name]
    device = resolve_device("auto")
    dt = resolve_dtype(dtype, device)
    cfg = getattr(transformers, cls)(**kw)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dt, attn_implementation="sdpa")
    return model.eval(), device, dt


def one_pass(model: Any, ids: list[int], new_tokens: int, chunk: int, device: torch.device) -> tuple[float, list[float]]:
    """Prefill seconds and per-token decode seconds for one fresh cache."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    clock = Clock(device)
    clock.stamp()
    logits = forward_chunks(model, cache, ids, chunk)
    clock.stamp()
    tok = logits.argmax(-1).view(1, 1)
    for _ in range(new_tokens):
        logits = model(input_ids=tok, cache=cache, use_cache=True).logits[0, -1]
        tok = logits.argmax(-1).view(1, 1)
        clock.stamp()
    t = clock.seconds()
    return t[1] - t[0], [b - a for a, b in zip(t[1:], t[2:])]


def ops_per_token(model: Any, ids: list[int], chunk: int) -> Counter[str]:
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    tok = forward_chunks(model, cache, ids, chunk).argmax(-1).view(1, 1)
    with OpCounter() as counter:
        model(input_ids=tok, cache=cache, use_cache=True)
    return counter.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma3_gguf",
                    help="gemma3_gguf (default model), smollm2_gguf, tiny_random, or shape:gemma3-270m / shape:qwen3-4b")
    ap.add_argument("--family", default="gemma3", help="tiny_random only")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=512)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--kernel", default="auto", choices=["auto", "reference", "triton"])
    ap.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    if a.model.startswith("shape:"):
        model, device, dtype = shaped_model(a.model.split(":", 1)[1], a.dtype)
        model_name, vocab = a.model + " (random weights)", list(range(3, model.config.vocab_size))
    else:
        lm = load(ModelConfig(name=a.model, source=a.model, family=a.family, dtype=a.dtype))
        model, device, dtype, model_name = lm.model, lm.device, lm.dtype, lm.cfg.name
        special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
        vocab = [i for i in range(min(len(lm.tokenizer), model.config.vocab_size)) if i not in special]
    g = torch.Generator().manual_seed(0)
    ids = [vocab[int(i)] for i in torch.randint(len(vocab), (a.context,), generator=g)]

    ad = attach(model, rank=a.rank)  # fresh init: the cost does not depend on the weights' values
    ad.impl = a.kernel
    detach(model)
    runs: dict[str, list[tuple[float, list[float]]]] = {"bare": [], "deltamem": []}
    with torch.inference_mode():
        for rep in range(a.reps + 1):  # rep 0 is the warm-up, excluded
            for name in runs:
                if name == "deltamem":
                    install(model, ad)
                    reset_state(model)
                try:
                    res = one_pass(model, ids, a.new_tokens, a.chunk_size, device)
                finally:
                    if name == "deltamem":
                        detach(model)
                if rep:
                    runs[name].append(res)
        ops = {"bare": ops_per_token(model, ids[:64], a.chunk_size)}
        install(model, ad)
        reset_state(model)
        ops["deltamem"] = ops_per_token(model, ids[:64], a.chunk_size)
        detach(model)

    layers = len(ad.layers)
    rows = {}
    for name, rs in runs.items():
        tps = [len(lat) / sum(lat) for _, lat in rs]
        lat = [x for _, ls in rs for x in ls]
        tps_lo, tps_hi = np.percentile(tps, [2.5, 97.5])
        lat_stats = describe(lat)
        rows[name] = dict(prefill=statistics.median(p for p, _ in rs), tps=statistics.median(tps),
                          tps_lo=tps_lo, tps_hi=tps_hi, p50=lat_stats["p50"] * 1e3,
                          p95=lat_stats["p95"] * 1e3, ops=sum(ops[name].values()))
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {cpu_model()} ({torch.get_num_threads()} threads)"
    kernel = a.kernel if a.kernel != "auto" else ("triton" if device.type == "cuda" else "reference")
    added = Counter(ops["deltamem"]) - Counter(ops["bare"])
    lines = [
        f"# δ-mem decode vs bare backbone — {model_name}, {dev}, {datetime.date.today()}",
        "",
        f"Context {a.context} tokens (prefill chunks of {a.chunk_size}), {a.new_tokens} decode tokens, {a.reps} interleaved "
        f"repetitions after 1 warm-up, dtype {str(dtype).replace('torch.', '')}, torch {torch.__version__}. δ-mem: r = {a.rank}, "
        f"{layers} layers, paper protocol (full KV + state), kernel {kernel}.",
        "",
        "| variant | prefill s (median) | decode tok/s (median) | [2.5, 97.5] % | token p50 ms | token p95 ms | aten ops / decode token (views excluded) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in rows.items():
        lines.append(f"| {name} | {x['prefill']:.3f} | {x['tps']:.2f} | [{x['tps_lo']:.2f}, {x['tps_hi']:.2f}] | {x['p50']:.2f} | "
                     f"{x['p95']:.2f} | {x['ops']} |")
    b, d = rows["bare"], rows["deltamem"]
    lines += [
        "",
        f"- decode tokens/s ratio δ-mem / bare: **{d['tps'] / b['tps']:.3f}** (goal on an H100 at 32k context: ≥ 0.9)",
        f"- prefill time ratio δ-mem / bare: **{d['prefill'] / b['prefill']:.3f}**",
        f"- aten ops added per decode token: {d['ops'] - b['ops']} ({(d['ops'] - b['ops']) / layers:.1f} per δ-mem layer): "
        + ", ".join(f"{k} {v}" for k, v in added.most_common()),
        "",
        "Command: `python benchmarks/deltamem_decode.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k != "out" and v not in (None, 0)) + "`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        from pathlib import Path

        from harness.io import write_text

        write_text(Path(a.out), text)  # atomic


if __name__ == "__main__":
    main()
