"""Build the ``memory`` card of summary.json from the raw per-phase marks (see ``harness.card``).

Inputs: ``load`` (the load phase's mark plus the runtime baseline and the counted weights / method
parameters) and the sample rows, whose ``card`` field holds the ingest and answer marks. Every part
is an integer of bytes with ``<part>_source``; a part that cannot be measured is null with
``<part>_reason``. ``unaccounted_bytes`` = required - the parts that are known.
"""

from __future__ import annotations

from typing import Any

from harness.card import COUNTED, PARTS, process_peak_rss

PHASES = ("load", "ingest", "answer")


def _set(out: dict[str, Any], name: str, value: int | None, source: str, reason: str = "") -> None:
    out[name] = None if value is None else int(value)
    if value is None:
        out[name + "_reason"] = reason or "not measured"
    else:
        out[name + "_source"] = source


def _close(card: dict[str, Any]) -> dict[str, Any]:
    req = card.get("required_bytes")
    if req is None:
        card["unaccounted_bytes"], card["unaccounted_bytes_reason"] = None, card.get("required_bytes_reason", "required not measured")
    else:
        card["unaccounted_bytes"] = int(req - sum(card[p] for p in PARTS if card.get(p) is not None))
    return card


def _host_phase(phase: str, load: dict, marks: list[dict], states: list[int]) -> dict[str, Any]:
    """The RSS card of one phase; ``marks``/``states`` are per sample (empty for load)."""
    c: dict[str, Any] = {}
    rt, w, mp = load.get("runtime_rss_bytes"), load["weights_bytes"], load["method_param_bytes"]
    _set(c, "runtime_bytes", rt, "rss", "no RSS reading before the weights")
    _set(c, "weights_bytes", w, COUNTED)
    _set(c, "method_param_bytes", mp, COUNTED)
    if phase == "load":
        peak = load["mark"].get("peak_rss_bytes")
        _set(c, "state_bytes", 0, COUNTED)
        work = None if peak is None or rt is None else peak - rt - w - mp  # the loader's transient buffers
        _set(c, "working_bytes", work, "rss", "no RSS peak for the load phase")
        _set(c, "required_bytes", peak, "rss", "no RSS peak for the load phase")
        c["peak_rss_source"] = load["mark"].get("peak_rss_source")
        return _close(c)
    pairs = [(m, s) for m, s in zip(marks, states) if m.get("peak_rss_bytes") is not None and m.get("start_rss_bytes") is not None]
    if not pairs:
        for p in ("state_bytes", "working_bytes", "required_bytes"):
            _set(c, p, None, "rss", "no measured samples")
        return _close(c)
    built = phase == "ingest"  # the state is built during ingest; in answer it is resident from the start
    _set(c, "state_bytes", max(s for _, s in pairs), COUNTED)
    _set(c, "working_bytes", max(m["peak_rss_bytes"] - m["start_rss_bytes"] - (s if built else 0) for m, s in pairs), "rss")
    _set(c, "required_bytes", max(m["peak_rss_bytes"] for m, _ in pairs), "rss")
    c["peak_rss_source"] = pairs[0][0].get("peak_rss_source")
    return _close(c)


