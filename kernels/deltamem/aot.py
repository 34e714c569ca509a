"""Compile every δ-mem Triton kernel ahead of time for a GPU target, without a GPU.

Why: this machine has no GPU, so the Triton interpreter checks the kernels' arithmetic but not
that they lower through TTIR → TTGIR → LLVM → PTX → cubin (layouts, register pressure,
unsupported ops). `triton.compile` with an explicit `GPUTarget` runs that whole pipeline on
CPU using the ptxas that ships with Triton (triton/backends/nvidia/bin).

Run `python -m kernels.deltamem.aot [--arch 90] [--usage]`: prints one JSON line per
(kernel, dtype, r) with the sizes of the PTX and cubin (and, with --usage, registers and spill
bytes from `ptxas -v`), or the error. Triton must be in compile
mode (TRITON_INTERPRET unset when triton is first imported).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from kernels.deltamem import triton_chunked, triton_scan
from kernels.deltamem._jit import kernel, launch_config

DTYPES = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}
RS = (8, 64)


@dataclass(frozen=True)
class Spec:
    """How to compile one kernel source: its pointer args that take the input dtype, the
    fp32 pointer args, the i32 scalars and the constexprs besides BLOCK_R."""

    name: str
    fn: Callable
    typed_ptrs: tuple[str, ...]
    fp32_ptrs: tuple[str, ...]
    ints: tuple[str, ...]
    constexprs: tuple[tuple[str, Any], ...] = ()
    bool_ptrs: tuple[str, ...] = ()
    warps: Callable[[int], int] | None = None  # num_warps for r when not launch_config's
    max_r: int = 64  # largest r the kernel serves (compiled for RS up to it, and r = 16)


SPECS = (
    Spec("scan_fwd", triton_scan.deltamem_scan_fwd, ("Q", "K", "V", "Beta", "Out"),
         ("S0", "SFinal", "Ckpt"), ("T", "N", "R", "NCK"),
         (("HAS_S0", True), ("STORE_CKPT", True), ("CKPT_T", triton_scan.CKPT),
          ("BLOCK_ROWS", lambda r: triton_scan.fwd_config(r)[1])),
         warps=lambda r: triton_scan.fwd_config(r)[2]),
    Spec("scan_bwd", triton_scan.deltamem_scan_bwd,
         ("Q", "K", "V", "Beta", "DOut", "DQ", "DK", "DV", "DBeta"),
         ("Ckpt", "DSFinal", "DS0", "Scratch"), ("T", "N", "R", "NCK"),
         (("HAS_DSF", True), ("CKPT_T", triton_scan.CKPT))),
    Spec("step", triton_scan.deltamem_step_kernel, ("Q", "K", "V", "Beta", "Read"),
         ("SIn", "SOut"), ("R",)),
    # the in-kernel projection with the correction epilogue, and the matmul variant without
    *(Spec(name, triton_scan.deltamem_fused_step_kernel, ("X", "Corr"),
           ("W", "Z", "Bias", "SIn", "Read", "SOut", "WD"), ("D", "N", "R", "OUTS"),
           (("PROJECT", project), ("HAS_WRITE", True), ("HAS_VALID", True),
            ("EPILOGUE", project), ("BLOCK_D", triton_scan.fused_block_d),
            ("BLOCK_O", triton_scan.fused_block_o),
            ("TANH_SMALL", triton_scan.TANH_SERIES_BELOW)), ("Write", "Valid"))
      for name, project in (("fused_step", True), ("fused_step_matmul", False))),
    Spec("chunk_transfer", triton_chunked.deltamem_chunk_transfer, ("K", "V", "Beta"),
         ("P", "Bc"), ("T", "NC", "N", "R"),
         (("BLOCK_ROWS", lambda r: triton_chunked.chunk_config(r)[1]), ("C", 128)),
         warps=lambda r: triton_chunked.chunk_config(r)[2], max_r=triton_chunked.MAX_CHUNKED_R),
    Spec("chunk_compose", triton_chunked.deltamem_chunk_compose, (),
         ("P", "Bc", "S0", "Starts", "SFinal"), ("NC", "N", "R"),
         (("HAS_S0", True), ("BLOCK_ROWS", lambda r: triton_chunked.chunk_config(r)[1])),
         warps=lambda r: triton_chunked.chunk_config(r)[2], max_r=triton_chunked.MAX_CHUNKED_R),
)


def cases(dtypes: tuple[str, ...] = tuple(DTYPES), rs: tuple[int, ...] = RS,
          ) -> list[tuple[Spec, str, int]]:
    """Every (kernel, dtype, r) to compile: each r in rs the kernel serves, plus its max_r when
    that is below max(rs) (so a kernel limited to r ≤ 16 is still compiled at its limit)."""
    out = []
    for spec in SPECS:
        mine = sorted({r for r in rs if r <= spec.max_r}
                      | ({spec.max_r} if spec.max_r < max(rs) else set()))
        out += [(spec, dtype, r) for dtype in dtypes for r in mine]
    return out


def ptxas_usage(ptx: str, arch: int) -> dict[str, int]:
    """Registers and spill bytes per thread, from the ptxas Triton itself uses (`ptxas -v`)."""
    from triton.backends.nvidia.compiler import get_ptxas

    target = re.search(r"^\.target\s+(\S+)", ptx, re.MULTILINE)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as src:
        src.write(ptx)
        src.flush()
        proc = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name={target.group(1)}",
                               src.name, "-o", "/dev/null"], capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores", log)
    if proc.returncode or not regs:
        raise RuntimeError(f"ptxas -v failed: {log[-500:]}")
    return {"registers": int(regs.group(1)), "spill_bytes": int(spill.group(1)) if spill else 0}


def compile_one(spec: Spec, dtype: str, r: int, arch: int = 90,
                usage: bool = False) -> dict[str, Any]:
    """Compile one kernel variant; returns sizes of the PTX and cubin and the launch config."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = kernel(spec.fn, interpret=False)
    block, warps = launch_config(r)
    warps = spec.warps(r) if spec.warps else warps
    constexprs = {name: value(r) if callable(value) else value  # per-r values are callables
                  for name, value in spec.constexprs}
    constexprs["BLOCK_R"] = block
    types = {**{p: f"*{DTYPES[dtype]}" for p in spec.typed_ptrs},
             **{p: "*fp32" for p in spec.fp32_ptrs}, **{p: "*i1" for p in spec.bool_ptrs},
             **{i: "i32" for i in spec.ints},
             **{c: "constexpr" for c in constexprs}}
    missing = set(fn.arg_names) ^ set(types)
    if missing:
        raise ValueError(f"signature of {spec.name} out of date, mismatched args: {missing}")
    signature = {a: types[a] for a in fn.arg_names}
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps, "enable_fp_fusion": True})
    ptx = compiled.asm.get("ptx", "")
    target = re.search(r"^\.target\s+(\S+)", ptx, re.MULTILINE)
    row = {"kernel": spec.name, "dtype": dtype, "r": r, "arch": arch, "num_warps": warps,
           "ptx_target": target.group(1) if target else None, "ptx_chars": len(ptx),
           "cubin_bytes": len(compiled.asm.get("cubin", b""))}
    return {**row, **ptxas_usage(ptx, arch)} if usage else row


def compile_all(arch: int = 90, dtypes: tuple[str, ...] = tuple(DTYPES),
                rs: tuple[int, ...] = RS, usage: bool = False) -> list[dict[str, Any]]:
    """Compile every (kernel, dtype, r); failures are recorded with their error, not raised."""
    results = []
    for spec, dtype, r in cases(dtypes, rs):
        try:
            results.append(compile_one(spec, dtype, r, arch, usage))
        except Exception as exc:  # recorded per variant so one failure hides no other
            results.append({"kernel": spec.name, "dtype": dtype, "r": r, "arch": arch,
                            "error": f"{type(exc).__name__}: {exc}"})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 90")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--r", nargs="+", type=int, default=list(RS))
    parser.add_argument("--usage", action="store_true",
                        help="also report registers and spill bytes per thread (ptxas -v)")
    args = parser.parse_args()
    for row in compile_all(args.arch, tuple(args.dtypes), tuple(args.r), args.usage):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
