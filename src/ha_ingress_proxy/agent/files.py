"""Reads and writes below --root that stay inside it; atomic writes only when bytes differ.

The paths themselves are in ha_ingress_proxy.layout.

Every path is walked from the root one component at a time (openat-style, each
directory opened with O_NOFOLLOW), so nothing is ever resolved by the kernel
across a symbolic link. A symbolic link met on the way is resolved by hand, as
the node would see it: a relative target from the directory that holds it, an
absolute one from --root (like a chroot at --root, or openat2's
RESOLVE_IN_ROOT). A target that climbs out of --root with `..` is refused,
so neither a read nor a write (configs, secrets.env, state.json) can land
outside the root. With --root / nothing changes for a real node.

Reads refuse anything but a regular file before reading a byte: a FIFO where
instance data should be would otherwise block the agent (and haproxy and
keepalived behind it) forever. Opens use O_NONBLOCK, and a file is checked
with lstat before it is opened and with fstat after.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Optional

from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.layout import shown

DIR_MODE = 0o755  # directories the agent creates; the unit's UMask=0077 must not make them private
MAX_LINKS = 40  # symbolic links followed while resolving one path (the kernel's limit)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


class UnsafePath(UserError):
    """A path below --root that leads out of it, or is not the kind of file it must be."""


def kind(mode: int) -> str:
    for test, what in _KINDS:
        if test(mode):
            return what
    return "not a regular file"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _quoted(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


class _Walk:
    """One path's resolution below a root, directory by directory, symbolic links resolved inside the root."""

    def __init__(self, root: Path, rel: str) -> None:
        self.root = Path(root)
        self.rel = rel
        self.links = 0
        self.last_link: Optional[tuple[str, str]] = None  # (where, target) of the last link followed

    def escape(self) -> UnsafePath:
        if self.last_link is None:
            return UnsafePath(f"{shown(self.rel)}: leads out of --root {self.root}")
        where, target = self.last_link
        return UnsafePath(
            f"{shown(self.rel)}: {shown(where)} is a symbolic link to {_quoted(target)}, which leads out of "
            f"--root {self.root}; refusing to follow it"
        )

    def follow(self, dfd: int, names: list[str], name: str) -> Optional[str]:
        """The path (below the root) that the link names/name leads to, or None when it is not a link."""
        try:
            target = os.readlink(name, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a symbolic link
                return None
            raise
        self.links += 1
        if self.links > MAX_LINKS:
            raise UnsafePath(f"{shown(self.rel)}: more than {MAX_LINKS} symbolic links on the way")
        self.last_link = ("/".join(names + [name]), target)
        # absolute: from the root, as on the node; relative: from the directory holding the link
        return target if target.startswith("/") else "/".join(names + [target])

    def directory(self, rel_dir: str, create: bool = False) -> tuple[int, list[str]]:
        """An fd of directory rel_dir below the root (created, mode 0755, when asked) and its real path."""
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise UnsafePath(f"--root {self.root}: cannot open it: {exc.strerror}") from None
        stack = [root_fd]
        names: list[str] = []
        todo = _parts(rel_dir)
        try:
            while todo:
                part = todo.pop(0)
                if part == "..":
                    if len(stack) == 1:
                        raise self.escape()
                    os.close(stack.pop())
                    names.pop()
                    continue
                try:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=stack[-1])
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, DIR_MODE, dir_fd=stack[-1])
                    except FileExistsError:  # made meanwhile by someone else: open it as found
                        todo.insert(0, part)
                        continue
                    fd = os.open(part, _DIR_FLAGS, dir_fd=stack[-1])
                    os.fchmod(fd, DIR_MODE)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    target = self.follow(stack[-1], names, part)
                    if target is None:
                        raise UnsafePath(f"{shown(self.rel)}: {shown('/'.join(names + [part]))} is not a directory") from None
                    # start again from the root with the link replaced by where it leads
                    todo = _parts(target) + todo
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                    continue
                stack.append(fd)
                names.append(part)
            return stack.pop(), names
        finally:
            for fd in stack:
                os.close(fd)

    def parent(self, rel: str, create: bool = False) -> tuple[int, list[str], str]:
        """(fd of the parent directory, its real path, the file name) of rel."""
        parts = _parts(rel)
        if not parts or parts[-1] == "..":
            raise UnsafePath(f"{shown(self.rel)}: not a file path")
        fd, names = self.directory("/".join(parts[:-1]), create)
        return fd, names, parts[-1]


