"""Fast checks of the Packer template: fmt, full validate of every source, pkrvars per base.

`packer validate` runs inside a network namespace with only loopback (offline_ns), so
nothing it tries can leave the machine. Packer 1.6.6 contacts the network while
validating in two places, handled here:
  * the openstack source authenticates: a fake Keystone runs on the namespace's loopback;
  * a `file:<URL>` checksum is downloaded: the vendor bases (rocky-9, alma-9) are
    validated with their checksum replaced by a fake sha256; the URL forms are checked apart.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ha_ingress_build.bake import BUILD_NAME, PACKER_DIR, packer_env
from ha_ingress_proxy import subproc

REPO = PACKER_DIR.parent
BASES = sorted(p.name.removesuffix(".pkrvars.hcl") for p in (PACKER_DIR / "bases").glob("*.pkrvars.hcl"))
SOURCES = ["qemu.node", "vsphere-clone.node", "amazon-ebs.node", "openstack.node"]
VENDOR_BASES = {"rocky-9": "dl.rockylinux.org", "alma-9": "repo.almalinux.org"}

FAKE_CLOUD_VARS = """\
# Clearly fake values: validation only, never contacted (packer runs in an offline netns).
vsphere_server             = "vcenter.example.invalid"
vsphere_username           = "fake@vsphere.local"
vsphere_password           = "not-a-password"
vsphere_datacenter         = "dc-fake"
vsphere_cluster            = "cluster-fake"
vsphere_datastore          = "ds-fake"
vsphere_network            = "pg-fake"
vsphere_template           = "template-fake"
aws_skip_region_validation = true
openstack_cloud            = "fake-cloud"
openstack_networks         = ["00000000-0000-0000-0000-000000000000"]
"""

CLOUDS_YAML = """\
clouds:
  fake-cloud:
    auth:
      auth_url: http://127.0.0.1:{port}/v3
      username: fake
      password: not-a-password
      project_name: fake
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionFake
"""


def test_packer_fmt_check() -> None:
    for d in (PACKER_DIR, PACKER_DIR / "bases"):
        subproc.run(["packer", "fmt", "-check", d], env=packer_env())


def test_newer_packer_plugins_file_is_hidden_from_1_6_6() -> None:
    """plugins.pkr.hcl.newer holds required_plugins for Packer >= 1.7; 1.6.6 must not load it."""
    text = (PACKER_DIR / "plugins.pkr.hcl.newer").read_text()
    assert "required_plugins" in text
    for name in ("qemu", "vsphere", "amazon", "openstack"):
        assert re.search(rf"^\s*{name}\s*=\s*{{", text, re.M), name
    assert not list(PACKER_DIR.glob("plugins.pkr.hcl"))


@pytest.fixture(scope="module")
def validate_env(tmp_path_factory: pytest.TempPathFactory, offline_ns) -> dict:
    """Inputs validate checks for existence (package dir, seed, key, base image), a fake cloud, a fake keystone."""
    tmp = tmp_path_factory.mktemp("validate")
    (tmp / "pkgs").mkdir()
    (tmp / "seed").mkdir()
    (tmp / "seed" / "user-data").write_text("#cloud-config\n")
    (tmp / "seed" / "meta-data").write_text("instance-id: validate\n")
    subproc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / "key"])
    # debian-12's pkrvars name build/base/... relative to the working directory: give it one.
    base = tmp / "cwd" / "build" / "base"
    base.mkdir(parents=True)
    (base / "debian-12.qcow2").write_bytes(b"not an image\n")
    digest = subproc.run(["sha256sum", "debian-12.qcow2"], cwd=base).stdout
    (base / "debian-12.qcow2.SHA256SUMS").write_text(digest)
    (tmp / "fake-cloud.pkrvars.hcl").write_text(FAKE_CLOUD_VARS)
    with socket.socket() as s:  # a free port number; the server binds it in the namespace
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp / "clouds.yaml").write_text(CLOUDS_YAML.format(port=port))
    keystone = subproc.start(offline_ns.exec_argv([sys.executable, str(Path(__file__).with_name("fake_keystone.py")),
                                               str(port), "--seconds", "600"]),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert keystone.stdout.readline().strip() == "ready"
    yield {"tmp": tmp, "ns": offline_ns}
    keystone.kill()
    keystone.wait(10)


def _validate(env: dict, base: str, only: str | None, extra: list[str] = ()) -> str:
    tmp = env["tmp"]
    argv = ["packer", "validate",
            "-var", f"package_dir={tmp / 'pkgs'}", "-var", f"seed_dir={tmp / 'seed'}",
            "-var", f"ssh_private_key_file={tmp / 'key'}", "-var", f"output_dir={tmp / 'out-does-not-exist'}",
            "-var-file", str(tmp / "fake-cloud.pkrvars.hcl"),
            "-var-file", str(PACKER_DIR / "bases" / f"{base}.pkrvars.hcl"), *extra]
    if only:
        argv += ["-only", only]
    argv.append(str(PACKER_DIR))
    penv = packer_env() | {"OS_CLIENT_CONFIG_FILE": str(tmp / "clouds.yaml")}
    return subproc.run(env["ns"].exec_argv(argv), env=penv, cwd=tmp / "cwd", timeout=120,
                   context=f"packer validate {base} {only or 'all'}").stdout


@pytest.mark.parametrize("base", BASES)
def test_validate_all_sources_per_base(validate_env: dict, base: str) -> None:
    extra = []
    if base in VENDOR_BASES:  # its file:https://... checksum would be fetched: replace it
        extra = ["-var", "base_image_checksum=sha256:" + "0" * 64]
    _validate(validate_env, base, None, extra)


@pytest.mark.parametrize("source", SOURCES)
def test_validate_each_source_with_build_prefix(validate_env: dict, source: str) -> None:
    _validate(validate_env, "debian-12", f"{BUILD_NAME}.{source}")


def test_validate_rejects_unknown_accelerator(validate_env: dict) -> None:
    with pytest.raises(subproc.CommandError) as err:
        _validate(validate_env, "debian-12", None, ["-var", "accelerator=turbo"])
    assert "The accelerator must be one of" in str(err.value)


def test_validate_rejects_unknown_base(validate_env: dict) -> None:
    with pytest.raises(subproc.CommandError) as err:
        _validate(validate_env, "debian-12", None, ["-var", "base=ubuntu-24"])
    assert "The base must be one of" in str(err.value)


def _pkrvars(path: Path) -> dict[str, str]:
    """key = "string" lines of a pkrvars file (all ours are flat strings)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_][a-z0-9_]*)\s*=\s*"([^"]*)"', line)
        assert m, f"{path.name}: not a flat string assignment: {line}"
        out[m[1]] = m[2]
    return out


