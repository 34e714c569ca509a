"""Prompts that fit the model (the QA template, chat models) and stop strings that end the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from conftest import tiny_lm
from omegaconf import OmegaConf

from harness.measure import NVML
from harness.prompt import cut, encode, find_stop
from harness.registry import ConfigError
from harness.run import build, execute, measure_sample
from methods.base import Context, Method, MethodConfig, Question
from tasks.base import QA_TEMPLATE, Sample
from tasks.jsonl import JsonlConfig, load

DATA = Path(str(files("tasks").joinpath("data")))
BARE = Sample(id="s", chunks=["Odile kept the log."], question="Who kept the log?", answers=["Odile"])
PREFIXED = Sample(id="p", chunks=["Odile kept the log."], question="Who kept the log?", answers=["Odile"], answer_prefix="The log was kept by")


class ChatTok:
    """A byte tokenizer with a toy chat template (enough for harness.prompt)."""

    bos_token, bos_token_id = None, None

    def __call__(self, text: str, add_special_tokens: bool = False) -> Any:
        return type("Enc", (), {"input_ids": list(text.encode())})()

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool, tokenize: bool) -> str:
        return "<user>" + messages[0]["content"] + "</user><assistant>"


def test_template_frames_only_samples_without_answer_prefix_on_base_models() -> None:
    tok = tiny_lm("gemma3").tokenizer
    ctx, q = encode(BARE, tok, chat=False, template=QA_TEMPLATE)
    assert q.text == "\n\nQuestion: Who kept the log?\nAnswer:"
    assert q.ids == list(tok(q.text, add_special_tokens=False).input_ids)
    assert encode(BARE, tok, chat=False, template=None)[1].text == "\n\nWho kept the log?"  # null: bare
    # an answer_prefix is the sample's own framing: the template never applies
    assert encode(PREFIXED, tok, chat=False, template=QA_TEMPLATE)[1].text == "\n\nWho kept the log? The log was kept by"
    # chat models: the chat template asks for the answer; no "Question:" / "Answer:" inside the turn
    ctx, q = encode(BARE, ChatTok(), chat=True, template=QA_TEMPLATE)
    assert bytes(ctx.prefix_ids).decode() == "<user>"
    assert q.text == "\n\nWho kept the log?</user><assistant>"
    assert encode(PREFIXED, ChatTok(), chat=True, template=QA_TEMPLATE)[1].text.endswith("<assistant>The log was kept by")


def test_template_override_and_escapes() -> None:
    cfg = JsonlConfig(template="Q: {question}\\nA:", stop=["\\n", "Q:"])  # as Hydra's command line passes them
    assert cfg.template == "Q: {question}\nA:" and cfg.stop == ["\n", "Q:"]
    assert encode(BARE, tiny_lm("gemma3").tokenizer, chat=False, template=cfg.template)[1].text == "\n\nQ: Who kept the log?\nA:"
    assert JsonlConfig(stop="###").stop == ["###"]  # one string is a list of one
    assert JsonlConfig(template="{{literal}} {question}").template == "{{literal}} {question}"


@pytest.mark.parametrize(
    "values, field, words",
    [
        ({"template": "Answer the question:"}, "task.template", "{question} placeholder"),
        ({"template": "Q: {questoin}"}, "task.template", "did you mean {question}"),
        ({"template": "{question} {question}"}, "task.template", "one {question}"),
        ({"template": "Q: {question"}, "task.template", "expected"),
        ({"template": 5}, "task.template", "placeholder"),
        ({"template": "  "}, "task.template", "placeholder"),
        ({"stop": [""]}, "task.stop", "non-empty strings"),
        ({"stop": [3]}, "task.stop", "non-empty strings"),
    ],
)
def test_bad_template_or_stop_names_the_field(values: dict, field: str, words: str) -> None:
    cfg = OmegaConf.create({"model": {"name": "tiny_random", "source": "tiny_random"}, "method": {"name": "full_kv"}, "task": {"name": "jsonl", **values}})
    with pytest.raises(ConfigError, match=f"'{field}'") as e:
        build(cfg)
    assert words in str(e.value)


def test_every_task_config_states_template_and_stop_so_they_are_hashed() -> None:
    """The template and the stop strings change what a run measures, so they belong in the resolved
    config (config.yaml, the run page, the run hash): every task's YAML states them."""
    from harness.resume import config_hash
    from tasks import REGISTRY

    for name in REGISTRY.names():
        raw = yaml.safe_load(files("configs").joinpath("task", f"{name}.yaml").read_text(encoding="utf-8"))
        assert raw["template"] == QA_TEMPLATE, name
        assert isinstance(raw["stop"], list), name
        short = name not in ("ruler_niah", "variable_tracking")  # RULER scores the whole output
        assert raw["stop"] == (["\n"] if short else []), name
    base = OmegaConf.create({"task": {"name": "jsonl", "template": QA_TEMPLATE, "stop": ["\n"]}})
    other = OmegaConf.create({"task": {"name": "jsonl", "template": "Q: {question}\nA:", "stop": ["\n"]}})
    nostop = OmegaConf.create({"task": {"name": "jsonl", "template": QA_TEMPLATE, "stop": []}})
    assert len({config_hash(base), config_hash(other), config_hash(nostop)}) == 3


def test_find_stop_skips_leading_whitespace_and_takes_the_earliest() -> None:
    assert find_stop("Paris\nQuestion: x", ["\n"]) == 5
    assert find_stop("\n\n Paris\nmore", ["\n"]) == 8  # a newline before the answer does not end it
    assert find_stop("Paris. Question: x\n", ["\n", "Question:"]) == 7
    assert find_stop("Paris", ["\n"]) is None and find_stop("Paris\n", []) is None
    assert cut("Paris\nQuestion: x", ["\n"]) == "Paris" and cut("Paris", ["\n"]) == "Paris"


