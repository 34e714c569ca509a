"""no_memory: closed book. The context is dropped; the model answers from the question alone.
It measures what the model guesses without any memory — the floor every method must clear."""

from __future__ import annotations

from dataclasses import dataclass

from methods._lm import KVCacheMethod
from methods.base import Context, Method, MethodConfig


@dataclass
class NoMemoryConfig(MethodConfig):
    pass


class NoMemory(KVCacheMethod, Method):
    name = "no_memory"
    Config = NoMemoryConfig

    def ingest(self, context: Context) -> None:
        # Only the prompt header (BOS / chat preamble) survives, so the question is well-formed.
        self.cache = self.make_cache()
        from methods._lm import forward_chunks

        forward_chunks(self.lm.model, self.cache, list(context.prefix_ids), self.cfg.chunk_size, self._track)
