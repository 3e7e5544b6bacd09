"""Typed errors of the LLM layer. Callers catch ``LLMError``; retry logic reads ``retryable``."""

from __future__ import annotations


class LLMError(RuntimeError):
    """Base of every error raised by the providers."""


class ModelSpecError(LLMError, ValueError):
    """A model spec is not ``provider:model`` with a known provider."""


class MissingCredentialsError(LLMError):
    """The provider needs an API key that is not configured."""


class UnsupportedInputError(LLMError, ValueError):
    """A message, content block or tool spec the adapter cannot send (images, unknown roles...)."""


class ProviderError(LLMError):
    """The provider answered with an error or could not be reached."""

    retryable = False

    def __init__(self, message: str, *, provider: str, status_code: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class RateLimitedError(ProviderError):
    """HTTP 429: retried with backoff, honouring Retry-After."""

    retryable = True


class ProviderUnavailableError(ProviderError):
    """HTTP 5xx or a connection failure: retried with backoff."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """The request took longer than the configured timeout: retried with backoff."""

    retryable = True


class ProviderRejectedError(ProviderError):
    """HTTP 4xx other than 429 (bad request, auth, not found): never retried."""


class StreamInterruptedError(ProviderError):
    """The stream broke after output started; not retried, since a retry would repeat output."""
