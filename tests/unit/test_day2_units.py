"""The unit drop-ins' day-2 contract: resign on shutdown (stop order), reload never restarts.

systemd stops units in the reverse of their start order (After=), so these
orderings decide what happens on `systemctl stop`, reboot and poweroff; the
running proof is the VM pair (tests/image), the lab proves the priority-0
handover itself (keepalived-stop scenario).
"""

from __future__ import annotations

from ha_ingress_proxy import inventory, layout, render

from ..conftest import EXAMPLES


def _values(text: str, key: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith(f"{key}="):
            out.extend(line.split("=", 1)[1].split() or [""])
    return out


def _tree():
    site = inventory.load(EXAMPLES / "active-passive.yaml")
    return render.render_node(site, site.nodes[0].name)


def test_keepalived_stops_before_haproxy_and_the_network():
    text = _tree()[layout.KEEPALIVED_DROPIN].content.decode()
    after = _values(text, "After")
    assert "haproxy.service" in after and "network-online.target" in after
    assert "network-online.target" in _values(text, "Wants")
    # the drain flag's directory exists before keepalived reads its track_file
    assert _values(text, "StateDirectory") == [layout.VAR_STATE_DIR.split("/", 2)[2]]


def test_haproxy_reload_is_validated_saves_state_and_signals_the_master():
    text = _tree()[layout.HAPROXY_DROPIN].content.decode()
    reload = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecReload=")]
    assert reload == [
        "",  # the distro's lines reset
        "/usr/sbin/haproxy -f ${CONFIG} -c -q",
        f"-{layout.shown(layout.LAUNCHER)} save-server-state",
        "/bin/kill -USR2 $MAINPID",
    ]
    assert "Restart=always" in text.splitlines()  # a crash restarts; a config change never does


def test_haproxy_config_carries_seamless_reload_settings():
    cfg = _tree()[layout.HAPROXY_CFG].content.decode()
    assert "expose-fd listeners" in cfg
    assert f"    server-state-file {layout.shown(layout.SERVER_STATE)}\n" in cfg
    assert "    load-server-state-from-file global\n" in cfg
    assert "    hard-stop-after 30m\n" in cfg


def test_haproxy_watcher_runs_before_keepalived_and_keepalived_tracks_its_file():
    """The watcher starts after haproxy and before keepalived (so on shutdown keepalived resigns
    first and the watcher never reports haproxy's planned stop); keepalived tracks its file
    (weight 0: FAULT while non-zero) in every instance, and its directory exists first."""
    tree = _tree()
    unit = tree[layout.HAPROXY_WATCH_UNIT].content.decode()
    assert "haproxy.service" in _values(unit, "After") and "keepalived.service" in _values(unit, "Before")
    assert _values(unit, "ExecStart") == [layout.shown(layout.LAUNCHER), "watch-haproxy"]
    assert _values(unit, "RuntimeDirectory") == [layout.STATE_DIR.split("/", 1)[1]]
    assert _values(unit, "RuntimeDirectoryPreserve") == ["yes"]  # the agent's state.json lives there too
    dropin = tree[layout.KEEPALIVED_DROPIN].content.decode()
    assert "ha-ingress-proxy-haproxy-watch.service" in _values(dropin, "Wants")
    assert _values(dropin, "RuntimeDirectory") == [layout.STATE_DIR.split("/", 1)[1]]
    assert _values(dropin, "RuntimeDirectoryPreserve") == ["yes"]
    conf = tree[layout.KEEPALIVED_CONF].content.decode()
    block = conf.split("track_file hip_haproxy {", 1)[1].split("}", 1)[0]
    assert f'file "{layout.shown(layout.HAPROXY_DOWN)}"' in block and "weight 0" in block
    instances = conf.count("vrrp_instance ")
    assert instances and conf.count("        hip_haproxy\n") == instances
    assert "enable ha-ingress-proxy-haproxy-watch.service" in tree[layout.PRESET].content.decode()


def test_without_the_watcher_only_the_check_tracks_haproxy():
    from dataclasses import replace

    site = inventory.load(EXAMPLES / "active-passive.yaml")
    site = replace(site, vrrp=replace(site.vrrp, haproxy_watch=False))
    tree = render.render_node(site, site.nodes[0].name)
    assert "hip_haproxy" not in tree[layout.KEEPALIVED_CONF].content.decode()
    assert "chk_haproxy" in tree[layout.KEEPALIVED_CONF].content.decode()
    assert "haproxy-watch" not in tree[layout.KEEPALIVED_DROPIN].content.decode()
    assert "haproxy-watch" not in tree[layout.PRESET].content.decode()


def test_bgp_nodes_have_no_watcher():
    site = inventory.load(EXAMPLES / "bgp.yaml")
    tree = render.render_node(site, site.nodes[0].name)
    assert layout.HAPROXY_WATCH_UNIT not in tree
    assert "haproxy-watch" not in tree[layout.PRESET].content.decode()


def test_every_vrrp_instance_runs_the_backup_grace_script_as_root_with_its_own_metric():
    """A preemption move keeps the VIP local on the old holder (docs/operations.md, "Moves by preemption"):
    notify_backup in every instance, the script root's, and its route's metric is not drain's."""
    from ha_ingress_proxy import plan
    from ha_ingress_proxy.agent import drain

    for mode in ("active-passive", "active-active"):
        site = inventory.load(EXAMPLES / f"{mode}.yaml")
        tree = render.render_node(site, site.nodes[0].name)
        conf = tree[layout.KEEPALIVED_CONF].content.decode()
        script = layout.shown(layout.BACKUP_GRACE_SCRIPT)
        assert conf.count("vrrp_instance ") == len(site.vips)
        for vip in site.vips:
            assert f'notify_backup "{script} {vip.address}" root' in conf
        assert "notify_fault" not in conf and "notify_master" not in conf  # FAULT: no grace
        text = tree[layout.BACKUP_GRACE_SCRIPT].content.decode()
        assert tree[layout.BACKUP_GRACE_SCRIPT].mode == 0o755
        assert f"metric {plan.BACKUP_GRACE_METRIC}" in text and f"sleep {plan.BACKUP_GRACE}" in text
    assert str(plan.BACKUP_GRACE_METRIC) != drain.GRACE_METRIC  # neither removes the other's route
    bgp = inventory.load(EXAMPLES / "bgp.yaml")
    assert layout.BACKUP_GRACE_SCRIPT not in render.render_node(bgp, bgp.nodes[0].name)  # no VRRP, no script
