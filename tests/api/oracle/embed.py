"""The official server's store embeddings in the comparison test: the same deterministic vectors
our server gets from the scripted model's /v1/embeddings, so both rank and score alike."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from quadracode_ray.llm.scripted.embeddings import embed_texts  # noqa: E402
from tests.api.conftest import STORE_INDEX_DIMS  # noqa: E402


async def embed(texts: list[str]) -> list[list[float]]:
    return embed_texts(texts, STORE_INDEX_DIMS)
