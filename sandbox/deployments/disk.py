"""A fixed-size file system per workspace, so the kernel enforces its disk quota.

Docker's own quota (``storage_opt size``) needs xfs with project quotas; a Docker volume on
ext4 has none, and its local driver cannot loop-mount an image. So each workspace's /workspace
is an ext4 image file (sparse: it takes host disk only as it fills) loop-mounted on the host by
the deployment and bind-mounted into the container. Writing past it is ENOSPC inside, at once,
however fast the writer; nothing polls. Mounting needs the host side to run as root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from quadracode_ray.interfaces.workspace import WorkspaceUnavailable

SANDBOX_OWNER = "1000:1000"


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise WorkspaceUnavailable(f"{' '.join(argv[:2])} failed: {(done.stderr or done.stdout).strip()[:500]}")


class QuotaDisk:
    """``<folder>/disk.img`` mounted at ``<folder>/disk``."""

    def __init__(self, folder: Path, size_mb: int):
        self.folder, self.size_mb = folder, size_mb
        self.image = folder / "disk.img"
        self.mountpoint = folder / "disk"

    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def ensure_mounted(self) -> None:
        """Make (first time) and mount the image; idempotent, and again after a host reboot.
        Under a file lock: two workspaces sharing one disk (``/shared``) must not both make or
        mount it."""
        if self.mounted():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.mounted():
                self._mount()

    def _mount(self) -> None:
        if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
            raise WorkspaceUnavailable(
                "a workspace disk quota needs the host side to run as root with mkfs.ext4 (it loop-mounts "
                "a file system per workspace); set QUADRACODE_SANDBOX_DISK_QUOTA_MB=0 to run without one"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        fresh = not self.image.exists()
        if fresh:
            tmp = self.image.with_name(f".disk.img.{os.getpid()}")
            with open(tmp, "wb") as fh:
                fh.truncate(self.size_mb << 20)
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={SANDBOX_OWNER},lazy_itable_init=1",
                  str(tmp)])
            os.replace(tmp, self.image)
        self.mountpoint.mkdir(exist_ok=True)
        os.chmod(self.mountpoint, 0o000)  # unmounted, it is no place to write
        _run(["mount", "-o", "loop,nodev,nosuid", str(self.image), str(self.mountpoint)])
        if fresh:
            with contextlib.suppress(OSError):
                (self.mountpoint / "lost+found").rmdir()  # not part of anyone's workspace

    def release(self, delete: bool) -> None:
        """Unmount (lazily if still busy); the image goes too with ``delete``."""
        if self.mounted():
            done = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, timeout=60)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=60)
        if delete:
            self.image.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.mountpoint.rmdir()

    def usage(self) -> tuple[int, int] | None:
        """(bytes used, bytes the file system holds) while mounted."""
        if not self.mounted():
            return None
        st = os.statvfs(self.mountpoint)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def release_installation_disks(installation_id: str) -> int:
    """Unmount every workspace disk of an installation (``.../sandbox/<id>/<workspace>/disk``)."""
    marker = f"/sandbox/{installation_id}/"
    released = 0
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    for point in sorted(points, reverse=True):
        if marker in point and point.endswith("/disk"):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
            released += 1
    return released
