"""``python tests/_persist_child.py ingest|restore <folder> <family> <{method: cfg} json>``: one side of
the persist test, in a fresh process. ``ingest`` ingests a fixed context with each method, answers,
saves the memory into <folder>/<method>; ``restore`` restores each and answers. Prints
{method: {"tokens": [...], "parts": {...}}} as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.models import ModelConfig, load  # noqa: E402
from harness.registry import build_config  # noqa: E402
from methods import REGISTRY  # noqa: E402
from methods.base import Context, Question  # noqa: E402

CHUNKS = ["the cat sat on the mat and looked at the garden. " * 6, "the passkey is 48213, remember the passkey. " * 2,
          "grass is green and the sky is blue today. " * 8]
QUESTION = "What is the passkey? The passkey is"


def side(mode: str, lm, method: str, cfg: dict, folder: Path) -> dict:
    tok = lm.tokenizer
    torch.manual_seed(0)  # a fresh δ-mem adapter is initialised from the global generator
    cls = REGISTRY.get(method)
    m = cls(build_config(cls.Config, cfg, "method"), lm)
    chunk_ids = [tok.encode(c, add_special_tokens=False) for c in CHUNKS]
    ctx = Context(prefix_ids=[tok.bos_token_id], chunk_ids=chunk_ids, chunk_texts=CHUNKS)
    q = Question(ids=tok.encode(" " + QUESTION, add_special_tokens=False), text=QUESTION)
    m.reset()
    parts: dict = {}
    if mode == "ingest":
        m.ingest(ctx)
        tokens = [int(t) for t in m.answer(q, 12)]
        m.reset()
        m.ingest(ctx)  # answering grew the memory; save what ingest built
        parts = m.save_memory(folder)
    else:
        m.ingest(Context(prefix_ids=[tok.bos_token_id], chunk_ids=[chunk_ids[0]], chunk_texts=CHUNKS[:1]))
        parts = {"other_tokens": [int(t) for t in m.answer(q, 12)]}  # control: a memory without the passkey message
        m.reset()
        m.load_memory(folder)
        tokens = [int(t) for t in m.answer(q, 12)]
    return {"tokens": tokens, "parts": parts}


def main(mode: str, folder: str, family: str, cases_json: str) -> None:
    lm = load(ModelConfig(name="tiny_random", source="tiny_random", family=family, dtype="float32", device="cpu"))
    cases = json.loads(cases_json)
    print(json.dumps({name: side(mode, lm, name, cfg, Path(folder) / name) for name, cfg in cases.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
