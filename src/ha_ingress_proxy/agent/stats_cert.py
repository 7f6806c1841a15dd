"""The stats page's TLS certificate: delivered root-only, or made self-signed at first boot.

haproxy serves a non-loopback stats page only over TLS (`bind ... ssl crt`,
plan.STATS_CERT): one PEM file holding the certificate and its private key,
root-only (0600) like secrets.env. An admin delivers it (cloud-init
write_files, configuration management); when none is there, the agent makes a
self-signed one with `openssl` (an EC P-256 key, the node's stats address as
subjectAltName), so the node still comes up. Either way its SHA-256
fingerprint goes into the state file and `ha-ingress-proxy status`, so a
browser's or curl's pinning can be checked against the node. The key never
leaves the file: nothing here prints or logs PEM contents.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ha_ingress_proxy import layout
from ha_ingress_proxy.plan import NodePlan
from ha_ingress_proxy.subproc import require_tool, run

from . import files
from .sources import Refusal

MAX_PEM = 64 << 10
DAYS = 825
_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
_KEY = re.compile(rb"-----BEGIN (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----")
DELIVERED = "delivered"
SELF_SIGNED = "self-signed by the agent"


@dataclass(frozen=True)
class StatsCert:
    path: str  # as on the node
    source: str  # DELIVERED | SELF_SIGNED
    sha256: str  # AA:BB:... of the certificate's DER, as `openssl x509 -fingerprint -sha256` prints it

    def state(self) -> dict[str, str]:
        return {"cert": self.path, "source": self.source, "sha256": self.sha256}


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the first certificate in a PEM blob, colon-separated upper hex. ValueError if none."""
    m = _CERT.search(pem)
    if not m:
        raise ValueError("no certificate in it")
    der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _delivered(root: Path, rel: str) -> Optional[StatsCert]:
    name = layout.shown(rel)
    try:
        pem, st = files.read_with_stat(root, rel, MAX_PEM)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Refusal(f"{name}: cannot read: {exc}; the stats certificate must be a root-only (0600) PEM file") from None
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid() or mode & 0o077:
        raise Refusal(
            f"{name}: mode {mode:04o}, owner uid {st.st_uid}: it holds the stats page's private key; "
            f"make it root-owned and 0600 (chmod 600 {name}) and, since it may have been read, replace the key"
        )
    if not _KEY.search(pem):
        raise Refusal(f"{name}: no PRIVATE KEY block; it must hold the certificate and its key (contents not shown)")
    try:
        fp = fingerprint(pem)
    except ValueError as exc:
        raise Refusal(f"{name}: {exc}; it must hold the certificate and its key (contents not shown)") from None
    return StatsCert(name, DELIVERED, fp)


def make_self_signed(root: Path, rel: str, common_name: str, address: str) -> None:
    """Write a new self-signed certificate + key (EC P-256) to rel below root, mode 0600, atomically.

    openssl writes into a private (0700) temporary directory outside the node tree,
    removed at once; the key is never printed.
    """
    openssl = require_tool("openssl", "openssl")
    work = Path(tempfile.mkdtemp(prefix="hip-stats-cert-"))  # 0700
    try:
        key, cert = work / "key.pem", work / "cert.pem"
        run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", str(DAYS), "-subj", f"/CN={common_name}", "-addext", f"subjectAltName=IP:{address}",
                "-keyout", key, "-out", cert,
            ],
            timeout=60,
            context="making the stats page's self-signed certificate",
        )
        files.write_atomic(root, rel, cert.read_bytes() + key.read_bytes(), 0o600)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure(root: Path, node_plan: NodePlan) -> Optional[StatsCert]:
    """The certificate the plan's stats bind or metrics endpoints need (None when all serve plain HTTP).

    A self-signed one made here is remembered by its fingerprint in a sidecar file
    (layout.STATS_CERT_MARK, no secret in it), so later boots still say so.
    """
    cert = node_plan.haproxy.stats_cert or node_plan.metrics_cert  # one certificate serves both
    if not cert:
        return None
    rel = cert.lstrip("/")
    found = _delivered(root, rel)
    if found is None:
        address = node_plan.haproxy.stats_bind.rsplit(":", 1)[0] if node_plan.haproxy.stats_cert else node_plan.node.address
        make_self_signed(root, rel, f"{node_plan.node.name} stats ({node_plan.site})", address)
        found = _delivered(root, rel)
        assert found is not None
        files.write_atomic(root, layout.STATS_CERT_MARK, f"{found.sha256}\n".encode(), layout.mode(layout.STATS_CERT_MARK))
    try:
        made_here = files.read_limited(root, layout.STATS_CERT_MARK, 256).decode().strip() == found.sha256
    except (OSError, ValueError, UnicodeDecodeError):
        made_here = False
    return StatsCert(found.path, SELF_SIGNED if made_here else DELIVERED, found.sha256)


__all__ = ["StatsCert", "ensure", "fingerprint", "make_self_signed", "DELIVERED", "SELF_SIGNED"]
