"""δ-mem scan kernels: chunked reference vs per-token loop, Triton (interpreter) vs reference.

How the Triton interpreter is run: Triton wraps its own library functions (`tl.sum`, …) when
`triton` is first imported, so TRITON_INTERPRET=1 only works if it is set before that import —
and in a full pytest run transformers has usually imported triton (compile mode) long before
this file. Setting the variable here would therefore be too late, and would also turn a real
GPU run of the `gpu` test into an interpreter run. So the `test_interp_*` tests run in-process
only when this process already interprets (e.g. `TRITON_INTERPRET=1 pytest this_file`);
otherwise the first of them starts ONE child pytest on this file (`-k test_interp_`) with
TRITON_INTERPRET=1 in its environment, and each parent test reports its child's outcome, so
every case still passes or fails by name. Our kernels are wrapped lazily per mode
(`kernels.deltamem._jit`), so the AOT compile test in the parent keeps real JITFunctions.
Every buffer a kernel writes starts as NaN (`_jit.POISON_OUTPUTS`), so unwritten elements fail.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kernels import deltamem as dm
from kernels.deltamem import _jit, reference


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: intra-op threads only add spin-wait, badly so on a loaded 2-core machine
    (measured 0.16 s vs 4 s for one case). Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(B: int, T: int, N: int, r: int, dtype: torch.dtype = torch.float32, seed: int = 0,
         lo: float = 0.01, hi: float = 0.99) -> tuple[torch.Tensor, ...]:
    """Inputs as the caller gives them: q, k tanh+L2-normalised, v raw, β in (lo, hi)."""
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.tanh(torch.randn(B, T, N, r, generator=g)), dim=-1)
    k = F.normalize(torch.tanh(torch.randn(B, T, N, r, generator=g)), dim=-1)
    v = torch.randn(B, T, N, r, generator=g)
    beta = lo + (hi - lo) * torch.rand(B, T, N, r, generator=g)
    s0 = 0.5 * torch.randn(B, N, r, r, generator=g)
    return tuple(x.to(dtype) for x in (q, k, v, beta)) + (s0,)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| in float64 (0 when both are empty or zero)."""
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all(), "non-finite values (unwritten NaN-poisoned output?)"
    if a.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def grads(impl: str, q, k, v, beta, s0, seed: int = 1) -> list[torch.Tensor]:
    """Gradients of a random linear function of (reads, final state) w.r.t. all five inputs.
    impl "chunked" calls reference.chunked directly (scan's "reference" loops for T < 4)."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v, beta, s0)]
    if impl == "chunked":
        out, s = reference.chunked(*leaves)
    else:
        out, s = dm.scan(*leaves, impl=impl)
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g).to(out.device, out.dtype)
    w_s = torch.randn(s.shape, generator=g).to(s.device)
    loss = (out.float() * w_out.float()).sum() + (s * w_s).sum()
    return list(torch.autograd.grad(loss, leaves))


# Every value of T ∈ {1, 7, 65, 300}, N ∈ {1, 4}, r ∈ {8, 16, 32, 64} appears; B = 2 throughout.
CASES = [(1, 4, 8), (7, 1, 16), (65, 4, 32), (300, 1, 64), (300, 4, 8), (65, 1, 64),
         (7, 4, 32)]


@pytest.mark.parametrize("T,N,r", CASES)
def test_chunked_matches_recurrent(T: int, N: int, r: int) -> None:
    q, k, v, beta, s0 = make(2, T, N, r)
    out_c, s_c = reference.chunked(q, k, v, beta, s0)  # directly: scan() loops for T < 4
    out_r, s_r = dm.scan(q, k, v, beta, s0, impl="recurrent")
    assert out_c.shape == (2, T, N, r) and s_c.shape == (2, N, r, r)
    assert out_c.dtype == torch.float32 and s_c.dtype == torch.float32
    assert rel_err(out_c, out_r) < 1e-5
    assert rel_err(s_c, s_r) < 1e-5
    for a, b in zip(grads("chunked", q, k, v, beta, s0), grads("recurrent", q, k, v, beta, s0)):
        assert rel_err(a, b) < 1e-4


def test_chunked_matches_recurrent_long() -> None:
    """Several thousand tokens, β over (0.01, 0.99): errors must not build up across chunks."""
    q, k, v, beta, s0 = make(1, 3000, 1, 8, seed=3)
    out_c, s_c = reference.chunked(q, k, v, beta, s0)
    out_r, s_r = reference.recurrent(q, k, v, beta, s0)
    assert rel_err(out_c, out_r) < 1e-5
    assert rel_err(s_c, s_r) < 1e-5


@pytest.mark.parametrize("lo,hi", [(0.0, 1e-4), (0.999, 1.0), (0.0, 1.0)])
def test_chunked_extreme_gates(lo: float, hi: float) -> None:
    """β near 0 and exactly 1 (λ = 0, reachable in bf16): finite, and equal to the loop."""
    q, k, v, beta, s0 = make(2, 100, 2, 8, lo=lo, hi=hi, seed=4)
    beta[:, ::7] = hi  # exact endpoint values included
    out_c, s_c = reference.chunked(q, k, v, beta, s0)
    out_r, s_r = reference.recurrent(q, k, v, beta, s0)
    assert rel_err(out_c, out_r) < 1e-5 and rel_err(s_c, s_r) < 1e-5


def test_chunked_gradcheck_double() -> None:
    """Exact autograd of the chunked form (chunk 4 over T = 7: in- and across-chunk paths)."""
    q, k, v, beta, s0 = make(1, 7, 2, 3, dtype=torch.float64, lo=0.1, hi=0.9, seed=5)
    inputs = [x.double().requires_grad_() for x in (q, k, v, beta, s0)]
    assert torch.autograd.gradcheck(
        lambda *a: reference.chunked(*a, chunk=4), inputs, eps=1e-6, atol=1e-7)


def test_one_step_formula_read_before_write() -> None:
    """δ-mem's update (erase not decayed by λ, unlike Gated DeltaNet); reads precede writes."""
    q, k, v, beta, s0 = make(1, 2, 1, 4, seed=6)
    out, s1 = reference.recurrent(q[:, :1], k[:, :1], v[:, :1], beta[:, :1], s0)
    S, qt, kt, vt, bt = s0[0, 0], q[0, 0, 0], k[0, 0, 0], v[0, 0, 0], beta[0, 0, 0]
    want = torch.diag(1 - bt) @ S + torch.diag(bt) @ torch.outer(vt - S @ kt, kt)
    torch.testing.assert_close(s1[0, 0], want)
    torch.testing.assert_close(out[0, 0, 0], S @ qt)  # the state before token 0's write
    zero_out, _ = dm.scan(q, k, v, beta)  # S_0 = 0: nothing to read at t = 0
    assert (zero_out[:, 0] == 0).all() and zero_out[:, 1].abs().max() > 0


