"""Shared fixtures: tiny random models per attention family (fast), the real default model (slow)."""

from __future__ import annotations

import os
from functools import lru_cache

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FAMILIES = ["gemma3", "qwen3", "llama"]


@lru_cache(maxsize=None)
def tiny_lm(family: str = "gemma3"):
    from harness.models import ModelConfig, load

    return load(ModelConfig(name="tiny_random", source="tiny_random", family=family, dtype="float32", device="cpu"))


@lru_cache(maxsize=None)
def default_lm():
    from harness.models import ModelConfig, load

    return load(ModelConfig(name="gemma3_270m", source="gemma3_gguf", dtype="float32", device="cpu"))


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
