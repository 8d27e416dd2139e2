"""A deterministic embedding model for the local workspace: LOCAL-ONLY, no model weights, NOT semantic.

It stands in for a Foundation Model embedding endpoint (`databricks-gte-large-en` on Databricks) so Vector Search
indexes can be built and queried offline, through the same serving-endpoint path. A text becomes a hashed bag of
words: lower-cased `[a-z0-9]+` tokens (a short stop-word list dropped), each hashed with BLAKE2b into one of
`DIMENSION` buckets with a sign from the same hash, counts summed, the vector L2-normalised. Two texts are close
only when they share words; synonyms, word order and meaning count for nothing.

Request and answer are the OpenAI-compatible embeddings format Databricks' embedding endpoints speak:
`{"input": ["text", ...]}` (or one string) -> `{"object": "list", "data": [{"object": "embedding", "index": i,
"embedding": [...]}], "model": ..., "usage": {...}}`. `ensure_local_embedding_endpoint` in
`apev_workspace.serving.embeddings` serves it. Never deployed to a real workspace.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Any

DIMENSION = 256
MODEL = f"apev-local-hashed-bow-{DIMENSION}"
_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "should",
        "so",
        "that",
        "the",
        "their",
        "them",
        "there",
        "these",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


@functools.lru_cache(maxsize=65536)
def _bucket(token: str) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
    return h % DIMENSION, 1.0 if (h >> 40) & 1 else -1.0


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMENSION
    for token in tokens(text):
        index, sign = _bucket(token)
        vector[index] += sign
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return vector
    return [round(v / norm, 6) for v in vector]


def predict(inputs: dict[str, Any]) -> dict[str, Any]:
    given = inputs.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("input must be a string or a list of strings")
    data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)]
    words = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": MODEL, "usage": {"prompt_tokens": words, "total_tokens": words}}
