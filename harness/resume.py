"""Resume: a run is identified by a hash of its resolved config, and a complete result is never redone.

Why a hash and not the folder: a sweep killed half-way is re-run with the same command line, and
the same configuration may also have been run earlier by another sweep or by hand. The run folder
name ends in the hash (``<method>_<task>_<model>_<hash>``, see ``configs/config.yaml``), so the
result for a configuration is found anywhere under ``out_dir`` by name, then confirmed by hashing
the ``config.yaml`` stored beside it.

Keys that do not change what is measured (where results go, how the run is launched, whether a
progress bar is drawn, the time limit) are left out of the hash, so changing them does not redo work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

#: top-level keys left out of the hash
VOLATILE = {"hydra", "out_dir", "launcher", "force", "dry_run"}
#: keys under ``run`` left out of the hash
VOLATILE_RUN = {"progress", "timeout_s"}
HASH_CHARS = 10


#: settings added after results existed, left out of the hash at their neutral value, so a result
#: computed before the setting existed is still found
NEUTRAL = {"model": {"quantization": "none"}, "run": {"persist": False}, "method": {"kv_quantization": "none", "alloc_mib": 0}}
#: settings that mean nothing while another one is at the given value, left out of the hash then
#: (the KV-cache quantization's group size and residual, when the cache is not quantized)
INERT = {"method": {"kv_group_size": ("kv_quantization", "none"), "kv_residual": ("kv_quantization", "none")}}


def hashed_view(cfg: Any) -> dict:
    """The resolved config as plain data, minus the volatile keys and the neutral new settings."""
    out: dict[str, Any] = {}
    for key in cfg.keys() if isinstance(cfg, DictConfig) else cfg:
        if key in VOLATILE:
            continue
        node = cfg[key]
        val = OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node
        if key == "run" and isinstance(val, dict):
            val = {k: v for k, v in val.items() if k not in VOLATILE_RUN}
        if isinstance(val, dict) and key in INERT:
            val = {k: v for k, v in val.items() if not (k in INERT[key] and val.get(INERT[key][k][0], INERT[key][k][1]) == INERT[key][k][1])}
        if isinstance(val, dict) and key in NEUTRAL:
            val = {k: v for k, v in val.items() if not (k in NEUTRAL[key] and v == NEUTRAL[key][k])}
        out[str(key)] = val
    return out


def config_hash(cfg: Any) -> str:
    """Short, stable hash of ``hashed_view(cfg)`` (key order and YAML formatting do not matter)."""
    blob = json.dumps(hashed_view(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:HASH_CHARS]


def check_result(run_dir: Path, expected_hash: str | None = None) -> str | None:
    """Return None when ``run_dir`` holds a complete, successful result, else the reason it does not.

    Complete means: summary.json parses and says ``status: ok``; samples.jsonl parses and holds as
    many first-repetition rows as the summary counted; config.yaml hashes to ``expected_hash``.
    """
    run_dir = Path(run_dir)
    summary_path, samples_path = run_dir / "summary.json", run_dir / "samples.jsonl"
    if not summary_path.exists():
        return "no summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        n = int(summary["accuracy"]["n"])
    except (ValueError, KeyError, TypeError) as e:
        return f"summary.json is truncated or corrupt ({type(e).__name__}: {e})"
    if summary.get("status") != "ok":
        return f"previous attempt ended with status {summary.get('status')!r}"
    if not samples_path.exists():
        return "samples.jsonl is missing"
    try:
        rows = [json.loads(line) for line in samples_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except ValueError as e:
        return f"samples.jsonl is truncated or corrupt ({e})"
    first = sum(1 for r in rows if isinstance(r, dict) and r.get("rep", 0) == 0)
    if first != n:
        return f"samples.jsonl has {first} samples but summary.json counts {n}"
    if expected_hash is not None:
        try:
            stored = config_hash(OmegaConf.load(run_dir / "config.yaml"))
        except Exception as e:  # missing or unparseable: cannot vouch for this result
            return f"config.yaml is missing or corrupt ({type(e).__name__})"
        if stored != expected_hash:
            return f"config.yaml hashes to {stored}, not {expected_hash}"
    return None


def find_complete(out_dir: Path, h: str, own_dir: Path) -> tuple[Path | None, str | None]:
    """Look for a complete result with hash ``h``: first in ``own_dir``, then anywhere under ``out_dir``.

    Returns ``(folder or None, why own_dir is not complete)``.
    """
    own_dir = Path(own_dir)
    reason = check_result(own_dir, h)
    if reason is None:
        return own_dir, None
    root = Path(out_dir)
    if root.is_dir():
        for cand in sorted(root.rglob(f"*_{h}")):
            if cand.is_dir() and cand.resolve() != own_dir.resolve() and check_result(cand, h) is None:
                return cand, reason
    return None, reason
