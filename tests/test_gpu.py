"""GPU measurement checks; they need a CUDA device and skip cleanly without one."""

from __future__ import annotations

import time

import pytest
import torch

from harness.api import run
from harness.measure import Clock, Phase

pytestmark = pytest.mark.gpu


def test_cuda_clock_times_a_known_kernel_sleep() -> None:
    c = Clock(torch.device("cuda"))
    c.stamp()
    torch.cuda._sleep(int(2e8))  # spin on the GPU; the host returns immediately
    c.stamp()
    host_done = time.perf_counter()
    assert c.seconds()[1] > 0.01
    assert time.perf_counter() - host_done >= 0  # read-out synchronised once


def test_allocator_and_nvml_peaks_see_an_allocation() -> None:
    dev = torch.device("cuda")
    from harness.measure import NVML

    with Phase(dev, NVML(dev)) as p:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
        time.sleep(0.05)
        del x
    assert p.result["gpu_peak_allocated_bytes"] >= 256 * 2**20
    assert p.result["gpu_device_peak_bytes"] and p.result["gpu_device_peak_bytes"] >= 256 * 2**20


def test_run_on_cuda_reports_gpu_metrics(tmp_path) -> None:
    s = run(["experiment=smoke", "model.device=cuda", "run.progress=false"], tmp_path)
    assert s["status"] == "ok"
    assert s["metrics"]["gpu_peak_allocated_bytes"]["n"] > 0
