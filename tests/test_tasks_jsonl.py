"""jsonl: the bundled example loads; bad files fail whole, naming the file, the line and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.registry import ConfigError, build_config
from harness.tiny import byte_tokenizer
from tasks import REGISTRY as TASKS
from tasks.jsonl import Jsonl, JsonlConfig, JsonlError, example_path

GOOD = {"context": "The sky over Eastvale is violet.", "question": "What colour is the sky over Eastvale?", "answers": ["violet"]}


def write(tmp_path: Path, lines: list) -> Path:
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return p


def task(path: Path | None = None, **kw) -> Jsonl:
    return TASKS.get("jsonl")(build_config(JsonlConfig, {"path": str(path) if path else None, **kw}, "task"))


def test_bundled_example_loads_and_its_references_score_one() -> None:
    assert example_path().is_file() and example_path().parent.name == "data"
    t = task()
    samples = t.samples(byte_tokenizer(), 0)
    assert len(samples) >= 4 and len({s.id for s in samples}) == len(samples)
    assert any(len(s.chunks) > 1 for s in samples) and any(s.category for s in samples)
    for s in samples:
        assert t.score(s, s.answers[0]) == 1.0 and t.score(s, "") == 0.0
        assert s.meta["context_tokens"] == sum(len(c.encode()) for c in s.chunks)  # byte tokenizer
    assert samples[-1].meta["source"] == "hand-written"  # unknown keys are kept in meta


def test_valid_file_defaults_and_determinism(tmp_path: Path) -> None:
    p = write(tmp_path, [GOOD, "", {**GOOD, "chunks": ["a", "b"]}])
    with pytest.raises(JsonlError):  # line 3 has both context and chunks
        task(p)
    p = write(tmp_path, [GOOD, "", {"chunks": ["One.", "Two."], "question": "Q?", "answers": ["x"], "id": 7, "evidence": ["One."]}])
    t = task(p)
    a, b = t.samples(byte_tokenizer(), 0), t.samples(byte_tokenizer(), 5)
    assert a == b  # the file, not the seed, decides the samples
    assert [s.id for s in a] == ["data-1", "7"] and a[1].chunks == ["One.", "Two."] and a[0].chunks == [GOOD["context"]]
    assert a[0].answer_prefix == "" and a[0].evidence == [] and a[1].evidence == ["One."] and a[1].meta["line"] == 3
    a[0].chunks.append("mutated")
    assert t.samples(byte_tokenizer(), 0)[0].chunks == [GOOD["context"]], "samples are copies"


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        ('{"context": "x", "question": "q", "answers": ["a"]', "invalid JSON", "Expecting"),
        ({"context": "x", "answers": ["a"]}, "field 'question'", "missing field"),
        ({"question": "q", "answers": ["a"]}, "field 'context'", "missing field"),
        ({"context": "x", "question": "q"}, "field 'answers'", "missing field"),
        ({"context": "x", "question": "q", "answers": []}, "field 'answers'", "non-empty list"),
        ({"context": "x", "question": "q", "answers": "a"}, "field 'answers'", "non-empty list"),
        ({"context": "x", "question": "q", "answers": ["a", 3]}, "field 'answers'", "non-empty list"),
        ({"context": 5, "question": "q", "answers": ["a"]}, "field 'context'", "non-empty string"),
        ({"chunks": "x", "question": "q", "answers": ["a"]}, "field 'chunks'", "list"),
        ({"chunks": [], "question": "q", "answers": ["a"]}, "field 'chunks'", "list"),
        ({"context": "x", "chunks": ["x"], "question": "q", "answers": ["a"]}, "field 'context'", "not both"),
        ({"context": "x", "question": ["q"], "answers": ["a"]}, "field 'question'", "string"),
        ({"context": "x", "question": "q", "answers": ["a"], "evidence": "e"}, "field 'evidence'", "list of strings"),
        ({"context": "x", "question": "q", "answers": ["a"], "answer_prefix": 1}, "field 'answer_prefix'", "string"),
        ({"context": "x", "question": "q", "answers": ["a"], "category": None}, "field 'category'", "string"),
        ({"context": "x", "question": "q", "answers": ["a"], "id": True}, "field 'id'", "string or an integer"),
        ({"context": "x", "question": "q", "answers": ["a"], "id": "ok-1"}, "field 'id'", "duplicate id 'ok-1' (first on line 1)"),
        ('["context", "question"]', "field '(line)'", "JSON object"),
    ],
)
def test_bad_line_names_file_line_and_field_and_nothing_loads(tmp_path: Path, bad, field: str, problem: str) -> None:
    p = write(tmp_path, [{**GOOD, "id": "ok-1"}, {**GOOD, "id": "ok-2"}, bad, {**GOOD, "id": "ok-4"}])
    with pytest.raises(JsonlError) as e:
        task(p)
    msg = str(e.value)
    assert f"{p}:3: {field}" in msg and problem in msg, msg
    assert ":1:" not in msg and ":2:" not in msg and ":4:" not in msg  # only the bad line is blamed
    assert isinstance(e.value, ConfigError)


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, [GOOD, {"context": "x"}, "not json", GOOD])
    with pytest.raises(JsonlError, match=r"3 error\(s\)") as e:
        task(p)
    assert re.search(rf"{re.escape(str(p))}:2: field 'question'", str(e.value))
    assert re.search(rf"{re.escape(str(p))}:2: field 'answers'", str(e.value))
    assert re.search(rf"{re.escape(str(p))}:3: invalid JSON", str(e.value))


def test_missing_empty_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(JsonlError, match=r"cannot read dataset file .*nope\.jsonl.*task\.path"):
        task(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(JsonlError, match=r"empty\.jsonl.*has no samples"):
        task(empty)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(JsonlError, match=r"bin\.jsonl"):
        task(binary)


@pytest.mark.parametrize(
    "metric, prediction, answers, expected",
    [
        ("contains", "It is violet, I think", ["violet"], 1.0),
        ("exact", " Violet.\nQuestion: next", ["violet"], 1.0),
        ("exact", "violet sky", ["violet"], 0.0),
        ("f1", "the violet sky\nmore text", ["violet"], pytest.approx(2 / 3)),
        ("string_match_all", "ABCDE and FGHIJ", ["abcde", "fghij", "klmno", "pqrst"], 0.5),
        ("string_match_part", "ABCDE", ["abcde", "fghij"], 1.0),
    ],
)
def test_metric_is_selectable(tmp_path: Path, metric: str, prediction: str, answers: list[str], expected) -> None:
    p = write(tmp_path, [{**GOOD, "answers": answers}])
    t = task(p, metric=metric)
    s = t.samples(byte_tokenizer(), 0)[0]
    assert t.score(s, prediction) == expected


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"task\.metric.*contains"):
        build_config(JsonlConfig, {"metric": "rouge"}, "task")
    with pytest.raises(ConfigError, match=r"task\.path"):
        build_config(JsonlConfig, {"path": " "}, "task")


def test_questions_over_one_context_share_its_context_id(tmp_path: Path) -> None:
    other = {**GOOD, "context": "The sea near Kirrin Bay is green.", "question": "What colour is the sea?", "answers": ["green"]}
    split = {"chunks": ["The sky over Eastvale", " is violet."], "question": "Which colour?", "answers": ["violet"]}
    a, b, c, d = task(write(tmp_path, [GOOD, {**GOOD, "question": "Where is the sky violet?", "answers": ["Eastvale"]}, other, split])).samples(byte_tokenizer(), 0)
    assert a.context_id == b.context_id != c.context_id  # intervals treat a and b as one context
    assert d.context_id not in (a.context_id, c.context_id)  # chunk boundaries are part of the context
