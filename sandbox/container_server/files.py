"""File operations of the in-container server, confined to /workspace and /shared.

Stdlib only: this file is copied into the container and runs under the container's python3.
Every operation walks from an opened root directory one component at a time with
``O_NOFOLLOW`` and acts relative to the directory descriptor it reached (``dir_fd``), so a
command swapping a directory for a symlink while the operation runs can make it fail, never
make it act outside the roots. A symlink met on the way is followed only *logically*: its
target is joined to the path walked so far, checked against the roots like ``..``, and walked
again from a root. Errors are ``OpError`` with a kind the host maps to a typed exception.
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

WORKSPACE = "/workspace"
SHARED = "/shared"
OWNER: tuple[int, int] | None = None
"""(uid, gid) given to everything created, when the server runs as another user than the sandbox's."""

MAX_PATH = 4096
MAX_NAME = 255
MAX_DEPTH = 256
MAX_HOPS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def configure(workspace: str, shared: str, owner: tuple[int, int] | None) -> None:
    """Where the roots are (a local deployment uses temporary folders) and who owns new files."""
    global WORKSPACE, SHARED, OWNER
    WORKSPACE, SHARED, OWNER = os.path.abspath(workspace), os.path.abspath(shared), owner


def roots() -> tuple[str, str]:
    return WORKSPACE, SHARED


class OpError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _root_of(path: str, allowed: tuple[str, ...]) -> str | None:
    for root in allowed:
        if _under(path, root):
            return root
    return None


def check_path(path) -> None:
    """Refuse what no file system accepts before touching one (typed, not ENAMETOOLONG or a
    recursion error)."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise OpError("invalid", f"invalid path {path!r}")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise OpError("invalid", f"path longer than {MAX_PATH} bytes")
    parts = [p for p in path.split("/") if p]
    if len(parts) > MAX_DEPTH:
        raise OpError("invalid", f"path deeper than {MAX_DEPTH} levels")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise OpError("invalid", f"a name in the path is longer than {MAX_NAME} bytes: {part[:40]!r}...")


def _lexical(path: str, allowed: tuple[str, ...]) -> str:
    check_path(path)
    lexical = os.path.normpath(path if path.startswith("/") else os.path.join(WORKSPACE, path))
    if lexical.startswith("//"):
        lexical = lexical[1:]
    if _root_of(lexical, allowed) is None:
        raise OpError("escape", f"path {path!r} resolves to {lexical}, outside {' or '.join(allowed)}")
    return lexical


def own(fd: int | None = None, *, name: str | None = None, dir_fd: int | None = None) -> None:
    if OWNER is None:
        return
    if fd is not None:
        os.fchown(fd, *OWNER)
    else:
        os.chown(name, *OWNER, dir_fd=dir_fd, follow_symlinks=False)


def _follow(dir_fd: int, name: str, logical_dir: str, rest: list[str], original: str, allowed) -> str:
    """The lexical path a symlink ``name`` (in ``logical_dir``) leads to, ``rest`` appended."""
    target = os.readlink(name, dir_fd=dir_fd)
    joined = os.path.normpath(os.path.join(logical_dir, target, *rest))
    if joined.startswith("//"):
        joined = joined[1:]
    if _root_of(joined, allowed) is None:
        raise OpError("escape", f"path {original!r} goes through a symlink to {joined}, outside {' or '.join(allowed)}")
    return joined


class Place:
    """A directory descriptor, the name of the entry in it (None: the directory itself) and
    the logical path of that entry. Close it (or use ``with``)."""

    def __init__(self, dir_fd: int, name: str | None, logical: str):
        self.dir_fd, self.name, self.logical = dir_fd, name, logical

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.dir_fd)

    def lstat(self) -> os.stat_result | None:
        try:
            if self.name is None:
                return os.fstat(self.dir_fd)
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None


def locate(path: str, *, create: bool = False, follow_last: bool = False, allowed=None) -> Place:
    """Walk to ``path``'s parent without following symlinks (in-root ones are re-walked
    logically); ``create`` makes missing parents; ``follow_last`` also resolves a final symlink."""
    allowed = allowed or roots()
    original = path
    lexical = _lexical(path, allowed)
    for _hop in range(MAX_HOPS):
        root = _root_of(lexical, allowed)
        parts = [p for p in lexical[len(root):].split("/") if p]
        fd = os.open(root, DIR_FLAGS)
        logical = root
        try:
            for index, name in enumerate(parts):
                last = index == len(parts) - 1
                if last and not follow_last:
                    return Place(fd, name, os.path.join(logical, name))
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if last:
                        return Place(fd, name, os.path.join(logical, name))
                    if not create:
                        raise OpError("not_found", f"no such file or directory: {original!r}") from None
                    _mkdir_at(fd, name)
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        lexical = _follow(fd, name, logical, parts[index + 1:], original, allowed)
                        break
                    if last:
                        return Place(fd, name, os.path.join(logical, name))
                    raise OpError("not_dir", f"a parent of {original!r} is not a directory") from None
                os.close(fd)
                fd, logical = child, os.path.join(logical, name)
            else:
                return Place(fd, None, logical)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OpError("invalid", f"too many symlinks in {original!r}")


def _mkdir_at(dir_fd: int, name: str, mode: int = 0o755) -> None:
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        return
    own(name=name, dir_fd=dir_fd)


def open_dir(path: str, *, create: bool = False) -> tuple[int, str]:
    """A descriptor of the directory ``path`` (symlinks in-root followed) and its logical path."""
    with locate(path, create=create, follow_last=True) as place:
        if place.name is None:
            return os.dup(place.dir_fd), place.logical
        if create:
            _mkdir_at(place.dir_fd, place.name)
        try:
            return os.open(place.name, DIR_FLAGS, dir_fd=place.dir_fd), place.logical
        except FileNotFoundError:
            raise OpError("not_found", f"no such directory: {path!r}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise OpError("not_dir", f"{path!r} is not a directory") from None
            raise


def working_dir(cwd: str) -> str:
    """The logical path of an exec's working directory (it must exist)."""
    try:
        fd, logical = open_dir(cwd or ".")
    except OpError as exc:
        if exc.kind in ("not_found", "not_dir"):
            raise OpError("not_found", f"working directory {cwd!r} does not exist") from None
        raise
    os.close(fd)
    if not _under(logical, WORKSPACE):
        raise OpError("escape", f"working directory {cwd!r} is outside {WORKSPACE}")
    return logical


