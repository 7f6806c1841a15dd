"""invoke tasks: the build and lab front end. Each parses its flags and calls one library function.

`invoke --list` shows them; `./invokew <task>` installs what is needed first.
The shared defaults (inventory, output directory) are configured once, in
`ns.configure` below; override them per run with --inventory/--out, or with
INVOKE_HIP_INVENTORY / INVOKE_HIP_OUT in the environment.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from ha_ingress_build import pipeline
from ha_ingress_proxy.errors import UserError

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"

INVENTORY_HELP = "inventory YAML (default: examples/active-active.yaml)"
OUT_HELP = "output directory (default: build)"


def _call(fn, *args, **kwargs):
    """Call a library function; a user error ends the task with its message, not a traceback.
    SIGTERM (a killed job, a CI timeout) unwinds like Ctrl-C, so the library's clean-up runs:
    Python's default for it ends the process on the spot, and a killed base-image build left its
    loop device attached and its root file system mounted."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        raise Exit("\n".join(exc.lines), code=exc.exit_code) from None


def _inventory(c, value: str | None) -> Path:
    return Path(value or c.config.hip.inventory)


def _out(c, value: str | None) -> Path:
    return Path(value or c.config.hip.out)


@task(help={"inventory": INVENTORY_HELP, "out": OUT_HELP})
def render(c, inventory=None, out=None):
    """Render every node's files from the inventory into <out>/nodes/<node>/."""
    out = _out(c, out)
    nodes = _call(pipeline.render_site, _inventory(c, inventory), out)
    print(f"rendered {len(nodes)} node(s) into {out / 'nodes'}: {', '.join(nodes)}")


@task(
    help={
        "inventory": INVENTORY_HELP,
        "out": OUT_HELP,
        "release": "also check with another Debian release's haproxy/keepalived: debian11, debian13 (repeatable)",
    },
    iterable=["release"],
)
def lint(c, inventory=None, out=None, release=None):
    """Render, then check every node with the real haproxy -c, keepalived -t, shellcheck, systemd-analyze."""
    times = _call(pipeline.render_and_lint, _inventory(c, inventory), _out(c, out), tuple(release or ()))
    print(f"lint clean ({', '.join(f'{k} {v:.2f}s' for k, v in times.items())})")


@task
def docs(c):
    """Regenerate the generated parts of docs/ (inventory key reference, node layout table)."""
    from ha_ingress_build import gendocs

    changed = _call(gendocs.update)
    print(f"regenerated: {', '.join(changed)}" if changed else "docs/: generated parts already current")


@task(help={"k": "only tests matching this pytest -k expression", "m": "only tests with this pytest marker expression"})
def test(c, k="", m=""):
    """Run the whole test suite (unit, golden, real binaries, other releases, lab, packages, image)."""
    argv = [sys.executable, "-m", "pytest"]
    if k:
        argv += ["-k", k]
    if m:
        argv += ["-m", m]
    c.run(shlex.join(argv), pty=False)


@task(
    name="cloud-init",
    help={
        "inventory": INVENTORY_HELP,
        "out": OUT_HELP,
        "kind": "image (baked image: secret only) or stock-el (stock EL image: repo, package, secret, node)",
        "secrets": "mode-600 file holding HAPROXY_STATS_PASSWORD=... (default: that environment variable)",
        "repo_url": "yum repo base URL, for --kind stock-el (https)",
        "allow_http": "accept an http:// --repo-url (plain HTTP: anyone on the path can swap the metadata)",
        "unsigned_repo": "the repo was built with --unsigned: gpgcheck off (default: gpgcheck, repo_gpgcheck, gpgkey from the repo)",
        "ssh_key": "public key file to authorize on the nodes (repeatable)",
        "iso": "also make a NoCloud seed ISO per node (default: yes)",
    },
    iterable=["ssh_key"],
)
def cloud_init(c, inventory=None, out=None, kind="image", secrets=None, repo_url="", ssh_key=None, iso=True,
               allow_http=False, unsigned_repo=False):
    """Write cloud-init user-data, NoCloud meta-data and seed ISOs for every node, checked by cloud-init schema."""
    dest = _call(pipeline.cloud_init, _inventory(c, inventory), _out(c, out), kind, Path(secrets) if secrets else None,
                 repo_url, tuple(Path(k) for k in ssh_key or ()), iso, allow_http, unsigned_repo)
    print(f"cloud-init seeds in {dest}")


