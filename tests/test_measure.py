"""Self-tests of the measuring instruments."""

from __future__ import annotations

import mmap
import time

import numpy as np
import pytest
import torch

from harness.measure import Clock, Phase
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
