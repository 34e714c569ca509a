"""Measurement from outside the method: clocks, memory samplers, energy.

On CUDA, times come from CUDA events recorded on the current stream; the host synchronises once,
when the values are read out. On CPU, ``time.perf_counter``. Memory peaks come from background
samplers (host RSS via psutil, GPU via NVML, at most every 10 ms) and, on CUDA, from the torch
allocator's peak counters reset per phase. Anything that cannot be measured is reported as
``None`` together with ``<name>_reason`` — never as 0.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil
import torch

SAMPLE_PERIOD_S = 0.005
# NVML per-process readings that are not a byte count (higher = closer to a value)
PROC_UNSUPPORTED, PROC_NOT_LISTED, PROC_NO_VALUE = -3, -2, -1
PROC_REASONS = {
    PROC_UNSUPPORTED: "NVML per-process query not supported",
    PROC_NOT_LISTED: ("this process's PID is not among NVML's compute processes on this GPU "
                      "(usual in a container, where NVML lists host PIDs)"),
    PROC_NO_VALUE: "NVML lists this process but reports no per-process memory for it",
}


class Clock:
    """Stamps points in time; ``seconds()`` converts all stamps relative to the first one."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.stamps: list[Any] = []

    def stamp(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.stamps.append(ev)
        else:
            self.stamps.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Offsets (s) of every stamp from the first; the single synchronisation happens here."""
        if not self.stamps:
            return []
        if self.cuda:
            self.stamps[-1].synchronize()
            return [self.stamps[0].elapsed_time(e) / 1e3 for e in self.stamps]
        return [t - self.stamps[0] for t in self.stamps]


class _Sampler(threading.Thread):
    def __init__(self, fn, period: float = SAMPLE_PERIOD_S) -> None:
        super().__init__(daemon=True)
        self.fn, self.period, self.peaks = fn, period, None
        self._stop_ev = threading.Event()

    def run(self) -> None:
        while True:
            vals = self.fn()
            self.peaks = vals if self.peaks is None else [max(a, b) for a, b in zip(self.peaks, vals)]
            if self._stop_ev.wait(self.period):
                vals = self.fn()  # one last reading at the phase end
                self.peaks = [max(a, b) for a, b in zip(self.peaks, vals)]
                return

    def stop(self) -> list[int]:
        self._stop_ev.set()
        self.join()
        return self.peaks


class NVML:
    """Lazily initialised NVML handle for the device in use; ``reason`` says why it is unavailable."""

    def __init__(self, device: torch.device) -> None:
        self.handle, self.reason = None, None
        if device.type != "cuda":
            self.reason = "no CUDA device in use"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            idx = device.index if device.index is not None else torch.cuda.current_device()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(idx)
            self.nv = pynvml
        except Exception as e:  # NVMLError, ImportError: report why, never fake
            self.reason = f"NVML unavailable: {type(e).__name__}: {e}"

    def used(self) -> list[int]:
        """[this process's bytes, whole-device bytes]; the first is a negative PROC_* code when NVML
        cannot say (the sampler keeps the max, so one successful reading outranks every code)."""
        nv, h = self.nv, self.handle
        dev = nv.nvmlDeviceGetMemoryInfo(h).used
        proc = PROC_NOT_LISTED
        try:
            pid = os.getpid()
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == pid:
                    proc = p.usedGpuMemory if p.usedGpuMemory is not None else max(proc, PROC_NO_VALUE)
        except nv.NVMLError:
            proc = PROC_UNSUPPORTED
        return [proc, dev]

    @staticmethod
    def process_peak(code: int) -> dict[str, Any]:
        """The gpu_process_peak_bytes entry for a sampled peak: bytes, or None with the reason."""
        if code >= 0:
            return {"gpu_process_peak_bytes": int(code)}
        return {"gpu_process_peak_bytes": None, "gpu_process_peak_bytes_reason": PROC_REASONS.get(code, "NVML per-process query failed")}

    def energy_mj(self) -> int | None:
        try:
            return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception:
            return None


class Phase:
    """Context manager measuring one phase (load, ingest, answer): memory peaks and energy."""

    def __init__(self, device: torch.device, nvml: NVML | None = None) -> None:
        self.device, self.nvml = device, nvml
        self.result: dict[str, Any] = {}

    def __enter__(self) -> "Phase":
        proc = psutil.Process()
        self._host = _Sampler(lambda: [proc.memory_info().rss])
        self._host.start()
        self._gpu = None
        self._e0 = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            if self.nvml is not None and self.nvml.handle is not None:
                self._gpu = _Sampler(self.nvml.used)
                self._gpu.start()
                self._e0 = self.nvml.energy_mj()
        return self

    def __exit__(self, *exc: Any) -> None:
        r = self.result
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            r["gpu_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
            r["gpu_peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(self.device))
        else:
            for k in ("gpu_peak_allocated_bytes", "gpu_peak_reserved_bytes"):
                r[k], r[k + "_reason"] = None, "no CUDA device in use"
        if self._gpu is not None:
            proc, dev = self._gpu.stop()
            r.update(NVML.process_peak(proc))
            r["gpu_device_peak_bytes"] = int(dev)
            e1 = self.nvml.energy_mj()
            if self._e0 is not None and e1 is not None:
                r["energy_j"] = (e1 - self._e0) / 1e3
            else:
                r["energy_j"], r["energy_j_reason"] = None, "NVML energy counter not supported on this GPU"
        else:
            reason = self.nvml.reason if self.nvml is not None and self.nvml.reason else "no CUDA device in use"
            for k in ("gpu_process_peak_bytes", "gpu_device_peak_bytes", "energy_j"):
                r[k], r[k + "_reason"] = None, reason
        r["host_peak_rss_bytes"] = int(self._host.stop()[0])
