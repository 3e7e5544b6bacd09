"""Tars and manifests of the in-container server: snapshots, downloads, uploads, restores.

Stdlib only (shipped into the container with the server). Like every file operation of
``files.py``, these walk by directory descriptor and never follow a symlink: a tar is made from
descriptors opened with ``O_NOFOLLOW``, and extracted member by member under descriptors of the
destination, after every member was vetted.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import uuid

try:
    from . import files  # imported as part of the sandbox package (host-side tests)
except ImportError:
    import files  # in the container: the server's folder is on sys.path


class _Exactly:
    """Reads exactly ``size`` bytes of a descriptor: zeros if the file shrank meanwhile (the tar
    header already promised the size), nothing past it if it grew."""

    def __init__(self, fd: int, size: int):
        self.fd, self.left = fd, size

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        block = os.read(self.fd, want) if want else b""
        if want and not block:
            block = b"\0" * want
        self.left -= len(block)
        return block


def _add_member(tar: tarfile.TarFile, dir_fd: int, name: str, st, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.mtime, info.mode, info.uid, info.gid = st.st_mtime, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return  # swapped meanwhile
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return
            info.size = now.st_size
            tar.addfile(info, _Exactly(fd, now.st_size))
        finally:
            os.close(fd)
    # FIFOs, sockets, devices: not part of a workspace's content


def tar_create(paths: list[str], out) -> None:
    """Stream an uncompressed tar of the given paths into ``out``, member names as ``files.display``
    shows them (workspace-relative); every entry is read by descriptor, symlinks never followed."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            with files.locate(path, follow_last=True) as place:
                st = place.lstat()
                if st is None:
                    raise files.OpError("not_found", f"no such file or directory: {path!r}")
                if place.name is not None:
                    _add_member(tar, place.dir_fd, place.name, st, files.display(place.logical).lstrip("/"))
                    if not stat.S_ISDIR(st.st_mode):
                        continue
                    top = os.open(place.name, files.DIR_FLAGS, dir_fd=place.dir_fd)
                else:
                    top = os.dup(place.dir_fd)
                try:
                    for fd, here, name, entry in files.walk_fd(top, place.logical):
                        logical = os.path.join(here, name)
                        arcname = os.path.relpath(logical, files.WORKSPACE) if place.logical == files.WORKSPACE else files.display(logical).lstrip("/")
                        _add_member(tar, fd, name, entry, arcname)
                finally:
                    os.close(top)
    out.close()


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar:
        name = os.path.normpath(member.name)
        files.check_path(member.name)
        if member.name.startswith("/") or name == ".." or name.startswith("../") or (name == "." and not member.isdir()):
            raise files.OpError("escape", f"archive member {member.name!r} would land outside the destination")
        if member.islnk():
            link = os.path.normpath(member.linkname)
            if member.linkname.startswith("/") or link == ".." or link.startswith("../"):
                raise files.OpError("escape", f"archive hard link {member.name!r} -> {member.linkname!r} points outside")
        elif not (member.isfile() or member.isdir() or member.issym()):
            raise files.OpError("invalid", f"archive member {member.name!r} is a device, fifo or other special file")
        members.append(member)
    return members


def _member_parent(dest_fd: int, parts: list[str], member_name: str) -> int:
    """The directory that will hold a member, made as needed, walked without following symlinks."""
    fd = os.dup(dest_fd)
    try:
        for name in parts:
            try:
                child = os.open(name, files.DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                files.mkdir_at(fd, name)
                child = os.open(name, files.DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise files.OpError("escape", f"archive member {member_name!r} goes through a symlink or a file") from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def tar_extract(dest: str, body, clear: bool = False) -> int:
    """Extract a tar under ``dest`` after vetting every member; ``clear`` empties dest first.
    The upload is spooled to an unnamed temporary file first, so nothing is written unless
    every member passed."""
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(body, spool, 1 << 20)
        spool.seek(0)
        try:
            tar = tarfile.open(fileobj=spool, mode="r:*")
        except tarfile.TarError as exc:
            raise files.OpError("invalid", f"not a tar archive: {exc}") from None
        with tar:
            try:
                members = _safe_members(tar)  # vet everything before touching the disk
            except tarfile.TarError as exc:
                raise files.OpError("invalid", f"broken tar archive: {exc}") from None
            dest_fd, _logical = files.open_dir(dest, create=True)
            try:
                if clear:
                    for name in os.listdir(dest_fd):
                        with files.quiet():
                            files.remove_at(dest_fd, name, os.stat(name, dir_fd=dest_fd, follow_symlinks=False))
                for member in members:
                    _extract_one(tar, dest_fd, member)
            finally:
                os.close(dest_fd)
    return len(members)


def _extract_one(tar: tarfile.TarFile, dest_fd: int, member: tarfile.TarInfo) -> None:
    parts = [p for p in os.path.normpath(member.name).split("/") if p not in ("", ".")]
    if not parts:
        return  # the destination itself
    parent = _member_parent(dest_fd, parts[:-1], member.name)
    last = parts[-1]
    try:
        existing = None
        with files.quiet():
            existing = os.stat(last, dir_fd=parent, follow_symlinks=False)
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(last, dir_fd=parent)
            files.mkdir_at(parent, last)
            fd = os.open(last, files.DIR_FLAGS, dir_fd=parent)
            try:
                os.fchmod(fd, member.mode & 0o777)
            finally:
                os.close(fd)
        elif member.isfile():
            source = tar.extractfile(member)
            files.replace_with_file(parent, last, lambda fd: files.copy_fd(source, fd, member.name, member.size),
                               member.mode & 0o777, member.name, member.mtime)
        elif member.issym():
            tmp = f".qr-tmp-{uuid.uuid4().hex[:12]}"
            os.symlink(member.linkname, tmp, dir_fd=parent)
            files.own(name=tmp, dir_fd=parent)
            os.rename(tmp, last, src_dir_fd=parent, dst_dir_fd=parent)
        elif member.islnk():
            link_parts = [p for p in os.path.normpath(member.linkname).split("/") if p not in ("", ".")]
            source_dir = _member_parent(dest_fd, link_parts[:-1], member.name)
            try:
                tmp = f".qr-tmp-{uuid.uuid4().hex[:12]}"
                os.link(link_parts[-1], tmp, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
                os.rename(tmp, last, src_dir_fd=parent, dst_dir_fd=parent)
            finally:
                os.close(source_dir)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise files.no_space(member.name) from None
        raise
    finally:
        os.close(parent)


def manifest(path: str) -> dict[str, dict]:
    """Every entry under ``path``: type, size and, for files, the sha256 of the content."""
    fd, logical = files.open_dir(path)
    result: dict[str, dict] = {}
    try:
        for dir_fd, here, name, st in files.walk_fd(fd, logical):
            rel = os.path.relpath(os.path.join(here, name), logical)
            entry = {"type": files.kind(st.st_mode), "size": st.st_size}
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with files.quiet():
                    file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
                    try:
                        for block in iter(lambda: os.read(file_fd, 1 << 20), b""):  # noqa: B023
                            digest.update(block)
                    finally:
                        os.close(file_fd)
                entry["sha256"] = digest.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(name, dir_fd=dir_fd)
            result[rel] = entry
    finally:
        os.close(fd)
    return result
