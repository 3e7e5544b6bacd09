"""API keys and the owners they stand for, parsed once from the ``auth_api_keys`` setting.

The setting is JSON ``{"owner": "key", ...}`` (or ``{"owner": ["key1", "key2"]}`` to rotate keys).
Keys are compared by their SHA-256 digest, so looking one up costs the same whatever it shares
with a real key.
"""

from __future__ import annotations

import hashlib
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
            if not OWNER_NAME.match(owner):
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
        return self._owners.get(_digest(key))


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` (the SDK's)."""
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None
