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
