"""Token and request metrics of every provider call, through quadracode_ray.metrics."""

from __future__ import annotations

from quadracode_ray import metrics
from quadracode_ray.llm.base import TokenUsage

_TAGS = ("provider", "model")


def _tokens():
    return metrics.counter("llm_tokens_total", "LLM tokens used, by direction (input/output).",
                           (*_TAGS, "direction"))


def _requests():
    return metrics.counter("llm_requests_total", "LLM requests by outcome (ok or error class).",
                           (*_TAGS, "outcome"))


def _retries():
    return metrics.counter("llm_retries_total", "LLM requests retried after a retryable error.",
                           (*_TAGS, "reason"))


def _latency():
    return metrics.histogram("llm_request_seconds", "Duration of LLM requests, retries included.", _TAGS)


def record_usage(provider: str, model: str, usage: TokenUsage) -> None:
    tokens = _tokens()
    tokens.inc(usage.input_tokens, {"provider": provider, "model": model, "direction": "input"})
    tokens.inc(usage.output_tokens, {"provider": provider, "model": model, "direction": "output"})


def record_request(provider: str, model: str, outcome: str, seconds: float) -> None:
    _requests().inc(1, {"provider": provider, "model": model, "outcome": outcome})
    _latency().observe(seconds, {"provider": provider, "model": model})


def record_retry(provider: str, model: str, reason: str) -> None:
    _retries().inc(1, {"provider": provider, "model": model, "reason": reason})
