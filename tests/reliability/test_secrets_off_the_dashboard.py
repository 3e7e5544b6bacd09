"""Secret settings reach the API's replicas without appearing in what the Ray dashboard shows.

The dashboard's Serve API returns each application's and deployment's runtime_env (and its state
API every actor's, which child actors inherit). A real deployment here gets its API keys, a model
provider's key and the database URL from the environment, as `quadracode-ray up` and
`serve deploy` give them; the replica must enforce the keys, and the Serve controller's account
of the application (what the dashboard serves) must name none of them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from quadracode_ray.config import SettingsError, load_settings
from quadracode_ray.settings_secrets import (
    SECRET_ENV,
    SECRETS_REF_ENV,
    secret_settings_from_ref,
    secrets_ref,
    split_env,
    worker_env,
)
from tests.api.conftest import undeploy
from tests.polling import eventually_sync

KEY = "dash-" + uuid.uuid4().hex
ANTHROPIC_SECRET = "sk-ant-dash-" + uuid.uuid4().hex
MCP_SECRET = "mcp-dash-" + uuid.uuid4().hex


def test_the_secret_settings_are_the_keys_the_password_and_the_mcp_headers() -> None:
    assert SECRET_ENV >= {"QUADRACODE_AUTH_API_KEYS", "QUADRACODE_ANTHROPIC_API_KEY", "QUADRACODE_OPENAI_API_KEY",
                          "QUADRACODE_MCP_HEADERS", "QUADRACODE_DATABASE_URL", "QUADRACODE_CLUSTER_POSTGRES_PASSWORD"}
    public, secret = split_env({"QUADRACODE_HTTP_PORT": "8000", "QUADRACODE_OPENAI_API_KEY": "sk-x"})
    assert public == {"QUADRACODE_HTTP_PORT": "8000"} and secret == {"QUADRACODE_OPENAI_API_KEY": "sk-x"}
    # a rotated key is a new reference: the old deployment's processes keep reading the old one
    assert secrets_ref({"QUADRACODE_OPENAI_API_KEY": "a"}) != secrets_ref({"QUADRACODE_OPENAI_API_KEY": "b"})
    assert worker_env({"QUADRACODE_HTTP_PORT": "8000"}) == {"QUADRACODE_HTTP_PORT": "8000"}  # nothing to publish


def test_a_reference_outside_ray_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    # A fresh interpreter that never imported Ray: the reference cannot be read, and says why.
    code = ("from quadracode_ray.config import load_settings, SettingsError\n"
            "try:\n    load_settings(_env_file=None)\nexcept SettingsError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, SECRETS_REF_ENV: "0" * 32})
    assert "ERR" in out.stdout and "connected to Ray" in out.stdout, out.stdout + out.stderr


@pytest.fixture(scope="module")
def env_configured_api(serve_http_port: int, database_url: str,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from ray import serve

    from serve_app.app import build_app

    secret_env = {"QUADRACODE_AUTH_API_KEYS": json.dumps({"dash": KEY}),
                  "QUADRACODE_ANTHROPIC_API_KEY": ANTHROPIC_SECRET,
                  "QUADRACODE_MCP_HEADERS": json.dumps({"tools": {"Authorization": f"Bearer {MCP_SECRET}"}}),
                  "QUADRACODE_DATABASE_URL": database_url}
    saved = {name: os.environ.get(name) for name in secret_env}
    os.environ.update(secret_env)  # as the head's environment gives them to the application builder
    try:
        app = build_app({"settings": {"data_dir": str(tmp_path_factory.mktemp("dash")), "model": "scripted:default"},
                         "fabric": False})
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    name = f"dash-{uuid.uuid4().hex[:6]}"
    serve.run(app, name=name, route_prefix=f"/{name}", blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{name}"
    eventually_sync(lambda: _status(f"{url}/ok") == 200, timeout=120, what="the application to answer")
    yield name, url
    undeploy(name, database_url)


def _status(url: str, **kwargs: object) -> int | None:
    try:
        return httpx.get(url, timeout=10, **kwargs).status_code
    except httpx.HTTPError:
        return None


def test_the_replica_enforces_the_keys_it_read_by_reference(env_configured_api: tuple[str, str]) -> None:
    _, url = env_configured_api
    assert _status(f"{url}/info") == 401
    assert _status(f"{url}/info", headers={"Authorization": f"Bearer {KEY}"}) == 200


def test_the_dashboards_account_of_the_application_names_no_secret(env_configured_api: tuple[str, str],
                                                                   database_url: str) -> None:
    import ray
    from ray import serve

    name, _ = env_configured_api
    # What the dashboard's /api/serve/applications/ returns is the controller's instance details.
    controller = serve.context._get_global_client()._controller
    details = json.dumps(ray.get(controller.get_serve_instance_details.remote()), default=str)
    assert name in details and SECRETS_REF_ENV in details  # the replica's runtime_env is in there
    for secret in (KEY, ANTHROPIC_SECRET, MCP_SECRET, database_url):
        assert secret not in details
    # and every actor's runtime_env, as the state API shows them
    actors = json.dumps(ray._private.state.state.actor_table(None), default=str)
    for secret in (KEY, ANTHROPIC_SECRET, MCP_SECRET, database_url):
        assert secret not in actors


def test_a_ray_worker_reads_the_secrets_its_reference_names() -> None:
    import ray

    shown = worker_env({"QUADRACODE_OPENAI_API_KEY": "sk-" + uuid.uuid4().hex, "QUADRACODE_HTTP_PORT": "8123"})
    assert "QUADRACODE_OPENAI_API_KEY" not in shown and shown["QUADRACODE_HTTP_PORT"] == "8123"

    @ray.remote(num_cpus=0, runtime_env={"env_vars": shown})
    def read() -> tuple[str | None, int]:
        settings = load_settings(_env_file=None)
        key = settings.openai_api_key
        return (key.get_secret_value() if key else None), settings.http_port

    key, port = ray.get(read.remote(), timeout=120)
    assert key is not None and key.startswith("sk-") and port == 8123
    # a variable set in the worker's own environment wins over the reference, as without one
    assert secret_settings_from_ref({SECRETS_REF_ENV: shown[SECRETS_REF_ENV],
                                     "QUADRACODE_OPENAI_API_KEY": "own"}) == {}
    with pytest.raises(SettingsError, match="no such secrets"):
        secret_settings_from_ref({SECRETS_REF_ENV: "f" * 32})
