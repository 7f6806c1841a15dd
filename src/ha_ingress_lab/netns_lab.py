"""The lab: a site's proxy tier running for real in network namespaces.

One L2 segment: a bridge `br0` in its own namespace, one veth to each of

- every proxy node of the inventory (namespace `<prefix>-<node>`), running the
  real haproxy, keepalived and rsyslog with the files rendered for that node at
  their real paths (node_overlay.mount_script: overlayfs of the rendered tree over
  /etc and /usr, private tmpfs for /run, /var/log and haproxy's chroot);
- every cluster endpoint (namespace `<prefix>-<cluster>`): HTTP on 80 and plain
  TCP on 443, each answer naming the cluster (lab_processes.py), or for throughput a
  haproxy answering a static response with `http-request return`;
- one client (namespace `<prefix>-client`).

The inventory's addresses (192.168.1.x in the examples) exist only inside these
namespaces; nothing is routed anywhere else. The interface the inventory names
is replaced by the lab's veth (`lab0`) with dataclasses.replace on the Site
before rendering; rendered text is never edited.

All daemons of one node share one mount namespace (the check script reads
haproxy's pid file in the node's private /run), so each node gets a holder
process, `ip netns exec NS unshare --mount sh -ec '<mount script>; exec sleep
infinity'`, and its daemons are started with `nsenter --target HOLDER --mount
--net`. Everything is started through subproc.start, tracked by PID and stopped by
PID (never by name); every namespace is deleted on exit, also on an exception,
KeyboardInterrupt, SIGTERM/SIGHUP or interpreter exit (atexit).
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import resource
import secrets
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from subprocess import DEVNULL, Popen

from ha_ingress_lab import lab_ingress
from ha_ingress_build.node_overlay import PRIVATE_TMPFS, mount_script, users_layer
from ha_ingress_proxy import layout, render
from ha_ingress_proxy.agent import haproxy_api, stats_cert
from ha_ingress_proxy.subproc import require_tool, run, start
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.inventory import Site
from ha_ingress_proxy.plan import plan as make_plan

LAB_IF = "lab0"
# Namespace names start with this; HIP_LAB_PREFIX sets another, so two labs can run side by side.
PREFIX = os.environ.get("HIP_LAB_PREFIX", "hil")
HAPROXY_CFG = layout.shown(layout.HAPROXY_CFG)
KEEPALIVED_CFG = layout.shown(layout.KEEPALIVED_CONF)
RSYSLOG_CFG = layout.shown(layout.RSYSLOG)
FIREWALL_NFT = layout.shown(layout.FIREWALL_NFT)
# haproxy's chroot holds its stats socket: private per node too.
NODE_PRIVATE = (*PRIVATE_TMPFS, layout.HAPROXY_CHROOT)
SRC_DIR = str(Path(__file__).resolve().parent.parent)
# In start order. haproxy-watch (`ha-ingress-proxy watch-haproxy`, the node's
# ha-ingress-proxy-haproxy-watch.service) runs only where the plan tracks its file.
DAEMONS = ("rsyslog", "haproxy", "haproxy-watch", "keepalived")
HAPROXY_DOWN = layout.shown(layout.HAPROXY_DOWN)


# --------------------------------------------------------------------------- processes by PID


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    """pid and every process below it (children first collected, so the list is stable)."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_proc(proc: Popen, grace: float = 2.0) -> None:
    """SIGTERM a started process and everything below it, SIGKILL what is left; reap it."""
    if proc.poll() is None:
        pids = descendants(proc.pid)
        kill_pids(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)
        kill_pids([p for p in descendants(proc.pid) + pids if _alive(p)], signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except Exception:  # noqa: BLE001 - best effort at teardown
        pass


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout or ""
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout or ""
    return [int(x) for x in out.split() if x.isdigit()]


def remove_namespaces(prefix: str = PREFIX) -> list[str]:
    """Kill (by PID) whatever still runs in our namespaces, then delete them. Returns their names."""
    names = [ns for ns in netns_list() if ns.startswith(prefix + "-")]
    for ns in names:
        kill_pids(netns_pids(ns))
    for ns in names:
        for _ in range(50):
            if run(["ip", "netns", "del", ns], check=False).returncode == 0 or ns not in netns_list():
                break
            time.sleep(0.1)
    return names


# --------------------------------------------------------------------------- model


class UpDown:
    """A context manager over up() and down(): a failed up() is torn down before the error
    propagates, so no namespace or process outlives a half-built lab (Lab, BgpLab, Prometheus)."""

    def up(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()


@dataclass
class Member:
    """One namespace on the segment: a proxy node, a cluster endpoint or the client."""

    name: str
    ns: str
    address: str
    kind: str  # node | cluster | client
    port: str = ""  # the bridge-side veth
    tree: Path | None = None
    holder: Popen | None = None
    procs: dict[str, Popen] = field(default_factory=dict)
    stats_sha256: str = ""  # the stats page's certificate, when it is served over TLS


def lab_site(site: Site) -> Site:
    """The site as the lab runs it: every node's interface replaced by the lab's veth,
    and haproxy.maxconn lowered if the unit's LimitNOFILE (2 * maxconn + 1024) is above
    the hard open-file limit this process may grant (no CAP_SYS_RESOURCE in some
    containers); haproxy refuses to start when maxconn does not fit."""
    site = replace(site, interface=LAB_IF, nodes=tuple(replace(n, interface=LAB_IF) for n in site.nodes))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and 2 * site.haproxy.maxconn + 1024 > hard:
        maxconn = max(1, (hard - 1024) // 2)
        print(f"lab: haproxy.maxconn {site.haproxy.maxconn} -> {maxconn} (hard open-file limit {hard})", file=sys.stderr)
        site = replace(site, haproxy=replace(site.haproxy, maxconn=maxconn))
    return site


def client_address(site: Site) -> tuple[str, int]:
    net = ipaddress.IPv4Network(f"{site.nodes[0].address}/24", strict=False)
    used = {n.address for n in site.nodes} | {v.address for v in site.vips} | {c.endpoint for c in site.clusters}
    for host in reversed(list(net.hosts())):
        if str(host) not in used:
            return str(host), net.prefixlen
    raise UserError("no free address for the lab client")


class Lab(UpDown):
    """Context manager: `with Lab(site, workdir) as lab:` brings the tier up and always down."""

    def __init__(
        self,
        site: Site,
        workdir: Path,
        *,
        prefix: str = PREFIX,
        backend: str = "nginx",  # nginx (like ingress-nginx, lab_ingress.py) | python (lab_processes) | haproxy (static, for throughput)
        cpus: dict[str, str] | None = None,  # role -> taskset cpu list: "node", "cluster"
    ) -> None:
        self.site = lab_site(site)
        self.workdir = Path(workdir).resolve()
        self.prefix = prefix
        self.backend = backend
        self.cpus = cpus or {}
        self.password = secrets.token_urlsafe(18)
        self.bridge_ns = f"{prefix}-br"
        self.members: dict[str, Member] = {}
        self.extra: list[Popen] = []
        self._up = False
        self._old_handlers: dict[int, object] = {}
        self.client_addr, self.prefixlen = client_address(self.site)

    # ----------------------------------------------------------------- lifecycle

    def _signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):  # noqa: ARG001
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                pass
        self._old_handlers.clear()

    def up(self) -> None:
        if os.geteuid() != 0:
            raise UserError("the lab needs root: it creates network namespaces and mounts")
        for tool, pkg in (("ip", "iproute2"), ("haproxy", "haproxy"), ("keepalived", "keepalived"),
                          ("rsyslogd", "rsyslog"), ("nsenter", "util-linux"), ("unshare", "util-linux"),
                          ("sysctl", "procps"), ("nft", "nftables"),
                          *((("nginx", "nginx"),) if self.backend == "nginx" else ()),
                          *((("openssl", "openssl"),) if self.backend in ("nginx", "haproxy") else ())):
            require_tool(tool, pkg)
        stale = remove_namespaces(self.prefix)
        if stale:
            print(f"lab: removed stale namespaces {', '.join(stale)}", file=sys.stderr)
        atexit.register(self.down)
        self._signals()
        self._up = True
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._segment()
        for cl in self.site.clusters:
            self.start_cluster(cl.name)
        for node in self.site.nodes:
            self._prepare_node(node.name)
            self.load_firewall(node.name)
            self.start_node(node.name, ("rsyslog", "haproxy", "haproxy-watch"))
        self.start_keepalived_all()

    def start_keepalived_all(self, timeout: float = 30) -> None:
        """Start keepalived everywhere and let priority, not start order, place the VIPs.

        With nopreempt (our default) whichever node is alone for one master-down
        interval (0.3 s) takes every VIP and keeps it, so start order would decide.
        The lab starts keepalived with VRRP filtered between the nodes (each node
        becomes MASTER of every VIP), then opens the filter: masters that hear each
        other resolve by priority (nopreempt only holds back a BACKUP), which leaves
        every VIP on its rank-0 node, as at a cold start where the nodes hear each
        other from the first advert. Only the real rendered config is involved.
        """
        self.split_vrrp(True)
        for node in self.site.nodes:
            self.start_daemon(node.name, "keepalived")
        everyone = len(self.site.nodes)
        self._wait(lambda: all(len(h) == everyone for h in self.vip_holders().values()), timeout,
                   "every node MASTER while VRRP is filtered")
        self.split_vrrp(False)
        self.wait_vips(self.masters(), timeout)

    def down(self) -> None:
        """Stop everything by PID, delete every namespace. Safe to call twice."""
        if not self._up:
            return
        self._up = False
        try:
            for proc in self.extra:
                stop_proc(proc, 1.0)
            for m in self.members.values():
                for role in ("keepalived", "haproxy-watch", "haproxy", "rsyslog", "server"):
                    if role in m.procs:
                        stop_proc(m.procs.pop(role), 1.0)
                for proc in m.procs.values():
                    stop_proc(proc, 1.0)
                m.procs.clear()
                if m.holder is not None and m.kind == "node":
                    self._keep_haproxy_log(m.name)
                if m.holder is not None:
                    stop_proc(m.holder, 1.0)
                    m.holder = None
        finally:
            remove_namespaces(self.prefix)
            self._restore_signals()
            try:
                atexit.unregister(self.down)
            except Exception:  # noqa: BLE001
                pass

    # ----------------------------------------------------------------- network

    def _ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def ip(self, ns: str, *args: str, check: bool = True):
        return run(["ip", "-n", ns, *args], check=check)

    def nsexec(self, ns: str, argv: list[str], check: bool = True, timeout: float | None = 30):
        return run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout)

    def _segment(self) -> None:
        members = [Member(n.name, self._ns(n.name), n.address, "node") for n in self.site.nodes]
        members += [Member(c.name, self._ns(c.name), c.endpoint, "cluster") for c in self.site.clusters]
        members.append(Member("client", self._ns("client"), self.client_addr, "client"))
        run(["ip", "netns", "add", self.bridge_ns])
        self.ip(self.bridge_ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        self.ip(self.bridge_ns, "link", "set", "br0", "up")
        self.ip(self.bridge_ns, "link", "set", "lo", "up")
        for i, m in enumerate(members):
            m.port = f"p{i}"
            self._plug(m)

    # ----------------------------------------------------------------- processes

    def _log(self, name: str):
        return open(self.workdir / "logs" / f"{name}.log", "ab")

    def _keep_haproxy_log(self, name: str) -> None:
        """Append the node's haproxy log (one line per request, in the node's private /var/log, gone
        with its mount namespace) to logs/<node>-haproxy.log in the lab's directory, after rsyslog
        has stopped (flushed): what a bench run's failed requests looked like from haproxy's side."""
        try:
            text = self.node_path(name, layout.shown(layout.LOG_FILE)).read_bytes()
        except OSError:
            return
        with self._log(f"{name}-haproxy") as out:
            out.write(text)

    def _start(self, m: Member, role: str, argv: list[str], env: dict[str, str] | None = None) -> Popen:
        cpu = self.cpus.get(m.kind)
        if cpu:
            argv = ["taskset", "-c", cpu, *argv]
        with self._log(f"{m.name}-{role}") as log:
            proc = start(argv, env=env, stdout=log, stderr=log, stdin=DEVNULL)
        m.procs[role] = proc
        return proc

    def cluster_dir(self, name: str) -> Path:
        return self.workdir / "clusters" / name

    def _nginx_conf(self, name: str) -> Path:
        cl = next(c for c in self.site.clusters if c.name == name)
        d = self.cluster_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        cert = lab_ingress.make_cert(self.workdir / "tls")
        ports = {s.port: s.name in cl.proxy_protocol for s in self.site.services}
        tls = {s.port for s in self.site.services if s.mode != "http"}
        conf = d / "nginx.conf"
        conf.write_text(lab_ingress.nginx_conf(name, cl.endpoint, ports, tls, [n.address for n in self.site.nodes], d, cert))
        return conf

    def access_log(self, name: str) -> Path:
        return self.cluster_dir(name) / "access.log"

    def error_log(self, name: str) -> Path:
        return self.cluster_dir(name) / "error.log"

    def _flag(self, name: str, flag: str, on: bool) -> None:
        """One of the flag files the cluster's nginx.conf tests (lab_ingress): there or not."""
        path = self.cluster_dir(name) / flag
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def drain_cluster(self, name: str, draining: bool = True) -> None:
        """Flip the cluster's /healthz to 503 (a controller shutting down) or back to 200."""
        self._flag(name, "drain", draining)

    def flap_cluster(self, name: str, flapping: bool = True) -> None:
        """Make the cluster's /healthz fail a random half of the checks (a flaky controller), or stop that."""
        self._flag(name, "flap", flapping)

    def hangup_cluster(self, name: str, hanging_up: bool = True) -> None:
        """Make the cluster close every request's connection without answering (an ingress pod
        killed mid-request, on demand: haproxy sees an empty response), or stop that."""
        self._flag(name, "hangup", hanging_up)

    def nginx_workers(self, name: str) -> list[int]:
        proc = self.members[name].procs.get("server")
        return [] if proc is None else [p for p in descendants(proc.pid) if p != proc.pid and _alive(p)]

    def restart_cluster_rolling(self, name: str, timeout: float = 15) -> None:
        """Replace every nginx worker of one cluster (the ingress pods) without dropping the
        listening sockets: SIGHUP makes the master start new workers and lets the old ones
        finish their requests and exit (what an ingress-nginx pod does on a config reload;
        the lab's stand-in for a rolling restart of the pods)."""
        proc = self.members[name].procs["server"]
        old = set(self.nginx_workers(name))
        os.kill(proc.pid, signal.SIGHUP)
        self._wait(lambda: not (old & set(self.nginx_workers(name))) and len(self.nginx_workers(name)) >= 2,
                   timeout, f"{name} nginx workers replaced")

    def start_cluster(self, name: str) -> None:
        m = self.members[name]
        if self.backend == "nginx":
            conf = self._nginx_conf(name)
            self.drain_cluster(name, False)
            self.flap_cluster(name, False)
            self.hangup_cluster(name, False)
            self._start(m, "server", ["ip", "netns", "exec", m.ns, "nginx", "-c", str(conf), "-p", str(conf.parent),
                                      "-g", "daemon off;"])
            self._wait(lambda: all(self._listening(m.ns, p) for p in
                                   (*(s.port for s in self.site.services), lab_ingress.HEALTH_PORT)), 10, f"{name} serving")
            return
        if self.backend == "haproxy":
            cfg = self.workdir / f"{name}-static.cfg"
            pem = self._static_cert()
            ret = f"    http-request return status 200 content-type text/plain string \"{name}\\n\" hdr X-Cluster {name}\n"
            # 443 ends TLS here, as an ingress would: the tier passes TLS through (the TLS-connection shape)
            cfg.write_text(
                "global\n    maxconn 4096\n\ndefaults\n    mode http\n    timeout connect 5s\n"
                "    timeout client 1m\n    timeout server 1m\n\n"
                f"frontend static\n    bind {m.address}:80\n{ret}\n"
                f"frontend static_tls\n    bind {m.address}:443 ssl crt {pem}\n{ret}"
            )
            self._start(m, "server", ["ip", "netns", "exec", m.ns, "haproxy", "-f", str(cfg), "-db"])
        else:
            self._start(m, "server", ["ip", "netns", "exec", m.ns, sys.executable, "-m", "ha_ingress_lab.lab_processes",
                                      "serve", name, m.address], env={"PYTHONPATH": SRC_DIR})
        self._wait(lambda: self._listening(m.ns, 80) and self._listening(m.ns, 443), 10, f"{name} serving")

    def _static_cert(self) -> Path:
        """A throwaway self-signed P-256 certificate + key (one PEM) for the static backends' TLS port."""
        pem = self.workdir / "static-tls.pem"
        if not pem.exists():
            key, crt = self.workdir / "static-tls.key", self.workdir / "static-tls.crt"
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=lab-ingress"])
            pem.write_bytes(crt.read_bytes() + key.read_bytes())
        return pem

    def stop_cluster(self, name: str) -> None:
        m = self.members[name]
        for role in ("server", "server443"):
            if role in m.procs:
                stop_proc(m.procs.pop(role), 0)

    def blackhole_cluster(self, name: str) -> None:
        """The cluster's namespace drops every packet in and out (loopback aside): no RST, no ICMP,
        as a powered-off host or a dropping firewall looks from the proxy nodes. Gone with the lab."""
        rules = ("table inet hil_blackhole {\n"
                 " chain in { type filter hook input priority 0; iifname != \"lo\" drop; }\n"
                 " chain out { type filter hook output priority 0; oifname != \"lo\" drop; }\n}\n")
        run(["ip", "netns", "exec", self.members[name].ns, "nft", "-f", "-"], input=rules)

    def _listening(self, ns: str, port: int) -> bool:
        out = self.nsexec(ns, ["ss", "-Htln", f"sport = :{port}"], check=False).stdout or ""
        return bool(out.strip())

    def _prepare_node(self, name: str) -> None:
        m = self.members[name]
        tree = render.render_node(self.site, name)
        m.tree = self.workdir / "nodes" / name
        if m.tree.exists():
            run(["rm", "-rf", "--one-file-system", str(m.tree)])
        m.tree.mkdir(parents=True)
        render.write_tree(tree, m.tree)
        # secrets.env as the admin or cloud-init would leave it: the node agent (`agent()`)
        # then finds every file already right and writes nothing to the read-only /etc.
        secrets_env = m.tree / layout.SECRETS_ENV
        secrets_env.write_text(f"HAPROXY_STATS_PASSWORD={self.password}\n")
        os.chmod(secrets_env, 0o600)
        # The node's sysctls: sysctl -e skips keys the namespace does not have
        # (host-wide ones such as net.core.netdev_max_backlog are never touched).
        self.nsexec(m.ns, ["sysctl", "-q", "-e", "-p", str(m.tree / layout.SYSCTL)])
        # What systemd's own /usr/lib/sysctl.d/50-default.conf sets on a node (a new network
        # namespace starts at the kernel's 10): the queue of a unix datagram socket, which
        # haproxy.log_transport unix fills (haproxy drops a line when it is full).
        self.nsexec(m.ns, ["sysctl", "-q", "-w", "net.unix.max_dgram_qlen=512"])
        # What the package and the agent add on a node, beside the rendered tree (an extra
        # overlay layer, so the tree stays exactly what render wrote): keepalived's
        # script_user in /etc/passwd (sysusers.d), and the stats page's certificate, made
        # the agent's way when the plan serves stats over TLS.
        extra = self.workdir / "extra" / name
        if extra.exists():
            run(["rm", "-rf", "--one-file-system", str(extra)])
        extra.mkdir(parents=True)
        users_layer(m.tree, extra)
        cert = stats_cert.ensure(extra, make_plan(self.site, name))
        m.stats_sha256 = cert.sha256 if cert else ""
        script = mount_script(m.tree, private_dirs=NODE_PRIVATE, extra=extra)
        m.holder = start(["ip", "netns", "exec", m.ns, "unshare", "--mount", "sh", "-ec", f"{script}\nexec sleep infinity"],
                         stdin=DEVNULL)
        self._wait(lambda: self._comm(m.holder.pid) == "sleep", 10, f"{name} mount namespace")

    @staticmethod
    def _comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""

    def node_path(self, name: str, path: str) -> Path:
        """A path as the node's daemons see it (through the holder's mount namespace)."""
        m = self.members[name]
        return Path(f"/proc/{m.holder.pid}/root") / path.lstrip("/")

    def enter(self, name: str) -> list[str]:
        """argv prefix that runs a command inside node `name` (its network and mount namespaces)."""
        m = self.members[name]
        return ["nsenter", f"--target={m.holder.pid}", "--mount", "--net", "--"]

    def agent(self, name: str, *args: str, check: bool = True, timeout: float = 120):
        """Run the node command (`ha-ingress-proxy apply|status|drain|resume ...`) inside node `name`,
        as on a node: its network and mount namespaces, --root /. Returns the CompletedProcess."""
        argv = [*self.enter(name), sys.executable, "-m", "ha_ingress_proxy.cli", *args]
        return run(argv, check=check, timeout=timeout, env={"PYTHONPATH": SRC_DIR})

    def start_metrics(self, name: str, timeout: float = 15) -> None:
        """The node's exporter as its unit runs it (`ha-ingress-proxy metrics --listen node:PORT` when the
        site binds metrics to the node: run `agent(name, "apply")` first, the address comes from its state)."""
        m = self.members[name]
        bind = "node" if self.site.metrics.bind == "node" else "127.0.0.1"
        argv = [*self.enter(name), sys.executable, "-m", "ha_ingress_proxy.cli", "metrics",
                "--listen", f"{bind}:{self.site.metrics.node_port}"]
        self._start(m, "metrics", argv, env={"PYTHONPATH": SRC_DIR})
        self._wait(lambda: self._listening(m.ns, self.site.metrics.node_port), timeout, f"metrics exporter on {name}")

    def load_firewall(self, name: str) -> None:
        """What ha-ingress-proxy-firewall.service does before keepalived: nft -f the rendered filter."""
        run([*self.enter(name), "nft", "-f", FIREWALL_NFT])

    def firewall_drops(self, name: str) -> dict[str, int]:
        """Packets each commented rule of our table dropped on node `name` (comment -> packets)."""
        out = run([*self.enter(name), "nft", "list", "chain", "inet", "ha_ingress_proxy", "input"], check=False).stdout or ""
        drops = {}
        for line in out.splitlines():
            if "counter packets" in line and 'comment "' in line:
                packets = int(line.split("counter packets", 1)[1].split()[0])
                drops[line.split('comment "', 1)[1].rstrip('"')] = packets
        return drops

    def add_rogue(self, name: str = "rogue") -> Member:
        """A stranger's namespace on the segment (a free address of the lab's subnet); no daemons."""
        net = ipaddress.IPv4Network(f"{self.site.nodes[0].address}/{self.prefixlen}", strict=False)
        used = {m.address for m in self.members.values()} | {v.address for v in self.site.vips}
        addr = next(str(h) for h in reversed(list(net.hosts())) if str(h) not in used)
        m = Member(name, self._ns(name), addr, "rogue", port=f"p{len(self.members)}")
        self._plug(m)
        return m

    def _plug(self, m: Member) -> None:
        """A namespace for m, on the lab segment: a veth into the bridge, m's address on LAB_IF."""
        run(["ip", "netns", "add", m.ns])
        self.members[m.name] = m  # from here on, teardown knows it
        self.ip(self.bridge_ns, "link", "add", m.port, "type", "veth", "peer", "name", LAB_IF, "netns", m.ns)
        self.ip(self.bridge_ns, "link", "set", m.port, "master", "br0")
        self.ip(self.bridge_ns, "link", "set", m.port, "up")
        self.ip(m.ns, "link", "set", "lo", "up")
        self.ip(m.ns, "addr", "add", f"{m.address}/{self.prefixlen}", "dev", LAB_IF)
        self.ip(m.ns, "link", "set", LAB_IF, "up")

    def start_rogue_adverts(self, name: str, vrid: int, vips: list[str], duration: float, priority: int = 255) -> Popen:
        """The rogue sends VRRP adverts for `vrid` (as the site's keepalived speaks them) to the
        VRRP group and to every node's address, for `duration` seconds."""
        m = self.members[name]
        v = self.site.vrrp
        argv = ["ip", "netns", "exec", m.ns, sys.executable, "-m", "ha_ingress_lab.rogue_vrrp", "--src", m.address,
                "--vrid", str(vrid), "--version", str(v.version), "--advert-int", str(v.advert_int),
                "--priority", str(priority), "--duration", str(duration), "--to", "224.0.0.18",
                *[x for n in self.site.nodes for x in ("--to", n.address)], *[x for vip in vips for x in ("--vip", vip)]]
        with self._log(f"{name}-adverts") as log:
            proc = start(argv, env={"PYTHONPATH": SRC_DIR}, stdout=log, stderr=log, stdin=DEVNULL)
        m.procs["adverts"] = proc
        return proc

    def start_daemon(self, name: str, role: str) -> None:
        m = self.members[name]
        pl = make_plan(self.site, name)
        enter = self.enter(name)
        if role == "rsyslog":
            argv = [*enter, "rsyslogd", "-n", "-f", str(self.rsyslog_main()), "-i", "/run/rsyslogd.pid"]
            self._start(m, role, argv)
        elif role == "haproxy":
            nofile = pl.haproxy.nofile  # what the unit's LimitNOFILE gives it
            argv = [*enter, "prlimit", f"--nofile={nofile}:{nofile}", "haproxy", "-Ws", "-f", HAPROXY_CFG]
            # (the config's `pidfile /run/haproxy.pid` is the -p; giving both makes haproxy complain)
            self._start(m, role, argv, env={"HAPROXY_STATS_PASSWORD": self.password})
        elif role == "keepalived":
            argv = [*enter, "keepalived", "--dont-fork", f"--use-file={KEEPALIVED_CFG}", "--vrrp",
                    "--log-console", "--log-detail", "--no-syslog"]
            self._start(m, role, argv)
        elif role == "haproxy-watch":
            if not pl.haproxy_watch:
                return
            # As its unit runs it (ExecStart=ha-ingress-proxy watch-haproxy), in the node's namespaces.
            argv = [*enter, sys.executable, "-m", "ha_ingress_proxy.cli", "watch-haproxy"]
            self._start(m, role, argv, env={"PYTHONPATH": SRC_DIR})
            # keepalived (started next) drops a track_file whose directory is missing, and reads the
            # file at start: wait for the watcher's first word (0 when haproxy serves).
            flag = self.node_path(name, HAPROXY_DOWN)
            self._wait(lambda: flag.exists() or m.procs[role].poll() is not None, 30, f"haproxy watcher on {name}")
            if m.procs[role].poll() is not None:
                raise UserError(f"lab: the haproxy watcher on {name} exited ({self.workdir / 'logs'}/{name}-{role}.log)")
        else:
            raise ValueError(role)

    def rsyslog_main(self) -> Path:
        """The stand-in for the distribution's rsyslog.conf: it loads imuxsock without the system
        socket (as EL's does; the rendered file relies on it for haproxy.log_transport unix) and
        includes the rendered file, as a node's rsyslog.conf includes /etc/rsyslog.d/*.conf."""
        main = self.workdir / "rsyslog-main.conf"
        main.write_text('module(load="imuxsock" SysSock.Use="off")\n'
                        f'include(file="{RSYSLOG_CFG}")\n')
        return main

    def start_node(self, name: str, roles: tuple[str, ...] = DAEMONS) -> None:
        for role in roles:
            self.start_daemon(name, role)
            if role == "haproxy":
                self.wait_haproxy(name)

    def wait_haproxy(self, name: str, timeout: float = 10) -> None:
        m = self.members[name]
        port = self.site.services[0].port
        self._wait(lambda: self._listening(m.ns, port), timeout, f"haproxy on {name}")

    def haproxy_pids(self, name: str) -> list[int]:
        proc = self.members[name].procs.get("haproxy")
        if proc is None or proc.poll() is not None:
            return []
        return [p for p in descendants(proc.pid) if self._comm(p) == "haproxy"]

    def daemon_pids(self, name: str, role: str) -> list[int]:
        proc = self.members[name].procs.get(role)
        return [] if proc is None else [p for p in descendants(proc.pid) if _alive(p)]

    def keepalived_log_mark(self) -> dict[str, int]:
        """Where each node's keepalived log ends now (for keepalived_events(mark))."""
        out = {}
        for n in self.site.nodes:
            path = self.workdir / "logs" / f"{n.name}-keepalived.log"
            out[n.name] = path.stat().st_size if path.exists() else 0
        return out

    def keepalived_events(self, mark: dict[str, int], what: str = "Entering MASTER STATE") -> list[str]:
        """The keepalived log lines containing `what` written since `mark`, as '<node>: <line>'."""
        lines = []
        for n in self.site.nodes:
            path = self.workdir / "logs" / f"{n.name}-keepalived.log"
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(mark.get(n.name, 0))
                text = f.read().decode(errors="replace")
            lines += [f"{n.name}: {line.strip()}" for line in text.splitlines() if what in line]
        return lines

    # ----------------------------------------------------------------- faults

    def kill_daemon(self, name: str, role: str, sig: int = signal.SIGKILL) -> None:
        """Signal one daemon of a node (and for SIGKILL, everything below it), by PID."""
        m = self.members[name]
        proc = m.procs.get(role)
        if proc is None:
            return
        pids = descendants(proc.pid) if sig == signal.SIGKILL else [proc.pid]
        kill_pids(pids, sig)

    def reap(self, name: str, role: str, timeout: float = 5) -> None:
        m = self.members[name]
        proc = m.procs.pop(role, None)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001
                stop_proc(proc, 0)

    def kill_node(self, name: str, at_fault: Callable[[], None] | None = None) -> None:
        """A node dies: its link goes down and every daemon gets SIGKILL (by PID). at_fault is called
        right before the link goes down, after the /proc walk for the PIDs (0.1 s and more on a loaded
        machine), so a scenario can mark the fault when it happens."""
        m = self.members[name]
        pids = [p for role in DAEMONS if role in m.procs for p in descendants(m.procs[role].pid)]
        if at_fault is not None:
            at_fault()
        self.ip(m.ns, "link", "set", LAB_IF, "down")
        kill_pids(pids)
        for role in DAEMONS:
            self.reap(name, role)

    def revive_node(self, name: str) -> None:
        """The dead node boots again: no stale VIP (a reboot has none), link up, daemons start."""
        m = self.members[name]
        for vip in self.site.vips:
            self.ip(m.ns, "addr", "del", f"{vip.address}/32", "dev", LAB_IF, check=False)
        # A reboot starts with an empty /run (tmpfs). Stale pid files of the SIGKILLed
        # daemons would otherwise meet reused PIDs: keepalived then says "daemon is
        # already running" and exits 0 without running.
        run_dir = self.node_path(name, "/run")
        for pidfile in ("keepalived.pid", "vrrp.pid", "checkers.pid", "bfd.pid", "haproxy.pid", "rsyslogd.pid"):
            (run_dir / pidfile).unlink(missing_ok=True)
        self.node_path(name, HAPROXY_DOWN).unlink(missing_ok=True)
        self.ip(m.ns, "link", "set", LAB_IF, "up")
        for role in DAEMONS:
            if role in m.procs and m.procs[role].poll() is None:
                continue
            m.procs.pop(role, None)
            self.start_daemon(name, role)
            if role == "haproxy":
                self.wait_haproxy(name)

    def split_vrrp(self, cut: bool = True) -> None:
        """Drop (or restore) VRRP (IP protocol 112) on every node, in and out; clients still get through."""
        for n in self.site.nodes:
            ns = self.members[n.name].ns
            if cut:
                rules = ("table inet hil_split {\n chain in { type filter hook input priority 0; ip protocol vrrp drop; }\n"
                         " chain out { type filter hook output priority 0; ip protocol vrrp drop; }\n}\n")
                run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules)
            else:
                self.nsexec(ns, ["nft", "delete", "table", "inet", "hil_split"], check=False)

    # ----------------------------------------------------------------- observation

    def server_states(self, name: str) -> dict[tuple[str, str], str]:
        """(listener, server) -> haproxy's status (UP, DOWN, MAINT, "UP 1/2"...), from node `name`'s stats socket."""
        try:
            rows = haproxy_api.stat_rows(self.node_path(name, layout.shown(layout.HAPROXY_SOCKET)), timeout=1.0)
        except OSError:
            return {}
        return {(px, sv): st for px, servers in haproxy_api.servers(rows).items() for sv, st in servers.items()}

    def server_checks(self, name: str) -> dict[str, dict]:
        """server -> {status, chkdown (UP->DOWN transitions), chkfail (failed checks)} for the servers with their
        own check (the first listener's; the others track them), from node `name`'s stats socket."""
        try:
            rows = haproxy_api.stat_rows(self.node_path(name, layout.shown(layout.HAPROXY_SOCKET)), timeout=1.0)
        except OSError:
            return {}
        return {r["svname"]: {"status": r.get("status") or "?", "chkdown": int(r.get("chkdown") or 0),
                              "chkfail": int(r.get("chkfail") or 0)}
                for r in rows if r.get("svname") not in ("FRONTEND", "BACKEND") and r.get("check_status")
                and r.get("pxname") not in haproxy_api.EXCLUDED_PROXIES}

    def cluster_down_everywhere(self, cluster: str) -> bool:
        """Every running node's haproxy has every server of `cluster` out of rotation."""
        seen = False
        for n in self.site.nodes:
            if not self.haproxy_pids(n.name):
                continue
            states = [v for (px, sv), v in self.server_states(n.name).items() if sv == cluster]
            if not states or any(v.startswith(("UP", "NOLB")) for v in states):
                return False
            seen = True
        return seen

    def vip_holders(self) -> dict[str, list[str]]:
        """VIP -> the nodes whose interface carries it now."""
        holders: dict[str, list[str]] = {v.address: [] for v in self.site.vips}
        for n in self.site.nodes:
            out = self.ip(self.members[n.name].ns, "-4", "-o", "addr", "show", "dev", LAB_IF, check=False).stdout or ""
            for vip in holders:
                if f" {vip}/32 " in out:
                    holders[vip].append(n.name)
        return holders

    def mac(self, name: str) -> str:
        """The MAC address of member `name`'s segment interface."""
        return json.loads(self.ip(self.members[name].ns, "-j", "link", "show", LAB_IF).stdout)[0]["address"]

    def pin_client_arp(self, vip: str, node: str) -> None:
        """The client's ARP entry for `vip` says `node` and ignores gratuitous ARP (a permanent entry): a client
        whose entry changes late, as the VM pair's did after a failback. unpin_client_arp() lets it follow again."""
        self.ip(self.members["client"].ns, "neigh", "replace", vip, "lladdr", self.mac(node), "dev", LAB_IF,
                "nud", "permanent")

    def unpin_client_arp(self, vip: str) -> None:
        """Drop the client's entry for `vip`: its next packet asks ARP again (the holder answers)."""
        self.ip(self.members["client"].ns, "neigh", "del", vip, "dev", LAB_IF, check=False)

    def masters(self) -> dict[str, str]:
        """VIP -> the node that masters it when all are healthy (rank 0)."""
        out = {}
        for n in self.site.nodes:
            for vip in make_plan(self.site, n.name).masters:
                out[vip] = n.name
        return out

    def masters_of(self, name: str) -> tuple[str, ...]:
        """The VIPs node `name` masters when all are healthy."""
        return make_plan(self.site, name).masters

    def wait_vips(self, want: dict[str, str] | None = None, timeout: float = 15) -> dict[str, list[str]]:
        """Wait until every VIP is on exactly one node (the `want`ed one, if given)."""
        def ok() -> bool:
            h = self.vip_holders()
            if any(len(v) != 1 for v in h.values()):
                return False
            return want is None or all(h[vip] == [node] for vip, node in want.items())
        self._wait(ok, timeout, f"VIPs placed ({want or 'one node each'}); now {self.vip_holders()}")
        return self.vip_holders()

    @staticmethod
    def _wait(cond, timeout: float, what: str, step: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if cond():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"lab: timed out after {timeout}s waiting for {what}")
            time.sleep(step)

    def targets(self, ports: tuple[int, ...] | None = None) -> list[str]:
        out = []
        passthrough = "https" if self.backend == "nginx" else "tcp"  # nginx ends TLS on the passthrough services
        for vip in self.site.vips:
            for s in sorted(self.site.services, key=lambda s: s.port):
                if ports is None or s.port in ports:
                    out.append(f"{vip.address}:{s.port}:{'http' if s.mode == 'http' else passthrough}")
        return out

    def request(self, addr: str, port: int = 80, timeout: float = 2) -> tuple[int, str]:
        """One HTTP GET from the client namespace: (status, body first line); (0, '') on failure."""
        out = self.nsexec(self.members["client"].ns,
                          ["curl", "-s", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", f"http://{addr}:{port}/"],
                          check=False).stdout or ""
        body, _, code = out.rpartition("\n")
        return (int(code) if code.strip().isdigit() else 0), body.strip().splitlines()[0] if body.strip() else ""

    def hold(self, vip: str | None = None, interval: float = 0.05, timeout: float = 1.0) -> Held:
        """Hold one HTTP keep-alive connection and one TCP (TLS-passthrough) stream open to a VIP."""
        vip = vip or self.site.vips[0].address
        http = next((s.port for s in self.site.services if s.mode == "http"), None)
        tcp = next((s.port for s in self.site.services if s.mode == "tcp"), None)
        out = self.workdir / f"hold-{time.monotonic_ns()}.json"
        argv = ["ip", "netns", "exec", self.members["client"].ns, sys.executable, "-m", "ha_ingress_lab.lab_processes",
                "hold", "--out", str(out), "--interval", str(interval), "--timeout", str(timeout),
                "--http", f"{vip}:{http}" if http else "", "--tcp", f"{vip}:{tcp}" if tcp else "",
                *(["--tls"] if self.backend == "nginx" else [])]
        with self._log("client-hold") as log:
            proc = start(argv, env={"PYTHONPATH": SRC_DIR}, stdout=log, stderr=log, stdin=DEVNULL)
        self.extra.append(proc)
        return Held(self, proc, out)

    def probe(self, targets: list[str] | None = None, interval: float = 0.02, timeout: float = 0.3) -> Probe:
        """Start the client loop; stop it with .stop() to get the results."""
        return start_probe(self, self.members["client"].ns, self.workdir, self.workdir / "logs" / "client-probe.log",
                           targets or self.targets(), interval, timeout)


def start_probe(owner, ns: str, workdir: Path, log_path: Path, targets: list[str], interval: float = 0.02,
                timeout: float = 0.3) -> "Probe":
    """The client probe loop (`lab_processes probe`) in namespace `ns`, one new connection per target every
    `interval`: shared by Lab and BgpLab. owner.extra holds the process until it is stopped (owner's down()
    stops what is left there, by PID)."""
    out = workdir / f"probe-{time.monotonic_ns()}.json"
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "ha_ingress_lab.lab_processes",
            "probe", "--out", str(out), "--interval", str(interval), "--timeout", str(timeout), *targets]
    with open(log_path, "ab") as log:
        proc = start(argv, env={"PYTHONPATH": SRC_DIR}, stdout=log, stderr=log, stdin=DEVNULL)
    owner.extra.append(proc)
    return Probe(owner, proc, out)


class _Recorder:
    """A lab_processes process that writes its JSON record when stopped (SIGTERM); `lab` is its owner
    (a Lab or a BgpLab: anything with an `extra` list of processes)."""

    def __init__(self, lab: "Lab", proc: Popen, out: Path) -> None:
        self.lab, self.proc, self.out = lab, proc, out

    def _stop(self, empty):
        """Stop the process, then read (and remove) what it wrote; `empty` when it wrote nothing."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            stop_proc(self.proc, 0)
        if self.proc in self.lab.extra:
            self.lab.extra.remove(self.proc)
        data = json.loads(self.out.read_text()) if self.out.exists() else empty
        self.out.unlink(missing_ok=True)
        return data


class Held(_Recorder):
    """The held-open connections (`lab_processes hold`): stop() returns their counts."""

    def stop(self) -> dict:
        return self._stop({})


class Probe(_Recorder):
    """The client probe loop (`lab_processes probe`): stop() returns its records."""

    def __init__(self, lab: "Lab", proc: Popen, out: Path) -> None:
        super().__init__(lab, proc, out)
        self.results: list[list] = []

    def stop(self) -> list[list]:
        self.results = self._stop([])
        return self.results


# --------------------------------------------------------------------------- analysis


def outage(results: list[list], t_fault: float, t_end: float | None = None, ok=None) -> dict:
    """Outage after a fault, from probe results [t0, t1, target, ok, status, cluster].

    failed: requests that ended at or after the fault and did not succeed.
    outage_ms: 0 when none failed; else from the fault to the first success
    started after the last failure (the moment service is back for good).
    """
    is_ok = ok or (lambda r: bool(r[3]))
    window = [r for r in results if r[1] >= t_fault and (t_end is None or r[0] <= t_end)]
    failed = [r for r in window if not is_ok(r)]
    if not failed:
        return {"outage_ms": 0.0, "failed_requests": 0, "requests": len(window), "recovered": True}
    last_fail = max(r[0] for r in failed)
    after = [r for r in window if r[0] > last_fail and is_ok(r)]
    if not after:
        end = window[-1][1] if window else t_fault
        return {"outage_ms": round((end - t_fault) * 1000, 1), "failed_requests": len(failed),
                "requests": len(window), "recovered": False}
    first = min(after, key=lambda r: r[1])
    return {"outage_ms": round(max(0.0, first[1] - t_fault) * 1000, 1), "failed_requests": len(failed),
            "requests": len(window), "recovered": True}


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def run_foreground(inventory_path: Path, work: Path, seconds: float = 0.0) -> None:
    """`invoke lab-up`: bring the lab up, print how to reach it, hold it until Ctrl-C (or `seconds`), tear it down."""
    from ha_ingress_proxy import inventory

    site = inventory.load(inventory_path)
    try:
        with Lab(site, work) as lab:
            lab.wait_vips(lab.masters())
            print(f"lab up ({site.mode}): VIPs {lab.vip_holders()}")
            for m in lab.members.values():
                print(f"  {m.kind:8} {m.name:10} {m.address:15} ip netns exec {m.ns} ...")
            print(f"  logs in {work / 'logs'}; Ctrl-C to stop")
            deadline = time.monotonic() + seconds if seconds else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    print("lab down: every process stopped, every namespace removed")
