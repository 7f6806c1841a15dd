"""Property-based: valid inventories always render configs both daemons accept;
random or hostile input never gives a traceback or a partial output tree."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ha_ingress_build import lint, pipeline
from ha_ingress_proxy import inventory, render
from ha_ingress_proxy.inventory import InventoryError

from .conftest import EXAMPLES, need_root_and

names = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)
# node names YAML could read as something else ('y', 'on', 'null') are refused by the inventory (tested there)
node_name = names.filter(lambda s: inventory._node_name_problem(s) is None)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def valid_inventories(draw):
    n = draw(st.integers(1, 4))
    mode = draw(st.sampled_from(["active-active", "active-passive"]))
    hosts = draw(st.lists(st.integers(2, 250), min_size=n + n + 2, max_size=n + n + 2, unique=True))
    node_names = draw(st.lists(node_name, min_size=n, max_size=n, unique=True))
    nvips = n if mode == "active-active" else 1
    rids = draw(st.lists(st.one_of(st.none(), st.integers(1, 255)), min_size=nvips, max_size=nvips).filter(
        lambda ids: len([i for i in ids if i is not None]) == len({i for i in ids if i is not None})))
    ports = draw(st.lists(st.integers(1, 65535).filter(lambda p: p != 8888), min_size=1, max_size=4, unique=True))
    svc_names = draw(st.lists(names.filter(lambda s: s != "stats"), min_size=len(ports), max_size=len(ports), unique=True))
    cluster_names = draw(st.lists(names, min_size=2, max_size=2, unique=True))
    vrrp = draw(st.fixed_dictionaries({}, optional={
        "advert_int": st.sampled_from([0.05, 0.1, 0.5, 1, 2]),
        "preempt": st.booleans(),
        "unicast": st.booleans(),
    }))
    return {
        "schema_version": 1,
        "site": draw(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)),
        "mode": mode,
        "interface": draw(st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True)),
        "nodes": [{"name": node_names[i], "address": f"10.20.0.{hosts[i]}"} for i in range(n)],
        "vips": [{"address": f"10.20.0.{hosts[n + j]}", "router_id": rids[j]} for j in range(nvips)],
        "clusters": [{"name": cluster_names[k], "endpoint": f"10.30.0.{k + 1}"} for k in range(2)],
        "services": [{"name": svc_names[i], "port": p} for i, p in enumerate(ports)],
        "stats": {"port": 8888, "path": draw(st.from_regex(r"/[a-z]{0,8}", fullmatch=True))},
        "vrrp": vrrp,
    }


@pytest.mark.binaries
@settings(max_examples=12, **SETTINGS)
@given(data=valid_inventories())
def test_valid_inventories_render_configs_both_daemons_accept(data, tmp_path_factory):
    need_root_and("haproxy", "keepalived", "unshare")
    out = tmp_path_factory.mktemp("prop")
    site = inventory.validate(data, "generated.yaml")
    render.write_site(site, out)
    assert [f.line() for f in lint.lint(out)] == []


HOSTILE = ["a\nb", "x }", "{", '"q"', "#c", "a b", "", "\x00", "$(reboot)", "`id`", "a;b", "../../etc", "é"]


def _paths(obj, prefix=()):
    """Every (path, value) leaf of a nested dict/list."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))
    else:
        yield prefix, obj


BASE = yaml.safe_load((EXAMPLES / "active-active.yaml").read_text())
LEAVES = [p for p, v in _paths(BASE) if p[0] != "schema_version"]


@settings(max_examples=300, **SETTINGS)
@given(path=st.sampled_from(LEAVES), value=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20), st.integers(), st.floats(), st.none(), st.booleans()))
def test_hostile_values_never_reach_a_config(path, value, tmp_path_factory):
    data = copy.deepcopy(BASE)
    cursor = data
    for key in path[:-1]:
        cursor = cursor[key]
    cursor[path[-1]] = value
    try:
        site = inventory.validate(data, "hostile.yaml")
    except InventoryError as exc:
        assert exc.lines and all(line.startswith("hostile.yaml: ") and "\n" not in line for line in exc.lines)
        return
    # accepted: then no config line may carry anything outside the safe alphabet
    for tree in render.render_site(site).values():
        for rel, f in tree.items():
            text = f.content.decode()
            for bad in ("\x00", "$(", "`", ";", "{\n}", "é"):
                if bad in text:
                    assert bad in render.render_site(inventory.load(EXAMPLES / "active-active.yaml"))["proxy-1"][rel].content.decode(), (rel, bad)


@settings(max_examples=200, **SETTINGS)
@given(text=st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                 lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                 max_leaves=20).map(lambda d: yaml.safe_dump({"schema_version": 1, **d} if isinstance(d, dict) else d)),
))
def test_random_yaml_is_refused_cleanly_and_writes_nothing(text, tmp_path_factory):
    work = tmp_path_factory.mktemp("rand")
    src = work / "random.yaml"
    src.write_text(text, encoding="utf-8", errors="surrogateescape")
    out = work / "out"
    try:
        pipeline.render_site(src, out)
    except InventoryError as exc:
        assert exc.lines and all("\n" not in line and line.startswith(f"{src}: ") for line in exc.lines)
        assert not out.exists()
    else:  # a random document that happens to be a valid inventory is fine, and complete
        assert (out / "nodes").is_dir()
