"""Plans: states, priorities and VIP ownership for 1..4 nodes in both modes."""

from __future__ import annotations

import pytest

from ha_ingress_proxy import inventory, plan


def site_with(n: int, mode: str, **vrrp) -> inventory.Site:
    data = {
        "schema_version": 1,
        "site": "lab",
        "mode": mode,
        "interface": "eth0",
        "nodes": [{"name": f"p{i}", "address": f"10.9.0.{10 + i}"} for i in range(n)],
        "vips": [{"address": f"10.9.0.{100 + i}"} for i in range(n if mode == "active-active" else 1)],
        "clusters": [{"name": "c1", "endpoint": "10.9.1.1"}, {"name": "c2", "endpoint": "10.9.1.2"}],
        "services": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
        "stats": {"port": 8888, "path": "/stats"},
        "vrrp": vrrp,
    }
    return inventory.validate(data, "test.yaml")


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_active_active_every_node_masters_one_vip(n):
    site = site_with(n, "active-active")
    plans = plan.plans(site)
    # each VIP: exactly one rank-0 owner, ranks a permutation, priorities strictly ordered
    for j, vip in enumerate(site.vips):
        insts = [next(i for i in p.instances if i.vip == vip.address) for p in plans]
        assert sorted(i.rank for i in insts) == list(range(n))
        assert insts[j].rank == 0 and insts[j].priority == 200
        assert len({i.priority for i in insts}) == n
        assert {i.router_id for i in insts} == {vip.router_id}
    assert [p.masters for p in plans] == [(v.address,) for v in site.vips]
    # default: no preemption, so every instance starts BACKUP with nopreempt
    assert all(i.state == "BACKUP" and i.nopreempt for p in plans for i in p.instances)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_active_passive_priorities_follow_node_order(n):
    site = site_with(n, "active-passive", preempt=True)
    plans = plan.plans(site)
    assert [p.instances[0].priority for p in plans] == [200 - 10 * i for i in range(n)]
    assert [p.instances[0].state for p in plans] == ["MASTER"] + ["BACKUP"] * (n - 1)
    assert not any(p.instances[0].nopreempt for p in plans)
    assert plans[0].masters == (site.vips[0].address,) and all(p.masters == () for p in plans[1:])


def test_three_nodes_rotate_backups():
    plans = plan.plans(site_with(3, "active-active"))
    table = [[i.priority for i in p.instances] for p in plans]
    # rows: nodes, columns: VIPs (sorted by router id, which follow VIP order here)
    assert sorted(map(sorted, zip(*table))) == [[180, 190, 200]] * 3
    assert [row.count(200) for row in table] == [1, 1, 1]


def test_unicast_peers_are_the_other_nodes():
    p = plan.plan(site_with(3, "active-active", unicast=True), "p1")
    assert all(i.peers == ("10.9.0.10", "10.9.0.12") and i.source == "10.9.0.11" for i in p.instances)
    # unicast is the default; multicast only when the inventory says unicast: false
    assert all(i.peers == ("10.9.0.10", "10.9.0.12") for i in plan.plan(site_with(3, "active-active"), "p1").instances)
    assert all(i.peers == () for i in plan.plan(site_with(3, "active-active", unicast=False), "p1").instances)


def test_haproxy_view_binds_every_vip_and_every_cluster():
    site = site_with(2, "active-active")
    view = plan.plan(site, "p1").haproxy
    assert [l.name for l in view.listeners] == ["http", "https"]
    assert view.listeners[0].binds == ("10.9.0.100:80", "10.9.0.101:80")
    assert view.listeners[1].servers == (("c1", "10.9.1.1:443", 1, "track http/c1 slowstart 10s"),
                                         ("c2", "10.9.1.2:443", 1, "track http/c2 slowstart 10s"))
    assert view.stats_bind == "127.0.0.1:8888" and view.stats_cert == ""
    assert view.listeners[0].servers[0][3].startswith("check inter 1s fastinter 250ms downinter 1s rise 5 fall 2 observe layer4")
    assert view.nofile >= 2 * view.maxconn


def test_unknown_node():
    with pytest.raises(KeyError):
        plan.plan(site_with(2, "active-active"), "nope")
