"""detect_accelerator(): the probe must see a guest kernel run (positive control under tcg)."""

from __future__ import annotations

import pytest

from ha_ingress_build import bake


def test_forced_accelerator_skips_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HA_INGRESS_ACCELERATOR", "none")
    assert bake.detect_accelerator() == "none"


def test_probe_sees_a_kernel_boot_under_tcg() -> None:
    kernel = bake.find_probe_kernel()
    if kernel is None:
        pytest.skip("no kernel to probe with (build the base image first)")
    assert bake.probe_kernel("tcg", kernel, 60)


def test_probe_fails_for_a_file_that_is_no_kernel(tmp_path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"\0" * 4096)
    assert not bake.probe_kernel("tcg", bogus, 10)


def test_detect_returns_a_known_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HA_INGRESS_ACCELERATOR", raising=False)
    assert bake.detect_accelerator() in {"kvm", "tcg"}
