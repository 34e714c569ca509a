"""Harness overhead: full_kv through the harness vs bare transformers on the same prompt.

Both paths run in this process on the same model and prompt, interleaved (A, B, A, B, ...) so drift
and background load hit both alike. Reported: median TTFT (cold: whole prompt -> first token) and
median decode tokens/s, and their ratios harness / bare (goal: TTFT ratio <= 1.03, decode >= 0.97).

    python benchmarks/overhead.py --context 2048 --new-tokens 32 --reps 5 [--out benchmarks/results/overhead_cpu.md]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness import env
from harness.measure import NVML, Clock
from harness.models import ModelConfig, load
from harness.prompt import encode
from harness.registry import build_config
from harness.run import measure_sample
from methods.full_kv import FullKV, FullKVConfig
from tasks.needle import Needle, NeedleConfig


def bare(model, ids: torch.Tensor, new_tokens: int, device: torch.device) -> tuple[float, float]:
    """TTFT of generate(max_new_tokens=1) and decode tok/s from a streamer-free full generate."""
    c = Clock(device)
    c.stamp()
    model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
    c.stamp()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    c.stamp()
    t = c.seconds()
    ttft, full = t[1] - t[0], t[2] - t[1]
    return ttft, (new_tokens - 1) / (full - ttft)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=512)
    ap.add_argument("--model", default="gemma3_gguf", help="gemma3_gguf (default model) or tiny_random")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    lm = load(ModelConfig(name=a.model, source=a.model))
    sample = Needle(NeedleConfig(context_lengths=[a.context], depths=[50])).samples(lm.tokenizer, 0)[0]
    ctx, q = encode(sample, lm.tokenizer, chat=False)
    ids = torch.tensor([ctx.all_ids() + q.ids], device=lm.device)
    method = FullKV(build_config(FullKVConfig, {"chunk_size": a.chunk_size}, "method"), lm)
    lm.eos_ids = set()  # both sides generate exactly new_tokens
    nvml = NVML(lm.device)

    with torch.inference_mode():
        bare(lm.model, ids, 4, lm.device)  # warm-up, excluded
        measure_sample(method, lm, ctx, q, 4, nvml)
        h_ttft, h_tps, b_ttft, b_tps = [], [], [], []
        for _ in range(a.reps):
            m, _ = measure_sample(method, lm, ctx, q, a.new_tokens, nvml)
            h_ttft.append(m["ttft_cold_s"])
            h_tps.append(m["decode_tok_per_s"])
            t, s = bare(lm.model, ids, a.new_tokens, lm.device)
            b_ttft.append(t)
            b_tps.append(s)
    med = statistics.median
    e = env.collect()
    device = e["gpus"][0]["name"] if e["gpus"] else f"CPU: {e['cpu']} ({e['torch_threads']} torch threads)"
    lines = [
        f"# Harness overhead: full_kv vs bare transformers ({time.strftime('%Y-%m-%d')})",
        "",
        f"device: {device}; model: {a.model} ({str(lm.dtype).replace('torch.', '')}); prompt: {ids.shape[1]} tokens; "
        f"{a.new_tokens} new tokens; harness chunk_size {a.chunk_size}; {a.reps} interleaved repetitions; medians.",
        "",
        "| | harness full_kv | bare transformers | ratio harness/bare |",
        "|---|---|---|---|",
        f"| TTFT cold (s) | {med(h_ttft):.4f} | {med(b_ttft):.4f} | {med(h_ttft) / med(b_ttft):.3f} |",
        f"| decode tokens/s | {med(h_tps):.2f} | {med(b_tps):.2f} | {med(h_tps) / med(b_tps):.3f} |",
        "",
        f"raw TTFT harness: {[round(x, 4) for x in h_ttft]}",
        f"raw TTFT bare: {[round(x, 4) for x in b_ttft]}",
        f"raw decode tok/s harness: {[round(x, 2) for x in h_tps]}",
        f"raw decode tok/s bare: {[round(x, 2) for x in b_tps]}",
        "",
        f"command: python benchmarks/overhead.py --context {a.context} --new-tokens {a.new_tokens} --reps {a.reps} --chunk-size {a.chunk_size} --model {a.model}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
