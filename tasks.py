"""invoke tasks: each parses its flags and calls one library function.

`invoke --list` shows them; `./invokew <task>` installs what is needed first.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from invoke import Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from ha_ingress_proxy.errors import UserError  # noqa: E402

EXAMPLE = ROOT / "examples" / "active-active.yaml"
OUT = ROOT / "build"


def _call(fn, *args, **kwargs):
    """Call a library function; a user error ends the task with its message, not a traceback."""
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        raise Exit("\n".join(exc.lines), code=exc.exit_code) from None


@task(help={"inventory": "inventory YAML (default: examples/active-active.yaml)", "out": "output directory (default: build)"})
def render(c, inventory=str(EXAMPLE), out=str(OUT)):
    """Render every node's files from the inventory into <out>/nodes/<node>/."""
    from ha_ingress_proxy import jobs

    nodes = _call(jobs.render_site, Path(inventory), Path(out))
    print(f"rendered {len(nodes)} node(s) into {Path(out) / 'nodes'}: {', '.join(nodes)}")


@task(
    help={
        "inventory": "inventory YAML (default: examples/active-active.yaml)",
        "out": "output directory (default: build)",
        "release": "also check with another Debian release's haproxy/keepalived: debian11, debian13 (repeatable)",
    },
    iterable=["release"],
)
def lint(c, inventory=str(EXAMPLE), out=str(OUT), release=None):
    """Render, then check every node with the real haproxy -c, keepalived -t, shellcheck, systemd-analyze."""
    from ha_ingress_proxy import jobs

    times = _call(jobs.render_and_lint, Path(inventory), Path(out), tuple(release or ()))
    print(f"lint clean ({', '.join(f'{k} {v:.2f}s' for k, v in times.items())})")


@task(help={"k": "only tests matching this pytest -k expression", "m": "only tests with this pytest marker expression"})
def test(c, k="", m=""):
    """Run the whole test suite (unit, golden, real binaries, other releases, lab, packages, image)."""
    args = [sys.executable, "-m", "pytest"]
    if k:
        args += ["-k", k]
    if m:
        args += ["-m", m]
    c.run(" ".join(args), pty=False, env={"PYTHONPATH": str(ROOT / "src")})


@task(
    name="cloud-init",
    help={
        "inventory": "inventory YAML (default: examples/active-active.yaml)",
        "out": "output directory (default: build)",
        "kind": "image (baked image: secret only) or stock-el (stock EL image: repo, package, secret, node)",
        "secrets": "mode-600 file holding HAPROXY_STATS_PASSWORD=... (default: that environment variable)",
        "repo_url": "yum repo base URL, for --kind stock-el",
        "ssh_key": "public key file to authorize on the nodes (repeatable)",
        "iso": "also make a NoCloud seed ISO per node (default: yes)",
    },
    iterable=["ssh_key"],
)
def cloud_init(c, inventory=str(EXAMPLE), out=str(OUT), kind="image", secrets=None, repo_url="", ssh_key=None, iso=True):
    """Write cloud-init user-data, NoCloud meta-data and seed ISOs for every node, checked by cloud-init schema."""
    from ha_ingress_proxy import jobs

    dest = _call(jobs.cloud_init, Path(inventory), Path(out), kind, Path(secrets) if secrets else None, repo_url,
                 tuple(Path(k) for k in ssh_key or ()), iso)
    print(f"cloud-init seeds in {dest}")


# --- packages (rpm, deb, repo) ------------------------------------------------

_PKG_HELP = {
    "inventory": "inventory YAML (default: examples/active-active.yaml)",
    "out": "output directory (default: build)",
    "release": "package release number, before the site name (default: 1)",
}


@task(help=_PKG_HELP)
def rpm(c, inventory=str(EXAMPLE), out=str(OUT), release=1):
    """Render, then build <out>/packages/ha-ingress-proxy-<version>-<n>.<site>.noarch.rpm (rpmlint clean)."""
    from ha_ingress_proxy import package

    built = _call(package.build_rpm, Path(inventory), Path(out), int(release))
    print(f"{built.path}\nsha256 {built.sha256}")


@task(help=_PKG_HELP)
def deb(c, inventory=str(EXAMPLE), out=str(OUT), release=1):
    """Render, then build <out>/packages/ha-ingress-proxy_<version>-<n>+<site>_all.deb with dpkg-deb."""
    from ha_ingress_proxy import package

    built = _call(package.build_deb, Path(inventory), Path(out), int(release))
    print(f"{built.path}\nsha256 {built.sha256}")


@task(help={**_PKG_HELP, "baseurl": "baseurl written into ha-ingress-proxy.repo (default: file:// URL of <out>/repo)"})
def repo(c, inventory=str(EXAMPLE), out=str(OUT), release=1, baseurl=""):
    """Build the RPM, then the yum repo <out>/repo/ (createrepo_c) with its ha-ingress-proxy.repo file."""
    from ha_ingress_proxy import package

    path = _call(package.build_repo, Path(inventory), Path(out), baseurl, int(release))
    print(f"yum repo in {path} (repo file: {path / 'ha-ingress-proxy.repo'})")


