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
# Writable, private to the view. The node's state directories are among them: keepalived 2.3
# refuses a track_file whose directory is missing or read-only, even for `keepalived -t`
# (the drain file in VAR_STATE_DIR, the haproxy watcher's file in STATE_DIR, below /run).
PRIVATE_TMPFS = ("run", layout.STATE_DIR, "var/log", layout.VAR_STATE_DIR)


def mount_script(tree: Path, root: Path = Path("/"), private_dirs: tuple[str, ...] = PRIVATE_TMPFS,
                 extra: Path | None = None) -> str:
    """Shell lines (for `sh -e` in a fresh mount namespace) that put tree in place under root.

    extra: a second tree laid under the first (files only a check needs, such as
    lint's placeholder certificate, which must never land in the rendered tree).
    """
    tree = Path(tree).resolve()
    lines = ["mount --make-rprivate /"]
    for top in OVERLAID:
        layers = [d / top for d in (tree, Path(extra).resolve() if extra else None) if d is not None and (d / top).is_dir()]
        if layers:
            target = Path(root) / top
            lower = ":".join(str(d) for d in [*layers, target])
            lines.append(
                f"mount -t overlay ha-ingress-view -o {shlex.quote(f'lowerdir={lower}')} {shlex.quote(str(target))}"
            )
    for rel in private_dirs:
        target = Path(root) / rel
        # (a missing mount point is created: an empty directory, on the host or in the release root)
        lines.append(f"mkdir -p {shlex.quote(str(target))}")
        lines.append(f"mount -t tmpfs -o mode=0755 ha-ingress-{rel.replace('/', '-')} {shlex.quote(str(target))}")
    return "\n".join(lines)


SYSUSERS_DIR = layout.SYSUSERS.rsplit("/", 1)[0]


def sysusers(tree: Path) -> list[str]:
    """The system users the tree's sysusers.d files declare (`u NAME ...` lines)."""
    names = []
    d = Path(tree) / SYSUSERS_DIR
    for conf in sorted(d.glob("*.conf")) if d.is_dir() else []:
        for line in conf.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "u":
                names.append(words[1])
    return names


def users_layer(tree: Path, extra: Path, root: Path = Path("/"), uid: int | None = None) -> None:
    """Put copies of root's /etc/passwd and /etc/group into extra/etc, with the tree's
    sysusers.d users added (as systemd-sysusers adds them on a node), so keepalived's
    script_user resolves in the view without the host's files ever being written.
    uid: give them this uid/gid instead of a free system one (lint's keepalived 2.2.7 work-around).
    A tree without sysusers.d files (only the agent's files, the package installed in root)
    uses root's."""
    names = sysusers(tree) or sysusers(root)
    if not names:
        return
    passwd = (Path(root) / "etc/passwd").read_text()
    group = (Path(root) / "etc/group").read_text()
    used = {int(f.split(":")[2]) for f in passwd.splitlines() + group.splitlines() if f.count(":") >= 3 and f.split(":")[2].isdigit()}
    if uid is not None:  # replace what root has for them
        passwd = "".join(line + "\n" for line in passwd.splitlines() if line.split(":")[0] not in names)
        group = "".join(line + "\n" for line in group.splitlines() if line.split(":")[0] not in names)
    for name in names:
        if any(line.split(":")[0] == name for line in passwd.splitlines()):
            continue
        new = uid if uid is not None else next(i for i in range(999, 100, -1) if i not in used)
        used.add(new)
        passwd += f"{name}:x:{new}:{new}::/:/usr/sbin/nologin\n"
        group += f"{name}:x:{new}:\n"
    (extra / "etc").mkdir(parents=True, exist_ok=True)
    (extra / "etc/passwd").write_text(passwd)
    (extra / "etc/group").write_text(group)


def interfaces_script(names: list[str]) -> str:
    """Shell lines creating each named interface (a veth end) in the current network namespace."""
    lines = []
    for i, name in enumerate(sorted(set(names))):
        lines.append(f"ip link add {shlex.quote(name)} type veth peer name hiplint{i}")
        lines.append(f"ip link set {shlex.quote(name)} up")
    return "\n".join(lines)


def in_view_argv(tree: Path, command: list[str], *, root: Path = Path("/"), interfaces: list[str] | None = None,
                 extra: Path | None = None) -> list[str]:
    """argv that runs command with tree installed (and interfaces present, in a private netns)."""
    parts = [mount_script(tree, root, extra=extra)]
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