# --- packages (rpm, deb, repo) ------------------------------------------------

_PKG_HELP = {
    "inventory": INVENTORY_HELP,
    "out": OUT_HELP,
    "release": "package release number, before the site name (default: 1)",
}
_SIGN_HELP = {
    "sign_key": "GPG secret key to sign with: an exported secret key file, or a key id in $GNUPGHOME",
    "unsigned": "build without a signature (warns; the .repo then says gpgcheck=0)",
}


@task(help={**_PKG_HELP, **_SIGN_HELP})
def rpm(c, inventory=None, out=None, release=1, sign_key="", unsigned=False):
    """Render, then build and sign <out>/packages/ha-ingress-proxy-<version>-<n>.<site>.noarch.rpm (rpmlint clean)."""
    built = _call(pipeline.build_rpm, _inventory(c, inventory), _out(c, out), int(release),
                  sign_key=sign_key or None, unsigned=unsigned)
    print(f"{built.path}\nsha256 {built.sha256}")


@task(help=_PKG_HELP)
def deb(c, inventory=None, out=None, release=1):
    """Render, then build <out>/packages/ha-ingress-proxy_<version>-<n>+<site>_all.deb with dpkg-deb."""
    built = _call(pipeline.build_deb, _inventory(c, inventory), _out(c, out), int(release))
    print(f"{built.path}\nsha256 {built.sha256}")


@task(help={**_PKG_HELP, **_SIGN_HELP,
            "baseurl": "https base URL written into ha-ingress-proxy.repo (default: file:// URL of <out>/repo)",
            "allow_http": "accept an http:// --baseurl (plain HTTP: anyone on the path can swap the metadata)"})
def repo(c, inventory=None, out=None, release=1, baseurl="", sign_key="", unsigned=False, allow_http=False):
    """Build and sign the RPM, then the yum repo <out>/repo/ (createrepo_c, signed repomd.xml, public key, .repo)."""
    path = _call(pipeline.build_repo, _inventory(c, inventory), _out(c, out), baseurl, int(release),
                 sign_key=sign_key or None, unsigned=unsigned, allow_http=allow_http)
    print(f"yum repo in {path} (repo file: {path / 'ha-ingress-proxy.repo'})")


@task(
    name="build-image",
    help={
        "inventory": INVENTORY_HELP,
        "out": OUT_HELP,
        "accelerator": "qemu accelerator: kvm, tcg (default: kvm when it really works here, else tcg)",
        "rebuild_base": "rebuild the Debian 12 base image even when its recipe is unchanged",
        "release": "package release number (default 1)",
        "rebake": "bake even when build/image holds an image of this very package, base and recipe",
    },
)
def build_image(c, inventory=None, out=None, accelerator="", rebuild_base=False, release=1, rebake=False):
    """Bake the proxy-node image: render, lint, .deb, Debian 12 base, Packer qemu bake (qcow2 + manifest)."""
    made = _call(pipeline.build_image, _inventory(c, inventory), _out(c, out), accelerator or None, rebuild_base,
                 int(release), rebake)
    how = "reused, same package, base and recipe" if made["reused"] else f"accelerator {made['accelerator']}"
    print(f"image: {made['image']} ({made['size_bytes'] / 2**20:.0f} MiB, {how})")


# --- the lab (network namespaces) and benchmarks ---------------------------------


