"""Rendered site -> cloud-init user-data, NoCloud meta-data and seed ISOs, per node.

Two kinds of user-data (templates in the repository's cloud-init/ folder):
- stock-el: a stock EL cloud image adds the yum repo, installs the package,
  receives the stats password and its node name;
- image: the baked image receives only the stats password (its role comes from
  the meta-data key ha_ingress_node).
Secrets go into user-data (write_files, mode 0600), never into meta-data:
cloud-init publishes meta-data in the world-readable instance-data.json.
Everything is checked with the real `cloud-init schema` before it is kept.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from ha_ingress_build import signing
from ha_ingress_proxy import inventory
from ha_ingress_proxy.agent.secrets import VARIABLE, password_problem
from ha_ingress_proxy.subproc import require_tool, run
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.render import File, environment, replace_dir, write_tree

TEMPLATES = Path(__file__).resolve().parents[2] / "cloud-init"
SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")
# cloud-init runs on Debian's own python3 (the one its modules are installed for).
CLOUD_INIT = ["/usr/bin/python3", "/usr/bin/cloud-init"]
KINDS = ("image", "stock-el")


@dataclass(frozen=True)
class Seed:
    node: str
    user_data: str
    meta_data: str
    network_config: str | None


def read_password(env: dict[str, str] | None = None, path: Path | None = None) -> str:
    """The stats password: from a root-only env file (HAPROXY_STATS_PASSWORD=...) or the environment.

    It must pass the agent's password rule (agent.secrets.password_problem): the node refuses any other.
    """
    value = None
    source = f"environment variable {VARIABLE}"
    if path is not None:
        source = str(path)
        try:
            st = path.stat()
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc.strerror}") from None
        if st.st_mode & 0o077:
            raise UserError(f"{path}: mode {st.st_mode & 0o777:04o} lets others read the secret; chmod 600 it")
        for line in text.splitlines():
            if line.startswith(f"{VARIABLE}="):
                value = line.split("=", 1)[1]
        if value is None:
            raise UserError(f"{path}: {VARIABLE}: not set in the file")
    else:
        value = (env if env is not None else os.environ).get(VARIABLE)
        if not value:
            raise UserError(f"no stats password: set {VARIABLE} or pass --secrets FILE ({VARIABLE}=... in a mode 600 file)")
    problem = password_problem(value)
    if problem:
        raise UserError(f"{source}: {VARIABLE}: {problem}")
    return value


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def seeds(
    site: inventory.Site,
    kind: str,
    password: str,
    *,
    repo_url: str = "",
    ssh_keys: tuple[str, ...] = (),
    networks: dict[str, tuple[str, int]] | None = None,
    role_in_metadata: bool = True,
    allow_http: bool = False,
    unsigned_repo: bool = False,
) -> list[Seed]:
    """User-data + meta-data (+ network-config when a MAC per node is given) for every node.

    stock-el: repo_url must be https (http only with allow_http); the repo is taken as signed
    (gpgcheck, repo_gpgcheck, gpgkey = <repo_url>/RPM-GPG-KEY-ha-ingress-proxy) unless
    unsigned_repo says it was built with --unsigned.
    """
    if kind not in KINDS:
        raise UserError(f"unknown user-data kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "stock-el" and not repo_url:
        raise UserError("stock-el user-data needs --repo-url (the yum repo's base URL)")
    if repo_url:
        signing.check_repo_url(repo_url, "--repo-url", allow_http)
    repo_gpgkey = signing.public_key_url(repo_url) if repo_url and not unsigned_repo else ""
    env = environment(TEMPLATES)
    out = []
    for node in site.nodes:
        ctx = {
            "site": site.site,
            "node": node.name,
            "repo_url": repo_url,
            "repo_gpgkey": repo_gpgkey,
            "ssh_authorized_keys": list(ssh_keys),
            "instance_id": f"{site.site}-{node.name}",
            "node_key": role_in_metadata,
            # whole file contents, so the templates only quote them (| tojson) and never build YAML
            "secrets_env": f"{VARIABLE}={password}\n",
            "node_yaml": f"ha_ingress_node: {json.dumps(node.name)}\n",
        }
        network = None
        if networks and node.name in networks:
            mac, prefix = networks[node.name]
            network = env.get_template("network-config.j2").render(
                interface=node.interface, mac=mac, address=f"{node.address}/{prefix}"
            )
        out.append(
            Seed(
                node=node.name,
                user_data=env.get_template(f"{kind}.user-data.j2").render(**ctx),
                meta_data=env.get_template("meta-data.j2").render(**ctx),
                network_config=network,
            )
        )
    return out


def known_top_level_keys() -> set[str]:
    """Top-level cloud-config keys cloud-init's own schema knows (it does not flag misspelled ones)."""
    schema = json.loads(SCHEMA.read_text())
    keys: set[str] = set()
    for part in schema.get("allOf", []):
        ref = part.get("$ref", "").rsplit("/", 1)[-1]
        keys |= set(schema.get("$defs", {}).get(ref, {}).get("properties", {}))
    return keys


def validate_user_data(path: Path) -> None:
    """Real `cloud-init schema`, plus the top-level key check it lacks."""
    require_tool("cloud-init", "cloud-init")
    run([*CLOUD_INIT, "schema", "--config-file", str(path)], context=f"{path}: cloud-init schema")
    data = yaml.safe_load(path.read_text())
    unknown = sorted(set(data) - known_top_level_keys())
    if unknown:
        raise UserError(f"{path}: {unknown[0]}: unknown cloud-config key (cloud-init would ignore it)")


def write_seeds(site_seeds: list[Seed], out_dir: Path, iso: bool = True) -> Path:
    """Write <out>/cloud-init/<node>/{user-data,meta-data[,network-config],seed.iso}, root-only, atomically."""
    if iso:
        require_tool("cloud-localds", "cloud-image-utils")

    def fill(tmp: Path) -> None:
        os.chmod(tmp, 0o700)
        for seed in site_seeds:
            d = tmp / seed.node
            d.mkdir(mode=0o700)
            texts = {"user-data": seed.user_data, "meta-data": seed.meta_data}
            if seed.network_config:
                texts["network-config"] = seed.network_config
            write_tree({name: File(text.encode(), 0o600) for name, text in texts.items()}, d)
            validate_user_data(d / "user-data")
            yaml.safe_load(seed.meta_data)
            if iso:
                argv = ["cloud-localds"]
                if seed.network_config:
                    argv.append(f"--network-config={d / 'network-config'}")
                argv += [str(d / "seed.iso"), str(d / "user-data"), str(d / "meta-data")]
                run(argv, context=f"seed ISO for {seed.node}")
                os.chmod(d / "seed.iso", 0o600)

    dest = Path(out_dir) / "cloud-init"
    replace_dir(fill, dest)
    return dest