def open_file(path: str) -> tuple[int, str]:
    """A read descriptor of ``path`` (final symlink followed logically), never blocking on a FIFO."""
    for _hop in range(MAX_HOPS):
        with locate(path) as place:
            if place.name is None:
                raise OpError("is_dir", f"{path!r} is a directory")
            try:
                return os.open(place.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                               dir_fd=place.dir_fd), place.logical
            except FileNotFoundError:
                raise OpError("not_found", f"no such file or directory: {path!r}") from None
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                path = _follow(place.dir_fd, place.name, os.path.dirname(place.logical), [], path, roots())
    raise OpError("invalid", f"too many symlinks in {path!r}")


def display(logical: str) -> str:
    """How a path is shown to callers: relative to /workspace, absolute under /shared."""
    if logical == WORKSPACE:
        return "."
    if _under(logical, WORKSPACE):
        return logical[len(WORKSPACE) + 1:]
    return logical


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _info(st: os.stat_result, logical: str) -> dict:
    return {"path": display(logical), "type": _kind(st.st_mode), "size": st.st_size, "mtime": st.st_mtime}


def _no_space(path: str) -> OpError:
    return OpError("no_space", f"no space left in the workspace (its disk quota is full) while writing {path!r}")


def _copy_fd(src, dst_fd: int, path: str, limit: int | None = None) -> int:
    """Copy a readable (file object or fd) into ``dst_fd``; returns the byte count."""
    total = 0
    while True:
        block = src.read(1 << 20) if not isinstance(src, int) else os.read(src, 1 << 20)
        if not block:
            return total
        if limit is not None and total + len(block) > limit:
            block = block[:limit - total]
        view = memoryview(block)
        while view:
            try:
                view = view[os.write(dst_fd, view):]
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _no_space(path) from None
                raise
        total += len(block)
        if limit is not None and total >= limit:
            return total


def _replace_with_file(dir_fd: int, name: str, fill, mode: int, path: str, mtime: float | None = None) -> None:
    """Write a new file next to ``name`` and rename it over ``name``: never writes through an
    existing inode (a hard link, a swapped-in symlink)."""
    tmp = f".qr-tmp-{uuid.uuid4().hex[:12]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        try:
            fill(fd)
            os.fchmod(fd, mode & 0o7777 & ~0o6000)
            own(fd)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        with _quiet():
            os.unlink(tmp, dir_fd=dir_fd)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(path) from None
        if exc.errno == errno.EISDIR:
            raise OpError("is_dir", f"{path!r} is a directory") from None
        raise
    except BaseException:
        with _quiet():
            os.unlink(tmp, dir_fd=dir_fd)
        raise


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError)


