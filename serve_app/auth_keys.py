"""API keys and the owners they stand for, parsed once from the ``auth_api_keys`` setting.

The setting is JSON ``{"owner": "key", ...}`` (or ``{"owner": ["key1", "key2"]}`` to rotate keys).
A presented key is hashed (SHA-256) and its digest compared with every known key's digest by
``hmac.compare_digest``, all of them each time: how long a check takes says nothing about how
much of a real key the presented one shares, nor which key matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

OWNER_NAME = re.compile(r"^[A-Za-z0-9_@+-][A-Za-z0-9_@+.-]{0,127}$")
MIN_KEY_LENGTH = 16


class AuthConfigError(ValueError):
    """The auth_api_keys setting is malformed; the message says how."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """Maps presented keys to owners. Empty means auth is off."""

    def __init__(self, owners_by_digest: dict[bytes, str]):
        self._owners = owners_by_digest

    @classmethod
    def parse(cls, text: str | None) -> ApiKeys:
        if not text or not text.strip():
            return cls({})
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuthConfigError(f"auth_api_keys must be JSON {{owner: key}}: {exc.msg}") from None
        if not isinstance(raw, dict) or not raw:
            raise AuthConfigError("auth_api_keys must be a non-empty JSON object {owner: key or [keys]}")
        owners: dict[bytes, str] = {}
        for owner, keys in raw.items():
            if not OWNER_NAME.fullmatch(owner):
                raise AuthConfigError(f"owner {owner!r}: letters, digits and _@+.- only, at most 128")
            for key in [keys] if isinstance(keys, str) else keys if isinstance(keys, list) else [None]:
                if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
                    raise AuthConfigError(f"owner {owner!r}: each key must be a string of at least "
                                          f"{MIN_KEY_LENGTH} characters")
                digest = _digest(key)
                if digest in owners and owners[digest] != owner:
                    raise AuthConfigError(f"one key is given to both {owners[digest]!r} and {owner!r}")
                owners[digest] = owner
        return cls(owners)

    @property
    def enabled(self) -> bool:
        return bool(self._owners)

    def owner_of(self, key: str) -> str | None:
        presented = _digest(key)
        found = None
        for digest, owner in self._owners.items():  # no early exit: constant time in the match
            if hmac.compare_digest(presented, digest):
                found = owner
        return found


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` (the SDK's)."""
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None
