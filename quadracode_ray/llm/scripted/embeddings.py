"""Deterministic offline embeddings (the scripted model's ``/v1/embeddings``).

A text's vector is its bag of lowercase words hashed into ``dims`` signed buckets, L2-normalised:
texts sharing words point the same way, so semantic search over them ranks by word overlap,
identically on every machine and in every process (tests compare scores across servers).
"""

from __future__ import annotations

import hashlib
import math
import re

DEFAULT_DIMS = 256
MAX_DIMS = 16_000
_WORD = re.compile(r"\w+")


def embed_text(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    if not 1 <= dims <= MAX_DIMS:
        raise ValueError(f"dims must be between 1 and {MAX_DIMS}, not {dims}")
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dims] += 1.0 if (digest >> 63) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = 1.0  # no words: one fixed direction, so cosine similarity stays defined
        return vector
    return [v / norm for v in vector]


def embed_texts(texts: list[str], dims: int = DEFAULT_DIMS) -> list[list[float]]:
    return [embed_text(text, dims) for text in texts]


def openai_embeddings_response(body: dict, model: str) -> dict:
    """The OpenAI ``/embeddings`` answer to ``body`` (``input``: a string or a list of strings;
    ``dimensions``: optional). Raises ValueError for a malformed body."""
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("'input' must be a string or a non-empty list of strings")
    dims = body.get("dimensions", DEFAULT_DIMS)
    if not isinstance(dims, int) or isinstance(dims, bool):
        raise ValueError("'dimensions' must be an integer")
    vectors = embed_texts(texts, dims)
    tokens = sum(len(_WORD.findall(t)) for t in texts)
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
