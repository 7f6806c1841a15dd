"""The VM-pair harness's readings of what it observes (ha_ingress_lab/vm_pair.py): the serial
console's stop order, the probe loop's outage and the VIP moves the client saw. The VMs
themselves run only in `invoke bench --failover --scenario shutdown|rolling-replace|upgrade`."""

from __future__ import annotations

from ha_ingress_lab import vm_pair

# What systemd prints on a VM's serial console during `systemctl poweroff` (colours included).
SERIAL = (
    "         Stopping \x1b[0;1;39mkeepalived.service\x1b[0m - Keepalive Daemon (LVS and VRRP)...\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Stopped \x1b[0;1;39mha-ingress-proxy-metrics.service\x1b[0m - metrics.\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Stopped \x1b[0;1;39mkeepalived.service\x1b[0m - Keepalive Daemon (LVS and VRRP).\r\n"
    "         Stopping \x1b[0;1;39mhaproxy.service\x1b[0m - HAProxy Load Balancer...\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Stopped \x1b[0;1;39mhaproxy.service\x1b[0m - HAProxy Load Balancer.\r\n"
    "         Stopping \x1b[0;1;39mnetworking.service\x1b[0m - Raise network interfaces...\r\n"
)


def test_stop_order_keeps_only_keepalived_haproxy_and_network_in_order():
    assert vm_pair.stop_order(SERIAL) == [
        "Stopping keepalived.service - Keepalive Daemon (LVS and VRRP)...",
        "Stopped keepalived.service - Keepalive Daemon (LVS and VRRP).",
        "Stopping haproxy.service - HAProxy Load Balancer...",
        "Stopped haproxy.service - HAProxy Load Balancer.",
        "Stopping networking.service - Raise network interfaces...",
    ]


def _r(t: float, ok: bool, mac: str = "m1", url: str = "http://v/") -> dict:
    return {"t": t, "done": t + 0.01, "ok": ok, "mac": mac, "url": url, "body": ""}


def test_outage_counts_failures_after_the_fault_until_service_is_back():
    records = [_r(0.0, True), _r(1.0, False), _r(1.1, True), _r(1.2, False), _r(1.3, True, "m2"), _r(1.4, True, "m2")]
    got = vm_pair.outage(records, 0.5)
    assert got == {"outage_ms": 810.0, "failed_requests": 2, "requests": 5, "recovered": True}
    assert vm_pair.outage(records[:1] + records[2:3], 0.5)["outage_ms"] == 0.0
    assert vm_pair.outage([_r(1.0, False)], 0.5)["recovered"] is False


def test_vip_moves_follow_the_answering_node():
    records = [_r(0, True, "m1"), _r(1, True, "m1"), _r(2, False, ""), _r(3, True, "m2"), _r(4, True, "m1")]
    assert vm_pair.vip_moves(records, {"proxy-1": "m1", "proxy-2": "m2"}) == {
        "http://v/": [(0, "proxy-1"), (3, "proxy-2"), (4, "proxy-1")]}


def test_a_record_per_scenario_and_settings_in_the_design_shape():
    runs = [{"outage_ms": 0.0, "failed_requests": 0, "requests": 900, "recovered": True, "priority0_adverts": 3},
            {"outage_ms": 120.0, "failed_requests": 2, "requests": 910, "recovered": True, "priority0_adverts": 1},
            {"outage_ms": 40.0, "failed_requests": 1, "requests": 905, "recovered": False, "priority0_adverts": 2}]
    rec = vm_pair._record("active-active", "shutdown", "seed", "tcg", runs)
    assert rec["settings"] == "seed" and rec["scenario"] == "shutdown" and rec["runs"] == 3
    assert rec["failed_requests"] == {"min": 0, "median": 1, "max": 2}
    assert rec["outage_ms"]["median"] == 40.0 and rec["recovered"] == 2
    assert rec["priority0_adverts"] == {"min": 1, "median": 2, "max": 3}


def test_unknown_vm_settings_are_refused_before_anything_boots(tmp_path):
    import pytest

    from ha_ingress_proxy.errors import UserError

    inv = vm_pair.Path(__file__).resolve().parents[2] / "examples" / "active-active.yaml"
    with pytest.raises(UserError, match="not VM-pair settings: ours-garp1"):
        vm_pair.vm_bench(inv, tmp_path, ("shutdown",), 1, tmp_path / "n.qcow2", None, settings=("ours-garp1",))
    assert not (tmp_path / "bench").exists()


def test_one_qemu_command_for_every_vm_with_the_accelerator_as_a_setting(tmp_path):
    from ha_ingress_lab.vm import VM, qemu_argv

    vm = VM(name="proxy-1-1", workdir=tmp_path)
    for accel in ("kvm", "tcg"):
        argv = qemu_argv(vm, accel, 1024, tmp_path / "d.qcow2", tmp_path / "seed.iso", "tap0", "52:54:00:1e:01:01")
        assert argv[argv.index("-accel") + 1] == accel
        assert "virtio-net-pci,netdev=n0,mac=52:54:00:1e:01:01" in argv and f"file:{vm.serial_log}" in argv
        assert "tap,id=n0,ifname=tap0,script=no,downscript=no" in argv
