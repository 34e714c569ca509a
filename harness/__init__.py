"""memharness: measure what LLM memory methods cost (bytes, TTFT, throughput, latency) next to accuracy."""

from __future__ import annotations

__version__ = "0.1.0"
