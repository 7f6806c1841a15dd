"""End to end: base image -> Packer bake (qemu) -> boot one VM in a netns -> SSH, haproxy, manifest.

Slow (minutes under tcg) and needs root: run with `pytest -m image tests/image`.
Prints and writes build/image-test/measurements.json: base build time, bake time, image
size, boot-to-SSH time, and the accelerator used. HA_INGRESS_REBUILD_BASE=1 rebuilds the
base even when it is up to date (otherwise its time is the one recorded when it was built).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from ha_ingress_proxy import image
from ha_ingress_proxy.vm import NetNS, boot_vm, serial_tail

from conftest import REPO, need_root
from placeholder_pkg import VERSION, build_placeholder_deb

pytestmark = pytest.mark.image


def test_build_bake_boot(tmp_path: Path) -> None:
    need_root()
    out = REPO / "build" / "image-test"
    measured: dict[str, object] = {}

    t0 = time.monotonic()
    base = image.build_base(REPO / "build" / "base", force=bool(os.environ.get("HA_INGRESS_REBUILD_BASE")))
    took = time.monotonic() - t0
    recorded = json.loads((base.parent / "debian-12.times.json").read_text())
    measured["base_build_s"] = round(sum(recorded.values()), 1)
    measured["base_reused"] = took < 10
    measured["base_size_mib"] = round(base.stat().st_size / 2**20)

    deb = build_placeholder_deb(tmp_path)
    accel = image.detect_accelerator()
    measured["accelerator"] = accel

    result = image.bake(base, deb.parent, out, accel)
    measured["bake_s"] = round(result.seconds, 1)
    measured["image_size_mib"] = round(result.size_bytes / 2**20)
    measured["image"] = str(result.image)

    key = tmp_path / "vm_key"
    pub = image.make_keypair(key, "ha-ingress-proxy-image-test")
    with NetNS(name=f"hip-img-{uuid.uuid4().hex[:6]}", host_cidr="10.213.0.1/24") as ns:
        vm = boot_vm(result.image, name="node1", workdir=tmp_path / "vm", netns=ns,
                     address_cidr="10.213.0.10/24", public_key=pub, private_key=key, accelerator=accel)
        try:
            try:
                measured["boot_to_ssh_s"] = round(vm.wait_for_ssh(timeout=900), 1)
            except Exception:
                print(serial_tail(vm, 60))
                raise
            finally:
                (out / "measurements.json").write_text(json.dumps(measured, indent=2) + "\n")
                print("\nimage pipeline measurements:\n" + json.dumps(measured, indent=2))
            version = vm.ssh("haproxy", "-v").stdout
            assert "HAProxy version 2.6" in version
            assert vm.ssh("dpkg-query", "-W", "-f", "${Version}", "ha-ingress-proxy").stdout.strip() == VERSION
            states = vm.ssh("systemctl", "is-enabled", "haproxy", "keepalived", "ha-ingress-proxy-agent",
                            check=False).stdout.split()
            assert states == ["enabled", "enabled", "enabled"], states
            manifest = json.loads(vm.ssh("cat", "/usr/share/ha-ingress-proxy/image-manifest.json").stdout)
            assert manifest["package_version"] == VERSION
            assert manifest["base"] == "debian-12"
            assert len(manifest["configs_sha256"]) == 64
            assert "/etc/ha-ingress-proxy/PLACEHOLDER" in manifest["files"]
            # sealed: new machine-id, fresh host keys, only this boot's key authorised
            assert len(vm.ssh("cat", "/etc/machine-id").stdout.strip()) == 32
            assert vm.ssh("ls", "/etc/ssh/").stdout.count("ssh_host_ed25519_key") == 2
            keys = vm.ssh("cat", "/root/.ssh/authorized_keys").stdout
            assert "ha-ingress-proxy-image-test" in keys and "ha-ingress-proxy-bake" not in keys
            assert vm.ssh("ls", "/tmp/ha-ingress-proxy-pkgs", check=False).returncode != 0
            assert vm.ssh("find", "/var/lib/apt/lists", "-name", "*_Packages*").stdout.strip() == ""
        finally:
            vm.stop()