@pytest.mark.parametrize("impl", ["reference", "recurrent"])
def test_chunking_invariance(impl: str) -> None:
    """scan [0:a] then [a:T] with the carried state == scan [0:T] (TSW is chunking-invariant)."""
    q, k, v, beta, s0 = make(2, 100, 2, 16, seed=7)
    full, s_full = dm.scan(q, k, v, beta, s0, impl=impl)
    a = 37
    first, s_mid = dm.scan(q[:, :a], k[:, :a], v[:, :a], beta[:, :a], s0, impl=impl)
    second, s_end = dm.scan(q[:, a:], k[:, a:], v[:, a:], beta[:, a:], s_mid, impl=impl)
    assert rel_err(torch.cat([first, second], dim=1), full) < 1e-5
    assert rel_err(s_end, s_full) < 1e-5
    for C in (1, 5, 64):  # the reference's own chunk size does not change the result
        out_c, s_c = reference.chunked(q, k, v, beta, s0, chunk=C)
        assert rel_err(out_c, full) < 1e-5 and rel_err(s_c, s_full) < 1e-5


@pytest.mark.parametrize("impl", ["reference", "recurrent"])
def test_empty_sequence_passes_state_through(impl: str) -> None:
    q, k, v, beta, s0 = make(2, 0, 3, 8)
    out, s = dm.scan(q, k, v, beta, s0, impl=impl)
    assert out.shape == (2, 0, 3, 8) and torch.equal(s, s0)


