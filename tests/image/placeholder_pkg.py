"""A PLACEHOLDER ha-ingress-proxy .deb for the image end-to-end test, until the real package exists.

It has the real package's name (the provisioning looks for ha-ingress-proxy_*.deb), depends
only on haproxy and keepalived, and ships just enough for the bake to exercise every step:
a file under /etc/ha-ingress-proxy for the manifest digest, the preset file, and an
ha-ingress-proxy-agent.service that only logs that it is a placeholder. Replace it with the
project's real .deb when that is built (same directory layout, same file name pattern).
"""

from __future__ import annotations

from pathlib import Path

from ha_ingress_proxy import run

VERSION = "0.0.0~placeholder1"

CONTROL = f"""\
Package: ha-ingress-proxy
Version: {VERSION}
Architecture: all
Maintainer: ha-ingress-proxy tests <root@localhost>
Depends: haproxy, keepalived
Section: net
Priority: optional
Description: PLACEHOLDER for the image tests, not the real ha-ingress-proxy
 Stands in for the real package in tests/image until it is built.
"""

FILES = {
    "etc/ha-ingress-proxy/PLACEHOLDER": "placeholder package: the real one renders configs here\n",
    "usr/lib/systemd/system-preset/50-ha-ingress-proxy.preset":
        "enable haproxy.service\nenable keepalived.service\nenable ha-ingress-proxy-agent.service\n",
    "usr/lib/systemd/system/ha-ingress-proxy-agent.service":
        "[Unit]\nDescription=PLACEHOLDER ha-ingress-proxy role agent (does nothing)\n\n"
        "[Service]\nType=oneshot\nExecStart=/bin/echo ha-ingress-proxy-agent placeholder\n\n"
        "[Install]\nWantedBy=multi-user.target\n",
}


def build_placeholder_deb(out_dir: Path) -> Path:
    """Build ha-ingress-proxy_<VERSION>_all.deb into out_dir (made if missing); return its path."""
    root = out_dir / "placeholder-root"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(CONTROL)
    for rel, text in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(0o644)
    pkgs = out_dir / "packages"
    pkgs.mkdir(parents=True, exist_ok=True)
    deb = pkgs / f"ha-ingress-proxy_{VERSION}_all.deb"
    run.run(["dpkg-deb", "--root-owner-group", "--build", root, deb])
    return deb
