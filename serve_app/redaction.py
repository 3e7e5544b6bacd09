"""Secrets kept out of what the API writes: its log records and the error texts it answers.

The secrets are the settings' own: model provider keys, the API keys, the cluster Postgres
password and any password in the database URL. A library that logs a URL or an exception that
quotes one would otherwise put them in the Ray session's log files, which every node keeps.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from quadracode_ray.config import Settings

MASK = "***"


def secrets_of(settings: Settings) -> list[str]:
    found: list[str] = []
    for secret in (settings.anthropic_api_key, settings.openai_api_key, settings.cluster_postgres_password):
        if secret is not None and secret.get_secret_value():
            found.append(secret.get_secret_value())
    if settings.auth_api_keys is not None:
        for keys in json.loads(settings.auth_api_keys.get_secret_value()).values():
            found += [keys] if isinstance(keys, str) else list(keys)
    if settings.mcp_headers is not None:  # header values only: names like "Authorization" are not secret
        for headers in json.loads(settings.mcp_headers.get_secret_value()).values():
            found += list(headers.values())
    if settings.database_url:
        password = urlsplit(settings.database_url).password
        if password:
            found.append(password)
    # longest first, so a secret containing another is masked whole
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def install_log_redaction(settings: Settings) -> None:
    """Mask the settings' secrets in every record the process's log handlers write. Idempotent."""
    secrets = secrets_of(settings)
    if not secrets:
        return
    loggers = [logging.getLogger(), logging.getLogger("ray"), logging.getLogger("ray.serve")]
    for handler in {h for logger in loggers for h in logger.handlers}:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))
