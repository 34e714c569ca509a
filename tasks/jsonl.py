"""jsonl: bring your own data, one JSON object per line (how LoCoMo or MemoryAgentBench exports run).

Schema per line (see tasks/README.md):

- ``context`` (string) **or** ``chunks`` (non-empty list of strings, e.g. one per message);
- ``question`` (string), ``answers`` (non-empty list of accepted strings);
- optional: ``evidence`` (list of strings), ``answer_prefix`` (string; without it a base model
  gets ``task.template``, see harness/prompt.py), ``id`` (string or
  integer; default ``<file stem>-<line>``), ``category`` (string: the report slice).

Other keys are kept in ``Sample.meta``. Blank lines are skipped. The whole file is validated
before any sample is returned; every error names the file, the line and the field, and up to ten
errors are reported at once. The file is read when the task is built, so a bad file fails before
the model loads.

``task.metric``: ``contains`` (whole-word substring match, the default), ``exact`` and ``f1``
(SQuAD-normalised; on the answer's first line, since base models keep generating), or RULER's
``string_match_all`` / ``string_match_part`` (every / any of ``answers`` found). With no
``task.path`` the bundled ``tasks/data/example.jsonl`` is used.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from harness.registry import ConfigError, check
from tasks import haystack
from tasks.base import Sample, Task, TaskConfig
from tasks.metrics import NAMES, by_name, first_line

KNOWN = ("context", "chunks", "question", "answers", "evidence", "answer_prefix", "id", "category")
MAX_REPORTED = 10


class JsonlError(ConfigError):
    """The dataset file is invalid; the message names the file, the line(s) and the field(s)."""


def example_path() -> Path:
    return Path(str(files("tasks").joinpath("data", "example.jsonl")))


@dataclass
class JsonlConfig(TaskConfig):
    path: str | None = None  # null: the bundled tasks/data/example.jsonl
    metric: str = "contains"  # contains | exact | f1 | string_match_all | string_match_part
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.path is None or (isinstance(self.path, str) and self.path.strip() != ""), "task.path", "a path to a .jsonl file (or null for the bundled example)", self.path)
        check(self.metric in NAMES, "task.metric", f"one of {', '.join(NAMES)}", self.metric)
        check(isinstance(self.max_new_tokens, int) and self.max_new_tokens > 0, "task.max_new_tokens", "a positive integer", self.max_new_tokens)


def _strings(value: Any, nonempty: bool = True) -> bool:
    return isinstance(value, list) and (len(value) > 0 or not nonempty) and all(isinstance(v, str) and (v.strip() or not nonempty) for v in value)


def _check(obj: Any) -> list[tuple[str, str]]:
    """(field, problem) pairs for one parsed line; empty when the line is valid."""
    if not isinstance(obj, dict):
        return [("(line)", f"expected a JSON object, got {type(obj).__name__}")]
    errs = []
    if "context" in obj and "chunks" in obj:
        errs.append(("context", "give either 'context' or 'chunks', not both"))
    elif "context" in obj:
        if not (isinstance(obj["context"], str) and obj["context"].strip()):
            errs.append(("context", f"expected a non-empty string, got {obj['context']!r:.60}"))
    elif "chunks" in obj:
        if not _strings(obj["chunks"]):
            errs.append(("chunks", f"expected a non-empty list of non-empty strings, got {obj['chunks']!r:.60}"))
    else:
        errs.append(("context", "missing field (give 'context' or 'chunks')"))
    if "question" not in obj:
        errs.append(("question", "missing field"))
    elif not (isinstance(obj["question"], str) and obj["question"].strip()):
        errs.append(("question", f"expected a non-empty string, got {obj['question']!r:.60}"))
    if "answers" not in obj:
        errs.append(("answers", "missing field"))
    elif not _strings(obj["answers"]):
        errs.append(("answers", f"expected a non-empty list of non-empty strings, got {obj['answers']!r:.60}"))
    if "evidence" in obj and not _strings(obj["evidence"], nonempty=False):
        errs.append(("evidence", f"expected a list of strings, got {obj['evidence']!r:.60}"))
    for name in ("answer_prefix", "category"):
        if name in obj and not isinstance(obj[name], str):
            errs.append((name, f"expected a string, got {obj[name]!r:.60}"))
    if "id" in obj and (isinstance(obj["id"], bool) or not isinstance(obj["id"], (str, int)) or str(obj["id"]).strip() == ""):
        errs.append(("id", f"expected a non-empty string or an integer, got {obj['id']!r:.60}"))
    return errs


def load(path: str | Path) -> list[Sample]:
    """Parse and validate the whole file; return its samples or raise a JsonlError listing the errors."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JsonlError(f"cannot read dataset file {str(path)!r} (task.path): {e}") from None
    errors: list[str] = []
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path}:{lineno}: invalid JSON: {e.msg} at column {e.colno}")
            continue
        problems = _check(obj)
        errors += [f"{path}:{lineno}: field '{f}': {p}" for f, p in problems]
        if problems:
            continue
        sid = str(obj.get("id", f"{path.stem}-{lineno}"))
        if sid in seen:
            errors.append(f"{path}:{lineno}: field 'id': duplicate id {sid!r} (first on line {seen[sid]})")
            continue
        seen[sid] = lineno
        samples.append(
            Sample(
                id=sid,
                chunks=[obj["context"]] if "context" in obj else list(obj["chunks"]),
                question=obj["question"],
                answers=list(obj["answers"]),
                answer_prefix=obj.get("answer_prefix", ""),
                evidence=list(obj.get("evidence", [])),
                category=obj.get("category", ""),
                meta={"line": lineno, **{k: v for k, v in obj.items() if k not in KNOWN}},
            )
        )
    if errors:
        more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise JsonlError(f"invalid dataset file {str(path)!r} ({len(errors)} error(s)):\n" + "\n".join(errors[:MAX_REPORTED]) + more)
    if not samples:
        raise JsonlError(f"dataset file {str(path)!r} (task.path) has no samples")
    return samples


class Jsonl(Task):
    name = "jsonl"
    Config = JsonlConfig
    metric = "score"  # whichever task.metric names (recorded in the summary's task_config)
    #: the contract tests' seed check does not apply: samples come from the file, not the seed
    needs_path = True

    def __init__(self, cfg: JsonlConfig) -> None:
        super().__init__(cfg)
        self.path = Path(cfg.path).expanduser() if cfg.path else example_path()
        self.records = load(self.path)
        self.metric_fn = by_name(cfg.metric)

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        out = copy.deepcopy(self.records)
        for s in out:
            s.meta["context_tokens"] = sum(haystack.count(tokenizer, c) for c in s.chunks)
        return out

    def score(self, sample: Sample, prediction: str) -> float:
        if self.cfg.metric in ("exact", "f1"):
            prediction = first_line(prediction)
        return float(self.metric_fn(prediction, sample.answers))
