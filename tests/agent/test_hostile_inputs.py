"""Hostile agent inputs, one table (issue 10): each one fails closed the same way.

Every case starts from a node that would apply (the image's tree, metadata naming
proxy-1, the stats password in a root-only secrets.env), adds one hostile input,
and runs the real `ha-ingress-proxy apply` in a child process (a FIFO would hang
an in-process call; the child gets a deadline). For each case:

- exit code 1 (not 0, not 3 for a crash, not a hang),
- exactly one line on stderr, naming what was refused,
- no keepalived.conf anywhere (below the root or outside it): the node claims no VIP,
- the planted secret in no output: not on stdout or stderr, and in no file the
  agent wrote or changed (state.json included), below the root or outside it.
  secrets.env and the rendered haproxy env are the only places it may live;
  files the case itself planted it in are inputs, not output.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from ha_ingress_proxy import layout
from ha_ingress_proxy.subproc import start

from ..conftest import ROOT
from .conftest import NodeRoot

SECRET = "planted-Secret-4711"
SECRETS_ENV = layout.SECRETS_ENV
KCONF = layout.KEEPALIVED_CONF
MAY_HOLD_SECRET = {SECRETS_ENV, layout.HAPROXY_ENV}
PUBLIC = layout.INSTANCE_DATA
SENSITIVE = layout.INSTANCE_DATA_SENSITIVE
SITE_JSON = layout.SITE_MODEL
DEADLINE = 60  # seconds; the agent answers in about one, a hang is what this catches


class Case:
    """The node root under attack, and a directory outside it that must stay untouched."""

    def __init__(self, tmp_path: Path) -> None:
        self.node = NodeRoot(tmp_path / "root")
        self.root = self.node.path
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        # a node that would apply: metadata names proxy-1, the password is in secrets.env
        self.node.secrets(f"HAPROXY_STATS_PASSWORD={SECRET}\n")
        self.meta({"ha_ingress_node": "proxy-1"})
        self.node.file(KCONF).unlink()  # so any keepalived.conf found afterwards was written by this run

    def meta(self, meta=None, *, data=None, sensitive=False, mode=None) -> None:
        self.node.instance_data(meta, data=data, sensitive=sensitive, mode=mode)

    def raw(self, rel: str, text: str | bytes, mode: int = 0o644) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        os.chmod(path, mode)

    def replace(self, rel: str, make: Callable[[Path], None]) -> None:
        """Put something else (a FIFO, a device, a directory, a link) where rel is."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        make(path)

    def escape_dir(self, rel: str, levels: int) -> None:
        """Move directory rel outside the root and leave a relative symbolic link to it climbing `levels` up."""
        src = self.root / rel
        dest = self.outside / src.name
        if src.exists():
            shutil.move(str(src), str(dest))
        else:
            dest.mkdir()
        src.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("../" * levels + f"outside/{src.name}", src)


def fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def null_device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))


def nested(depth: int) -> str:
    return '{"ds": {"meta_data": {"ha_ingress_node": "proxy-1", "x": ' + "[" * depth + "]" * depth + "}}}"


def site_json_with_duplicate(case: Case) -> None:
    text = (case.root / SITE_JSON).read_text()
    case.raw(SITE_JSON, text.replace('"mode": "active-active"', '"mode": "active-active", "mode": "active-passive"', 1))


def unix_socket(path: Path) -> None:
    # AF_UNIX paths are limited to 107 bytes: bind through a short relative name
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path.name)
        s.close()
    finally:
        os.chdir(here)


META = "ds.meta_data"
PW = "ha_ingress_stats_password"