def _device_phase(phase: str, load: dict, marks: list[dict], states: list[int]) -> dict[str, Any]:
    """The CUDA card of one phase: allocator for the parts, NVML per-process for runtime/required."""
    c: dict[str, Any] = {}
    rt = load.get("runtime_nvml_bytes")
    _set(c, "runtime_bytes", rt, "nvml_process", load.get("runtime_nvml_bytes_reason", "NVML per-process memory unavailable; "
         "the CUDA context and libraries are outside the torch allocator"))
    w, mp = load["weights_bytes"], load["method_param_bytes"]
    _set(c, "weights_bytes", w, COUNTED)
    _set(c, "method_param_bytes", mp, COUNTED)
    if phase == "load":
        marks, states, built = [load["mark"]], [0], 0
    else:
        built = 1 if phase == "ingest" else 0
    ok = [(m, s) for m, s in zip(marks, states) if m.get("peak_allocated_bytes") is not None]
    if not ok:
        for p in ("state_bytes", "working_bytes", "required_bytes"):
            _set(c, p, None, "cuda_allocator", "no measured samples")
        return _close(c)
    _set(c, "state_bytes", max(s for _, s in ok), COUNTED)
    if phase == "load":
        m = ok[0][0]
        work = m["peak_allocated_bytes"] - m.get("start_allocated_bytes", 0) - w - mp
    else:
        work = max(m["peak_allocated_bytes"] - m["start_allocated_bytes"] - built * s for m, s in ok)
    _set(c, "working_bytes", work, "cuda_allocator")
    nv = [m.get("peak_nvml_bytes") for m, _ in ok if m.get("peak_nvml_bytes") is not None]
    if nv and rt is not None:
        _set(c, "required_bytes", max(nv), "nvml_process")
    else:
        _set(c, "required_bytes", max(m["peak_allocated_bytes"] for m, _ in ok) + (rt or 0), "cuda_allocator")
    return _close(c)


def build(load: dict[str, Any], rows: list[dict], device_type: str) -> dict[str, Any]:
    """The ``memory`` section: per-phase cards, the top line (the phase with the largest need),
    the process's own peak RSS as a cross-check, one-time work and persistence."""
    measured = [r for r in rows if r.get("card")]
    states = [int(r.get("state_bytes") or 0) for r in measured]

    def card(kind: str) -> dict[str, Any]:
        fn = _host_phase if kind == "rss" else _device_phase
        phases = {p: fn(p, load, [r["card"][p] for r in measured] if p != "load" else [], states if p != "load" else []) for p in PHASES}
        known = {p: c for p, c in phases.items() if c.get("required_bytes") is not None}
        top = max(known, key=lambda p: known[p]["required_bytes"]) if known else "load"
        out = {k: v for k, v in phases[top].items()}
        out["required_phase"] = top
        out["phases"] = phases
        return out

    mem = card("cuda" if device_type == "cuda" else "rss")
    mem["device"] = device_type
    if device_type == "cuda":
        mem["host"] = card("rss")
    mem["process_peak_rss_bytes"] = process_peak_rss()  # whole life of the run process (kernel ru_maxrss)
    mem["one_time"] = load.get("one_time", {})
    return mem


def table_rows(summary: dict) -> list[tuple[str, str]]:
    """Console/markdown lines: required and its parts (MiB)."""
    mem = summary.get("memory") or {}
    if mem.get("required_bytes") is None:
        return [("required (memory card)", "n/a")]

    def mib(v: Any) -> str:
        return "n/a" if v is None else f"{v / 2**20:.1f}"

    parts = " + ".join(f"{p.replace('_bytes', '').replace('method_param', 'params')} {mib(mem.get(p))}" for p in PARTS)
    return [(f"required ({mem['required_phase']}, {mem.get('required_bytes_source')})", f"{mib(mem['required_bytes'])} MiB = {parts} "
             f"+ unaccounted {mib(mem.get('unaccounted_bytes'))}")]


def persist_summary(rows: list[dict]) -> dict[str, Any]:
    """Persistence next to the ingest time a restore saves: max bytes, mean times over samples."""
    got = [r for r in rows if r.get("persist")]
    if not got:
        return {"persisted_bytes": None, "persisted_bytes_reason": "no measured samples"}

    def mean(vals: list[float]) -> float:
        return sum(vals) / len(vals)

    parts = sorted({p for r in got for p in r["persist"]["persisted_tensor_bytes"]})
    return {
        "persisted_bytes": max(r["persist"]["persisted_bytes"] for r in got),
        "persisted_tensor_bytes": {p: max(r["persist"]["persisted_tensor_bytes"].get(p, 0) for r in got) for p in parts},
        "save_s": mean([r["persist"]["save_s"] for r in got]),
        "restore_s": mean([r["persist"]["restore_s"] for r in got]),
        "ingest_s": mean([r["ingest_s"] for r in got]),
        "n": len(got),
    }