@dataclass
class ScriptedConfig(MethodConfig):
    text: str = "Odile\nQuestion: who else?"


class Scripted(Method):
    """Yields the bytes of ``cfg.text`` as tokens; counts how many were pulled and whether it was closed."""

    name = "full_kv"
    Config = ScriptedConfig
    pulled = 0
    closed = False

    def reset(self) -> None: ...

    def ingest(self, context: Context) -> None: ...

    def answer(self, question: Question, max_new_tokens: int) -> Iterator[int]:
        ids = list(self.lm.tokenizer(self.cfg.text, add_special_tokens=False).input_ids)
        try:
            for i in ids[:max_new_tokens]:
                Scripted.pulled += 1
                yield i
        finally:
            Scripted.closed = True

    def state_bytes(self) -> int:
        return 0

    def attended_tokens(self) -> int:
        return 0


def _measure(text: str, stop: list[str], max_new: int = 64) -> dict:
    lm = tiny_lm("gemma3")
    Scripted.pulled, Scripted.closed = 0, False
    method = Scripted(ScriptedConfig(text=text), lm)
    ctx, q = encode(BARE, lm.tokenizer, chat=False, template=QA_TEMPLATE)
    m, ids = measure_sample(method, lm, ctx, q, max_new, NVML(lm.device), stop)
    assert len(ids) == m["n_tokens"]
    return m


def test_generation_stops_at_the_stop_string_and_counts_only_generated_tokens() -> None:
    m = _measure("Odile\nQuestion: who else?", ["\n"])
    assert m["n_tokens"] == len("Odile\n") == Scripted.pulled  # the newline's token ends it; nothing after is pulled
    assert Scripted.closed and m["finish"] == "stop"
    assert len(m["itl_s"]) == m["n_tokens"] - 1
    assert m["e2e_s"] == pytest.approx(m["ttft_query_s"] + sum(m["itl_s"]))  # timing ends at the last generated token
    m = _measure("\nOdile\nQuestion", ["\n"])  # a newline before the answer does not end it
    assert m["n_tokens"] == len("\nOdile\n") and m["finish"] == "stop"
    m = _measure("Odile\nQuestion: who else?", [])  # no stop strings: the method runs to its end
    assert m["n_tokens"] == len("Odile\nQuestion: who else?") and m["finish"] == "method"
    m = _measure("Odile\nQuestion: who else?", [], max_new=8)
    assert m["n_tokens"] == 8 and m["finish"] == "max_new_tokens"


def test_run_cuts_the_prediction_and_records_the_prompt(tmp_path: Path, monkeypatch) -> None:
    from methods import REGISTRY

    monkeypatch.setattr(REGISTRY, "get", lambda name: Scripted)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"context": "Odile kept the log.", "question": "Who kept the log?", "answers": ["Odile"]}) + "\n")
    cfg = OmegaConf.create({
        "model": {"name": "tiny_random", "source": "tiny_random", "family": "gemma3", "dtype": "float32", "device": "cpu"},
        "method": {"name": "full_kv", "text": "Odile\nQuestion: Who else kept it? Answer: Brisk"},
        "task": {"name": "jsonl", "path": str(data), "metric": "exact", "template": QA_TEMPLATE, "stop": ["\n"]},
        "run": {"progress": False, "warmup": 0},
    })
    s = execute(cfg, tmp_path / "run")
    assert s["status"] == "ok", s["error"]
    row = json.loads((tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])
    assert row["prediction"] == "Odile" and row["score"] == 1.0
    assert row["n_tokens"] == len("Odile\n") and row["finish"] == "stop"
    assert s["prompt"] == {"chat": False, "template": QA_TEMPLATE, "stop": ["\n"], "kinds": {"template": 1}}
    assert s["task_config"]["template"] == QA_TEMPLATE and s["task_config"]["stop"] == ["\n"]
    assert "Question: {question}" in (tmp_path / "run" / "config.yaml").read_text()
    # fixed-length efficiency runs generate past the stop string; the prediction is still cut there
    cfg.run.ignore_eos = True
    s = execute(cfg, tmp_path / "fixed")
    row = json.loads((tmp_path / "fixed" / "samples.jsonl").read_text().splitlines()[0])
    assert row["n_tokens"] == 32 and row["finish"] == "max_new_tokens" and row["prediction"] == "Odile"
    assert s["prompt"]["stop"] == []


def test_bundled_qa_files_differ_only_in_written_out_prefixes() -> None:
    bare = load(DATA / "qa.jsonl")
    variants = {"\nAnswer:": load(DATA / "qa_prefixed.jsonl"), "Answer:": load(DATA / "qa_prefixed_inline.jsonl")}
    assert len(bare) >= 20
    for prefix, prefixed in variants.items():
        assert len(prefixed) == len(bare)
        for b, p in zip(bare, prefixed):
            assert b.answer_prefix == "" and p.answer_prefix == prefix
            assert p.question == "Question: " + b.question
            assert (b.id, b.chunks, b.answers, b.evidence) == (p.id, p.chunks, p.answers, p.evidence)
            assert any(a.lower() in b.context.lower() for a in b.answers), b.id  # answerable from the context
    # the default template writes exactly what qa_prefixed.jsonl spells out, token for token
    tok = tiny_lm("gemma3").tokenizer
    b, p = bare[0], variants["\nAnswer:"][0]
    assert encode(b, tok, chat=False, template=QA_TEMPLATE)[1].ids == encode(p, tok, chat=False, template=QA_TEMPLATE)[1].ids
    assert encode(variants["Answer:"][0], tok, chat=False)[1].text == "\n\nQuestion: " + b.question + " Answer:"
