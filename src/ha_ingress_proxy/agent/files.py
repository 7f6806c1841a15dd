"""Reads and writes below --root: bounded reads, atomic writes that only happen when bytes differ.

The paths themselves are in ha_ingress_proxy.layout.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def read_limited(path: Path, limit: int) -> bytes:
    """Read at most limit bytes; a longer file is an error the caller words."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data


def write_atomic(path: Path, content: bytes, mode: int) -> bool:
    """Write content to path with mode, unless it already holds exactly that. True if written.

    Temp file in the same directory (created 0600, so a secret is never briefly
    readable), fsync, chmod, rename, fsync the directory: a reader (or a crash)
    sees the old file or the new one, never half of one.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
        if (
            stat.S_ISREG(st.st_mode)
            and stat.S_IMODE(st.st_mode) == mode
            and st.st_uid == os.geteuid()
            and st.st_size == len(content)
            and path.read_bytes() == content
        ):
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return True


def remove(path: Path) -> bool:
    """Remove path if it is there. True if something was removed."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
