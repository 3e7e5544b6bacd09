"""One lazily started scripted server per process, for ``scripted:*`` specs with zero setup."""

from __future__ import annotations

import threading

from quadracode_ray.llm.scripted.server import ScriptedServer

_lock = threading.Lock()
_servers: dict[float, ScriptedServer] = {}


def ensure_scripted_server(delay_s: float = 0.0) -> str:
    """The URL of this process's in-process scripted server (one per delay), started on first use."""
    with _lock:
        server = _servers.get(delay_s)
        if server is None:
            server = _servers[delay_s] = ScriptedServer(delay_s=delay_s).start()
        return server.url
