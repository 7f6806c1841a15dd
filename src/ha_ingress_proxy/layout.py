"""The node's file layout: every path on a proxy node, who writes it, and what ships.

The one place for these facts. Paths are relative to the node's `/` (no
leading slash), as rendered trees, the agent's --root and the package payload
use them; `shown()` gives the absolute form messages print.

Who writes a path (`Writer`):

- package: rendered at build time, identical on every node of the site, shipped
  in the RPM and the .deb;
- agent:   written at every boot by `ha-ingress-proxy apply` for the node's role
           (the package owns the role-dependent ones as ghosts, ships none);
- admin:   put there by the operator or by cloud-init user-data;
- image:   written once by the image build (Packer provisioning);
- distro:  the kernel, cloud-init, the distribution's packages or daemons;
           the tier only reads these (or points the daemons at them).

Everything else that names a node path takes it from here: plan.py (the
paths templates print), render.py (modes, role-dependent files, site model),
the agent (what it reads and writes), the build side (payload, lint,
packages), the lab. Files that cannot import Python are checked against this
module by tests/unit/test_layout.py: the RPM spec, Packer's manifest_paths,
image/provision/write-manifest.sh, every path in templates, scripts and docs,
and the table in docs/layout.md, which `markdown_table()` renders
(`./invokew docs` rewrites it).

RUNTIME_MODULES, at the end, is the node payload's allowlist: the Python
modules of ha_ingress_proxy that ship. A module added to the node runtime is
added there too, or the package build refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

NAME = "ha-ingress-proxy"


class Writer(str, Enum):
    PACKAGE = "package"
    AGENT = "agent"
    ADMIN = "admin"
    IMAGE = "image"
    DISTRO = "distro"


@dataclass(frozen=True)
class NodePath:
    path: str  # relative to /, no leading slash
    writer: Writer
    what: str  # one line for docs/layout.md
    mode: str = "0644"  # octal, as manifests record it; "-" when we do not set it
    role_dependent: bool = False  # differs between the nodes of one site
    only: str = ""  # "vrrp" or "bgp": rendered only for sites of those modes; "" for every site
    directory: bool = False  # a directory: everything below it is this entry's

    @property
    def shown(self) -> str:
        return shown(self.path)


def shown(rel: str) -> str:
    """A root-relative path as it is on the node: what messages and the state file name."""
    return "/" + rel.lstrip("/")


# --------------------------------------------------------------------------- the paths, by name

CONFIG_DIR = f"etc/{NAME}"
KEEPALIVED_CONF = f"{CONFIG_DIR}/keepalived.conf"
HAPROXY_CFG = f"{CONFIG_DIR}/haproxy.cfg"
HAPROXY_ENV = f"{CONFIG_DIR}/haproxy.env"
KEEPALIVED_ENV = f"{CONFIG_DIR}/keepalived.env"
SECRETS_ENV = f"{CONFIG_DIR}/secrets.env"
FIREWALL_NFT = f"{CONFIG_DIR}/firewall.nft"
STATS_CERT = f"{CONFIG_DIR}/stats.pem"
STATS_CERT_MARK = f"{CONFIG_DIR}/stats.pem.self-signed"
FIREWALL_UNIT = f"usr/lib/systemd/system/{NAME}-firewall.service"
SYSUSERS = f"usr/lib/sysusers.d/{NAME}.conf"
NODE_FILE = f"{CONFIG_DIR}/node.yaml"
CHECK_SCRIPT = f"usr/libexec/keepalived/{NAME}-check-haproxy"
BACKUP_GRACE_SCRIPT = f"usr/libexec/keepalived/{NAME}-backup-grace"
HAPROXY_DROPIN = f"usr/lib/systemd/system/haproxy.service.d/{NAME}.conf"
KEEPALIVED_DROPIN = f"usr/lib/systemd/system/keepalived.service.d/{NAME}.conf"
AGENT_UNIT = f"usr/lib/systemd/system/{NAME}-agent.service"
METRICS_UNIT = f"usr/lib/systemd/system/{NAME}-metrics.service"
HAPROXY_WATCH_UNIT = f"usr/lib/systemd/system/{NAME}-haproxy-watch.service"
PRESET = f"usr/lib/systemd/system-preset/50-{NAME}.preset"
SYSCTL = f"usr/lib/sysctl.d/60-{NAME}.conf"
RSYSLOG = f"etc/rsyslog.d/49-{NAME}.conf"
LOGROTATE = f"etc/logrotate.d/{NAME}"
DATA_DIR = f"usr/share/{NAME}"
SITE_MODEL = f"{DATA_DIR}/site.json"
IMAGE_MANIFEST = f"{DATA_DIR}/image-manifest.json"
LIB_DIR = f"usr/lib/{NAME}"
PYTHON_DIR = f"{LIB_DIR}/python"
LAUNCHER = f"usr/bin/{NAME}"
DOC_DIR = f"usr/share/doc/{NAME}"
STATE_DIR = f"run/{NAME}"
STATE_FILE = f"{STATE_DIR}/state.json"
SERVER_STATE = f"{STATE_DIR}/haproxy-server-state"
# `ha-ingress-proxy watch-haproxy` writes 1 here the moment haproxy's master exits, 0 while it
# serves: keepalived's track_file (weight 0). In /run: a reboot starts from "absent" (serving).
HAPROXY_DOWN = f"{STATE_DIR}/haproxy-down"
# kept across reboots (keepalived's drop-in creates the directory: StateDirectory=)
VAR_STATE_DIR = f"var/lib/{NAME}"
DRAIN_FILE = f"{VAR_STATE_DIR}/drain"
DRAIN_INFO = f"{VAR_STATE_DIR}/drain.json"
YUM_REPO = f"etc/yum.repos.d/{NAME}.repo"
IMAGE_YUM_REPO = f"etc/yum.repos.d/{NAME}-local.repo"
# read, never written, by the tier
CMDLINE = "proc/cmdline"
INSTANCE_DATA = "run/cloud-init/instance-data.json"
INSTANCE_DATA_SENSITIVE = "run/cloud-init/instance-data-sensitive.json"
HAPROXY_CHROOT = "var/lib/haproxy"
HAPROXY_SOCKET = f"{HAPROXY_CHROOT}/stats"
STATUS_SOCKET = f"{HAPROXY_CHROOT}/{NAME}-status"
# haproxy.log_transport unix: rsyslog's socket inside haproxy's chroot (haproxy sends to /dev/log
# after chroot, as Debian's haproxy package arranges it)
LOG_SOCKET = f"{HAPROXY_CHROOT}/dev/log"
HAPROXY_PIDFILE = "run/haproxy.pid"
KEEPALIVED_PIDFILE = "run/keepalived.pid"
VRRP_PIDFILE = "run/vrrp.pid"
LOG_FILE = "var/log/haproxy-ingress.log"
DISTRO_HAPROXY_CFG = "etc/haproxy/haproxy.cfg"
DISTRO_KEEPALIVED_CONF = "etc/keepalived/keepalived.conf"
# mode: bgp. FRR's own pathspace (frrinit.sh start hip): the distro's /etc/frr conffiles stay untouched.
FRR_PATHSPACE = "hip"
FRR_DIR = f"etc/frr/{FRR_PATHSPACE}"
FRR_CONF = f"{FRR_DIR}/frr.conf"
FRR_DAEMONS = f"{FRR_DIR}/daemons"
FRR_VTYSH_CONF = f"{FRR_DIR}/vtysh.conf"
FRR_DROPIN = f"usr/lib/systemd/system/frr.service.d/{NAME}.conf"
BGP_GATE_UNIT = f"usr/lib/systemd/system/{NAME}-bgp-gate.service"

P, A, M, I, D = Writer.PACKAGE, Writer.AGENT, Writer.ADMIN, Writer.IMAGE, Writer.DISTRO

# Every path on the node, in the order docs/layout.md lists them.
PATHS: tuple[NodePath, ...] = (
    NodePath(CONFIG_DIR, P, "our configuration directory (the distro's /etc/haproxy and /etc/keepalived stay untouched)", "0755", directory=True),
    NodePath(KEEPALIVED_CONF, A, "keepalived config: this node's VRRP instances, priorities, peers; removed when the agent refuses", role_dependent=True, only="vrrp"),
    NodePath(FIREWALL_NFT, A, "the packet filter (nftables table `inet ha_ingress_proxy`, drops only): VRRP from the site's nodes only, a non-loopback stats port from `stats.allow` only, metrics on the node address from `metrics.allow` only; in mode bgp, BGP and BFD from the node's peers only", role_dependent=True),
    NodePath(HAPROXY_CFG, A, "haproxy config: stats bind on this node's address, listeners on the (possibly metadata-given) VIPs; stats password read from the environment", role_dependent=True),
    NodePath(FRR_CONF, A, "`mode: bgp`: FRR's config (bgpd + bfdd): this node's router-id, peers, BFD, the VIP prefix-list; no `network` lines, the bgp-gate adds them while haproxy is healthy", role_dependent=True, only="bgp"),
    NodePath(FRR_DAEMONS, P, "`mode: bgp`: FRR's daemons file for our pathspace: bgpd and bfdd on", only="bgp"),
    NodePath(FRR_VTYSH_CONF, P, "`mode: bgp`: vtysh reads the one integrated frr.conf", only="bgp"),
    NodePath(FRR_DROPIN, P, "`mode: bgp`: frr.service runs FRR in the `hip` pathspace (/etc/frr/hip, /run/frr/hip)", only="bgp"),
    NodePath(BGP_GATE_UNIT, P, "`mode: bgp`: `ha-ingress-proxy bgp-gate`: VIPs on hip0, announced only while haproxy answers", only="bgp"),
    NodePath(HAPROXY_ENV, P, "`CONFIG=` for the haproxy unit"),
    NodePath(KEEPALIVED_ENV, P, "`DAEMON_ARGS=` (Debian) and `KEEPALIVED_OPTIONS=` (EL) for the keepalived unit"),
    NodePath(SECRETS_ENV, A, "`HAPROXY_STATS_PASSWORD=...`: put there by cloud-init write_files or the admin (or by the agent from root-only metadata); refused unless root-only; never rendered, never packaged", "0600"),
    NodePath(STATS_CERT, A, "the stats page's certificate and key (PEM) when it is not on loopback: delivered by the admin, else made self-signed by the agent at first boot; root-only", "0600"),
    NodePath(STATS_CERT_MARK, A, "the SHA-256 of a certificate the agent made itself (so `status` can say so); no secret"),
    NodePath(NODE_FILE, M, "optional: `ha_ingress_node` / `ha_ingress_role` / `ha_ingress_vips` on hosts without metadata; refused unless root-only", "0600"),
    NodePath(CHECK_SCRIPT, P, "VRRP check: is haproxy alive (pid file + /proc)", "0755"),
    NodePath(BACKUP_GRACE_SCRIPT, P, "keepalived's notify_backup (root): keeps a VIP that just left this node local for a 2 s grace, so a preemption move (failback, resume) loses no request", "0755", only="vrrp"),
    NodePath(HAPROXY_DROPIN, P, "haproxy unit drop-in: reads haproxy.env + secrets.env"),
    NodePath(KEEPALIVED_DROPIN, P, "keepalived unit drop-in: reads keepalived.env, starts only when keepalived.conf is there"),
    NodePath(FIREWALL_UNIT, P, "loads firewall.nft after the agent, before keepalived and haproxy (which Require= it); the agent reloads it when the file changes"),
    NodePath(SYSUSERS, P, "the unprivileged `ha-ingress-check` user keepalived runs the check script as (`script_user`)"),
    NodePath(AGENT_UNIT, P, "the node agent's unit: picks the role at boot, writes the agent's files (docs/agent.md)"),
    NodePath(METRICS_UNIT, P, "`ha-ingress-proxy metrics`: VRRP/node metrics for Prometheus (docs/observability.md)"),
    NodePath(HAPROXY_WATCH_UNIT, P, "`ha-ingress-proxy watch-haproxy`: a pidfd on haproxy's master; its exit puts keepalived in FAULT at once (docs/lab.md)", only="vrrp"),
    NodePath(PRESET, P, "enables haproxy, keepalived, the agent and the metrics exporter"),
    NodePath(SYSCTL, P, "seed tuning minus tcp_tw_recycle, plus ip_nonlocal_bind"),
    NodePath(RSYSLOG, P, "haproxy's log (haproxy.log_transport: UDP or TCP on 127.0.0.1:514 only, or a unix socket in haproxy's chroot), local2 -> /" + LOG_FILE),
    NodePath(LOGROTATE, P, "rotates that log"),
    NodePath(SITE_MODEL, P, "the validated site model the agent plans from"),
    NodePath(PYTHON_DIR, P, "the node runtime (RUNTIME_MODULES and templates), private to the package", "0755", directory=True),
    NodePath(LAUNCHER, P, "the `ha-ingress-proxy` command (`apply`, `status`): runs the node runtime from that directory", "0755"),
    NodePath(DOC_DIR, P, "README and license (the RPM puts the license under /usr/share/licenses)", "0755", directory=True),
    NodePath(STATE_FILE, A, "the agent's decision (or refusal and why); no secrets; its directory is the agent unit's RuntimeDirectory (0755), so non-root `status` reads it"),
    NodePath(SERVER_STATE, A, "haproxy's servers' runtime state (`show servers state`), saved just before a reload and read by the new worker (server-state-file); in /run, so a boot starts from the config"),
    NodePath(HAPROXY_DOWN, A, "`watch-haproxy` writes 1 the moment haproxy's master exits, 0 while a master with a worker runs: keepalived's track_file (every VRRP instance in FAULT while non-zero); absent = serving (the 1 s check decides)", only="vrrp"),
    NodePath(VAR_STATE_DIR, D, "state kept across reboots; systemd creates it before keepalived starts (the keepalived drop-in's StateDirectory=)", "0755", directory=True),
    NodePath(DRAIN_FILE, A, "`ha-ingress-proxy drain` writes 1, `resume` 0: keepalived's track_file (every VRRP instance in FAULT while non-zero); kept across reboot"),
    NodePath(DRAIN_INFO, A, "what the last drain did (when, VIPs given up, streams left at the move), for `status`"),
    NodePath(IMAGE_MANIFEST, I, "baked images only: image, base, package version, sha256 over the package's files"),
    NodePath(IMAGE_YUM_REPO, I, "EL image builds only, while the package is installed from the build's repo; removed after", "-"),
    NodePath(YUM_REPO, M, "hosts installed with yum: the site's repo (`invoke repo` writes it)"),
    NodePath(CMDLINE, D, "kernel command line: `ha_ingress.role=` / `ha_ingress.node=` / `ha_ingress.vips=`", "-"),
    NodePath(INSTANCE_DATA, D, "cloud-init instance data: `ha_ingress_*` metadata keys", "-"),
    NodePath(INSTANCE_DATA_SENSITIVE, D, "its root-only copy (nothing redacted), read first when present", "-"),
    NodePath(HAPROXY_SOCKET, D, "haproxy's admin socket (`level admin`, 0600 root; haproxy.cfg asks for it): for operators and `drain`", "-"),
    NodePath(STATUS_SOCKET, D, "haproxy's read-only socket (`level user`, 0600 root): `status` reads the backends there", "-"),
    NodePath(HAPROXY_PIDFILE, D, "haproxy's pid file (haproxy.cfg asks for it); the VRRP check, `status` and `metrics` read it", "-"),
    NodePath(KEEPALIVED_PIDFILE, D, "keepalived's pid file; `status` and `metrics` read it", "-"),
    NodePath(VRRP_PIDFILE, D, "keepalived's VRRP child's pid file; `status` and `metrics` read it", "-"),
    NodePath(LOG_FILE, D, "haproxy's log, written by rsyslog", "-"),
    NodePath(DISTRO_HAPROXY_CFG, D, "the distro's haproxy config: never touched, not used", "-"),
    NodePath(DISTRO_KEEPALIVED_CONF, D, "the distro's keepalived config: never touched, not used", "-"),
)
del P, A, M, I, D

BY_PATH: dict[str, NodePath] = {p.path: p for p in PATHS}

# The files the boot-time agent renders for the node's role (keepalived.conf first: the
# file whose presence lets keepalived start). The package owns them as ghosts.
ROLE_FILES: tuple[str, ...] = tuple(p.path for p in PATHS if p.role_dependent)


def renders_for(rel: str, bgp: bool) -> bool:
    """Whether a node of a bgp (or VRRP) site gets this file."""
    only = entry(rel).only
    return not only or only == ("bgp" if bgp else "vrrp")


def entry(rel: str) -> NodePath:
    """The layout row for a path, or the directory row it sits below. KeyError if it has none."""
    rel = rel.strip("/")
    if rel in BY_PATH:
        return BY_PATH[rel]
    for p in PATHS:
        if p.directory and rel.startswith(p.path + "/"):
            return p
    raise KeyError(f"/{rel}: not in the node layout (ha_ingress_proxy/layout.py PATHS)")


def mode(rel: str) -> int:
    """The mode a rendered file gets (its row's mode). KeyError for a path with no row or no mode."""
    row = entry(rel)
    if row.directory or row.mode == "-":
        raise KeyError(f"/{rel}: the node layout gives this path no file mode")
    return int(row.mode, 8)


def manifest_paths() -> list[str]:
    """What the package installs, as the image manifest digests it (Packer's manifest_paths).

    The package's directories whole (docs aside: not configuration), then its
    files that sit in none of them; absolute, in table order.
    """
    dirs = [p.path for p in PATHS if p.writer is Writer.PACKAGE and p.directory and p.path != DOC_DIR]
    files = [
        p.path
        for p in PATHS
        if p.writer is Writer.PACKAGE and not p.directory and not any(p.path.startswith(d + "/") for d in dirs)
    ]
    return [shown(x) for x in [*dirs, *files]]


def markdown_table() -> str:
    """docs/layout.md's table, from PATHS."""
    lines = [
        "| path on the node | written by | what | role-dependent | mode |",
        "|---|---|---|---|---|",
    ]
    for p in PATHS:
        path = f"`{p.shown}/`" if p.directory else f"`{p.shown}`"
        role = "yes" if p.role_dependent else ("no" if p.writer is Writer.PACKAGE else "-")
        lines.append(f"| {path} | {p.writer.value} | {p.what} | {role} | {p.mode} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the node payload's allowlist

# The node runtime, module by module (relative to ha_ingress_proxy/, no .py): the only
# Python a package ships. Build and lab code live in other packages (ha_ingress_build,
# ha_ingress_lab) and cannot reach a node.
RUNTIME_MODULES: tuple[str, ...] = (
    "__init__",
    "agent/__init__",
    "agent/apply",
    "agent/bgp_gate",
    "agent/cli",
    "agent/drain",
    "agent/files",
    "agent/frr",
    "agent/haproxy_api",
    "agent/haproxy_watch",
    "agent/live",
    "agent/metrics",
    "agent/reload",
    "agent/resolve",
    "agent/secrets",
    "agent/sources",
    "agent/state",
    "agent/stats_cert",
    "agent/status",
    "cli",
    "errors",
    "inventory",
    "layout",
    "plan",
    "render",
    "subproc",
)
# Data directories of ha_ingress_proxy that ship whole.
RUNTIME_DATA_DIRS: tuple[str, ...] = ("templates",)