def read(path: str, max_bytes: int, out) -> None:
    """Stream a regular file into ``out`` (a BodyWriter): FIFOs, devices and sockets are refused."""
    fd, _logical = open_file(path)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OpError("is_dir", f"{path!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OpError("invalid", f"{path!r} is not a regular file (a FIFO, socket or device)")
        if st.st_size > max_bytes:
            raise OpError("invalid", f"{path!r} is larger than {max_bytes >> 20} MiB; download it with download_tar or exec")
        left = st.st_size  # a file growing while it is read is cut at the size it had
        while left > 0:
            block = os.read(fd, min(left, 1 << 20))
            if not block:
                break
            out.write(block)
            left -= len(block)
        out.close()
    finally:
        os.close(fd)


def write(path: str, body, mode: int | None = None) -> dict:
    for _hop in range(MAX_HOPS):
        with locate(path, create=True) as place:
            if place.name is None:
                raise OpError("is_dir", f"{path!r} is a directory")
            st = place.lstat()
            if st is not None and stat.S_ISLNK(st.st_mode):
                path = _follow(place.dir_fd, place.name, os.path.dirname(place.logical), [], path, roots())
                continue  # writing through an in-root symlink writes its target, as before
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise OpError("is_dir", f"{path!r} is a directory")
            keep = mode if mode is not None else (stat.S_IMODE(st.st_mode) if st is not None else 0o644)
            _replace_with_file(place.dir_fd, place.name, lambda fd, path=path: _copy_fd(body, fd, path), keep, path)
            return _info(os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False), place.logical)
    raise OpError("invalid", f"too many symlinks in {path!r}")


def stat_path(path: str) -> dict:
    with locate(path) as place:
        st = place.lstat()
        if st is None:
            raise OpError("not_found", f"no such file or directory: {path!r}")
        return _info(st, place.logical)


def _walk_fd(top_fd: int, logical: str, limit_depth: int = MAX_DEPTH):
    """(dir fd, logical dir, name, lstat) of everything under ``top_fd``, parents first, without
    following symlinks. Iterative, so a deep tree cannot exhaust the stack; descriptors closed."""
    stack = [(os.dup(top_fd), logical, 0)]
    try:
        while stack:
            fd, here, depth = stack.pop()
            try:
                names = sorted(os.listdir(fd))
                subdirs = []
                for name in names:
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    yield fd, here, name, st
                    if stat.S_ISDIR(st.st_mode):
                        if depth + 1 >= limit_depth:
                            raise OpError("invalid", f"{display(here)!r} is nested deeper than {limit_depth} levels")
                        try:
                            subdirs.append((os.open(name, DIR_FLAGS, dir_fd=fd), os.path.join(here, name), depth + 1))
                        except OSError:
                            continue  # swapped for something else meanwhile: not a directory of ours
                stack.extend(reversed(subdirs))
            finally:
                os.close(fd)
    finally:
        for fd, _here, _depth in stack:
            os.close(fd)


def listing(path: str, recursive: bool) -> list[dict]:
    try:
        fd, logical = open_dir(path)
    except OpError as exc:
        if exc.kind != "not_dir":
            raise
        return [stat_path(path)]
    try:
        if not recursive:
            entries = []
            for name in sorted(os.listdir(fd)):
                with _quiet():
                    entries.append(_info(os.stat(name, dir_fd=fd, follow_symlinks=False), os.path.join(logical, name)))
            return entries
        entries = [_info(st, os.path.join(here, name)) for _fd, here, name, st in _walk_fd(fd, logical)]
        return sorted(entries, key=lambda e: e["path"])
    finally:
        os.close(fd)


