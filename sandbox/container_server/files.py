"""File operations of the in-container server, confined to /workspace and /shared.

Stdlib only: this file is copied into the container and runs under the container's python3.
Every path goes through ``resolve``, which works on real paths (symlinks resolved by the
kernel's view inside the container), so a symlink pointing outside is refused as surely as
``..`` or an absolute path elsewhere. Errors are ``OpError`` with a kind the host maps to a
typed exception.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile

WORKSPACE = "/workspace"
SHARED = "/shared"
ROOTS = (WORKSPACE, SHARED)


class OpError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _root_of(path: str, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if _under(path, root):
            return root
    return None


def resolve(path: str, *, follow: bool = True, roots: tuple[str, ...] = ROOTS) -> str:
    """The real absolute path for ``path`` (relative to /workspace), or OpError('escape')."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise OpError("invalid", f"invalid path {path!r}")
    allowed = " or ".join(roots)
    lexical = os.path.normpath(path if path.startswith("/") else os.path.join(WORKSPACE, path))
    if lexical.startswith("//"):
        lexical = lexical[1:]
    if _root_of(lexical, roots) is None:
        raise OpError("escape", f"path {path!r} resolves to {lexical}, outside {allowed}")
    parent = os.path.realpath(os.path.dirname(lexical)) if lexical not in roots else lexical
    if _root_of(parent, roots) is None:
        raise OpError("escape", f"path {path!r} goes through a symlink to {parent}, outside {allowed}")
    if lexical in roots:
        return lexical
    target = os.path.join(parent, os.path.basename(lexical))
    if follow:
        real = os.path.realpath(target)
        if _root_of(real, roots) is None:
            raise OpError("escape", f"path {path!r} is a symlink to {real}, outside {allowed}")
        return real
    return target


def display(real: str) -> str:
    """How a path is shown to callers: relative to /workspace, absolute under /shared."""
    if real == WORKSPACE:
        return "."
    if _under(real, WORKSPACE):
        return real[len(WORKSPACE) + 1:]
    return real


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def info(real: str) -> dict:
    st = os.lstat(real)
    return {"path": display(real), "type": _kind(st.st_mode), "size": st.st_size, "mtime": st.st_mtime}


def _missing(path: str) -> OpError:
    return OpError("not_found", f"no such file or directory: {path!r}")


MAX_READ = 256 << 20  # one read must not push the container server past the container's memory limit


