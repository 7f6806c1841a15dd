"""Run a command with a rendered node tree in place, as if it were installed.

A private mount namespace lays the tree over /etc and /usr with read-only
overlayfs mounts, so haproxy, keepalived and systemd find our files at their
real paths (and the host's own files beside them) while the host itself is
never written. Used by `lint` (with a private network namespace holding the
node's interfaces) and by the lab (inside the node's network namespace).

With a `root` other than "/", the same is done under that directory (a
debootstrap'd Debian 11 or 13) and the command runs chrooted there, so the
target release's own haproxy and keepalived read the files.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ha_ingress_proxy import layout

OVERLAID = ("etc", "usr")
# Writable, private to the view. The node's state directory is among them: keepalived 2.3
# refuses a track_file whose directory is missing or read-only, even for `keepalived -t`.
PRIVATE_TMPFS = ("run", "var/log", layout.VAR_STATE_DIR)


def mount_script(tree: Path, root: Path = Path("/"), private_dirs: tuple[str, ...] = PRIVATE_TMPFS) -> str:
    """Shell lines (for `sh -e` in a fresh mount namespace) that put tree in place under root."""
    tree = Path(tree).resolve()
    lines = ["mount --make-rprivate /"]
    for top in OVERLAID:
        if (tree / top).is_dir():
            target = Path(root) / top
            lines.append(
                f"mount -t overlay ha-ingress-view -o {shlex.quote(f'lowerdir={tree / top}:{target}')} {shlex.quote(str(target))}"
            )
    for rel in private_dirs:
        target = Path(root) / rel
        # (a missing mount point is created: an empty directory, on the host or in the release root)
        lines.append(f"mkdir -p {shlex.quote(str(target))}")
        lines.append(f"mount -t tmpfs -o mode=0755 ha-ingress-{rel.replace('/', '-')} {shlex.quote(str(target))}")
    return "\n".join(lines)


def interfaces_script(names: list[str]) -> str:
    """Shell lines creating each named interface (a veth end) in the current network namespace."""
    lines = []
    for i, name in enumerate(sorted(set(names))):
        lines.append(f"ip link add {shlex.quote(name)} type veth peer name hiplint{i}")
        lines.append(f"ip link set {shlex.quote(name)} up")
    return "\n".join(lines)


def in_view_argv(tree: Path, command: list[str], *, root: Path = Path("/"), interfaces: list[str] | None = None) -> list[str]:
    """argv that runs command with tree installed (and interfaces present, in a private netns)."""
    parts = [mount_script(tree, root)]
    if interfaces:
        parts.append(interfaces_script(interfaces))
    cmd = shlex.join(command)
    if str(root) != "/":
        cmd = f"chroot {shlex.quote(str(root))} {cmd}"
    parts.append(f"exec {cmd}")
    unshare = ["unshare", "--mount"]
    if interfaces is not None:
        unshare.append("--net")
    return [*unshare, "sh", "-ec", "\n".join(parts)]
