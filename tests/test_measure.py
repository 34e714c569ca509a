"""Self-tests of the measuring instruments."""

from __future__ import annotations

import mmap
import os
import time
import types

import numpy as np
import pytest
import torch

from harness.measure import NVML, Clock, Phase
from harness.stats import bootstrap_ci, describe


def test_clock_times_sleep() -> None:
    c = Clock(torch.device("cpu"))
    c.stamp()
    time.sleep(1.0)
    c.stamp()
    assert c.seconds()[1] == pytest.approx(1.0, rel=0.10)


def test_rss_tracker_sees_a_known_allocation() -> None:
    # A fresh anonymous mapping, every page written: new resident memory that the allocator cannot
    # satisfy from memory it freed earlier in the process (which would not raise RSS).
    size = 400 * 2**20
    with Phase(torch.device("cpu")) as base:
        time.sleep(0.05)
    with Phase(torch.device("cpu")) as p:
        buf = mmap.mmap(-1, size)
        np.frombuffer(buf, dtype=np.uint8)[::4096] = 1
        time.sleep(0.05)
        buf.close()
    grown = p.result["host_peak_rss_bytes"] - base.result["host_peak_rss_bytes"]
    assert grown >= 0.9 * size


def test_unmeasurable_gpu_figures_are_null_with_reason() -> None:
    # a phase on the CPU device has no GPU figures, whether or not the machine has a GPU
    with Phase(torch.device("cpu")) as p:
        pass
    for k in ("gpu_peak_allocated_bytes", "gpu_process_peak_bytes", "gpu_device_peak_bytes", "energy_j"):
        assert p.result[k] is None and p.result[k + "_reason"]


def test_describe_and_ci() -> None:
    d = describe(list(range(1, 101)))
    assert d["p50"] == pytest.approx(50.5) and d["p99"] == pytest.approx(99.01) and d["n"] == 100
    lo, hi = bootstrap_ci([1.0] * 9 + [0.0])
    assert lo < 0.9 < hi and 0.5 < lo and hi == 1.0
    assert bootstrap_ci([0.0, 1.0] * 20) == bootstrap_ci([0.0, 1.0] * 20)  # seeded


class _FakeNvml:
    """Stands in for pynvml: one GPU whose process list holds other PIDs only (as in a container)."""

    class NVMLError(Exception):
        pass

    def __init__(self, pids: list[int], used: int | None = 123 * 2**20, fail: bool = False) -> None:
        self.pids, self.proc_used, self.fail = pids, used, fail

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=7 * 2**30)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if self.fail:
            raise self.NVMLError("not supported")
        return [types.SimpleNamespace(pid=p, usedGpuMemory=self.proc_used) for p in self.pids]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        raise self.NVMLError("not supported")


def _nvml(fake: _FakeNvml) -> NVML:
    nvml = NVML(torch.device("cpu"))  # no CUDA: handle None; fill in the fake
    nvml.handle, nvml.reason, nvml.nv = object(), None, fake
    return nvml


@pytest.mark.parametrize("case", ["pid_not_visible", "no_value", "unsupported", "visible"])
def test_nvml_process_memory_is_null_with_reason_unless_this_pid_is_listed(case: str, monkeypatch) -> None:
    # Phase on a CUDA device without touching CUDA: the allocator counters are stubbed
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 10)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a, **k: 20)
    fake = {"pid_not_visible": _FakeNvml([1, 2]), "no_value": _FakeNvml([os.getpid()], used=None),
            "unsupported": _FakeNvml([], fail=True), "visible": _FakeNvml([1, os.getpid()])}[case]
    with Phase(torch.device("cuda", 0), _nvml(fake)) as p:
        time.sleep(0.02)
    r = p.result
    assert r["gpu_device_peak_bytes"] == 7 * 2**30
    if case == "visible":
        assert r["gpu_process_peak_bytes"] == 123 * 2**20 and "gpu_process_peak_bytes_reason" not in r
    else:
        assert r["gpu_process_peak_bytes"] is None  # never 0
        want = {"pid_not_visible": "not among NVML's compute processes", "no_value": "reports no per-process memory",
                "unsupported": "not supported"}[case]
        assert want in r["gpu_process_peak_bytes_reason"]


class _Silent:
    """A method whose answer ends before its first token (e.g. max_new_tokens=0)."""

    name = "silent"

    def reset(self) -> None: ...

    def ingest(self, ctx) -> None: ...

    def answer(self, q, max_new):
        return iter(())

    def state_bytes(self) -> int:
        return 64

    def state_bytes_peak(self) -> int:
        return 64

    def attended_tokens(self) -> int:
        return 3

    def extra_metrics(self) -> dict:
        return {}


def test_a_sample_without_tokens_has_reasons_for_its_null_latencies() -> None:
    from harness.run import measure_sample
    from harness.summary import summarize
    from methods.base import Context, Question

    lm = types.SimpleNamespace(device=torch.device("cpu"))
    ctx = Context(prefix_ids=[1], chunk_ids=[[5, 6, 7]], chunk_texts=["abc"])
    q = Question(ids=[8, 9], text="?", answer_prefix="", evidence=[])
    m, ids = measure_sample(_Silent(), lm, ctx, q, 0, NVML(torch.device("cpu")))
    assert ids == [] and m["n_tokens"] == 0
    for k in ("ttft_query_s", "ttft_cold_s", "e2e_s", "tpot_s", "decode_tok_per_s"):
        assert m[k] is None and m[k + "_reason"] == "no token generated", k
    assert m["itl_s"] == [] and "no token generated" in m["itl_s_reason"]
    s = summarize([{"id": "a", "rep": 0, "score": 0.0, **m}])
    assert s["metrics"]["ttft_query_s"] == {"n": 0, "reason": "no token generated"}
