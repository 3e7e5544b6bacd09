"""The API's edges: request size limits, the API-key check, secrets kept out of every answer and log.

One deployment of the real app (no actor fabric: none of this needs it) with API keys, model
provider keys and a small body limit, reached over real HTTP.
"""

from __future__ import annotations

import hmac
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from quadracode_ray.config import Settings
from serve_app import auth_keys
from serve_app.auth_keys import ApiKeys
from tests.api.conftest import undeploy
from tests.polling import eventually_sync

KEY = "edge-" + uuid.uuid4().hex
ANTHROPIC_SECRET = "sk-ant-edge-" + uuid.uuid4().hex
OPENAI_SECRET = "sk-edge-" + uuid.uuid4().hex
SECRETS = (KEY, ANTHROPIC_SECRET, OPENAI_SECRET)
BODY_LIMIT = 64 << 10


@pytest.fixture(scope="module")
def edge_api(serve_http_port: int, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    from serve_app.app import build_app

    app = f"edge-{uuid.uuid4().hex[:6]}"
    settings = {"database_url": database_url, "data_dir": str(tmp_path_factory.mktemp("edge")),
                "auth_api_keys": json.dumps({"edge": KEY}), "anthropic_api_key": ANTHROPIC_SECRET,
                "openai_api_key": OPENAI_SECRET, "model": "scripted:default", "api_max_body_bytes": BODY_LIMIT}
    serve.run(build_app({"settings": settings, "fabric": False}), name=app, route_prefix=f"/{app}", blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{app}"
    eventually_sync(lambda: _answers(f"{url}/ok"), timeout=120, what="the edge app to answer")
    yield url
    undeploy(app, database_url)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


# --- size limits -----------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_refused_with_413_and_a_reason(edge_api: str) -> None:
    big = {"metadata": {"pad": "x" * (BODY_LIMIT + 1)}}
    response = httpx.post(f"{edge_api}/threads", json=big, headers=auth(), timeout=60)
    assert response.status_code == 413
    assert "at most" in response.json()["detail"]
    small = httpx.post(f"{edge_api}/threads", json={"metadata": {"pad": "x" * 1000}}, headers=auth(), timeout=60)
    assert small.status_code == 200


def test_a_chunked_body_is_cut_off_at_the_limit(edge_api: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is known only while reading
        yield b'{"metadata": {"pad": "'
        for _ in range(BODY_LIMIT // 1024 + 2):
            yield b"x" * 1024
        yield b'"}}'

    response = httpx.post(f"{edge_api}/threads", content=chunks(), timeout=60,
                          headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "over" in response.json()["detail"]


def test_headers_over_the_limit_are_refused_with_431(edge_api: str) -> None:
    settings = Settings(_env_file=None)
    padding = {f"X-Pad-{i}": "y" * 1000 for i in range(settings.api_max_header_bytes // 1000 + 1)}
    response = httpx.get(f"{edge_api}/info", headers={**auth(), **padding}, timeout=60)
    assert response.status_code == 431
    assert "headers" in response.json()["detail"]
    assert httpx.get(f"{edge_api}/info", headers=auth(), timeout=60).status_code == 200


def test_the_limits_come_before_auth(edge_api: str) -> None:
    # An unauthenticated caller cannot make the API read a huge body before being refused.
    response = httpx.post(f"{edge_api}/threads", content=b"x" * (BODY_LIMIT + 1), timeout=60)
    assert response.status_code == 413


# --- the key check ---------------------------------------------------------------------------------
def test_a_key_is_compared_with_every_known_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ApiKeys.parse(json.dumps({"a": "a" * 20, "b": ["b" * 20, "c" * 20]}))
    compared: list[bytes] = []
    original = hmac.compare_digest

    def counting(left: bytes, right: bytes) -> bool:
        compared.append(right)
        return original(left, right)

    monkeypatch.setattr(auth_keys.hmac, "compare_digest", counting)
    for presented, owner in (("a" * 20, "a"), ("c" * 20, "b"), ("z" * 20, None)):
        compared.clear()
        assert keys.owner_of(presented) == owner
        # every digest is compared whether the first matches, a later one or none: no early exit
        assert len(compared) == 3 and len(set(compared)) == 3


# --- secrets -------------------------------------------------------------------------------------
def test_no_secret_appears_in_any_answer(edge_api: str) -> None:
    answers = [
        httpx.get(f"{edge_api}/info", headers=auth()),
        httpx.get(f"{edge_api}/health", headers=auth()),
        httpx.get(f"{edge_api}/openapi.json", headers=auth()),
        httpx.get(f"{edge_api}/metrics", params={"actors": "false"}, headers=auth()),
        httpx.get(f"{edge_api}/threads/{uuid.uuid4()}", headers=auth()),  # 404
        httpx.post(f"{edge_api}/threads", json={"bad": ANTHROPIC_SECRET[:8]}, headers=auth()),  # 422
        httpx.get(f"{edge_api}/info"),  # 401
        httpx.get(f"{edge_api}/info", headers={"Authorization": f"Bearer {KEY[:-1]}x"}),  # 403
        httpx.get(f"{edge_api}/info", headers={"X-Api-Key": KEY + "-wrong"}),  # 403, the key echoed? no
    ]
    assert [a.status_code for a in answers[4:]] == [404, 422, 401, 403, 403]
    assert answers[0].json()["quadracode"]["model"] == "scripted:default"
    for answer in answers:
        for secret in SECRETS:
            assert secret not in answer.text, f"{answer.request.url} shows a secret"
            assert secret not in json.dumps(dict(answer.headers))
    assert KEY[:-1] not in answers[7].text


def test_no_secret_is_written_to_the_logs(edge_api: str) -> None:
    import ray

    # Touch the paths that log: a refused key, a failed request, a run that fails to start.
    httpx.get(f"{edge_api}/info", headers={"Authorization": f"Bearer {KEY}-wrong"})
    httpx.post(f"{edge_api}/threads/{uuid.uuid4()}/runs/wait", json={"assistant_id": "nope"}, headers=auth())
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    found = []
    for path in logs.rglob("*"):
        if path.is_file() and path.stat().st_size < 200 << 20:
            text = path.read_bytes()
            found += [f"{path.name}: {secret[:10]}..." for secret in SECRETS if secret.encode() in text]
    assert not found, found


def test_a_raw_oversized_request_line_gets_an_http_error_not_a_crash(edge_api: str) -> None:
    # Past the HTTP server's own header buffer: refused by the server (4xx), nothing reaches the app.
    parts = urlsplit(edge_api)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET {parts.path}/info HTTP/1.1\r\nHost: x\r\nX-Big: {'z' * (64 << 10)}\r\n\r\n".encode())
        status_line = sock.recv(200).split(b"\r\n", 1)[0]
    assert status_line.split()[1][:1] == b"4", status_line


def test_log_records_and_tracebacks_are_masked(tmp_path: Path) -> None:
    import logging

    from serve_app.redaction import RedactingFilter, secrets_of

    settings = Settings(_env_file=None, anthropic_api_key=ANTHROPIC_SECRET, auth_api_keys=json.dumps({"a": KEY}),
                        database_url="postgresql://user:pw-" + KEY[-8:] + "@db/x")
    secrets = secrets_of(settings)
    assert set(secrets) == {ANTHROPIC_SECRET, KEY, "pw-" + KEY[-8:]}
    path = tmp_path / "log"
    handler = logging.FileHandler(path)
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger("edge-test")
    logger.addHandler(handler)
    try:
        logger.error("calling with %s", ANTHROPIC_SECRET)
        try:
            raise RuntimeError(f"refused key {KEY}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert "calling with ***" in text and "refused key ***" in text
    assert not any(secret in text for secret in secrets)


def test_an_integer_past_64_bits_is_written_back() -> None:
    # Found by the fuzzer: thread metadata with such a number was stored (jsonb holds it), then
    # its answer failed to serialize (a 500).
    from runs.stream import dumps

    assert json.loads(dumps({"metadata": {"big": 2**70, "list": [1, "x"]}})) == {"metadata": {"big": 2**70,
                                                                                          "list": [1, "x"]}}
