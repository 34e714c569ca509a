"""The δ-mem decode-cost benchmark: its operator counter and one tiny end-to-end run.

Speed itself is not asserted (timings are recorded by running the script, not by tests); what is
checked is that the counter counts what launches work and that the table reports both variants
with the δ-mem overhead in it."""

from __future__ import annotations

import re
import sys

import torch
from _bench import script



def _script():
    return script("deltamem_decode")


def test_op_counter_skips_views_and_allocations():
    bench = _script()
    x = torch.randn(4, 6)
    with bench.OpCounter() as c:
        y = x.view(24).reshape(4, 6).t()  # views: free
        torch.empty(3)  # allocation: no kernel
        x.to(torch.float32)  # same dtype: returns x itself
        z = x.to(torch.float64) + 1  # a conversion and an add: two kernels
        y.contiguous()  # a transposed view made contiguous: a copy
    assert sum(c.ops.values()) == 3, c.ops
    assert c.ops["add"] == 1 and z.dtype == torch.float64


def test_decode_benchmark_tiny_run(tmp_path, monkeypatch):
    bench = _script()
    out = tmp_path / "decode.md"
    monkeypatch.setattr(sys, "argv", ["deltamem_decode.py", "--model", "tiny_random", "--context", "40",
                                      "--new-tokens", "3", "--reps", "1", "--out", str(out)])
    bench.main()
    text = out.read_text()
    rows = {m.group(1): [float(v) for v in m.group(2, 3)] + [int(m.group(4))]
            for m in re.finditer(r"^\| (bare|deltamem) \| ([\d.]+) \| ([\d.]+) \|.*\| (\d+) \|$", text, re.M)}
    assert set(rows) == {"bare", "deltamem"}
    assert all(v > 0 for v in rows["bare"] + rows["deltamem"])
    assert rows["deltamem"][2] > rows["bare"][2]  # δ-mem adds operator calls per decode token
    ratio = float(re.search(r"decode tokens/s ratio δ-mem / bare: \*\*([\d.]+)\*\*", text).group(1))
    assert abs(ratio - rows["deltamem"][1] / rows["bare"][1]) < 0.01 * ratio  # table values are rounded
    assert "kernel reference" in text and "4 layers" in text