def _remove_at(dir_fd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # the fd-based rmtree: never follows a symlink
    else:
        os.unlink(name, dir_fd=dir_fd)


def delete(path: str, recursive: bool) -> None:
    with locate(path) as place:
        if place.name is None:
            raise OpError("invalid", f"refusing to delete the root {place.logical}")
        st = place.lstat()
        if st is None:
            raise OpError("not_found", f"no such file or directory: {path!r}")
        if stat.S_ISDIR(st.st_mode) and not recursive:
            try:
                os.rmdir(place.name, dir_fd=place.dir_fd)
            except OSError:
                raise OpError("not_empty", f"{path!r} is a non-empty directory; pass recursive=True") from None
            return
        _remove_at(place.dir_fd, place.name, st)


def mkdir(path: str, parents: bool, exist_ok: bool) -> dict:
    try:
        place = locate(path, create=parents)
    except OpError as exc:
        if exc.kind == "not_found":
            raise OpError("not_found", f"the parent of {path!r} does not exist") from None
        raise
    with place:
        st = place.lstat()
        if st is not None:
            if exist_ok and stat.S_ISDIR(st.st_mode):
                return _info(st, place.logical)
            raise OpError("exists", f"{path!r} already exists")
        try:
            os.mkdir(place.name, 0o755, dir_fd=place.dir_fd)
        except FileExistsError:
            raise OpError("exists", f"{path!r} already exists") from None
        own(name=place.name, dir_fd=place.dir_fd)
        return _info(os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False), place.logical)


def _copy_tree(src_fd: int, dst_fd: int, depth: int = 0) -> None:
    """Copy the entries of one opened directory into another, symlinks as links, by descriptor."""
    if depth >= MAX_DEPTH:
        raise OpError("invalid", f"tree nested deeper than {MAX_DEPTH} levels")
    for name in os.listdir(src_fd):
        try:
            st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        _copy_entry(src_fd, name, st, dst_fd, name, depth)


