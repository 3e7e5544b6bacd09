"""The executor's sources as shipped into a workspace: a root-owned tar and its digest."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import time
from pathlib import Path

EXECUTOR_SOURCE = Path(__file__).parent / "executor"
EXECUTOR_FILES = ("files.py", "procs.py", "server.py")


@functools.cache
def executor_digest() -> str:
    """sha256 of the executor's sources, as the executor itself reports it in ``ping``."""
    digest = hashlib.sha256()
    for name in EXECUTOR_FILES:
        digest.update((EXECUTOR_SOURCE / name).read_bytes())
    return digest.hexdigest()


def executor_archive() -> bytes:
    """The executor's sources as a tar owned by root, so the sandbox user cannot alter them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo("executor")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        tar.addfile(folder)
        for name in EXECUTOR_FILES:
            data = (EXECUTOR_SOURCE / name).read_bytes()
            member = tarfile.TarInfo(f"executor/{name}")
            member.size, member.mode, member.mtime = len(data), 0o644, int(time.time())
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()
