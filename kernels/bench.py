"""Benchmark the δ-mem scan: chunked reference, per-token loop, Triton, and fla's delta rule.

Why separate from the tests: speed is a measurement to record (with device, date and sizes),
not a pass/fail property. Run `python -m kernels.bench [--T 512 4096] [--B 1] [--r 8] [--full]`.

On a GPU every implementation is timed with CUDA events after warm-up; the Triton scan also
reports achieved bandwidth (q, k, v, β read + reads written + state in/out) against the card's
peak where known. On CPU only the PyTorch paths are timed by default (perf_counter) and the
largest T is dropped unless --full; Triton on CPU would run in the interpreter, whose timings
say nothing about the kernel, so it is only timed when asked for and then labelled as such.
fla (flash-linear-attention) computes DeltaNet, a different recurrence (scalar β per head, no λ
decay); its rows are a speed yardstick only.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from kernels import deltamem as dm

PEAK_GBPS = (("H100 PCIe", 2000), ("H100 NVL", 3900), ("H100", 3350), ("H200", 4800),
             ("A100-SXM4-80GB", 2039), ("A100 80GB PCIe", 1935), ("A100", 1555),
             ("L40S", 864), ("L4", 300), ("A10", 600), ("RTX 4090", 1008), ("RTX 3090", 936))


def peak_gbps(name: str) -> float | None:
    return next((gbps for key, gbps in PEAK_GBPS if key in name), None)


def inputs(B: int, T: int, N: int, r: int, dtype: torch.dtype, device: str) -> tuple:
    q = F.normalize(torch.tanh(torch.randn(B, T, N, r, device=device)), dim=-1)
    k = F.normalize(torch.tanh(torch.randn(B, T, N, r, device=device)), dim=-1)
    v = torch.randn(B, T, N, r, device=device)
    beta = torch.sigmoid(torch.randn(B, T, N, r, device=device) - 1.5)
    state = torch.zeros(B, N, r, r, device=device)
    return tuple(x.to(dtype) for x in (q, k, v, beta)) + (state,)


def timeit(fn: Callable[[], object], device: str, warmup: int, repeat: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fla_fns(q, k, v, beta, state) -> dict[str, Callable[[], object]]:
    """fla's delta-rule kernels on the same sizes ([B, T, H=N, r], scalar β per head)."""
    try:
        from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
    except ImportError:
        return {}
    b = beta.mean(-1)  # [B, T, N]
    h0 = state.transpose(-1, -2).contiguous()  # fla keeps [B, H, K, V]
    kw = dict(initial_state=h0, output_final_state=True)
    return {"fla-chunk": lambda: chunk_delta_rule(q, k, v, b, **kw),
            "fla-recurrent": lambda: fused_recurrent_delta_rule(q, k, v, b, **kw)}


def _fwd_bwd(leaves: list[torch.Tensor], state: torch.Tensor, impl: str) -> None:
    out, s = dm.scan(*leaves, state, impl=impl)
    (out.float().sum() + s.sum()).backward()


def run_case(B: int, T: int, N: int, r: int, dtype: torch.dtype, device: str, impls: list[str],
             args: argparse.Namespace) -> list[dict]:
    q, k, v, beta, state = inputs(B, T, N, r, dtype, device)
    fns: dict[str, Callable[[], object]] = {}
    for impl in impls:
        if impl == "fla":
            fns.update(fla_fns(q, k, v, beta, state))
        elif impl == "recurrent" and T > args.max_loop_T:
            continue
        elif impl == "triton_chunked" and (r > 16 or args.backward):
            continue  # r ≤ 16 and inference only
        elif args.backward:
            leaves = [x.detach().requires_grad_() for x in (q, k, v, beta)]
            fns[impl + "+bwd"] = (lambda impl=impl, leaves=leaves: _fwd_bwd(leaves, state, impl))
        else:
            fns[impl] = (lambda impl=impl: dm.scan(q, k, v, beta, state, impl=impl))
    if T == 1 and not args.backward:  # decode: the fused step kernel and its reference
        q1, k1, v1, b1 = (x[:, 0] for x in (q, k, v, beta))
        for impl in ("reference",) + (("triton",) if any("triton" in i for i in impls) else ()):
            fns[f"step-{impl}"] = (lambda impl=impl: dm.step(q1, k1, v1, b1, state, impl=impl))
        # the whole decode-time state step from the layer input x [B, d]: projection, gates, step
        x = torch.randn(B, args.d, device=device).to(dtype)
        w = torch.randn(4 * N * r, args.d, device=device) / args.d ** 0.5
        bias = torch.full((N * r,), -1.5, device=device)
        fns["fused-reference"] = lambda: dm.fused_step(x, w, bias, state, impl="reference")
        if any("triton" in i for i in impls):
            for project in dm.PROJECTS:
                fns[f"fused-triton-{project}"] = (lambda project=project: dm.fused_step(
                    x, w, bias, state, impl="triton", project=project))
    if device == "cpu":  # Triton on CPU can only be the interpreter: label it so
        fns = {(f"{n} (interp)" if "triton" in n else n): f for n, f in fns.items()}
    nbytes = 5 * q.numel() * q.element_size() + 2 * state.numel() * 4
    rows = []
    for name, fn in fns.items():
        try:
            with torch.set_grad_enabled(args.backward):
                sec = timeit(fn, device, args.warmup, args.repeat)
            rows.append(dict(impl=name, B=B, T=T, N=N, r=r, ms=sec * 1e3,
                             tok_s=B * T / sec, gbps=nbytes / sec / 1e9))
        except Exception as exc:  # one failing implementation must not end the sweep
            rows.append(dict(impl=name, B=B, T=T, N=N, r=r, error=f"{type(exc).__name__}: {exc}"))
    return rows