def test_step_matches_scan() -> None:
    q, k, v, beta, s0 = make(2, 3, 4, 8, seed=8)
    out, s = dm.scan(q, k, v, beta, s0, impl="recurrent")
    state = s0
    for t in range(3):
        read, state = dm.step(q[:, t], k[:, t], v[:, t], beta[:, t], state)
        assert rel_err(read, out[:, t]) < 1e-6
    assert rel_err(state, s) < 1e-6


def test_auto_is_reference_on_cpu() -> None:
    q, k, v, beta, s0 = make(1, 20, 1, 8, seed=9)
    a = dm.scan(q, k, v, beta, s0)
    b = dm.scan(q, k, v, beta, s0, impl="reference")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_validation_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, beta, s0 = make(1, 5, 2, 8)
    with pytest.raises(ValueError, match="did you mean 'triton'"):
        dm.scan(q, k, v, beta, impl="trition")
    with pytest.raises(ValueError, match="k must have q's shape"):
        dm.scan(q, k[:, :4], v, beta)
    with pytest.raises(ValueError, match=r"q must be 4-D \[B, T, N, r\]"):
        dm.scan(q[0], k[0], v[0], beta[0])
    with pytest.raises(ValueError, match="v dtype must equal q's dtype"):
        dm.scan(q, k, v.double(), beta)
    with pytest.raises(ValueError, match="q dtype must be one of"):
        dm.scan(*(x.int() for x in (q, k, v, beta)))
    with pytest.raises(ValueError, match="state must have shape"):
        dm.scan(q, k, v, beta, s0[:, :1])
    with pytest.raises(ValueError, match="state dtype must be torch.float32"):
        dm.scan(q, k, v, beta, s0.half())
    with pytest.raises(ValueError, match="impl must be one of"):
        dm.step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0], s0, impl="recurrent")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        dm.scan(q, k, v, beta, impl="triton")


# ---------------------------------------------------------------- fused decode step
def make_fused(B: int, N: int, r: int, d: int, dtype: torch.dtype = torch.float32, seed: int = 0,
               small: bool = True) -> tuple[torch.Tensor, ...]:
    """x [B, d]; stacked weight [4·N·r, d]; bias [N·r]; state [B, N, r, r]. With small=True the
    q projection is tiny, so tanh's series branch (|z| < 1/8) is exercised too."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, d, generator=g).to(dtype)
    w = torch.randn(4 * N * r, d, generator=g) / d ** 0.5
    if small:
        w[: N * r] *= 0.02
    bias = torch.randn(N * r, generator=g) - 1.5
    s0 = 0.5 * torch.randn(B, N, r, r, generator=g)
    return x, w, bias, s0


def test_fused_step_reference_is_projection_gates_and_step() -> None:
    """The fused reference equals the layer's own math: tanh + L2 on q and k, sigmoid(β + b)."""
    B, N, r, d = 3, 2, 8, 40
    x, w, bias, s0 = make_fused(B, N, r, d)
    read, s1 = dm.fused_step(x, w, bias, s0, impl="reference")
    dw = torch.randn(11, N * r)
    read2, s2, corr = dm.fused_step(x, w, bias, s0, impl="reference", delta_weight=dw)
    assert torch.equal(read2, read) and torch.equal(s2, s1)
    assert torch.allclose(corr, read.reshape(B, N * r) @ dw.t(), atol=1e-6)
    z = x @ w.t()
    zq, zk, zv, zb = (c.reshape(B, N, r) for c in z.split(N * r, dim=1))
    q = torch.tanh(zq) / torch.tanh(zq).norm(dim=-1, keepdim=True)
    k = torch.tanh(zk) / torch.tanh(zk).norm(dim=-1, keepdim=True)
    beta = torch.sigmoid(zb + bias.reshape(N, r))
    want_read = torch.einsum("bnij,bnj->bni", s0, q)
    sk = torch.einsum("bnij,bnj->bni", s0, k)
    want_s = (1 - beta)[..., None] * s0 + (beta * (zv - sk))[..., None] * k[..., None, :]
    assert rel_err(read, want_read) < 1e-6 and rel_err(s1, want_s) < 1e-6
    assert read.dtype == torch.float32 and read.shape == (B, N, r)


