"""``quadracode-haproxy``: runs HAProxy so that it dies with the Ray process that started it.

Ray Serve's HAProxy manager actor starts ``haproxy`` as a child process (its
RAY_SERVE_HAPROXY_BINARY_PATH, which serve_ingress.py points here). ``ray stop`` (and so
``ray down``) kills Ray's processes but not that child: HAProxy was left running, still bound to
the API port, answering for a cluster that was gone and in the way of the next ``ray up``.

This launcher asks the kernel to SIGKILL it when its parent thread (the actor's event-loop
thread, which lives as long as the actor) exits (``prctl(PR_SET_PDEATHSIG)``), then replaces
itself with the real binary (``execv``: same pid and argv, so Serve's checks of HAProxy's pid,
its ``-sf`` reloads and its cmdline scan work as before; the death signal survives ``execv``).
SIGKILL, not SIGTERM: HAProxy holds no state of its own to write (Serve saves the server state).
Before that it makes the 502/503/504 page the config names a 503 with Retry-After (Serve's is a
500), has HAProxy replay a GET the dying replica held, and turns HAProxy's splicing off so that a
client's close reaches the replica (haproxy_errors.py).
Standard library only: it runs at every HAProxy start and reload.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from quadracode_ray.haproxy_errors import (
    client_close_reaches_the_server,
    config_path,
    retry_safe_requests,
    unavailable_error_pages,
)

LAUNCHER = "quadracode-haproxy"
"""This launcher's console script, installed beside its environment's python."""
REAL_BINARY_VAR = "QUADRACODE_HAPROXY_BINARY"
"""The HAProxy binary to run (serve_ingress.ingress_env sets it beside the launcher's path)."""
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Be SIGKILLed when the thread that started this process exits."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died before the signal was armed: nobody would send it any more.
    if os.getppid() != parent:
        raise SystemExit("quadracode-haproxy: the process that started HAProxy is gone")


def main() -> None:
    real = os.environ.get(REAL_BINARY_VAR, "")
    if not os.path.isabs(real) or not os.access(real, os.X_OK) or os.path.basename(real) == LAUNCHER:
        raise SystemExit(f"{LAUNCHER}: {REAL_BINARY_VAR}={real!r} is not an HAProxy executable "
                         "(serve_ingress.ingress_env sets it)")
    die_with_parent()
    config = config_path(sys.argv[1:])
    if config:
        unavailable_error_pages(config)
        retry_safe_requests(config)
        client_close_reaches_the_server(config)
    os.execv(real, [real, *sys.argv[1:]])


if __name__ == "__main__":
    main()
