"""The memory card adds up: runtime + weights + method params + state + working ≈ required, and a
known allocation made during ingest shows up in that phase's working bytes.

Each run goes through the CLI in its own child process (launcher=process, as real runs do), so the
process's RSS belongs to that run alone.

Tolerance of the sum: |unaccounted| <= 32 MiB + 2 % of required. On CPU the card reads RSS, which
also holds what no part counts: what torch and transformers initialise once, on the first load and
forward (~10 MiB each, measured on tiny_random), the Python objects of the samples and prompts, and
allocator slack. That is tens of MiB whatever the model, so the bound is mostly absolute (measured
on tiny_random: 1-22 MiB; on Gemma 3 270M at 2k tokens: 1-22 MiB of ~1.8 GiB, see
benchmarks/results/memory_card_cpu.md), and far below what a missing part of a real model would
leave (Gemma 3 270M's weights: 1 GiB).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _harness_cli import run_cli, summaries
from methods._lm import storage_bytes

MiB = 2**20
TOLERANCE_ABS, TOLERANCE_REL = 32 * 2**20, 0.02
SMOKE = ["experiment=smoke", "task=passkey", "task.context_lengths=[512]", "task.depths=[50]", "launcher=process"]


def _run(tmp_path: Path, *args: str) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    res = run_cli([*SMOKE, f"out_dir={tmp_path}", *args], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (summary,) = summaries(tmp_path).values()
    assert summary["status"] == "ok", summary.get("error")
    return summary["memory"]


@pytest.mark.parametrize("method", ["full_kv", "deltamem"])
def test_parts_add_up_to_required(tmp_path: Path, method: str) -> None:
    mem = _run(tmp_path, f"method={method}")
    assert mem["device"] == "cpu" and mem["required_bytes_source"] == "rss"
    for phase in ("load", "ingest", "answer"):
        card = mem["phases"][phase]
        parts = sum(card[p] for p in ("runtime_bytes", "weights_bytes", "method_param_bytes", "state_bytes", "working_bytes"))
        assert abs(card["required_bytes"] - parts) <= TOLERANCE_ABS + TOLERANCE_REL * card["required_bytes"], (phase, card)
        assert card["unaccounted_bytes"] == card["required_bytes"] - parts
        assert card["working_bytes"] >= 0 or phase == "load", (phase, card)
    # the top line is the phase that needs the most, and the process never held more than the card says
    assert mem["required_bytes"] == max(c["required_bytes"] for c in mem["phases"].values())
    assert 0.9 * mem["process_peak_rss_bytes"] <= mem["required_bytes"] <= mem["process_peak_rss_bytes"]
    if method == "deltamem":
        assert mem["method_param_bytes"] > 0
    assert mem["phases"]["ingest"]["state_bytes"] > 0


def test_known_allocation_shows_in_ingest_working(tmp_path: Path) -> None:
    """fault with alloc_mib=64 holds 64 MiB during ingest: the ingest working bytes grow by 64 MiB,
    the answer's do not."""
    base = _run(tmp_path / "a", "method=fault")
    held = _run(tmp_path / "b", "method=fault", "method.alloc_mib=64")
    grew = held["phases"]["ingest"]["working_bytes"] - base["phases"]["ingest"]["working_bytes"]
    assert 64 * MiB - 2 * MiB <= grew <= 64 * MiB + 4 * MiB, grew / MiB
    assert held["phases"]["answer"]["working_bytes"] < 8 * MiB
    assert held["required_phase"] == "ingest"


def test_one_time_work_is_reported_apart(tmp_path: Path) -> None:
    mem = _run(tmp_path, "method=full_kv")
    assert mem["one_time"]["conversion"] is None and "no conversion" in mem["one_time"]["conversion_reason"]


class _Packed(torch.Tensor):
    """A quantized-weight stand-in: int8 data [out, in] and fp32 scales [out], exposed as fp32."""

    @staticmethod
    def __new__(cls, qdata: torch.Tensor, scale: torch.Tensor) -> "_Packed":
        return torch.Tensor._make_wrapper_subclass(cls, qdata.shape, dtype=torch.float32)

    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor) -> None:
        self.qdata, self.scale = qdata, scale

    def __tensor_flatten__(self):
        return ["qdata", "scale"], None

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.detach.default:  # nn.Parameter(w) detaches
            return args[0]
        raise NotImplementedError(f"_Packed does not compute ({func})")


def test_quantized_tensors_count_by_their_inner_storages() -> None:
    w = _Packed(torch.zeros(64, 32, dtype=torch.int8), torch.ones(64))
    assert storage_bytes([w]) == 64 * 32 * 1 + 64 * 4
    assert storage_bytes([torch.nn.Parameter(w, requires_grad=False)]) == 64 * 32 + 64 * 4
    shared = torch.zeros(10)
    assert storage_bytes([shared, shared[2:5]]) == 40  # one storage, counted once