def render(rows: list[dict], peak: float | None, gpu: bool) -> str:
    head = f"{'impl':<30}{'B':>3}{'T':>7}{'N':>3}{'r':>4}{'ms':>11}{'tokens/s':>13}{'vs loop':>9}"
    head += f"{'vs ref':>9}"
    head += f"{'GB/s':>9}{'%peak':>7}" if gpu else ""
    lines = [head, "-" * len(head)]
    loop = {(x["B"], x["T"], x["r"]): x["ms"] for x in rows
            if x["impl"].split("+")[0] == "recurrent" and "ms" in x}
    ref = {(x["B"], x["T"], x["r"]): x["ms"] for x in rows
           if x["impl"].split("+")[0] == "reference" and "ms" in x}
    for x in rows:
        key = f"{x['impl']:<30}{x['B']:>3}{x['T']:>7}{x['N']:>3}{x['r']:>4}"
        if "error" in x:
            lines.append(f"{key}  error: {x['error'][:80]}")
            continue
        base = loop.get((x["B"], x["T"], x["r"]))
        ratio = f"{base / x['ms']:.1f}x" if base else "-"
        r0 = ref.get((x["B"], x["T"], x["r"]))
        vs_ref = f"{r0 / x['ms']:.1f}x" if r0 else "-"
        line = f"{key}{x['ms']:>11.3f}{x['tok_s']:>13.3g}{ratio:>9}{vs_ref:>9}"
        if gpu and x["impl"].startswith("triton") and "+" not in x["impl"]:  # forward only: the bytes below are the forward's
            pct = f"{100 * x['gbps'] / peak:.1f}" if peak else "-"
            line += f"{x['gbps']:>9.1f}{pct:>7}"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="Time the δ-mem scan implementations.")
    p.add_argument("--T", nargs="+", type=int, default=[1, 512, 4096, 32768])
    p.add_argument("--B", nargs="+", type=int, default=[1, 8])
    p.add_argument("--r", nargs="+", type=int, default=[8, 64])
    p.add_argument("--N", type=int, default=1, help="state heads per layer (MSW uses 4)")
    p.add_argument("--d", type=int, default=2560,
                   help="model width for the fused decode step at T = 1 (2560: Qwen3-4B)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--impls", nargs="+", default=None,
                   help="subset of reference recurrent triton triton_serial triton_chunked fla "
                        "(default: all that apply; triton picks serial or chunked by itself)")
    p.add_argument("--full", action="store_true", help="on CPU, keep T > 4096 as well")
    p.add_argument("--backward", action="store_true",
                   help="time forward + backward of the scan (training) instead of forward")
    p.add_argument("--max-loop-T", type=int, default=4096,
                   help="skip the per-token loop above this T (it is only the baseline)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (default 1: on a loaded 2-core machine 2 threads "
                        "made the chunked scan 10x slower through OpenMP waits)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    if not gpu:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    impls = args.impls or (["reference", "recurrent", "triton_serial", "triton_chunked", "fla"]
                           if gpu else ["reference", "recurrent"])
    Ts = args.T if gpu or args.full else [t for t in args.T if t <= 4096]
    print(f"δ-mem scan benchmark — {name} — {datetime.date.today()} — torch "
          f"{torch.__version__} — dtype {args.dtype}, N={args.N}, median of {args.repeat} "
          f"after {args.warmup} warm-up{', forward + backward' if args.backward else ''}")
    if not gpu:
        print("CPU: timings use perf_counter. Triton is not timed unless --impls names it, and "
              "then it runs in the interpreter (TRITON_INTERPRET=1): such timings are NOT "
              "meaningful for the kernel. T > 4096 dropped unless --full.")
    rows = []
    for B in args.B:
        for r in args.r:
            for T in Ts:
                rows += run_case(B, T, args.N, r, dtype, device, impls, args)
    peak = peak_gbps(name) if gpu else None
    print(render(rows, peak, gpu))
    if gpu:
        print(f"GB/s counts q, k, v, β read + reads written + state in/out; peak "
              f"{peak or 'unknown for this card'} GB/s.")


if __name__ == "__main__":
    main()
