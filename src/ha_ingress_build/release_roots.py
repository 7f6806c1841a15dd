"""Debootstrap'd Debian roots holding another release's haproxy and keepalived.

Debian 11 carries keepalived 2.1.5 (EL8's) and haproxy 2.2; Debian 13 carries
haproxy 3.0 (EL10's generation) and keepalived 2.3. With the host's Debian 12
they bracket the EL8-EL10 targets for `haproxy -c` / `keepalived -t`.

The mirror is the one the host's apt already uses (so it works wherever apt
does); roots are cached under build/roots/<release> and built atomically.
"""

from __future__ import annotations

import re
from pathlib import Path

from ha_ingress_proxy.subproc import require_tool, run
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.render import replace_dir

RELEASES = {"debian11": "bullseye", "debian13": "trixie"}
PACKAGES = ("haproxy", "keepalived", "iproute2")
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


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


def ensure_root(label: str, cache: Path, mirror: str | None = None) -> Path:
    """Return build/roots/<label>, debootstrapping it first if it is not there yet."""
    if label not in RELEASES:
        raise UserError(f"unknown release {label!r}; known: {', '.join(sorted(RELEASES))}")
    dest = Path(cache) / label
    if (dest / "usr/sbin/haproxy").exists() and (dest / "usr/sbin/keepalived").exists():
        return dest
    require_tool("debootstrap", "debootstrap")
    url = mirror or host_mirror()
    print(f"debootstrap {RELEASES[label]} into {dest} (a few minutes, once)", flush=True)

    def build(tmp: Path) -> None:
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", RELEASES[label], str(tmp), url],
            context=f"debootstrap {label}",
            timeout=1800,
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


# --- bare roots: install our .deb with its dependencies from the mirror -------

MINBASE_RELEASES = {"debian12": "bookworm"}
# Fetched into the cached root's apt cache once, so each throwaway copy installs
# them without downloading again (apt still resolves against the mirror).
MINBASE_PREFETCH = ("haproxy", "keepalived", "rsyslog", "logrotate", "python3", "python3-jinja2", "python3-yaml", "iproute2")


def ensure_minbase(label: str, cache: Path, mirror: str | None = None) -> Path:
    """Return build/roots/<label>-minbase: a debootstrap minbase without haproxy or keepalived.

    Tests copy it and `apt-get install ./ha-ingress-proxy_*.deb` there, so the
    package's Depends are resolved by apt, as on a real Debian host.
    """
    if label not in MINBASE_RELEASES:
        raise UserError(f"unknown release {label!r} for a minbase root; known: {', '.join(sorted(MINBASE_RELEASES))}")
    dest = Path(cache) / f"{label}-minbase"
    if (dest / ".prefetched").exists():
        return dest
    require_tool("debootstrap", "debootstrap")
    url = mirror or host_mirror()
    print(f"debootstrap {MINBASE_RELEASES[label]} minbase into {dest} (a few minutes, once)", flush=True)

    def build(tmp: Path) -> None:
        run(["debootstrap", "--variant=minbase", MINBASE_RELEASES[label], str(tmp), url], context=f"debootstrap {label} minbase", timeout=1800)
        run(
            ["chroot", str(tmp), "apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends", *MINBASE_PREFETCH],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            context=f"prefetch into {label} minbase",
            timeout=900,
        )
        (tmp / ".prefetched").write_text("")

    replace_dir(build, dest)
    return dest