def _open_regular(root: Path, rel: str, follow: bool = True) -> int:
    """An fd of the regular file rel below root; FileNotFoundError when absent, UnsafePath otherwise.

    follow=False refuses a symbolic link in the file's own place (links on the way are still resolved).
    """
    walk = _Walk(root, rel)
    current = rel
    while True:
        try:
            dfd, names, name = walk.parent(current)
        except NotADirectoryError:
            raise FileNotFoundError(rel) from None
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) and follow:
                current = walk.follow(dfd, names, name) or name
                continue
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{shown(rel)}: is {kind(st.st_mode)}, not a regular file; refusing to read it")
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
            after = os.fstat(fd)
            if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)
                raise UnsafePath(f"{shown(rel)}: changed while being opened; refusing to read it")
            return fd
        finally:
            os.close(dfd)


def stat_below(root: Path, rel: str) -> os.stat_result:
    """fstat of the regular file rel below root (symlinks resolved inside the root)."""
    fd = _open_regular(root, rel)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def read_limited(root: Path, rel: str, limit: int) -> bytes:
    """Read the regular file rel below root, at most limit bytes; a longer file is a ValueError.

    FileNotFoundError when it is absent; UnsafePath when it is not a regular file
    or its path leads out of the root.
    """
    fd = _open_regular(root, rel)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data


def read_with_stat(root: Path, rel: str, limit: int, follow: bool = True) -> tuple[bytes, os.stat_result]:
    """read_limited, plus the fstat of the very file read (its mode and owner)."""
    fd = _open_regular(root, rel, follow)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data, st


def track_file_value(root: Path, rel: str) -> Optional[int]:
    """A keepalived track_file's value as keepalived reads it (the first number; empty or not a number
    is 0); None when the file is absent or unreadable, or not a regular file (a FIFO would block)."""
    try:
        text = read_limited(root, rel, 4096).decode("utf-8", "replace")
    except (OSError, ValueError, UserError):
        return None
    head = text.strip().split()
    try:
        return int(head[0], 0) if head else 0
    except ValueError:
        return 0


def exists(root: Path, rel: str) -> bool:
    """rel names something (of any kind) below root; False when a parent is missing."""
    try:
        dfd, _, name = _Walk(root, rel).parent(rel)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)


def ensure_dir(root: Path, rel: str) -> None:
    """Create directory rel below root (0755 for what it creates) or refuse when it leads out of root."""
    fd, _ = _Walk(root, rel).directory(rel, create=True)
    os.close(fd)


def _same(dfd: int, name: str, content: bytes, mode: int) -> bool:
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
    except OSError:  # absent, a symbolic link (ELOOP), unreadable: write it
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        return (
            stat.S_ISREG(st.st_mode)
            and stat.S_IMODE(st.st_mode) == mode
            and st.st_uid == os.geteuid()
            and st.st_size == len(content)
            and fh.read(len(content) + 1) == content
        )


def write_atomic(root: Path, rel: str, content: bytes, mode: int) -> bool:
    """Write content to rel below root with mode, unless it already holds exactly that. True if written.

    Temp file in the same directory (created 0600, so a secret is never briefly
    readable), fsync, chmod, rename, fsync the directory: a reader (or a crash)
    sees the old file or the new one, never half of one. The directory is
    reached without following a symbolic link out of the root; a symbolic link
    in the file's own place is replaced, never written through.
    """
    dfd, _, name = _Walk(root, rel).parent(rel, create=True)
    try:
        if _same(dfd, name, content, mode):
            return False
        tmp = f".{name}.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            raise
        os.fsync(dfd)
        return True
    finally:
        os.close(dfd)


def remove(root: Path, rel: str) -> bool:
    """Remove rel below root if it is there (a symbolic link itself, never its target). True if removed."""
    try:
        dfd, _, name = _Walk(root, rel).parent(rel)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        os.unlink(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)
