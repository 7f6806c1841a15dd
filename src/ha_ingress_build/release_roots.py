"""Debootstrap'd Debian roots holding another release's haproxy and keepalived.

Debian 11 carries keepalived 2.1.5 (EL8's) and haproxy 2.2; Debian 13 carries
haproxy 3.0 (EL10's generation) and keepalived 2.3. With the host's Debian 12
they bracket the EL8-EL10 targets for `haproxy -c` / `keepalived -t`. A bare
Debian 12 root is where the package tests install the .deb with apt.

The mirror is the one the host's apt already uses (so it works wherever apt
does); roots are cached under build/roots/<release> and built atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ha_ingress_build.packages import DEB_DEPENDS
from ha_ingress_proxy.subproc import require_tool, run
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.render import replace_dir

APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
# What lint runs in another release's root.
LINT_PACKAGES = ("haproxy", "keepalived", "iproute2")


@dataclass(frozen=True)
class Root:
    """One cached debootstrap minbase root."""

    suite: str
    include: tuple[str, ...] = ()  # installed by debootstrap
    prefetch: tuple[str, ...] = ()  # only downloaded into the root's apt cache


ROOTS = {
    # Another release's haproxy and keepalived, for `invoke lint --release`.
    "debian11": Root("bullseye", include=LINT_PACKAGES),
    "debian13": Root("trixie", include=LINT_PACKAGES),
    # Bare: tests copy it and `apt-get install ./ha-ingress-proxy_*.deb` there, so
    # the package's Depends are resolved by apt, as on a real Debian host.
    # The .deb's Depends are fetched into its apt cache once, so each throwaway copy
    # installs them without downloading again (apt still resolves against the mirror).
    "debian12-minbase": Root("bookworm", prefetch=DEB_DEPENDS),
}
# The releases lint can check with (label -> suite).
RELEASES = {label: root.suite for label, root in ROOTS.items() if "haproxy" in root.include}


def host_mirror() -> str:
    """The Debian mirror URL from the host's apt configuration."""
    for path in APT_SOURCES:
        if not path.is_file():
            continue
        text = path.read_text()
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            url = match.group(1)
            if url.rstrip("/").endswith("/debian"):
                return url
    raise UserError(f"no Debian mirror found in {' or '.join(map(str, APT_SOURCES))}; set one with --mirror")


def debootstrap(suite: str, target: Path, mirror: str, *, include: tuple[str, ...] = (),
                cache_dir: Path | None = None, context: str = "debootstrap") -> None:
    """debootstrap --variant=minbase: the one way every Debian root here is made."""
    argv = ["debootstrap", "--variant=minbase"]
    if include:
        argv.append(f"--include={','.join(include)}")
    if cache_dir is not None:
        argv.append(f"--cache-dir={cache_dir}")
    run([*argv, suite, str(target), mirror], context=context, timeout=1800)


def ensure_root(label: str, cache: Path, mirror: str | None = None) -> Path:
    """Return <cache>/<label> (see ROOTS), debootstrapping it first if it is not there yet.

    Built in a temporary directory and swapped in, so a root that exists is complete.
    """
    if label not in ROOTS:
        raise UserError(f"unknown release {label!r}; known: {', '.join(sorted(ROOTS))}")
    spec = ROOTS[label]
    dest = Path(cache) / label
    if dest.is_dir():
        return dest
    require_tool("debootstrap", "debootstrap")
    url = mirror or host_mirror()
    print(f"debootstrap {spec.suite} into {dest} (a few minutes, once)", flush=True)

    def build(tmp: Path) -> None:
        debootstrap(spec.suite, tmp, url, include=spec.include, context=f"debootstrap {label}")
        if spec.prefetch:
            run(
                ["chroot", str(tmp), "apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends", *spec.prefetch],
                env={"DEBIAN_FRONTEND": "noninteractive"},
                context=f"prefetch into {label}",
                timeout=900,
            )

    replace_dir(build, dest)
    return dest


def versions(root: Path) -> dict[str, str]:
    """haproxy and keepalived versions inside a root (for reports)."""
    out = {}
    for tool, argv in (("haproxy", ["haproxy", "-v"]), ("keepalived", ["keepalived", "--version"])):
        text = run(["chroot", str(root), *argv], check=False).stdout or ""
        match = re.search(r"(?:HA-?Proxy version|Keepalived v)\s*([0-9][^\s]*)", text)
        out[tool] = match.group(1) if match else "unknown"
    return out
