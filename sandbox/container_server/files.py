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
import os
import shutil
import stat
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
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise OpError("invalid", f"a name in the path is longer than {MAX_NAME} bytes: {part[:40]!r}...")
    if len(parts) > MAX_DEPTH:
        raise OpError("invalid", f"path deeper than {MAX_DEPTH} levels")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise OpError("invalid", f"path longer than {MAX_PATH} bytes")


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
                    mkdir_at(fd, name)
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


def mkdir_at(dir_fd: int, name: str, mode: int = 0o755) -> None:
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
            mkdir_at(place.dir_fd, place.name)
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


def kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _info(st: os.stat_result, logical: str) -> dict:
    return {"path": display(logical), "type": kind(st.st_mode), "size": st.st_size, "mtime": st.st_mtime}


def no_space(path: str) -> OpError:
    return OpError("no_space", f"no space left in the workspace (its disk quota is full) while writing {path!r}")


def copy_fd(src, dst_fd: int, path: str, limit: int | None = None) -> int:
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
                    raise no_space(path) from None
                raise
        total += len(block)
        if limit is not None and total >= limit:
            return total


def replace_with_file(dir_fd: int, name: str, fill, mode: int, path: str, mtime: float | None = None) -> None:
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
        with quiet():
            os.unlink(tmp, dir_fd=dir_fd)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space(path) from None
        if exc.errno == errno.EISDIR:
            raise OpError("is_dir", f"{path!r} is a directory") from None
        raise
    except BaseException:
        with quiet():
            os.unlink(tmp, dir_fd=dir_fd)
        raise


class quiet:
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
            replace_with_file(place.dir_fd, place.name, lambda fd, path=path: copy_fd(body, fd, path), keep, path)
            return _info(os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False), place.logical)
    raise OpError("invalid", f"too many symlinks in {path!r}")


def stat_path(path: str) -> dict:
    with locate(path) as place:
        st = place.lstat()
        if st is None:
            raise OpError("not_found", f"no such file or directory: {path!r}")
        return _info(st, place.logical)


def walk_fd(top_fd: int, logical: str, limit_depth: int = MAX_DEPTH):
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
                with quiet():
                    entries.append(_info(os.stat(name, dir_fd=fd, follow_symlinks=False), os.path.join(logical, name)))
            return entries
        entries = [_info(st, os.path.join(here, name)) for _fd, here, name, st in walk_fd(fd, logical)]
        return sorted(entries, key=lambda e: e["path"])
    finally:
        os.close(fd)


def remove_at(dir_fd: int, name: str, st: os.stat_result) -> None:
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
        remove_at(place.dir_fd, place.name, st)


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
        mkdir_at(dst_dir, dst_name, 0o700)
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
            replace_with_file(dst_dir, dst_name, lambda out: copy_fd(fd, out, dst_name),
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
                remove_at(dst_place.dir_fd, dst_place.name, existing)
            if src_place.name is None:
                mkdir_at(dst_place.dir_fd, dst_place.name)
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
            remove_at(src_place.dir_fd, src_place.name, st)
        return _info(os.stat(dst_place.name, dir_fd=dst_place.dir_fd, follow_symlinks=False), dst_place.logical)


def disk_usage(path: str) -> int:
    fd, logical = open_dir(path)
    try:
        return sum(st.st_blocks * 512 for _fd, _here, _name, st in walk_fd(fd, logical))
    finally:
        os.close(fd)