@pytest.mark.parametrize("base", BASES)
def test_pkrvars_parse_and_name_declared_variables(base: str) -> None:
    declared = set(re.findall(r'^variable "([a-z0-9_]+)"', (PACKER_DIR / "variables.pkr.hcl").read_text(), re.M))
    values = _pkrvars(PACKER_DIR / "bases" / f"{base}.pkrvars.hcl")
    assert set(values) <= declared, set(values) - declared
    assert values["base"] == base
    assert values["base_image_url"].endswith(".qcow2")
    assert values["base_image_checksum"].startswith("file:")


@pytest.mark.parametrize("base", sorted(VENDOR_BASES))
def test_vendor_bases_use_official_genericcloud_urls(base: str) -> None:
    values = _pkrvars(PACKER_DIR / "bases" / f"{base}.pkrvars.hcl")
    host = VENDOR_BASES[base]
    assert values["base_image_url"].startswith(f"https://{host}/")
    assert "GenericCloud" in values["base_image_url"]
    assert values["base_image_checksum"].startswith(f"file:https://{host}/")
    assert values["base_image_checksum"].endswith("CHECKSUM")


def test_debian_base_is_the_local_build() -> None:
    values = _pkrvars(PACKER_DIR / "bases" / "debian-12.pkrvars.hcl")
    assert values["base_image_url"] == "build/base/debian-12.qcow2"
    assert values["base_image_checksum"] == "file:build/base/debian-12.qcow2.SHA256SUMS"
