"""The run settings of the top-level config (``configs/config.yaml``): the ``run:`` block and the
top-level keys. These dataclasses hold the defaults; tests/test_config_defaults.py checks that the
YAML repeats them exactly, so a default changed here and not there fails a test."""

from __future__ import annotations

from dataclasses import dataclass

from harness.registry import check

LAUNCHERS = ("process", "inline")


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class RunConfig:
    """``run.*``: how each sample is measured."""

    warmup: int = 1  # samples run first and excluded from results
    repetitions: int = 1  # measured repetitions per sample (minimum count)
    min_duration_s: float = 0.0  # ... and keep repeating a sample until this much time has passed
    limit: int | None = None  # run only the first N samples
    max_new_tokens: int | None = None  # override the task's answer length
    progress: bool = True
    ignore_eos: bool = False  # true: always generate max_new_tokens, past EOS and task.stop (efficiency measurements)
    persist: bool = False  # true: save the memory after ingest, reset, restore it, answer from it (memory.persist in summary.json)
    timeout_s: float | None = None  # kill a run after this many seconds; enforced by harness.launch (launcher=process)

    def __post_init__(self) -> None:
        check(isinstance(self.warmup, int) and self.warmup >= 0, "run.warmup", "an integer >= 0", self.warmup)
        check(isinstance(self.repetitions, int) and self.repetitions >= 1, "run.repetitions", "an integer >= 1", self.repetitions)
        check(isinstance(self.persist, bool), "run.persist", "true or false", self.persist)
        check(self.limit is None or (isinstance(self.limit, int) and self.limit > 0), "run.limit", "null or a positive integer", self.limit)
        check(self.timeout_s is None or (_number(self.timeout_s) and self.timeout_s > 0), "run.timeout_s", "null or a positive number of seconds", self.timeout_s)


@dataclass
class TopConfig:
    """The top-level keys (everything in config.yaml outside the groups, ``run`` and ``hydra``)."""

    seed: int = 0
    out_dir: str = "runs"
    launcher: str = "process"  # process: each run in a fresh child process; inline: in this process (debugging)
    force: bool = False  # true: re-run even when a complete result with the same config hash exists
    dry_run: bool = False  # true: check every run of a sweep and list them (done / to run), run nothing

    def __post_init__(self) -> None:
        check(self.launcher in LAUNCHERS, "launcher", " or ".join(LAUNCHERS), self.launcher)
        check(isinstance(self.force, bool), "force", "true or false", self.force)
        check(isinstance(self.dry_run, bool), "dry_run", "true or false", self.dry_run)
