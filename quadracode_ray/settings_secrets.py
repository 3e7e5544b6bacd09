"""Secret settings reach Ray workers through Ray's internal key-value store, never a runtime_env.

Why: a runtime_env's ``env_vars`` are public on a Ray cluster. The dashboard's Serve API returns
them for every application and deployment, and its state API returns every actor's runtime_env
(child actors inherit their parent's). Ray 2.60 does not require a token for any of it. So the
QUADRACODE_* variables that hold secrets (API keys, the model providers' keys, MCP headers, the
database URL with its password) are published once in the GCS key-value store, under a reference
derived from their values, and the runtime_env carries only ``QUADRACODE_SECRETS_REF``. A worker's
``load_settings`` reads them back (``config.load_settings``), once per reference and process.

The key-value store is reachable by code running on the cluster, as everything else on it is: this
keeps secrets out of what the dashboard shows, it is not a boundary against code on the cluster.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from pydantic import SecretStr

from quadracode_ray.config import ENV_PREFIX, Settings, SettingsError

SECRETS_REF_ENV = ENV_PREFIX + "SECRETS_REF"
KV_NAMESPACE = b"quadracode"
_KEY_PREFIX = "settings-secrets/"

# database_url is a plain string, but it usually carries the Postgres password.
SECRET_SETTINGS: frozenset[str] = frozenset(
    {name for name, field in Settings.model_fields.items() if SecretStr in getattr(field.annotation, "__args__", ())}
    | {"database_url"}
)
SECRET_ENV: frozenset[str] = frozenset(ENV_PREFIX + name.upper() for name in SECRET_SETTINGS)

_fetched: dict[str, dict[str, str]] = {}


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(public, secret) parts of a QUADRACODE_* environment."""
    public = {k: v for k, v in env.items() if k not in SECRET_ENV}
    secret = {k: v for k, v in env.items() if k in SECRET_ENV}
    return public, secret


def secrets_ref(secret: dict[str, str]) -> str:
    # Derived from the values, so a redeploy with rotated keys gets a new reference and the
    # processes of the old deployment keep reading theirs.
    return hashlib.sha256(json.dumps(secret, sort_keys=True).encode()).hexdigest()[:32]


def worker_env(env: dict[str, str], gcs_address: str | None = None) -> dict[str, str]:
    """``env`` as it may be shown in a runtime_env: the secrets published, only their reference kept.

    ``gcs_address`` (``host:port``): publish through a GCS client of that cluster, for a process
    not connected to Ray (``quadracode-ray up``); without it this process must be connected."""
    public, secret = split_env(env)
    if not secret:
        return public
    ref = secrets_ref(secret)
    _put(_KEY_PREFIX + ref, json.dumps(secret).encode(), gcs_address)
    return {**public, SECRETS_REF_ENV: ref}


def secret_settings_from_ref(environ: dict[str, str] | Any) -> dict[str, str]:
    """The secret settings (field name -> value) this worker's reference names, for the ones its
    own environment does not set (a variable set on the node wins, as it would without a reference)."""
    ref = environ.get(SECRETS_REF_ENV)
    if not ref:
        return {}
    if ref not in _fetched:
        raw = _get(_KEY_PREFIX + ref)
        if raw is None:
            raise SettingsError(f"{SECRETS_REF_ENV}={ref}: no such secrets in this Ray cluster's key-value store "
                                "(was the cluster restarted without `quadracode-ray up`?)")
        _fetched[ref] = json.loads(raw)
    return {name[len(ENV_PREFIX):].lower(): value for name, value in _fetched[ref].items() if name not in environ}


def _put(key: str, value: bytes, gcs_address: str | None) -> None:
    if gcs_address:
        from ray._private.services import canonicalize_bootstrap_address_or_die
        from ray._raylet import GcsClient  # a bare GCS connection: no driver, no job, no workers

        address = canonicalize_bootstrap_address_or_die(gcs_address)  # 'auto' as `ray.init` reads it
        # A head started by `ray start` turns token auth on when a token file exists (~/.ray/auth_token)
        # and RAY_AUTH_MODE is unset; a bare GCS client sends the token only in token mode, which
        # this process (not a Ray driver) enables by the same rule.
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        GcsClient(address=address).internal_kv_put(key.encode(), value, True, KV_NAMESPACE)
        return
    internal_kv = _connected_kv()
    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=KV_NAMESPACE)


def _get(key: str) -> bytes | None:
    return _connected_kv()._internal_kv_get(key, namespace=KV_NAMESPACE)


def _connected_kv() -> Any:
    # Never imports Ray itself: a process that has not imported it is not on a cluster.
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        raise SettingsError(f"{SECRETS_REF_ENV} needs a process connected to Ray (a Ray worker or driver)")
    from ray.experimental import internal_kv

    return internal_kv
