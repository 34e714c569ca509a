"""The environment a run was measured in: devices, driver, CPU, library versions, git state."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil
import torch

LIBS = ["torch", "transformers", "triton", "hydra-core", "accelerate", "numpy", "pandas", "memharness"]
REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"git_sha": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError) as e:
        return {"git_sha": None, "git_sha_reason": f"not a git checkout ({type(e).__name__})", "git_dirty": None}


def gpu_info() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"gpu_count": 0, "gpus": [], "gpu_reason": "no CUDA device", "cuda": None, "driver": None}
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"name": p.name, "memory_bytes": int(p.total_memory), "capability": f"{p.major}.{p.minor}"})
    driver = None
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
    except Exception as e:
        driver = f"unavailable: {type(e).__name__}"
    return {"gpu_count": len(gpus), "gpus": gpus, "cuda": torch.version.cuda, "driver": driver}


def collect(seed: int | None = None) -> dict[str, Any]:
    versions = {}
    for lib in LIBS:
        try:
            versions[lib] = md.version(lib)
        except md.PackageNotFoundError:
            versions[lib] = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "host_memory_bytes": psutil.virtual_memory().total,
        **gpu_info(),
        "versions": versions,
        **_git(),
        "seed": seed,
    }
