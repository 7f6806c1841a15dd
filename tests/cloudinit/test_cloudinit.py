"""cloud-init user-data and NoCloud seeds, checked by the real `cloud-init schema`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ha_ingress_build import cloudinit, pipeline
from ha_ingress_proxy import inventory
from ha_ingress_proxy.agent import secrets
from ha_ingress_proxy.errors import CommandError, UserError

from ..conftest import EXAMPLES

PASSWORD = "test-password-0123456789"


@pytest.fixture(autouse=True)
def _tools():
    if not os.path.exists("/usr/bin/cloud-init") or not os.path.exists("/usr/bin/cloud-localds"):
        pytest.fail("cloud-init and cloud-image-utils are needed: ./invokew test installs them")


def secrets_file(tmp_path: Path, mode: int = 0o600, value: str = PASSWORD) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text(f"HAPROXY_STATS_PASSWORD={value}\n")
    os.chmod(path, mode)
    return path


def test_image_seeds_carry_role_in_metadata_and_secret_only_in_user_data(tmp_path):
    dest = pipeline.cloud_init(EXAMPLES / "active-active.yaml", tmp_path, "image", secrets_file(tmp_path))
    for node in ("proxy-1", "proxy-2"):
        d = dest / node
        meta = yaml.safe_load((d / "meta-data").read_text())
        assert meta["ha_ingress_node"] == node and PASSWORD not in (d / "meta-data").read_text()
        user = yaml.safe_load((d / "user-data").read_text())
        assert (d / "user-data").read_text().startswith("#cloud-config\n")
        [secret] = user["write_files"]
        assert secret["path"] == "/etc/ha-ingress-proxy/secrets.env" and secret["permissions"] == "0600"
        assert secret["content"] == f"HAPROXY_STATS_PASSWORD={PASSWORD}\n"
        assert {p.name for p in d.iterdir()} == {"user-data", "meta-data", "seed.iso"}
        assert all(p.stat().st_mode & 0o077 == 0 for p in [d, *d.iterdir()])


def test_every_character_the_password_rule_allows_survives_user_data(tmp_path):
    """The rule is the agent's; user-data must carry any password it allows byte for byte."""
    allowed = "".join(c for c in map(chr, range(32, 127)) if secrets.password_problem(c * 12) is None)
    assert len(allowed) == 91 and not set(allowed) & set(" \"'\\")
    site = inventory.load(EXAMPLES / "active-active.yaml")
    for kind in cloudinit.KINDS:
        seeds = cloudinit.seeds(site, kind, allowed, repo_url="https://repo.example.invalid/el9")
        for seed in seeds:
            files = {f["path"]: f["content"] for f in yaml.safe_load(seed.user_data)["write_files"]}
            assert files["/etc/ha-ingress-proxy/secrets.env"] == f"HAPROXY_STATS_PASSWORD={allowed}\n"
            path = tmp_path / f"{kind}-{seed.node}"
            path.write_text(seed.user_data)
            cloudinit.validate_user_data(path)


def test_stock_el_user_data_adds_repo_and_package(tmp_path):
    dest = pipeline.cloud_init(EXAMPLES / "active-passive.yaml", tmp_path, "stock-el", secrets_file(tmp_path),
                           repo_url="https://repo.example.invalid/el9", iso=False)
    user = yaml.safe_load((dest / "proxy-2" / "user-data").read_text())
    assert user["packages"] == ["ha-ingress-proxy"]
    assert user["yum_repos"]["ha-ingress-proxy"]["baseurl"] == "https://repo.example.invalid/el9"
    assert {f["path"] for f in user["write_files"]} == {"/etc/ha-ingress-proxy/secrets.env", "/etc/ha-ingress-proxy/node.yaml"}


def test_schema_errors_are_caught_by_the_real_cloud_init(tmp_path):
    bad = tmp_path / "user-data"
    bad.write_text("#cloud-config\npackages: 5\n")
    with pytest.raises(CommandError) as info:
        cloudinit.validate_user_data(bad)
    assert "packages" in str(info.value)
    bad.write_text("#cloud-config\nwrite_file:\n  - path: /x\n")
    with pytest.raises(UserError, match="write_file: unknown cloud-config key"):
        cloudinit.validate_user_data(bad)