@task(
    help={
        "inventory": INVENTORY_HELP,
        "out": "output directory (default: build); the lab works in <out>/lab",
        "seconds": "stop after this many seconds (default: run until Ctrl-C)",
    }
)
def lab_up(c, inventory=None, out=None, seconds=0):
    """Bring the lab up (root): the inventory's nodes, clusters and a client in network namespaces.

    Runs in the foreground; Ctrl-C (or --seconds) stops every process by PID and
    removes every namespace. Enter a namespace with `ip netns exec hil-<name> ...`.
    """
    from ha_ingress_lab import netns_lab

    _call(netns_lab.run_foreground, _inventory(c, inventory), _out(c, out) / "lab", float(seconds))


@task
def lab_down(c):
    """Remove what a crashed or killed lab left: kill (by PID) what runs in hil-* namespaces, delete them."""
    from ha_ingress_lab import netns_lab

    names = netns_lab.remove_namespaces()
    print(f"removed {len(names)} lab namespace(s){': ' + ', '.join(names) if names else ''}")


@task(
    help={
        "failover": "failover benchmark -> <out>/bench/failover.json",
        "throughput": "wrk throughput benchmark -> <out>/bench/throughput.json",
        "profile": "--throughput: perf record on the tier haproxy of each variant in the last round "
                   "-> <out>/bench/profile/<variant>/ (needs linux-perf)",
        "log-transport": "--throughput: also measure ours with these haproxy.log_transport values, comma-separated "
                         "(udp,unix,ring): variants ours+log-<t>, with log lines written vs requests",
        "alerts": "shipped alert rules on a real Prometheus through the alert scenarios -> <out>/bench/alerts.json",
        "inventory": "inventory YAML (repeatable; default: both examples for --failover, active-active for --throughput)",
        "out": OUT_HELP,
        "runs": "runs per (mode, scenario, settings) (default 5)",
        "scenario": "only this scenario (repeatable)",
        "rounds": "throughput rounds, each variant once per round (default 3)",
        "settings": "failover settings to measure: ours, seed, ours-garp1, ours-rise5, ours-connect5s, ours-noretry (repeatable; default ours and seed; "
                    "the VM-pair scenarios know ours and seed)",
        "reload_seconds": "how long the reload scenario reloads once per second (default 60)",
        "probe_timeout": "--failover: the probe's per-request timeout in seconds (default 0.3, the VM pair 1; the lab tests use 1)",
        "advert_curve": "advert interval vs node-death failover vs false failovers under saturation "
                        "-> <out>/bench/advert-curve.json",
        "seconds": "--advert-curve and the VM-pair steady: seconds of CPU saturation per interval (default 60)",
        "interval": "--advert-curve: advert interval in seconds (repeatable; default 0.05 0.1 0.2 0.3 0.5 1); "
                    "VM-pair steady: one steady run set per interval, set on the nodes",
        "bgp": "mode bgp: haproxy-death, node-death, node-join measured by the client probe loop behind the router "
               "(+ join/leave broken_established) -> <out>/bench/bgp.json; wrk spread over 1, 2, 3 nodes -> "
               "<out>/bench/bgp-spread.json (--runs times; --scenario picks, throughput-spread names the spread)",
        "image": "VM-pair scenarios (shutdown, rolling-replace, upgrade): the image N to boot (default: bake it)",
        "next_image": "rolling-replace: the image N+1 (default: bake one with the package's release 2)",
    },
    iterable=["inventory", "scenario", "settings", "interval"],
)
def bench(c, failover=False, throughput=False, alerts=False, advert_curve=False, inventory=None, out=None, runs=5,
          scenario=None, rounds=3, settings=None, reload_seconds=None, seconds=60, interval=None, bgp=False,
          log_transport=None, profile=False, probe_timeout=None, image=None, next_image=None):
    """Benchmarks on the lab (root): --failover (ours vs the seed's settings), --throughput (wrk), --alerts (Prometheus), --advert-curve, --bgp."""
    from ha_ingress_lab import bench as benchmarks
    from ha_ingress_lab import vm_pair

    if not (failover or throughput or alerts or advert_curve or bgp):
        raise Exit("bench: say --failover, --throughput, --alerts, --advert-curve and/or --bgp", code=1)
    if bgp:
        from ha_ingress_lab import bgp_scenarios

        _call(bgp_scenarios.bgp_report, _out(c, out), int(runs), tuple(scenario or ()))
    if advert_curve:
        inv_path = Path(inventory[0]) if inventory else _inventory(c, None)
        _call(benchmarks.advert_curve_report, inv_path, _out(c, out), int(runs), float(seconds),
              tuple(float(i) for i in interval or ()))
    out = _out(c, out)
    if failover and scenario and set(scenario) & set(vm_pair.VM_SCENARIOS):
        # The day-2 scenarios of the VM pair (docs/operations.md): qemu VMs from the baked image.
        vm_scenarios = tuple(s for s in scenario if s in vm_pair.VM_SCENARIOS)
        scenario = [s for s in scenario if s not in vm_pair.VM_SCENARIOS]
        for inv_path in [Path(p) for p in inventory] if inventory else [_inventory(c, None)]:
            _vm_pair(inv_path, out, vm_scenarios, int(runs), image, next_image,
                     tuple(settings or vm_pair.VM_SETTINGS), tuple(float(i) for i in interval or ()),
                     float(probe_timeout) if probe_timeout else vm_pair.PROBE_TIMEOUT, float(seconds))
        failover = bool(scenario)
    if failover:
        invs = [Path(p) for p in inventory] if inventory else [EXAMPLES / "active-active.yaml", EXAMPLES / "active-passive.yaml"]
        _call(benchmarks.failover_report, invs, out, int(runs), tuple(scenario or ()), tuple(settings or ()),
              float(reload_seconds) if reload_seconds else None, float(probe_timeout) if probe_timeout else 0.3)
    if throughput:
        inv_path = Path(inventory[0]) if inventory else _inventory(c, None)
        _call(benchmarks.throughput_report, inv_path, out, int(rounds),
              tuple(t for t in (log_transport or "").split(",") if t), bool(profile))
    if alerts:
        invs = [Path(p) for p in inventory] if inventory else [EXAMPLES / "active-active.yaml", EXAMPLES / "active-passive.yaml"]
        _call(benchmarks.alerts_report, invs, out, scenarios=tuple(scenario or ()))