# (id, setup(case), a fragment the one stderr line must hold, files the case planted the secret in)
CASES = [
    # ---- malformed datasource shapes (a shape present but not a mapping used to be skipped)
    ("ds-is-a-list", lambda c: c.meta(data={"ds": ["ha_ingress_node", "proxy-2"]}), "ds: is a list, not a mapping", ()),
    ("meta-data-is-a-string-holding-the-secret", lambda c: c.meta(data={"ds": {"meta_data": f"{PW}={SECRET}"}}),
     "ds.meta_data: is a str, not a mapping", (PUBLIC,)),
    ("openstack-meta-is-a-list-while-the-address-matches",
     lambda c: (c.meta(data={"ds": {"meta_data": {"meta": ["ha_ingress_node=proxy-2"]}}}), c.node.addresses.append(("ens192", "192.168.1.9"))),
     "ds.meta_data.meta: is a list, not a mapping", ()),
    ("ec2-tags-instance-is-a-string", lambda c: c.meta(data={"ds": {"meta_data": {"tags": {"instance": "ha_ingress_node=proxy-2"}}}}),
     "ds.meta_data.tags.instance: is a str, not a mapping", ()),
    ("ec2-tags-is-a-number", lambda c: c.meta(data={"ds": {"meta_data": {"tags": 7}}}), "ds.meta_data.tags: is a int, not a mapping", ()),
    ("gce-attributes-is-a-list", lambda c: c.meta(data={"ds": {"meta_data": {"instance": {"attributes": [1]}}}}),
     "ds.meta_data.instance.attributes: is a list, not a mapping", ()),
    ("instance-data-is-a-list", lambda c: c.raw(PUBLIC, "[1, 2]"), "not a JSON object", ()),
    ("instance-data-not-json", lambda c: c.raw(PUBLIC, "{oops"), "not valid JSON", ()),
    ("instance-data-not-utf8", lambda c: c.raw(PUBLIC, b'{"ds": "\xff"}'), "not UTF-8 text (byte 8)", ()),
    # ---- nesting: deeper than the parser's recursion limit (a crash, exit 3, before), and deeper than the agent allows
    ("instance-data-nested-100000-deep", lambda c: c.raw(PUBLIC, nested(100000)), "JSON nested more than 64 levels deep", ()),
    ("instance-data-nested-100-deep", lambda c: c.raw(PUBLIC, nested(100)), "JSON nested more than 64 levels deep", ()),
    ("site-json-nested-deep", lambda c: c.raw(SITE_JSON, nested(5000)), "site.json: JSON nested more than 64 levels deep", ()),
    # ---- duplicate JSON keys (json keeps the last one silently)
    ("instance-data-duplicate-node", lambda c: c.raw(PUBLIC, '{"ds": {"meta_data": {"ha_ingress_node": "proxy-1", "ha_ingress_node": "proxy-2"}}}'),
     "instance-data.json: duplicate key 'ha_ingress_node' in one JSON object", ()),
    ("sensitive-duplicate-password",
     lambda c: c.raw(SENSITIVE, '{"ds": {"meta_data": {"%s": "first-password-1", "%s": "%s"}}}' % (PW, PW, SECRET), 0o600),
     "instance-data-sensitive.json: duplicate key 'ha_ingress_stats_password' in one JSON object", (SENSITIVE,)),
    ("site-json-duplicate-key", site_json_with_duplicate, "site.json: duplicate key 'mode' in one JSON object", ()),
    # ---- not a regular file where a file should be (a FIFO used to hang the agent, and boot with it)
    ("fifo-instance-data", lambda c: c.replace(PUBLIC, fifo), "instance-data.json: is a FIFO, not a regular file", ()),
    ("fifo-sensitive-instance-data", lambda c: c.replace(SENSITIVE, fifo), "instance-data-sensitive.json: is a FIFO", ()),
    ("fifo-cmdline", lambda c: c.replace("proc/cmdline", fifo), "/proc/cmdline: is a FIFO", ()),
    ("fifo-node-file", lambda c: c.replace("etc/ha-ingress-proxy/node.yaml", fifo), "node.yaml: is a FIFO", ()),
    ("fifo-secrets-env", lambda c: c.replace(SECRETS_ENV, fifo), "secrets.env: is a FIFO", ()),
    ("fifo-site-json", lambda c: c.replace(SITE_JSON, fifo), "site.json: is a FIFO", ()),
    ("device-instance-data", lambda c: c.replace(PUBLIC, null_device), "instance-data.json: is a character device", ()),
    ("socket-instance-data", lambda c: c.replace(PUBLIC, unix_socket), "instance-data.json: is a socket", ()),
    ("directory-instance-data", lambda c: c.replace(PUBLIC, lambda p: p.mkdir()), "instance-data.json: is a directory", ()),
    # ---- symbolic links leading out of the root (writes used to follow them)
    ("config-dir-links-out", lambda c: c.escape_dir("etc/ha-ingress-proxy", 2),
     "/etc/ha-ingress-proxy is a symbolic link to '../../outside/ha-ingress-proxy', which leads out of --root", ()),
    ("state-dir-links-out", lambda c: c.escape_dir("run/ha-ingress-proxy", 2),
     "/run/ha-ingress-proxy is a symbolic link to '../../outside/ha-ingress-proxy', which leads out of --root", ()),
    ("run-links-out", lambda c: c.escape_dir("run", 1), "/run is a symbolic link to '../outside/run', which leads out of --root", ()),
    ("etc-links-out", lambda c: c.escape_dir("etc", 1), "/etc is a symbolic link to '../outside/etc', which leads out of --root", ()),
    ("instance-data-links-out",
     lambda c: (c.outside.joinpath("id.json").write_text('{"ds": {"meta_data": {"ha_ingress_node": "proxy-2"}}}'),
                c.replace(PUBLIC, lambda p: os.symlink("../../../outside/id.json", p))),
     "instance-data.json is a symbolic link to '../../../outside/id.json', which leads out of --root", ()),
    ("secrets-env-links-out",
     lambda c: (c.outside.joinpath("secrets.env").write_text(f"HAPROXY_STATS_PASSWORD={SECRET}\n"),
                c.replace(SECRETS_ENV, lambda p: os.symlink("../../../outside/secrets.env", p))),
     "secrets.env is a symbolic link to '../../../outside/secrets.env', which leads out of --root", ("../outside/secrets.env",)),
    ("link-loop", lambda c: (c.replace("run/cloud-init", lambda p: os.symlink("loop2", p)), os.symlink("cloud-init", c.root / "run/loop2")),
     "more than 40 symbolic links on the way", ()),
    # ---- VIP overrides outside what the site owns (no vip_pool in the example inventory)
    ("metadata-vip-is-the-gateway", lambda c: c.meta({"ha_ingress_node": "proxy-1", "ha_ingress_vips": ["192.168.1.1", "192.168.1.12"]}),
     "ds.meta_data.ha_ingress_vips[0]: '192.168.1.1' is not a VIP of site dc1-ingress", ()),
    ("ec2-tag-vip-foreign", lambda c: c.meta(data={"ds": {"meta_data": {"tags": {"instance": {"ha_ingress_node": "proxy-1", "ha_ingress_vips": "192.168.1.10,10.0.0.1"}}}}}),
     "ds.meta_data.tags.instance.ha_ingress_vips[1]: '10.0.0.1' is not a VIP of site dc1-ingress", ()),
    ("cmdline-vip-foreign", lambda c: c.node.cmdline("ro ha_ingress.vips=192.168.1.254,192.168.1.12"),
     "/proc/cmdline: ha_ingress.vips[0]: '192.168.1.254' is not a VIP of site dc1-ingress", ()),
    ("node-file-vip-foreign", lambda c: (c.meta({}), c.node.node_file("ha_ingress_node: proxy-1\nha_ingress_vips: [192.168.1.10, 192.168.2.12]\n")),
     "node.yaml: ha_ingress_vips[1]: '192.168.2.12' is not a VIP of site dc1-ingress", ()),
    # ---- the secret in every wrong place
    ("password-in-world-readable-instance-data", lambda c: c.meta({"ha_ingress_node": "proxy-1", PW: SECRET}),
     "the stats password is in /run/cloud-init/instance-data.json, which every local user can read", (PUBLIC,)),
    ("password-in-sensitive-copy-readable-by-all", lambda c: c.meta({"ha_ingress_node": "proxy-1", PW: SECRET}, sensitive=True, mode=0o644),
     "instance-data-sensitive.json is mode 0644, owner uid 0: not root-only", (SENSITIVE,)),
    ("password-in-sensitive-and-public-copy",
     lambda c: (c.meta({"ha_ingress_node": "proxy-1", PW: SECRET}), c.meta({"ha_ingress_node": "proxy-1", PW: SECRET}, sensitive=True)),
     "the stats password is also in /run/cloud-init/instance-data.json", (PUBLIC, SENSITIVE)),
    ("password-shapes-disagree",
     lambda c: c.meta(data={"ds": {"meta_data": {PW: SECRET, "meta": {PW: "other-password-42"}}}}, sensitive=True),
     "(two different stats passwords; values not shown)", (SENSITIVE,)),
    ("password-on-cmdline", lambda c: c.node.cmdline(f"ro ha_ingress.stats_password={SECRET}"),
     "the kernel command line is readable by every local user", ("proc/cmdline",)),
    ("password-in-node-file", lambda c: (c.meta({}), c.node.node_file(f"ha_ingress_node: proxy-1\n{PW}: {SECRET}\n")),
     "node.yaml: ha_ingress_stats_password: unknown key", ("etc/ha-ingress-proxy/node.yaml",)),
    ("password-under-a-lookalike-key", lambda c: c.meta({"ha_ingress_node": "proxy-1", "ha_ingress_stats_passwd": SECRET}),
     "ha_ingress_stats_passwd: unknown key", (PUBLIC,)),
    ("password-not-a-string", lambda c: c.meta({"ha_ingress_node": "proxy-1", PW: [SECRET]}, sensitive=True),
     "got a list; value not shown", (SENSITIVE,)),
    ("password-with-a-space", lambda c: c.meta({"ha_ingress_node": "proxy-1", PW: SECRET + " x"}, sensitive=True),
     "got 21 characters; value not shown", (SENSITIVE,)),
    ("password-redacted-and-no-sensitive-copy", lambda c: c.meta({"ha_ingress_node": "proxy-1", PW: "redacted for non-root user"}),
     "redacted in this copy", ()),
    ("secrets-env-world-readable", lambda c: c.node.secrets(f"HAPROXY_STATS_PASSWORD={SECRET}\n", mode=0o644),
     "secrets.env: mode 0644 lets group or others read the stats password", ()),
    ("secrets-env-group-readable", lambda c: c.node.secrets(f"HAPROXY_STATS_PASSWORD={SECRET}\n", mode=0o640),
     "secrets.env: mode 0640 lets group or others read the stats password", ()),
    ("secrets-env-not-ours", lambda c: os.chown(c.root / SECRETS_ENV, 65534, 65534),
     "secrets.env: owned by uid 65534, not by the agent's user", ()),
    ("secrets-env-other-variable", lambda c: c.node.secrets(f"PASSWORD={SECRET}\n"), "secrets.env: line 1: only HAPROXY_STATS_PASSWORD", ()),
    # ---- node names YAML reads as something else
    ("node-file-name-read-as-a-number", lambda c: (c.meta({}), c.node.node_file("ha_ingress_node: 010\n")), "node.yaml: ha_ingress_node: 8 is not a string", ()),
    ("node-file-name-read-as-a-boolean", lambda c: (c.meta({}), c.node.node_file("ha_ingress_node: on\n")), "node.yaml: ha_ingress_node: True is not a string", ()),
]