@task(
    name="build-image",
    help={
        "inventory": "inventory YAML (default: examples/active-active.yaml)",
        "out": "output directory (default: build)",
        "accelerator": "qemu accelerator: kvm, tcg (default: kvm when it really works here, else tcg)",
        "rebuild_base": "rebuild the Debian 12 base image even when its recipe is unchanged",
        "release": "package release number (default 1)",
        "rebake": "bake even when build/image holds an image of this very package, base and recipe",
    },
)
def build_image(c, inventory=str(EXAMPLE), out=str(OUT), accelerator="", rebuild_base=False, release=1, rebake=False):
    """Bake the proxy-node image: render, lint, .deb, Debian 12 base, Packer qemu bake (qcow2 + manifest)."""
    from ha_ingress_proxy import jobs

    made = _call(jobs.build_image, Path(inventory), Path(out), accelerator or None, rebuild_base, int(release), rebake)
    how = "reused, same package, base and recipe" if made["reused"] else f"accelerator {made['accelerator']}"
    print(f"image: {made['image']} ({made['size_bytes'] / 2**20:.0f} MiB, {how})")


@task(
    help={
        "inventory": "inventory YAML (default: examples/active-active.yaml)",
        "out": "output directory (default: build); the lab works in <out>/lab",
        "seconds": "stop after this many seconds (default: run until Ctrl-C)",
    }
)
def lab_up(c, inventory=str(EXAMPLE), out=str(OUT), seconds=0):
    """Bring the lab up (root): the inventory's nodes, clusters and a client in network namespaces.

    Runs in the foreground; Ctrl-C (or --seconds) stops every process by PID and
    removes every namespace. Enter a namespace with `ip netns exec hil-<name> ...`.
    """
    from ha_ingress_proxy import inventory as inv
    from ha_ingress_proxy import lab as L

    site = _call(inv.load, Path(inventory))
    try:
        with L.Lab(site, Path(out) / "lab") as lab:
            lab.wait_vips(lab.masters())
            print(f"lab up ({site.mode}): VIPs {lab.vip_holders()}")
            for m in lab.members.values():
                print(f"  {m.kind:8} {m.name:10} {m.address:15} ip netns exec {m.ns} ...")
            print(f"  logs in {Path(out) / 'lab' / 'logs'}; Ctrl-C to stop")
            deadline = time.monotonic() + float(seconds) if seconds else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except UserError as exc:
        raise Exit("\n".join(exc.lines), code=exc.exit_code) from None
    print("lab down: every process stopped, every namespace removed")


@task
def lab_down(c):
    """Remove what a crashed or killed lab left: kill (by PID) what runs in hil-* namespaces, delete them."""
    from ha_ingress_proxy import lab as L

    names = L.remove_namespaces()
    print(f"removed {len(names)} lab namespace(s){': ' + ', '.join(names) if names else ''}")


@task(
    help={
        "failover": "failover benchmark -> <out>/bench/failover.json",
        "throughput": "wrk throughput benchmark -> <out>/bench/throughput.json",
        "inventory": "inventory YAML (repeatable; default: both examples for --failover, active-active for --throughput)",
        "out": "output directory (default: build)",
        "runs": "runs per (mode, scenario, settings) (default 5)",
        "scenario": "only this scenario (repeatable)",
        "rounds": "throughput rounds, each variant once per round (default 3)",
        "settings": "failover settings to measure: ours, seed, ours-garp1 (repeatable; default ours and seed)",
    },
    iterable=["inventory", "scenario", "settings"],
)
def bench(c, failover=False, throughput=False, inventory=None, out=str(OUT), runs=5, scenario=None, rounds=3, settings=None):
    """Benchmarks on the lab (root): --failover (ours vs the seed's settings) and/or --throughput (wrk)."""
    from ha_ingress_proxy import bench as B
    from ha_ingress_proxy import failover as F

    if not (failover or throughput):
        raise Exit("bench: say --failover and/or --throughput", code=1)
    out_dir = Path(out) / "bench"
    work = Path(out) / "lab"
    if failover:
        invs = [Path(p) for p in inventory] if inventory else [ROOT / "examples/active-active.yaml", ROOT / "examples/active-passive.yaml"]
        scenarios = tuple(scenario) if scenario else F.SCENARIOS
        records = _call(B.failover_bench, invs, out_dir, work, int(runs), scenarios,
                        settings_list=tuple(settings) if settings else ("ours", "seed"))
        print(B.table(records))
        print(f"wrote {out_dir / 'failover.json'}")
    if throughput:
        inv_path = Path(inventory[0]) if inventory else EXAMPLE
        report = _call(B.throughput_bench, inv_path, out_dir, work, int(rounds))
        for name, v in report["variants"].items():
            cpu = v["haproxy_cpu_us_per_request"]
            print(f"{name:24} {v['rps']['median']:9.0f} req/s (median)  tier haproxy {cpu['median'] if cpu else '-'} us CPU/request")
        print(f"ratios: {report['ratios']}")
        print(f"wrote {out_dir / 'throughput.json'}")