def read(path: str) -> bytes:
    real = resolve(path)
    if os.path.isdir(real):
        raise OpError("is_dir", f"{path!r} is a directory")
    if os.path.exists(real) and os.path.getsize(real) > MAX_READ:
        raise OpError("invalid", f"{path!r} is larger than {MAX_READ >> 20} MiB; download it with download_tar or exec")
    try:
        with open(real, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise _missing(path) from None


def _ensure_dir(real: str, path: str) -> None:
    try:
        os.makedirs(real, exist_ok=True)
    except FileExistsError:
        raise OpError("not_dir", f"a parent of {path!r} is not a directory") from None
    except NotADirectoryError:
        raise OpError("not_dir", f"a parent of {path!r} is not a directory") from None


def write(path: str, data: bytes, mode: int | None = None) -> dict:
    real = resolve(path)
    if real in ROOTS or os.path.isdir(real):
        raise OpError("is_dir", f"{path!r} is a directory")
    parent = os.path.dirname(real)
    _ensure_dir(parent, path)
    # Re-check after creating parents: a racing symlink swap must not move the write outside.
    if _root_of(os.path.realpath(parent), ROOTS) is None:
        raise OpError("escape", f"path {path!r} left the workspace while being written")
    fd, tmp = tempfile.mkstemp(prefix=".qr-write-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode & 0o777)
        elif os.path.exists(real):
            os.chmod(tmp, stat.S_IMODE(os.stat(real).st_mode))
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, real)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return info(real)


def stat_path(path: str) -> dict:
    real = resolve(path, follow=False)
    try:
        return info(real)
    except FileNotFoundError:
        raise _missing(path) from None


def listing(path: str, recursive: bool) -> list[dict]:
    real = resolve(path)
    if not os.path.exists(real):
        raise _missing(path)
    if not os.path.isdir(real):
        return [info(real)]
    entries = []
    if not recursive:
        for name in sorted(os.listdir(real)):
            entries.append(info(os.path.join(real, name)))
        return entries
    for dirpath, dirnames, filenames in os.walk(real):  # os.walk never follows symlinked dirs
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            entries.append(info(os.path.join(dirpath, name)))
    return sorted(entries, key=lambda e: e["path"])


def delete(path: str, recursive: bool) -> None:
    real = resolve(path, follow=False)
    if real in ROOTS:
        raise OpError("invalid", f"refusing to delete the root {real}")
    if not os.path.lexists(real):
        raise _missing(path)
    if os.path.isdir(real) and not os.path.islink(real):
        if not recursive:
            try:
                os.rmdir(real)
            except OSError:
                raise OpError("not_empty", f"{path!r} is a non-empty directory; pass recursive=True") from None
            return
        shutil.rmtree(real)
    else:
        os.unlink(real)


def mkdir(path: str, parents: bool, exist_ok: bool) -> dict:
    real = resolve(path)
    if os.path.lexists(real):
        if exist_ok and os.path.isdir(real):
            return info(real)
        raise OpError("exists", f"{path!r} already exists")
    if parents:
        _ensure_dir(real, path)
    else:
        try:
            os.mkdir(real)
        except FileNotFoundError:
            raise OpError("not_found", f"the parent of {path!r} does not exist") from None
    return info(real)


def move(src: str, dst: str, overwrite: bool) -> dict:
    real_src = resolve(src, follow=False)
    real_dst = resolve(dst, follow=False)
    if real_src in ROOTS or real_dst in ROOTS:
        raise OpError("invalid", "cannot move a root folder")
    if not os.path.lexists(real_src):
        raise _missing(src)
    if os.path.lexists(real_dst) and not overwrite:
        raise OpError("exists", f"{dst!r} already exists; pass overwrite=True")
    if _under(real_dst, real_src):
        raise OpError("invalid", f"cannot move {src!r} into itself")
    _ensure_dir(os.path.dirname(real_dst), dst)
    if os.path.isdir(real_dst) and not os.path.islink(real_dst):
        shutil.rmtree(real_dst)
    shutil.move(real_src, real_dst)
    return info(real_dst)


def copy(src: str, dst: str, overwrite: bool) -> dict:
    real_src = resolve(src)
    real_dst = resolve(dst, follow=False)
    if not os.path.exists(real_src):
        raise _missing(src)
    if _under(real_dst, real_src):
        raise OpError("invalid", f"cannot copy {src!r} into itself")
    if os.path.lexists(real_dst):
        if not overwrite:
            raise OpError("exists", f"{dst!r} already exists; pass overwrite=True")
        if os.path.isdir(real_dst) and not os.path.islink(real_dst):
            shutil.rmtree(real_dst)
        else:
            os.unlink(real_dst)
    _ensure_dir(os.path.dirname(real_dst), dst)
    if os.path.isdir(real_src):
        shutil.copytree(real_src, real_dst, symlinks=True)
    else:
        shutil.copy2(real_src, real_dst, follow_symlinks=True)
    return info(real_dst)


def disk_usage(path: str) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(resolve(path)):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def tar_create(paths: list[str]) -> bytes:
    """A tar of the given paths, member names as ``display`` shows them (workspace-relative)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in paths:
            real = resolve(path)
            if not os.path.exists(real):
                raise _missing(path)
            if real in ROOTS:
                for name in sorted(os.listdir(real)):
                    tar.add(os.path.join(real, name), arcname=name if real == WORKSPACE else display(os.path.join(real, name)).lstrip("/"))
            else:
                tar.add(real, arcname=display(real).lstrip("/"))
    return buf.getvalue()


def _safe_members(tar: tarfile.TarFile, dest: str) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = os.path.normpath(member.name)
        target = os.path.normpath(os.path.join(dest, name))
        if member.name.startswith("/") or not _under(target, dest) or target == dest and not member.isdir():
            raise OpError("escape", f"archive member {member.name!r} would land outside {display(dest)}")
        if member.islnk():
            if not _under(os.path.normpath(os.path.join(dest, member.linkname)), dest):
                raise OpError("escape", f"archive hard link {member.name!r} -> {member.linkname!r} points outside")
        elif member.issym():
            pass  # stored as is: the file API never follows a link that leads outside
        elif not (member.isfile() or member.isdir()):
            raise OpError("invalid", f"archive member {member.name!r} is a device, fifo or other special file")
        member.mode = (member.mode or 0o644) & 0o777
        member.uid = member.gid = os.getuid()
        member.uname = member.gname = ""
        members.append(member)
    return members


def tar_extract(dest: str, data: bytes, clear: bool = False) -> int:
    """Extract a tar under ``dest`` after vetting every member; ``clear`` empties dest first."""
    real = resolve(dest)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise OpError("invalid", f"not a tar archive: {exc}") from None
    with tar:
        members = _safe_members(tar, real)  # vet everything before touching the disk
        if clear:
            for name in os.listdir(real):
                full = os.path.join(real, name)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
        _ensure_dir(real, dest)
        for member in members:
            target = os.path.join(real, os.path.normpath(member.name))
            if _root_of(os.path.realpath(os.path.dirname(target)), ROOTS) is None:
                raise OpError("escape", f"archive member {member.name!r} goes through a symlink outside")
            if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
                os.unlink(target)
            tar.extract(member, real, set_attrs=not member.issym())
    return len(members)


def manifest(path: str) -> dict[str, dict]:
    """Every entry under ``path``: type, size and, for files, the sha256 of the content."""
    real = resolve(path)
    result: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(real):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, real)
            st = os.lstat(full)
            entry = {"type": _kind(st.st_mode), "size": st.st_size}
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with open(full, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
                entry["sha256"] = digest.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(full)
            result[rel] = entry
    return result