def _snapshot(top: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                out[os.path.relpath(path, top)] = path.read_bytes()
    return out


def _run_apply(case: Case, tmp_path: Path) -> tuple[int, str, str]:
    ip = tmp_path / "ip.json"
    ip.write_text(json.dumps([{"ifname": n, "addr_info": [{"family": "inet", "local": a}]} for n, a in case.node.addresses]))
    argv = [sys.executable, "-m", "ha_ingress_proxy.cli", "apply", "--root", str(case.root), "--ip-addr-json", str(ip)]
    proc = start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by its Popen handle
        proc.communicate()
        pytest.fail(f"apply hung for {DEADLINE}s")
    return proc.returncode, out, err


@pytest.mark.parametrize("setup, fragment, planted", [pytest.param(s, f, p, id=i) for i, s, f, p in CASES])
def test_hostile_input_fails_closed_in_one_line_without_the_secret(tmp_path, setup, fragment, planted):
    case = Case(tmp_path)
    setup(case)
    top = tmp_path  # the root and the directory outside it
    for rel in planted:  # the case really put the secret there
        assert SECRET.encode() in (case.root / rel).read_bytes(), rel
    before = _snapshot(top)
    rc, out, err = _run_apply(case, tmp_path)
    lines = err.splitlines()
    assert rc == 1, (rc, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("ha-ingress-proxy: refused: ") and fragment in lines[0], lines[0]
    # no keepalived.conf anywhere: below the root, or wherever a link pointed
    assert not list(top.rglob("keepalived.conf")), list(top.rglob("keepalived.conf"))
    # the secret: in no output, and in no file this run wrote or changed
    assert SECRET not in out and SECRET not in err
    after = _snapshot(top)
    for rel, content in after.items():
        if before.get(rel) == content or rel in {f"root/{r}" for r in MAY_HOLD_SECRET}:
            continue  # an input as the case left it, or where the secret belongs
        assert SECRET.encode() not in content, f"{rel} holds the planted secret"
    # nothing outside the root was written or changed
    assert {k: v for k, v in after.items() if k.startswith("outside")} == {k: v for k, v in before.items() if k.startswith("outside")}
    state = case.root / "run/ha-ingress-proxy/state.json"
    if state.is_file() and not state.is_symlink():
        assert json.loads(state.read_text())["result"] == "refused"
        assert stat.S_IMODE(state.stat().st_mode) == 0o644


def test_the_same_node_applies_without_the_hostile_input(tmp_path):
    """The baseline every case starts from applies: each refusal above is the hostile input's doing."""
    case = Case(tmp_path)
    rc, out, err = _run_apply(case, tmp_path)
    assert (rc, err) == (0, ""), out
    assert (case.root / KCONF).is_file()
    assert SECRET not in out and SECRET not in (case.root / "run/ha-ingress-proxy/state.json").read_text()
