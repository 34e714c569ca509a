"""Learning-curve figure of a δ-mem training run: ``python -m methods._deltamem.figure FOLDER [OUT.png]``.

FOLDER is a trained adapter (its ``adapter.json`` keeps the curve) or a training checkpoint folder
(``trainer.pt``). Top: held-out per-digit accuracy with the true history and with a mismatched one
(the control), and the read-out probe's accuracy on the true history when the run trained one;
bottom: mean β on filler tokens, on the fact sentence and on the key's digits; training CE on a
second axis. Drawn with matplotlib's object API on the Agg canvas.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def load_curve(folder: Path) -> tuple[list[dict[str, Any]], list, str]:
    if not (folder / "trainer.pt").exists() and (folder / "adapter.json").exists() and "training" in json.loads((folder / "adapter.json").read_text()):
        t = json.loads((folder / "adapter.json").read_text())["training"]
        if "curve" in t:
            return t["curve"], [], t.get("curve_setting", "")
    import torch

    st = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)["state"]
    return st["curve"], st["losses"], st["curve"][-1].get("setting", "")


def draw(curve: list[dict[str, Any]], losses: list, title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.0))
    top, bot = fig.subplots(2, 1, sharex=True)
    x = [p["step"] for p in curve]
    top.plot(x, [p["true"] for p in curve], "o-", color="#1a9850", label="model, true history")
    top.plot(x, [p["mismatched"] for p in curve], "s--", color="#d73027", label="model, mismatched history (control)")
    if any(p.get("probe_true") is not None for p in curve):
        pts = [(p["step"], p["probe_true"]) for p in curve if p.get("probe_true") is not None]
        top.plot(*zip(*pts), "^:", color="#4575b4", label="read-out probe, true history")
        pts = [(p["step"], p["probe_mismatched"]) for p in curve if p.get("probe_mismatched") is not None]
        top.plot(*zip(*pts), "v:", color="#fdae61", label="read-out probe, mismatched")
    top.axhline(0.1, color="grey", lw=0.8, ls=":")
    for a, b in zip(curve, curve[1:]):  # the held-out setting changed (curriculum re-planned mid-run)
        if a.get("setting") != b.get("setting"):
            for ax in (top, bot):
                ax.axvline((a["step"] + b["step"]) / 2, color="black", lw=0.8, ls="--")
            top.text((a["step"] + b["step"]) / 2, 0.95, " from here: " + str(b.get("setting")), fontsize=6, va="top")
    top.set_ylabel("held-out per-digit accuracy")
    top.set_ylim(0, 1)
    top.legend(fontsize=7, loc="upper left")
    top.set_title(title, fontsize=9)
    for key, c in (("beta_filler", "#999999"), ("beta_fact", "#762a83"), ("beta_key", "#e08214")):
        bot.plot(x, [p.get(key) for p in curve], "o-", ms=3, color=c, label=f"mean β, {key.split('_')[1]} tokens")
    bot.set_ylabel("mean β (held-out, true history)")
    bot.set_xlabel("optimizer step")
    bot.legend(fontsize=7, loc="upper left")
    if losses:
        ce = [row[0] for row in losses]
        k = max(1, len(ce) // 50)
        xs = list(range(k, len(ce) + 1, k))
        ax2 = bot.twinx()
        ax2.plot(xs, [sum(ce[i - k:i]) / k for i in xs], color="#35978f", lw=0.8, label="training answer CE")
        ax2.set_ylabel("training answer CE", fontsize=8)
        ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m methods._deltamem.figure FOLDER [OUT.png]")
    folder = Path(args[0])
    curve, losses, setting = load_curve(folder)
    out = Path(args[1]) if len(args) > 1 else folder / "learning_curve.png"
    print(draw(curve, losses, f"δ-mem learning curve — held-out: {setting}" if setting else "δ-mem learning curve", out))


if __name__ == "__main__":
    main()