def test_fused_step_masks_hold_and_zero() -> None:
    x, w, bias, s0 = make_fused(3, 1, 8, 24, seed=1)
    write = torch.tensor([True, False, True])
    valid = torch.tensor([True, True, False])
    read, s1 = dm.fused_step(x, w, bias, s0, write, valid, impl="reference")
    assert torch.equal(s1[1], s0[1])  # not written: held exactly
    assert not torch.allclose(s1[0], s0[0])
    assert torch.equal(read[2], torch.zeros_like(read[2]))  # padding reads zero
    full, _ = dm.fused_step(x, w, bias, s0, impl="reference")
    assert torch.equal(read[:2], full[:2])


@pytest.mark.parametrize("N", [1, 3])
def test_decode_step_equals_fused_step(N: int) -> None:
    """The inference decode form (reordered projection columns, one matmul for S q and S k) is the
    fused step: same reads and state to rounding, a held row bit for bit, a padded read exactly 0."""
    B, r, d = 3, 8, 40
    x, w, bias, s0 = make_fused(B, N, r, d, seed=3)
    w_t, b = reference.decode_weights(w, bias)
    assert w_t.shape == (d, 4 * N * r) and torch.equal(b[3 * N * r:], bias) and not b[: 3 * N * r].any()
    write = torch.tensor([True, False, True])
    valid = torch.tensor([True, True, False])
    for masks in [(None, None, None, None), (write, valid, write.float().view(B, 1), valid.float().view(B, 1, 1))]:
        want = dm.fused_step(x, w, bias, s0, masks[0], masks[1], impl="reference")
        got = reference.decode_step(x, w_t, b, s0, masks[2], masks[3])
        assert got[0].shape == (B, N, r) and got[1].shape == (B, N, r, r)
        assert rel_err(got[0], want[0]) < 1e-6 and rel_err(got[1], want[1]) < 1e-6
    assert torch.equal(got[1][1], s0[1])  # not written: held exactly
    assert torch.equal(got[0][2], torch.zeros(N, r))  # padding reads zero
    assert not torch.allclose(got[1][0], s0[0])


def test_fused_step_gradcheck_double() -> None:
    x, w, bias, s0 = (t.double() for t in make_fused(2, 2, 3, 5, seed=2, small=False))
    leaves = [t.requires_grad_() for t in (x, w, bias, s0)]
    assert torch.autograd.gradcheck(
        lambda *a: dm.fused_step(*a, impl="reference"), leaves, eps=1e-6, atol=1e-6)


def test_fused_step_validation_errors() -> None:
    x, w, bias, s0 = make_fused(2, 1, 8, 16)
    cases = [((x[0], w, bias, s0), {}, "x must be \\[B, d\\]"),
             ((x, w[:-1], bias, s0), {}, "weight must be \\[4·N·r, d\\]"),
             ((x, w.half(), bias, s0), {}, "weight dtype must be torch.float32"),
             ((x, w, bias[:-1], s0), {}, "bias must be \\[N·r\\]"),
             ((x, w, bias, s0[:, :, :4]), {}, "state must be \\[B, N, r, r\\]"),
             ((x, w, bias, s0), {"write": torch.ones(2)}, "write must be a bool tensor"),
             ((x, w, bias, s0), {"valid": torch.ones(3, dtype=torch.bool)}, "valid must be a bool"),
             ((x, w, bias, s0), {"project": "gemv"}, "project must be one of"),
             ((x, w, bias, s0), {"delta_weight": torch.zeros(4, 9)}, "delta_weight must be"),
             ((x, w, bias, s0), {"impl": "recurrent"}, "impl must be one of")]
    for args, kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            dm.fused_step(*args, **kw)
    assert dm.fused_step(x, w, bias, s0)[0].shape == (2, 1, 8)  # auto on CPU: the reference


