"""Retries with exponential backoff and jitter for retryable provider errors.

The SDKs' own retry loops are switched off (``max_retries=0``) so that one policy, one set of
metrics and one error taxonomy apply to every provider.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.llm.errors import ProviderError

T = TypeVar("T")


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_retries: int = Field(default=3, ge=0)
    initial_backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=20.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)

    def backoff(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based); Retry-After wins, capped."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_backoff_s)
        base = self.initial_backoff_s * self.multiplier ** (attempt - 1)
        # Full jitter keeps many agents hitting one rate limit from retrying in lockstep.
        return min(self.max_backoff_s, random.uniform(base / 2, base))


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After (seconds) or retry-after-ms from a response, when the server sent one."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[ProviderError, int, float], None] | None = None,
) -> T:
    attempt = 0
    while True:
        try:
            return await call()
        except ProviderError as exc:
            if not exc.retryable or attempt >= policy.max_retries:
                raise
            attempt += 1
            delay = policy.backoff(attempt, exc.retry_after_s)
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            await asyncio.sleep(delay)
