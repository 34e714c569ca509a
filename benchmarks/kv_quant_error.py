"""How far a quantized KV cache moves the next-token distribution, per bits × group × residual.

    python benchmarks/kv_quant_error.py --out benchmarks/results/kv_quant_error_cpu.json

For the first ``--samples`` passkey prompts (``--length`` tokens, the default model), the whole
prompt (context + question) goes through a full-precision cache and through each quantized one;
the next-token logits are compared: KL(full || quantized), max |Δ logit|, same top-1 token, and the
cache bytes (from the storages). Written as JSON (atomically) for ``benchmarks/kv_quant_table.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import env, io  # noqa: E402
from harness.models import ModelConfig, load  # noqa: E402
from harness.prompt import encode  # noqa: E402
from harness.registry import build_config  # noqa: E402
from methods._kvquant import quantized_cache  # noqa: E402
from methods._lm import cache_bytes, forward_chunks  # noqa: E402

SETTINGS = [(8, 32, 0), (8, 32, 32), (8, 64, 128), (4, 16, 32), (4, 32, 0), (4, 32, 32), (4, 32, 128), (4, 64, 128)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import DynamicCache

    from tasks import REGISTRY as TASKS

    lm = load(ModelConfig(name="gemma3_270m", source="gemma3_gguf", dtype="float32", device="cpu"))
    cls = TASKS.get("passkey")
    tcfg = build_config(cls.Config, {"context_lengths": [args.length]}, "task")
    rows = []
    for s in cls(tcfg).samples(lm.tokenizer, 0)[: args.samples]:
        ctx, q = encode(s, lm.tokenizer, False, tcfg.template)
        ids = ctx.all_ids() + q.ids
        full = DynamicCache(config=lm.model.config)
        ref = forward_chunks(lm.model, full, ids, 512)  # [V]
        rows.append({"sample": s.id, "tokens": len(ids), "bits": None, "cache_bytes": cache_bytes(full)})
        for bits, group, residual in SETTINGS:
            cache = quantized_cache(lm.model.config, bits, group, residual)
            got = forward_chunks(lm.model, cache, ids, 512)
            kl = torch.nn.functional.kl_div(got.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="sum")
            rows.append({"sample": s.id, "tokens": len(ids), "bits": bits, "group": group, "residual": residual, "kl": float(kl),
                         "max_abs_logit_diff": float((got - ref).abs().max()), "same_top1": int(got.argmax()) == int(ref.argmax()),
                         "cache_bytes": cache_bytes(cache)})
    e = env.collect(0)
    io.write_json(Path(args.out), {"model": "gemma3_270m", "dtype": "float32", "device": "cpu", "cpu": e.get("cpu"),
                                   "date": time.strftime("%Y-%m-%d", time.gmtime()), "length": args.length,
                                   "command": "python " + " ".join(sys.argv), "rows": rows})


if __name__ == "__main__":
    main()