# ---------------------------------------------------------------- Triton under the interpreter
def _interpreting_here() -> bool:
    return _jit.interpreting() and _jit.triton_import_mode() == "interpret"


@functools.lru_cache(maxsize=None)
def _child_outcomes() -> dict[str, tuple[str, str]]:
    """Run every test_interp_* case in one child pytest with TRITON_INTERPRET=1 set at start."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "interp.xml"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-o",
             "addopts=", "-p", "no:cacheprovider", "-k", "test_interp_", f"--junitxml={xml}"],
            cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
            timeout=1800)
        if not xml.exists():
            raise RuntimeError(f"interpreter child produced no report (rc={proc.returncode}):\n"
                               f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        outcomes = {}
        for case in ET.parse(xml).getroot().iter("testcase"):
            bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
            outcomes[case.get("name")] = ((bad[0].tag, (bad[0].text or bad[0].get("message", "")))
                                          if bad else ("passed", ""))
        return outcomes


@pytest.fixture
def ran_in_child(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """False: run the test body here under the interpreter. True: the child ran it and passed."""
    pytest.importorskip("triton")
    if _interpreting_here():
        monkeypatch.setattr(_jit, "POISON_OUTPUTS", True)
        return False
    outcome, text = _child_outcomes().get(request.node.name, ("missing", "not in child report"))
    if outcome != "passed":
        pytest.fail(f"{request.node.name} under the interpreter (child process): {outcome}\n"
                    f"{text[-3000:]}")
    return True


def test_mode_mismatch_is_a_clear_error() -> None:
    pytest.importorskip("triton")
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    from kernels.deltamem import triton_scan

    fn = triton_scan.deltamem_step_kernel
    here = _jit.triton_import_mode() == "interpret"
    wrapper = _jit.kernel(fn, interpret=here)
    assert isinstance(wrapper, InterpretedFunction if here else JITFunction)
    with pytest.raises(RuntimeError, match="before anything imports triton"):
        _jit.kernel(fn, interpret=not here)


# Interpreter cost grows with B·N·ceil(T/64)·64 token steps, so B = 1 here.
TRITON_CASES = [(1, 4, 8), (7, 1, 16), (65, 4, 8), (65, 1, 32), (300, 1, 64), (7, 4, 12)]


@pytest.mark.parametrize("T,N,r", TRITON_CASES)
def test_interp_scan_matches_loop(ran_in_child: bool, T: int, N: int, r: int) -> None:
    if ran_in_child:
        return
    q, k, v, beta, s0 = make(1, T, N, r, seed=10)
    out_t, s_t = dm.scan(q, k, v, beta, s0, impl="triton")
    out_r, s_r = dm.scan(q, k, v, beta, s0, impl="recurrent")
    assert rel_err(out_t, out_r) < 1e-5 and rel_err(s_t, s_r) < 1e-5
    g_t = grads("triton", q, k, v, beta, s0)
    g_r = grads("recurrent", q, k, v, beta, s0)
    for name, a, b in zip(("q", "k", "v", "beta", "state"), g_t, g_r):
        assert rel_err(a, b) < 1e-4, name


def test_interp_no_initial_state_final_only_grad(ran_in_child: bool) -> None:
    if ran_in_child:
        return
    q, k, v, beta, _ = make(2, 9, 1, 8, seed=11)
    leaves = [x.clone().requires_grad_() for x in (q, k, v, beta)]
    _, s_t = dm.scan(*leaves, impl="triton")  # reads unused: their gradient is zero
    g_t = torch.autograd.grad(s_t.sum(), leaves, allow_unused=True, materialize_grads=True)
    leaves_r = [x.clone().requires_grad_() for x in (q, k, v, beta)]
    _, s_r = dm.scan(*leaves_r, impl="recurrent")
    g_r = torch.autograd.grad(s_r.sum(), leaves_r, allow_unused=True, materialize_grads=True)
    assert rel_err(s_t, s_r) < 1e-5
    for a, b in zip(g_t, g_r):
        assert rel_err(a, b) < 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_interp_low_precision_inputs(ran_in_child: bool, dtype: torch.dtype) -> None:
    if ran_in_child:
        return
    """bf16/fp16 inputs, fp32 accumulation: compare with the loop on the same rounded inputs."""
    q, k, v, beta, s0 = make(1, 70, 2, 16, dtype=dtype, seed=12)
    out_t, s_t = dm.scan(q, k, v, beta, s0, impl="triton")
    out_r, s_r = dm.scan(*(x.float() for x in (q, k, v, beta)), s0, impl="recurrent")
    assert out_t.dtype == dtype and s_t.dtype == torch.float32
    assert rel_err(out_t, out_r) < 1e-2  # reads rounded once to the input dtype
    assert rel_err(s_t, s_r) < 1e-5  # the state itself never leaves fp32


def test_interp_chunking_invariance(ran_in_child: bool) -> None:
    if ran_in_child:
        return
    q, k, v, beta, s0 = make(1, 0, 1, 8)
    empty_out, s_same = dm.scan(q, k, v, beta, s0, impl="triton")
    assert empty_out.shape == (1, 0, 1, 8) and torch.equal(s_same, s0)
    q, k, v, beta, s0 = make(1, 80, 1, 8, seed=13)
    full, s_full = dm.scan(q, k, v, beta, s0, impl="triton")
    first, s_mid = dm.scan(q[:, :70], k[:, :70], v[:, :70], beta[:, :70], s0, impl="triton")
    second, s_end = dm.scan(q[:, 70:], k[:, 70:], v[:, 70:], beta[:, 70:], s_mid, impl="triton")
    assert rel_err(torch.cat([first, second], dim=1), full) < 1e-6
    assert rel_err(s_end, s_full) < 1e-6


@pytest.mark.parametrize("r,dtype", [(8, torch.float32), (64, torch.float32), (12, torch.bfloat16)])
def test_interp_step_matches_reference(ran_in_child: bool, r: int, dtype: torch.dtype) -> None:
    if ran_in_child:
        return
    q, k, v, beta, s0 = make(2, 1, 4, r, dtype=dtype, seed=14)
    args = (q[:, 0], k[:, 0], v[:, 0], beta[:, 0], s0)
    read_t, s_t = dm.step(*args, impl="triton")
    read_r, s_r = dm.step(*args, impl="reference")
    assert read_t.dtype == dtype and s_t.dtype == torch.float32
    assert rel_err(read_t, read_r) < (1e-6 if dtype == torch.float32 else 1e-2)
    assert rel_err(s_t, s_r) < 1e-6
    with pytest.raises(ValueError, match="no backward"):
        dm.step(*(x.clone().requires_grad_() for x in args), impl="triton")


FUSED_CASES = [(2, 1, 8, 300, torch.float32, "kernel"), (3, 4, 8, 640, torch.bfloat16, "kernel"),
               (1, 1, 64, 130, torch.float32, "kernel"), (2, 2, 12, 50, torch.float16, "matmul"),
               (3, 1, 32, 70, torch.float32, "matmul")]


@pytest.mark.parametrize("B,N,r,d,dtype,project", FUSED_CASES)
def test_interp_fused_step_matches_reference(ran_in_child: bool, B: int, N: int, r: int, d: int,
                                             dtype: torch.dtype, project: str) -> None:
    """Projection (in-kernel or matmul), gate math, masks, read and write vs the reference."""
    if ran_in_child:
        return
    x, w, bias, s0 = make_fused(B, N, r, d, dtype, seed=16)
    dw = torch.randn(3 * d + 5, N * r, generator=torch.Generator().manual_seed(1))  # corrections
    cols = torch.ones(B, 3, dtype=torch.bool)
    cols[B - 1, 1] = False  # valid = a strided column of a [B, T] mask, as the layer passes it
    masks = [(None, None), (torch.arange(B) % 2 == 0, cols[:, 1])]
    for write, valid in masks:
        got = dm.fused_step(x, w, bias, s0, write, valid, impl="triton", project=project)
        want = dm.fused_step(x, w, bias, s0, write, valid, impl="reference")
        for a, b in zip(got, want):
            assert a.dtype == torch.float32 and rel_err(a, b) < 1e-5
        # with the correction epilogue (in the kernel for N = 1, a matmul after it for N > 1)
        *same, corr = dm.fused_step(x, w, bias, s0, write, valid, impl="triton",
                                    project=project, delta_weight=dw)
        *_, corr_ref = dm.fused_step(x, w, bias, s0, write, valid, impl="reference",
                                     delta_weight=dw)
        assert all(torch.equal(a, b) for a, b in zip(same, got))
        assert corr.dtype == dtype and corr.shape == (B, 3 * d + 5)
        assert rel_err(corr, corr_ref) < (1e-5 if dtype == torch.float32 else 1e-2)
        if write is not None and B > 1:
            assert torch.equal(got[1][1], s0[1])  # not written: held bit for bit
        if valid is not None:
            assert torch.equal(got[0][B - 1], torch.zeros(N, r))


def test_interp_decode_is_one_launch_per_layer(ran_in_child: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """δ-mem on a tiny Qwen3 with kernel=triton: a decode token launches exactly one Triton
    kernel per memory layer (the fused step), and the logits match the reference path."""
    if ran_in_child:
        return
    from conftest import tiny_lm
    from transformers import DynamicCache

    from kernels.deltamem import triton_scan
    from methods._deltamem import attach, detach

    launches: list[str] = []
    real = triton_scan.kernel

    class Counting:
        def __init__(self, fn, k):
            self.fn, self.k = fn, k

        def __getitem__(self, grid):
            launch = self.k[grid]

            def run(*args, **kwargs):
                launches.append(self.fn.__name__)
                return launch(*args, **kwargs)
            return run

    monkeypatch.setattr(triton_scan, "kernel", lambda fn, interpret=None: Counting(fn, real(fn, interpret)))
    m = tiny_lm("qwen3").model
    x = torch.randint(3, 250, (1, 12), generator=torch.Generator().manual_seed(0))
    logits = {}
    try:
        for impl in ("reference", "triton"):
            ad = attach(m, rank=8)
            ad.impl = impl
            cache = DynamicCache(config=m.config)
            with torch.no_grad():
                m(input_ids=x[:, :9], cache=cache, use_cache=True)
                launches.clear()
                steps = [m(input_ids=x[:, t:t + 1], cache=cache, use_cache=True).logits
                         for t in range(9, 12)]
            logits[impl] = torch.cat(steps, 1)
            if impl == "triton":
                assert launches == ["deltamem_fused_step_kernel"] * (3 * len(ad.layers))
            else:
                assert launches == []
            detach(m)
    finally:
        if "_delta_mem" in m.__dict__:
            detach(m)
    assert rel_err(logits["triton"], logits["reference"]) < 1e-5


CHUNKED_CASES = [(1, 7, 1, 8, 4, True), (2, 65, 2, 8, 16, False), (1, 100, 1, 16, 16, True),
                 (1, 37, 4, 12, 8, True), (1, 5, 1, 8, 16, True)]


@pytest.mark.parametrize("B,T,N,r,chunk,with_state", CHUNKED_CASES)
def test_interp_chunked_forward_matches_loop(ran_in_child: bool, B: int, T: int, N: int, r: int,
                                            chunk: int, with_state: bool) -> None:
    """Chunk-parallel forward (transfer, compose, per-chunk scan) vs the loop: T below, at and
    across chunk boundaries, padding of the last chunk, N heads, r not a power of two."""
    if ran_in_child:
        return
    from kernels.deltamem import triton_chunked

    q, k, v, beta, s0 = make(B, T, N, r, seed=20)
    state = s0 if with_state else None
    out_c, s_c = triton_chunked.forward(q, k, v, beta, state, chunk=chunk)
    out_r, s_r = dm.scan(q, k, v, beta, state, impl="recurrent")
    assert out_c.shape == out_r.shape and s_c.shape == s_r.shape
    assert rel_err(out_c, out_r) < 1e-5 and rel_err(s_c, s_r) < 1e-5


def test_interp_chunked_dispatch_and_low_precision(ran_in_child: bool) -> None:
    if ran_in_child:
        return
    q, k, v, beta, s0 = make(1, 70, 2, 8, dtype=torch.bfloat16, seed=21)
    out_c, s_c = dm.scan(q, k, v, beta, s0, impl="triton_chunked")
    out_s, s_s = dm.scan(q, k, v, beta, s0, impl="triton_serial")
    assert out_c.dtype == torch.bfloat16 and s_c.dtype == torch.float32
    assert rel_err(out_c, out_s) < 1e-2 and rel_err(s_c, s_s) < 1e-5
    leaves = [x.clone().requires_grad_() for x in (q, k, v, beta)]
    with pytest.raises(ValueError, match="no backward"):
        dm.scan(*leaves, s0, impl="triton_chunked")
    q, k, v, beta, s0 = make(1, 3, 1, 32, seed=22)
    with pytest.raises(ValueError, match="r <= 16"):
        dm.scan(q, k, v, beta, s0, impl="triton_chunked")


# ---------------------------------------------------------------- real GPU (skipped on CPU)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_cuda_matches_reference(dtype: torch.dtype) -> None:
    q, k, v, beta, s0 = (x.cuda() for x in make(2, 1000, 4, 64, dtype=dtype, seed=15))
    out_t, s_t = dm.scan(q, k, v, beta, s0, impl="triton")
    out_r, s_r = dm.scan(*(x.float() for x in (q, k, v, beta)), s0, impl="reference")
    assert rel_err(out_t, out_r) < (1e-4 if dtype == torch.float32 else 1e-2)
    assert rel_err(s_t, s_r) < 1e-4
    g_t = grads("triton", q, k, v, beta, s0)
    g_r = grads("reference", *(x.float() for x in (q, k, v, beta)), s0)
    for a, b in zip(g_t, g_r):
        assert rel_err(a, b) < (1e-3 if dtype == torch.float32 else 3e-2)
    read_t, st_t = dm.step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0], s0, impl="triton")
    read_r, st_r = dm.step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0], s0, impl="reference")
    assert rel_err(st_t, st_r) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("project", ["kernel", "matmul"])
def test_fused_step_cuda_matches_reference(project: str) -> None:
    x, w, bias, s0 = (t.cuda() for t in make_fused(4, 4, 8, 2560, torch.bfloat16, seed=17))
    write = torch.tensor([True, False, True, True], device="cuda")
    dw = torch.randn(4096 + 2560, 4 * 8, device="cuda")  # Qwen3-4B's q and o corrections
    got = dm.fused_step(x, w, bias, s0, write, impl="triton", project=project, delta_weight=dw)
    want = dm.fused_step(x, w, bias, s0, write, impl="reference", delta_weight=dw)
    for a, b in zip(got[:2], want[:2]):
        assert rel_err(a, b) < 1e-4
    assert rel_err(got[2], want[2]) < 1e-2  # bf16 corrections
    assert torch.equal(got[1][1], s0[1])
    x1, w1, b1, s1 = (t.cuda() for t in make_fused(4, 1, 8, 2560, torch.bfloat16, seed=18))
    got = dm.fused_step(x1, w1, b1, s1, impl="triton", project=project, delta_weight=dw[:, :8])
    want = dm.fused_step(x1, w1, b1, s1, impl="reference", delta_weight=dw[:, :8])
    assert rel_err(got[2], want[2]) < 1e-2  # N = 1: the in-kernel epilogue


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("r,dtype", [(8, torch.bfloat16), (16, torch.float32)])
def test_triton_chunked_cuda_matches_reference(r: int, dtype: torch.dtype) -> None:
    """The chunk-parallel forward on a GPU, long enough that impl="triton" picks it."""
    q, k, v, beta, s0 = (x.cuda() for x in make(2, 5000, 4, r, dtype=dtype, seed=23))
    out_c, s_c = dm.scan(q, k, v, beta, s0, impl="triton_chunked")
    out_s, s_s = dm.scan(q, k, v, beta, s0, impl="triton_serial")
    out_r, s_r = dm.scan(*(x.float() for x in (q, k, v, beta)), s0, impl="reference")
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    assert rel_err(out_c, out_r) < tol and rel_err(s_c, s_r) < 1e-4
    assert rel_err(out_s, out_r) < tol and rel_err(s_s, s_r) < 1e-4
