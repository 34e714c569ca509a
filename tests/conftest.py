"""Shared fixtures: tiny random models per attention family (fast), the real default model (slow)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Test-only plugins (the `fault` method) are registered here and nowhere in the product; CLI tests
# inherit the variable in their child processes.
PLUGINS = str(Path(__file__).resolve().parent / "plugins")
if PLUGINS not in os.environ.get("MEMHARNESS_PLUGINS", "").split(os.pathsep):
    os.environ["MEMHARNESS_PLUGINS"] = os.pathsep.join(p for p in (os.environ.get("MEMHARNESS_PLUGINS", ""), PLUGINS) if p)

FAMILIES = ["gemma3", "qwen3", "llama"]


@lru_cache(maxsize=None)
def tiny_lm(family: str = "gemma3"):
    from harness.models import ModelConfig, load

    return load(ModelConfig(name="tiny_random", source="tiny_random", family=family, dtype="float32", device="cpu"))


@lru_cache(maxsize=None)
def default_lm():
    from harness.models import ModelConfig, load

    return load(ModelConfig(name="gemma3_270m", source="gemma3_gguf", dtype="float32", device="cpu"))


def contract_sample(n_chars: int = 300):
    """A short passkey sample (~300 tokens with the tiny byte tokenizer) for the shared contract tests."""
    from tasks.base import Sample

    body = ("The grass is green. " * 40)[:n_chars]
    chunks = [body[: n_chars // 2], "The pass key is 12345. ", body[n_chars // 2 :]]
    return Sample(id="s", chunks=chunks, question="What is the pass key?", answers=["12345"], answer_prefix="The pass key is",
                  evidence=["The pass key is 12345."], slices={"context_length": n_chars})


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny(family):
    return tiny_lm(family)


@pytest.fixture
def gemma():
    return default_lm()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
