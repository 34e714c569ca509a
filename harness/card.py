"""The memory card: the bytes a run needs to load and run, split into parts that add up.

Per phase (load, ingest, answer) the card reports

- ``runtime_bytes``: resident memory just before the weights are loaded (interpreter, libraries, the
  tokenizer; on CUDA with NVML: the process's device memory, i.e. the CUDA context);
- ``weights_bytes``: the backbone's parameters and buffers, each storage once, quantized tensors by
  the storages they really hold (counted from the tensors, source ``tensors``);
- ``method_param_bytes``: parameters the method adds (adapter, dense encoder), from the tensors;
- ``state_bytes``: the method's memory resident during the phase (0 in load; after ingest in ingest
  and answer), max over samples, from the tensors/objects;
- ``working_bytes``: the phase's peak minus what was resident at its start, minus what the phase
  itself leaves behind and another part counts (the weights in load, the state in ingest): the
  activations and temporary buffers; max over samples;
- ``required_bytes``: the phase's peak — what must be provisioned;
- ``unaccounted_bytes``: required minus the parts (allocator slack, leftovers of earlier phases).

Peaks come from the kernel's resident-set high-water mark (``VmHWM``), reset at each phase start
through ``/proc/self/clear_refs`` (exact, not sampled); where that is not allowed, from the sampled
``host_peak_rss_bytes``. On CUDA the device card uses the torch allocator (``cuda_allocator``) for
the parts and NVML's per-process figure (``nvml_process``) for runtime and required when available;
the host card (``rss``) is reported beside it. Unmeasurable values are null with ``<name>_reason``.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import torch

PAGE = 4096
PARTS = ("runtime_bytes", "weights_bytes", "method_param_bytes", "state_bytes", "working_bytes")
COUNTED = "tensors"  # source of the parts counted from tensors/objects rather than measured


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_now() -> int | None:
    return _status("VmRSS")


def trim_heap() -> bool:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so that what a phase finds resident
    at its start is what is live, not what an earlier phase freed and the allocator kept."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


_LIFE_PEAK = 0  # the largest high-water mark read before a reset: the kernel's own peak is reset with it


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where not allowed."""
    global _LIFE_PEAK
    _LIFE_PEAK = max(_LIFE_PEAK, _status("VmHWM") or 0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def process_peak_rss() -> int:
    """Peak RSS of this process over its whole life: the kernel's mark (getrusage reads the same
    counter) and every mark read before ``reset_peak`` cleared it."""
    return max(_LIFE_PEAK, _status("VmHWM") or 0, int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024)


def make_resident(tensors: list[torch.Tensor]) -> None:
    """Read one byte per page of every CPU storage, so memory-mapped weights (safetensors) are
    resident at the end of the load phase instead of being paged in by the first forward."""
    from harness.storage import flat_tensors

    seen: set[int] = set()
    for t in flat_tensors(tensors):
        if t.device.type != "cpu":
            continue
        s = t.untyped_storage()
        if s.data_ptr() in seen or s.nbytes() == 0:
            continue
        seen.add(s.data_ptr())
        raw = torch.empty(0, dtype=torch.uint8).set_(s)  # [nbytes] view of the whole storage
        int(raw[::PAGE].sum())


def import_model_code(model_cfg: Any) -> None:
    """Import the model's transformers modules before the runtime baseline is read: they are
    libraries (importing Gemma 3's modeling code alone takes ~200 MiB of RSS), not weights."""
    import importlib
    import json

    from transformers.models.auto.configuration_auto import model_type_to_module_name

    if model_cfg.source == "tiny_random":
        model_type = model_cfg.family
    else:
        from harness.models import cache_root

        folder = cache_root(model_cfg) / model_cfg.source if model_cfg.source.endswith("_gguf") else Path(str(model_cfg.path))
        try:
            model_type = json.loads((folder / "config.json").read_text())["model_type"]
        except (OSError, KeyError, ValueError):
            return  # a hub id not in a local folder: transformers imports it during load
    extra = ("torchao.quantization",) if getattr(model_cfg, "quantization", "none") != "none" else ()
    for name in (*extra, f"transformers.models.{model_type_to_module_name(model_type)}.modeling_{model_type_to_module_name(model_type)}",
                 "transformers.masking_utils", "transformers.integrations.sdpa_attention", "transformers.cache_utils"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


class Mark:
    """Memory of one phase, nested inside ``harness.measure.Phase`` (whose exit reads the sampler)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.d: dict[str, Any] = {}

    def __enter__(self) -> "Mark":
        trim_heap()
        self._exact = reset_peak()
        self.d["start_rss_bytes"] = rss_now()
        if self.device.type == "cuda":
            self.d["start_allocated_bytes"] = int(torch.cuda.memory_allocated(self.device))
        return self

    def __exit__(self, *exc: Any) -> None:
        global _LIFE_PEAK
        if self._exact:
            self.d["peak_rss_bytes"], self.d["peak_rss_source"] = _status("VmHWM"), "VmHWM"
            # the kernel updates its mark lazily: a later reading can be lower, so keep every reading
            _LIFE_PEAK = max(_LIFE_PEAK, self.d["peak_rss_bytes"] or 0)
        self.d["end_rss_bytes"] = rss_now()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.d["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(self.device))

    def result(self, phase_result: dict[str, Any]) -> dict[str, Any]:
        """This phase's raw numbers; the sampled RSS peak stands in where the kernel mark was not reset."""
        out = dict(self.d)
        if "peak_rss_bytes" not in out:
            out["peak_rss_bytes"], out["peak_rss_source"] = phase_result.get("host_peak_rss_bytes"), "sampled"
        out["peak_nvml_bytes"] = phase_result.get("gpu_process_peak_bytes")
        return out


def one_time_model_work(model_cfg: Any) -> dict[str, Any]:
    """Convert a GGUF model in a separate process when needed, so the run's load phase (and its
    memory) never contains the conversion; returns what was done, its time and peak RSS."""
    import json
    import subprocess
    import sys
    import time
    from dataclasses import asdict

    from harness.models import is_converted

    if not model_cfg.source.endswith("_gguf"):
        return {"conversion": None, "conversion_reason": f"model.source={model_cfg.source} needs no conversion"}
    if is_converted(model_cfg):
        return {"conversion": None, "conversion_reason": "already converted (cached from an earlier run)"}
    code = "import json,sys;from harness.models import ModelConfig,converted_folder;converted_folder(ModelConfig(**json.loads(sys.argv[1])))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(asdict(model_cfg))], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        from harness.registry import ConfigError

        raise ConfigError(f"converting model '{model_cfg.name}' ({model_cfg.source}) failed with exit code {proc.returncode}")
    return {"conversion": {"s": time.perf_counter() - t0, "peak_rss_bytes": int(usage.ru_maxrss) * 1024, "source": "rss"}}


def persist_round_trip(method: Any) -> dict[str, Any]:
    """Save the memory just ingested into a temporary folder, reset the method, restore it.

    Returns ``persisted_bytes`` (files on disk), the tensor bytes per part (e.g. δ-mem's state apart
    from the window KV it carries), ``save_s`` and ``restore_s`` (wall time, CPU clock; on CUDA
    after a synchronisation, since restoring ends with tensors on the device)."""
    import tempfile
    import time

    from harness import persist as _persist

    def sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory(prefix="memharness-memory-") as tmp:
        folder = Path(tmp) / "memory"
        sync()
        t0 = time.perf_counter()
        parts = method.save_memory(folder)
        save_s = time.perf_counter() - t0
        files = _persist.file_bytes(folder)
        method.reset()
        sync()
        t0 = time.perf_counter()
        method.load_memory(folder)
        sync()
        restore_s = time.perf_counter() - t0
    return {"persisted_bytes": sum(files.values()), "persisted_files": files, "persisted_tensor_bytes": parts,
            "save_s": save_s, "restore_s": restore_s}