def test_password_refusals(tmp_path):
    with pytest.raises(UserError, match="mode 0644 lets others read the secret"):
        cloudinit.read_password(path=secrets_file(tmp_path, 0o644))
    with pytest.raises(UserError, match=r"HAPROXY_STATS_PASSWORD: the stats password must be 12-128 printable ASCII "
                                        r"characters .* \(got 5 characters; value not shown\)"):
        cloudinit.read_password(path=secrets_file(tmp_path, value="short"))
    # the agent's rule, not a second one: what the node accepts, the build accepts, and nothing else
    with pytest.raises(UserError, match="without whitespace, quotes or backslashes"):
        cloudinit.read_password(env={"HAPROXY_STATS_PASSWORD": 'has"a-quote-in-it'})
    assert cloudinit.read_password(env={"HAPROXY_STATS_PASSWORD": "#[shell&yaml]{chars}"}) == "#[shell&yaml]{chars}"
    with pytest.raises(UserError, match="no stats password"):
        cloudinit.read_password(env={})
    assert cloudinit.read_password(env={"HAPROXY_STATS_PASSWORD": PASSWORD}) == PASSWORD


def test_bad_inventory_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nsite: x\n")
    with pytest.raises(inventory.InventoryError):
        pipeline.cloud_init(bad, tmp_path / "out", "image", secrets_file(tmp_path))
    assert not (tmp_path / "out").exists()


def test_network_config_renames_the_nic_to_the_inventory_interface(tmp_path):
    site = inventory.load(EXAMPLES / "active-active.yaml")
    [seed, _] = cloudinit.seeds(site, "image", PASSWORD, networks={"proxy-1": ("52:54:00:00:00:09", 24)})
    net = yaml.safe_load(seed.network_config)
    assert net["ethernets"]["ens192"] == {
        "match": {"macaddress": "52:54:00:00:00:09"}, "set-name": "ens192", "addresses": ["192.168.1.9/24"]}


def _strings_only(data, path="") -> list[str]:
    """Key paths of every scalar in parsed YAML that is not a string (keys included)."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, str):
                out.append(f"{path}.{k!r} (key)")
            out += _strings_only(v, f"{path}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _strings_only(v, f"{path}[{i}]")
    elif not isinstance(data, str) and not isinstance(data, bool):
        out.append(f"{path}: {data!r}")
    return out


@pytest.mark.parametrize("name", ["010", "on", "null", "1e3", "2001-12-14", "yes"])
def test_every_templated_yaml_value_is_quoted(tmp_path, name):
    """Issue 10 item 6: a node named 010 landed unquoted in meta-data (ha_ingress_node: 8) and every node refused.

    The inventory now refuses such names; this builds the site past it to show the seeds would carry
    any name as the string it is, and that the files still pass the real `cloud-init schema`.
    """
    import dataclasses

    site = inventory.load(EXAMPLES / "active-active.yaml")
    site = dataclasses.replace(site, nodes=(dataclasses.replace(site.nodes[0], name=name, interface="010"), *site.nodes[1:]))
    for kind in cloudinit.KINDS:
        [seed, _] = cloudinit.seeds(site, kind, PASSWORD, repo_url="https://repo.example.invalid/el9",
                                    networks={name: ("52:54:00:00:00:09", 24)})
        meta = yaml.safe_load(seed.meta_data)
        assert meta == {"instance-id": f"dc1-ingress-{name}", "local-hostname": name, "ha_ingress_node": name}
        net = yaml.safe_load(seed.network_config)
        assert net["ethernets"]["010"]["set-name"] == "010"
        assert _strings_only(net) == [".version: 2"]  # the one number network-config has; every templated value a string
        user = yaml.safe_load(seed.user_data)
        files = {f["path"]: f["content"] for f in user["write_files"]}
        assert files["/etc/ha-ingress-proxy/secrets.env"] == f"HAPROXY_STATS_PASSWORD={PASSWORD}\n"
        if kind == "stock-el":
            # node.yaml, as the agent reads it, names the node as a string
            assert yaml.safe_load(files["/etc/ha-ingress-proxy/node.yaml"]) == {"ha_ingress_node": name}
        path = tmp_path / f"{kind}-user-data"
        path.write_text(seed.user_data)
        cloudinit.validate_user_data(path)
