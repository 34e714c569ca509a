"""Every δ-mem Triton kernel compiles ahead of time for sm_90 on this CPU-only machine.

Why: the interpreter tests check the kernels' arithmetic, not that they lower to PTX and a
cubin (layouts, register allocation). `triton.compile(ASTSource(...), target=GPUTarget("cuda",
90, 32))` runs the whole pipeline, ptxas included (Triton ships its own under
triton/backends/nvidia/bin), without a GPU. All variants are compiled once per module, into a
fresh Triton cache so nothing is served from an earlier run. If this process imported Triton in
interpreter mode (TRITON_INTERPRET=1 set before the import) the compile runs in a child process
via `python -m kernels.deltamem.aot`, which starts with the variable unset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")

from kernels.deltamem import _jit, aot  # noqa: E402

CASES = [(spec.name, dtype, r) for spec, dtype, r in aot.cases()]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, int], dict]:
    cache = str(tmp_path_factory.mktemp("triton_cache"))
    if _jit.triton_import_mode() == "compile":
        old = os.environ.get("TRITON_CACHE_DIR")
        os.environ["TRITON_CACHE_DIR"] = cache
        try:
            rows = aot.compile_all(arch=90, usage=True)
        finally:
            if old is None:
                os.environ.pop("TRITON_CACHE_DIR", None)
            else:
                os.environ["TRITON_CACHE_DIR"] = old
    else:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = cache
        proc = subprocess.run([sys.executable, "-m", "kernels.deltamem.aot", "--arch", "90",
                               "--usage"],
                              cwd=Path(__file__).resolve().parents[1], env=env,
                              capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {(row["kernel"], row["dtype"], row["r"]): row for row in rows}


def test_every_kernel_is_covered() -> None:
    """A new kernel source in triton_scan must get an AOT spec."""
    from kernels.deltamem import triton_chunked, triton_scan

    sources = {fn for module in (triton_scan, triton_chunked) for name, fn in vars(module).items()
               if name.startswith("deltamem_") and callable(fn)}
    assert sources == {spec.fn for spec in aot.SPECS}


@pytest.mark.parametrize("kernel,dtype,r", CASES)
def test_compiles_for_sm90(compiled: dict, kernel: str, dtype: str, r: int) -> None:
    row = compiled[(kernel, dtype, r)]
    assert "error" not in row, row.get("error")
    assert row["ptx_target"] in ("sm_90", "sm_90a"), row
    assert row["ptx_chars"] > 1000 and row["cubin_bytes"] > 1000, row
    assert 0 < row["registers"] <= 255, row
    # the state lives in registers: a spill here means launch_config needs more warps
    assert row["spill_bytes"] == 0, row