def _vm_pair(inventory: Path, out: Path, scenarios: tuple[str, ...], runs: int, image, next_image,
             settings: tuple[str, ...] = ("ours",), advert_ints: tuple[float, ...] = (),
             probe_timeout: float | None = None, steady_seconds: float | None = None) -> None:
    from ha_ingress_lab import vm_pair

    n, n1 = _call(vm_pair.images, inventory, out, Path(image) if image else None,
                  Path(next_image) if next_image else None, "rolling-replace" in scenarios)
    debs = _call(vm_pair.debs, inventory, out) if "upgrade" in scenarios else None
    _call(vm_pair.vm_bench, inventory, out, scenarios, runs, n, n1, debs=debs, settings=settings,
          advert_ints=advert_ints, probe_timeout=probe_timeout or vm_pair.PROBE_TIMEOUT,
          steady_seconds=steady_seconds or vm_pair.STEADY_SECONDS)


@task(
    name="rolling-replace",
    help={
        "inventory": INVENTORY_HELP,
        "out": OUT_HELP,
        "image": "image N the pair boots from (default: bake it from the inventory)",
        "next_image": "image N+1 that replaces each node (default: bake it, package release 2; "
                      "passing an image already built saves the bake)",
        "runs": "replacements in a row (default 1; each next run replaces N+1 by N again)",
    },
)
def rolling_replace(c, inventory=None, out=None, image=None, next_image=None, runs=1):
    """Rolling replacement of the VM pair by image N+1 under a probe loop (root): log <out>/bench/rolling-replace.log."""
    _vm_pair(_inventory(c, inventory), _out(c, out), ("rolling-replace",), int(runs), image, next_image)


ns = Collection(render, lint, docs, test, cloud_init, rpm, deb, repo, build_image, lab_up, lab_down, bench,
                rolling_replace)
ns.configure({"hip": {"inventory": str(EXAMPLES / "active-active.yaml"), "out": str(ROOT / "build")}})
