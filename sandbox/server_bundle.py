"""The server's sources as shipped into a workspace: a root-owned tar and its digest."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import time
from pathlib import Path

SERVER_SOURCE = Path(__file__).parent / "container_server"
SERVER_FILES = ("attach.py", "files.py", "procs.py", "server.py", "tars.py", "wire.py")


@functools.cache
def server_digest() -> str:
    """sha256 of the server's sources, as the container server itself reports it in ``ping``."""
    digest = hashlib.sha256()
    for name in SERVER_FILES:
        digest.update((SERVER_SOURCE / name).read_bytes())
    return digest.hexdigest()


def server_archive() -> bytes:
    """The server's sources as a tar owned by root, so the sandbox user cannot alter them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo("container_server")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        tar.addfile(folder)
        for name in SERVER_FILES:
            data = (SERVER_SOURCE / name).read_bytes()
            member = tarfile.TarInfo(f"container_server/{name}")
            member.size, member.mode, member.mtime = len(data), 0o644, int(time.time())
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()
