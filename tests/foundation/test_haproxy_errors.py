"""HAProxy's own error answers rewritten as 503 + Retry-After (quadracode_ray/haproxy_errors.py),
checked on a real HAProxy whose only server refuses connections."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import threading
from collections.abc import Iterator

import httpx

from quadracode_ray.haproxy_errors import (
    NOSPLICE_MARK,
    RETRY_AFTER_S,
    client_close_reaches_the_server,
    config_path,
    unavailable_error_pages,
)
from quadracode_ray.haproxy_launcher import REAL_BINARY_VAR
from quadracode_ray.serve_ingress import haproxy_binary, haproxy_launcher
from tests.conftest import free_port
from tests.polling import eventually_sync

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


def test_splicing_is_turned_off_once_in_the_global_section(tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n    maxconn 4096\ndefaults\n    mode http\n    option splice-request\n")
    assert client_close_reaches_the_server(cfg) == 1
    assert cfg.read_text().startswith(f"global\n    nosplice  {NOSPLICE_MARK}")
    assert client_close_reaches_the_server(cfg) == 0  # a reload's second pass changes nothing
    assert cfg.read_text().count("nosplice") == 1
    assert client_close_reaches_the_server(tmp_path / "missing.cfg") == 0


def test_haproxy_started_by_the_launcher_answers_503_with_retry_after_when_no_server_answers(tmp_path):
    """Serve's HAProxy as the launcher starts it (serve_ingress points Serve at it), with Ray's
    500 page: the launcher rewrote the page before HAProxy read it."""
    page = tmp_path / "500.http"
    page.write_text(RAYS_PAGE)
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""{rays_defaults(page)}
    retries 1
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    server replica 127.0.0.1:{dead}
""")
    with through_the_launcher(cfg, port):
        response = httpx.get(f"http://127.0.0.1:{port}/threads", timeout=10)
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "retry after" in response.json()["detail"]


class _DiesOnARequest(threading.Thread):
    """A server that takes connections (HAProxy's health checks) and dies, closing everything
    without a word, as soon as one brings a request: a replica SIGKILLed holding it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.got = threading.Event()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.got.set()
                    self.listener.close()
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = b"backup"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *_args) -> None:
        pass


def test_a_get_the_dying_replica_held_is_replayed_and_a_post_is_answered_503(tmp_path):
    """As in Serve's config: one replica per backend (observed, marked down after 3 refused
    connections) and the head's Python proxy as backup. The replica dies holding the request: a
    GET is replayed and reaches the backup; a POST is not replayed (it may have been done) and
    gets the 503 page."""
    page = tmp_path / "500.http"
    page.write_text(RAYS_PAGE)
    backup = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=backup.serve_forever, daemon=True).start()
    replicas = {"get": _DiesOnARequest(), "post": _DiesOnARequest()}
    for replica in replicas.values():
        replica.start()
    port = free_port()
    backends = "".join(f"""backend http-{name}
    server replica 127.0.0.1:{replica.port} check inter 5s observe layer4 error-limit 3 on-error mark-down
    server fallback 127.0.0.1:{backup.server_address[1]} check backup
""" for name, replica in replicas.items())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""{rays_defaults(page)}
    option redispatch 1
    retry-on conn-failure
frontend api
    bind 127.0.0.1:{port}
    use_backend http-post if METH_POST
    default_backend http-get
{backends}""")
    try:
        with through_the_launcher(cfg, port):
            assert cfg.read_text().count("retry-on conn-failure empty-response") == 2
            got = httpx.get(f"http://127.0.0.1:{port}/threads/x/runs/y/join", timeout=30)
            assert replicas["get"].got.is_set()
            assert (got.status_code, got.text) == (200, "backup")
            posted = httpx.post(f"http://127.0.0.1:{port}/threads/x/runs/wait", json={}, timeout=30)
            assert replicas["post"].got.is_set()
            assert posted.status_code == 503 and posted.headers["retry-after"] == str(RETRY_AFTER_S)
    finally:
        backup.shutdown()


def rays_defaults(page) -> str:
    """The global and defaults sections, with Serve's error pages (all three the same 500 page)."""
    return f"""global
    maxconn 64
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    errorfile 502 {page}
    errorfile 503 {page}
    errorfile 504 {page}"""


@contextlib.contextmanager
def through_the_launcher(cfg, port: int) -> Iterator[None]:
    """HAProxy on ``cfg`` started as Serve starts it here: through quadracode-haproxy."""
    binary, launcher = haproxy_binary(), haproxy_launcher()
    assert binary and launcher, (binary, launcher)
    proc = subprocess.Popen([launcher, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, REAL_BINARY_VAR: binary})
    try:
        eventually_sync(lambda: proc.poll() is not None or _listening(port), timeout=20, what="HAProxy to listen")
        assert proc.poll() is None, proc.stdout.read().decode()
        yield
    finally:
        proc.kill()
        proc.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