def _copy_entry(src_dir: int, src_name: str, st, dst_dir: int, dst_name: str, depth: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        _mkdir_at(dst_dir, dst_name, 0o700)
        child_src = os.open(src_name, DIR_FLAGS, dir_fd=src_dir)
        try:
            child_dst = os.open(dst_name, DIR_FLAGS, dir_fd=dst_dir)
            try:
                _copy_tree(child_src, child_dst, depth + 1)
                os.fchmod(child_dst, stat.S_IMODE(st.st_mode) & ~0o6000)
                os.utime(child_dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(child_dst)
        finally:
            os.close(child_src)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_dir)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            _replace_with_file(dst_dir, dst_name, lambda out: _copy_fd(fd, out, dst_name),
                               stat.S_IMODE(st.st_mode), dst_name, st.st_mtime)
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src_name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
        own(name=dst_name, dir_fd=dst_dir)


def copy(src: str, dst: str, overwrite: bool) -> dict:
    """Copy a file or folder (a final symlink in ``src`` is followed, links inside are copied as links)."""
    src_place = locate(src, follow_last=True)
    with src_place:
        st = src_place.lstat()
        if st is None:
            raise OpError("not_found", f"no such file or directory: {src!r}")
        with locate(dst, create=True) as dst_place:
            if dst_place.name is None:
                raise OpError("invalid", "cannot copy onto a root folder")
            if _under(dst_place.logical, src_place.logical):
                raise OpError("invalid", f"cannot copy {src!r} into itself")
            existing = dst_place.lstat()
            if existing is not None:
                if not overwrite:
                    raise OpError("exists", f"{dst!r} already exists; pass overwrite=True")
                _remove_at(dst_place.dir_fd, dst_place.name, existing)
            if src_place.name is None:
                _mkdir_at(dst_place.dir_fd, dst_place.name)
                out = os.open(dst_place.name, DIR_FLAGS, dir_fd=dst_place.dir_fd)
                try:
                    _copy_tree(src_place.dir_fd, out)
                finally:
                    os.close(out)
            else:
                _copy_entry(src_place.dir_fd, src_place.name, st, dst_place.dir_fd, dst_place.name, 0)
            return _info(os.stat(dst_place.name, dir_fd=dst_place.dir_fd, follow_symlinks=False), dst_place.logical)


def move(src: str, dst: str, overwrite: bool) -> dict:
    with locate(src) as src_place, locate(dst, create=True) as dst_place:
        if src_place.name is None or dst_place.name is None:
            raise OpError("invalid", "cannot move a root folder")
        st = src_place.lstat()
        if st is None:
            raise OpError("not_found", f"no such file or directory: {src!r}")
        existing = dst_place.lstat()
        if existing is not None and not overwrite:
            raise OpError("exists", f"{dst!r} already exists; pass overwrite=True")
        if _under(dst_place.logical, src_place.logical):
            raise OpError("invalid", f"cannot move {src!r} into itself")
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(dst_place.name, dir_fd=dst_place.dir_fd)
        try:
            os.rename(src_place.name, dst_place.name, src_dir_fd=src_place.dir_fd, dst_dir_fd=dst_place.dir_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # /workspace and /shared are different file systems: copy, then remove the source.
            _copy_entry(src_place.dir_fd, src_place.name, st, dst_place.dir_fd, dst_place.name, 0)
            _remove_at(src_place.dir_fd, src_place.name, st)
        return _info(os.stat(dst_place.name, dir_fd=dst_place.dir_fd, follow_symlinks=False), dst_place.logical)


def disk_usage(path: str) -> int:
    fd, logical = open_dir(path)
    try:
        return sum(st.st_blocks * 512 for _fd, _here, _name, st in _walk_fd(fd, logical))
    finally:
        os.close(fd)


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
    """Stream an uncompressed tar of the given paths into ``out``, member names as ``display``
    shows them (workspace-relative); every entry is read by descriptor, symlinks never followed."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            with locate(path, follow_last=True) as place:
                st = place.lstat()
                if st is None:
                    raise OpError("not_found", f"no such file or directory: {path!r}")
                if place.name is not None:
                    _add_member(tar, place.dir_fd, place.name, st, display(place.logical).lstrip("/"))
                    if not stat.S_ISDIR(st.st_mode):
                        continue
                    top = os.open(place.name, DIR_FLAGS, dir_fd=place.dir_fd)
                else:
                    top = os.dup(place.dir_fd)
                try:
                    for fd, here, name, entry in _walk_fd(top, place.logical):
                        logical = os.path.join(here, name)
                        arcname = os.path.relpath(logical, WORKSPACE) if place.logical == WORKSPACE else display(logical).lstrip("/")
                        _add_member(tar, fd, name, entry, arcname)
                finally:
                    os.close(top)
    out.close()


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar:
        name = os.path.normpath(member.name)
        check_path(member.name)
        if member.name.startswith("/") or name == ".." or name.startswith("../") or (name == "." and not member.isdir()):
            raise OpError("escape", f"archive member {member.name!r} would land outside the destination")
        if member.islnk():
            link = os.path.normpath(member.linkname)
            if member.linkname.startswith("/") or link == ".." or link.startswith("../"):
                raise OpError("escape", f"archive hard link {member.name!r} -> {member.linkname!r} points outside")
        elif not (member.isfile() or member.isdir() or member.issym()):
            raise OpError("invalid", f"archive member {member.name!r} is a device, fifo or other special file")
        members.append(member)
    return members


def _member_parent(dest_fd: int, parts: list[str], member_name: str) -> int:
    """The directory that will hold a member, made as needed, walked without following symlinks."""
    fd = os.dup(dest_fd)
    try:
        for name in parts:
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                _mkdir_at(fd, name)
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OpError("escape", f"archive member {member_name!r} goes through a symlink or a file") from None
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
            raise OpError("invalid", f"not a tar archive: {exc}") from None
        with tar:
            try:
                members = _safe_members(tar)  # vet everything before touching the disk
            except tarfile.TarError as exc:
                raise OpError("invalid", f"broken tar archive: {exc}") from None
            dest_fd, _logical = open_dir(dest, create=True)
            try:
                if clear:
                    for name in os.listdir(dest_fd):
                        with _quiet():
                            _remove_at(dest_fd, name, os.stat(name, dir_fd=dest_fd, follow_symlinks=False))
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
        with _quiet():
            existing = os.stat(last, dir_fd=parent, follow_symlinks=False)
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(last, dir_fd=parent)
            _mkdir_at(parent, last)
            fd = os.open(last, DIR_FLAGS, dir_fd=parent)
            try:
                os.fchmod(fd, member.mode & 0o777)
            finally:
                os.close(fd)
        elif member.isfile():
            source = tar.extractfile(member)
            _replace_with_file(parent, last, lambda fd: _copy_fd(source, fd, member.name, member.size),
                               member.mode & 0o777, member.name, member.mtime)
        elif member.issym():
            tmp = f".qr-tmp-{uuid.uuid4().hex[:12]}"
            os.symlink(member.linkname, tmp, dir_fd=parent)
            own(name=tmp, dir_fd=parent)
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
            raise _no_space(member.name) from None
        raise
    finally:
        os.close(parent)


def manifest(path: str) -> dict[str, dict]:
    """Every entry under ``path``: type, size and, for files, the sha256 of the content."""
    fd, logical = open_dir(path)
    result: dict[str, dict] = {}
    try:
        for dir_fd, here, name, st in _walk_fd(fd, logical):
            rel = os.path.relpath(os.path.join(here, name), logical)
            entry = {"type": _kind(st.st_mode), "size": st.st_size}
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with _quiet():
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
