"""HAProxy's own error answers made a 503 with Retry-After, as the Python-proxy mode answers.

Ray Serve's HAProxy config sends every 502, 503 and 504 HAProxy makes itself (the replica closed
the connection without answering, no server is left, a server timed out) as one error page that
Serve writes at its HAProxy manager's start: ``500 Internal Server Error`` (``errorfile 50x
<folder>/500.http``, ray/serve/_private/haproxy.py). Nothing reached the application or it ended
without answering: the client is told to retry, as serve_app/proxy_errors.py tells it in the
proxy mode. ``unavailable_error_pages`` rewrites the pages a config names; the HAProxy launcher
(haproxy_launcher.py, Serve's RAY_SERVE_HAPROXY_BINARY_PATH) runs it before each HAProxy start,
after Serve wrote them. Without the launcher installed, HAProxy says Ray's 500.

What no error page changes: a request on a client connection that already carried one (HTTP/1.1
keep-alive, as the SDK's clients do) whose server died before answering is closed without a
status by HAProxy (its "abort keep-alive": the client may retry a request it knows to be safe).
That is hard-coded (http_ana.c, for any transaction not first on its client connection; no
setting turns it off short of closing every client connection after each answer), and it only
meets a request HAProxy had written to the replica, which may have done it: answering that
POST with a 503 and Retry-After would invite a second run. A request that never reached a
replica (its connection refused: the replica is dead) is retried at connect time on another
server or the backup proxy, whatever its method, and answered
(tests/reliability/test_keepalive_replica_death.py holds both).

The launcher makes two more changes to the config: ``retry_safe_requests`` (above) and
``client_close_reaches_the_server`` (HAProxy's splicing off: a client that leaves is then
always seen by the replica).
Standard library only: it runs at every HAProxy start and reload.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RETRY_AFTER_S = 10
"""About how long Serve takes to start a replacement replica on a quiet machine (serve_app/proxy_errors.py's too)."""
DETAIL = ("No API replica answered this request (it died, is being replaced, or none is up yet); "
          "retry after Retry-After seconds. A run may have been created: list the thread's runs first.")
_ERRORFILE = re.compile(r"^\s*errorfile\s+(50[234])\s+(\S+)\s*$", re.MULTILINE)


def unavailable_page() -> bytes:
    body = json.dumps({"detail": DETAIL}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\n"
            "Cache-Control: no-cache\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n")
    return head.encode() + body


def unavailable_error_pages(config_path: str | Path) -> list[Path]:
    """Rewrite the 502/503/504 error pages ``config_path`` names as 503 + Retry-After; the pages
    rewritten. A missing or unreadable config changes nothing (HAProxy reports it itself)."""
    try:
        text = Path(config_path).read_text()
    except OSError:
        return []
    pages = sorted({Path(path) for _, path in _ERRORFILE.findall(text)})
    page = unavailable_page()
    for path in pages:
        if path.exists() and path.read_bytes() != page:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(page)
            tmp.replace(path)  # atomic: an HAProxy (re)loading beside this one never reads half a page
    return pages


SAFE_RETRY_MARK = "# quadracode: safe methods replayed"
SAFE_RETRY_RULES = (
    f"    {SAFE_RETRY_MARK} when the replica closed without answering (it died): HAProxy's\n"
    "    # L7 retry, redispatched to another server or, once the dead one is marked down, the backup\n"
    "    # proxy; never a POST, PUT, PATCH or DELETE, which may have been done.\n"
    "    retry-on conn-failure empty-response\n"
    "    # enough tries for the dead server's refusals to mark it down (error-limit 3) and one more\n"
    "    retries 6\n"
    "    http-request disable-l7-retry unless METH_GET\n"
)
_HTTP_BACKEND = re.compile(r"^backend http-\S+[ \t]*\n", re.MULTILINE)


def retry_safe_requests(config_path: str | Path) -> int:
    """Give each HTTP backend of Serve's config (``backend http-<app>...``) a replay of GET and
    HEAD requests whose server closed without answering; the backends changed. Without this,
    such a request on a keep-alive connection is closed with no status."""
    return _rewrite(config_path, SAFE_RETRY_MARK, lambda text: _HTTP_BACKEND.subn(
        lambda m: m.group(0) + SAFE_RETRY_RULES, text))


NOSPLICE_MARK = "# quadracode: a client's close reaches the replica"
NOSPLICE_RULE = f"    nosplice  {NOSPLICE_MARK} (HAProxy missed it now and then when splicing)\n"
_GLOBAL = re.compile(r"^global[ \t]*\n", re.MULTILINE)


def client_close_reaches_the_server(config_path: str | Path) -> int:
    """Turn HAProxy's kernel splicing off (``nosplice``; Serve's config asks for it with
    ``option splice-request/-response``). With it, HAProxy now and then did not act on a client's
    close while the server's answer was pending: the replica never heard that its client had gone,
    so a ``runs/wait`` with ``on_disconnect=cancel`` ran its run to the end (7 of 30 in a row;
    0 of 30 without splicing). Splicing saves copies of large bodies; the API's are small JSON
    and SSE chunks. Returns 1 when the config changed."""
    return _rewrite(config_path, NOSPLICE_MARK, lambda text: _GLOBAL.subn(lambda m: m.group(0) + NOSPLICE_RULE,
                                                                            text, count=1))


def _rewrite(config_path: str | Path, mark: str, change) -> int:
    """Rewrite the config in place with ``change(text) -> (text, count)`` unless ``mark`` is in it
    already, under the lock Serve writes it with (``<config>.lock``); Serve never reads it back."""
    import fcntl

    path = Path(config_path)
    try:
        with open(f"{path}.lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            text = path.read_text()
            if mark in text:
                return 0
            changed, n = change(text)
            if n:
                tmp = path.with_name(path.name + ".qr.tmp")
                tmp.write_text(changed)
                tmp.replace(path)
            return n
    except OSError:
        return 0


def config_path(argv: list[str]) -> str | None:
    """The ``-f`` config of an HAProxy command line."""
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-f":
            return value
    return None
