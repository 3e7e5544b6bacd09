"""HAProxy's own error answers rewritten as 503 + Retry-After (quadracode_ray/haproxy_errors.py),
checked on a real HAProxy whose only server refuses connections."""

from __future__ import annotations

import os
import subprocess
import time

import httpx

from quadracode_ray.haproxy_errors import RETRY_AFTER_S, config_path, unavailable_error_pages
from quadracode_ray.haproxy_launcher import REAL_BINARY_VAR
from quadracode_ray.serve_ingress import haproxy_binary, haproxy_launcher
from tests.conftest import free_port

RAYS_PAGE = ("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\n"
             "Internal Server Error")


def test_the_pages_a_config_names_are_rewritten_and_nothing_else(tmp_path):
    page, other = tmp_path / "500.http", tmp_path / "other.http"
    page.write_text(RAYS_PAGE)
    other.write_text(RAYS_PAGE)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"defaults\n    mode http\n    errorfile 502 {page}\n    errorfile 503 {page}\n"
                   f"    errorfile 504 {page}\n    errorfile 403 {other}\n")
    assert unavailable_error_pages(cfg) == [page]
    assert page.read_bytes().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert f"Retry-After: {RETRY_AFTER_S}\r\n".encode() in page.read_bytes()
    assert other.read_bytes() == RAYS_PAGE.encode()
    assert unavailable_error_pages(tmp_path / "missing.cfg") == []
    assert config_path(["haproxy", "-db", "-f", str(cfg), "-sf", "1"]) == str(cfg)
    assert config_path(["haproxy", "-v"]) is None


def test_haproxy_started_by_the_launcher_answers_503_with_retry_after_when_no_server_answers(tmp_path):
    """Serve's HAProxy as the launcher starts it (serve_ingress points Serve at it), with Ray's
    500 page: the launcher rewrote the page before HAProxy read it."""
    binary, launcher = haproxy_binary(), haproxy_launcher()
    assert binary and launcher, (binary, launcher)
    page = tmp_path / "500.http"
    page.write_text(RAYS_PAGE)
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 64
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    retries 1
    errorfile 502 {page}
    errorfile 503 {page}
    errorfile 504 {page}
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    server replica 127.0.0.1:{dead}
""")
    proc = subprocess.Popen([launcher, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, REAL_BINARY_VAR: binary})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/threads", timeout=10)
                break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "HAProxy did not listen in 20 s"
                time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "retry after" in response.json()["detail"]
