"""Site + node -> NodePlan: all the arithmetic (priorities, states, peers, binds).

Templates only print what is decided here.

VRRP rule, for N nodes in inventory order:
- active-passive: one VIP; node i has rank i for it.
- active-active: VIP j is mastered by node j; node i has rank (i - j) mod N for
  it, so the backups of each VIP rotate and every node masters exactly one VIP.
- priority = 200 - 10 * rank (rank 0 = the VIP's master, 200; N <= 8 keeps every
  backup above 100).
- preempt false (the default): every instance starts BACKUP with `nopreempt`;
  the highest priority wins the first election, and a returning node does not
  take its VIP back (no reset of established connections at failback).
  preempt true: the rank-0 node starts MASTER and takes its VIP back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ha_ingress_proxy import layout
from ha_ingress_proxy.inventory import DEFAULT_HTTP_CHECK_PORT, Cluster, Mode, Node, Service, ServiceMode, Site

PRIORITY_TOP = 200
PRIORITY_STEP = 10
SYSLOG_FACILITY = "local2"
# haproxy.log_transport: where haproxy's `log` line sends, and what rsyslog listens on.
LOG_UDP = "127.0.0.1:514"
LOG_TCP = "127.0.0.1:514"  # ring: haproxy's forwarder connects here (rsyslog imtcp, octet-counted frames)
LOG_RING = "hip_log"
LOG_RING_SIZE = 4 * 1024 * 1024  # bytes held while rsyslog is slow or restarting (~16k lines of ~250 B)
LOG_DEV = "/dev/log"  # as haproxy sees it, chrooted: layout.LOG_SOCKET
# `ha-ingress-proxy drain` writes 1 here, `resume` 0: keepalived's track_file (weight 0, so
# any non-zero value puts every VRRP instance of the node in FAULT). Under /var/lib, so a
# drained node stays drained across a reboot; the keepalived drop-in creates the directory.
STATE_DIR = layout.shown(layout.VAR_STATE_DIR)
STATE_DIR_NAME = layout.VAR_STATE_DIR.rsplit("/", 1)[1]  # systemd StateDirectory= (relative to /var/lib)
DRAIN_FILE = layout.shown(layout.DRAIN_FILE)
DRAIN_TRACK = "hip_drain"
# `ha-ingress-proxy watch-haproxy` writes 1 here the moment haproxy's master exits (a pidfd),
# 0 while it serves: a second track_file (weight 0), so a dead haproxy puts the node in FAULT
# at once instead of at the next run of the polling check. In /run (the agent's runtime
# directory, also the keepalived drop-in's and the watcher's RuntimeDirectory=): a boot starts
# from "absent", which keepalived reads as 0 (serving).
HAPROXY_DOWN_FILE = layout.shown(layout.HAPROXY_DOWN)
HAPROXY_TRACK = "hip_haproxy"
RUN_DIR_NAME = layout.STATE_DIR.rsplit("/", 1)[1]  # systemd RuntimeDirectory= (relative to /run)
# A flag, not a backend: drain sets its one server ready through the stats socket, and
# every HTTP response then says `Connection: close` (keep-alive clients leave before the VIP moves).
DRAIN_BACKEND = "hip_drain"
# A reload's old worker keeps serving the connections it has until they end, at most
# this long; then it is stopped and they are cut. Longer than any test stream and most
# client sessions; `timeout tunnel 1h` already bounds an idle stream.
HARD_STOP_AFTER = "30m"
# A VIP that moves by VRRP preemption (a higher-priority node is back: failback after a reboot,
# `resume`, the last step of a rolling replacement) leaves its old master at once. keepalived runs
# the notify_backup script (layout.BACKUP_GRACE_SCRIPT, as root) on every move to BACKUP: it keeps
# the VIP local on this node for BACKUP_GRACE seconds (a local route in table local with this
# metric; arp_ignore=1 keeps the node from answering ARP for it), so packets a client still sends
# to this node's MAC until its ARP entry changes are served here, as `drain` does for planned moves.
# Its own metric: drain's grace routes use 4242 (agent/drain.py), the kernel's address route 0.
BACKUP_GRACE = 2  # seconds; covers the new master's second GARP burst (vrrp_garp_master_delay 1)
BACKUP_GRACE_METRIC = 4243
# keepalived runs the check script as this unprivileged system user (layout.SYSUSERS).
CHECK_USER = "ha-ingress-check"
# keepalived's timeout for the haproxy check script (s). The script only reads a pid file and
# /proc: it answers in milliseconds, and a dead haproxy fails it at once. A run that takes longer
# means the CPU is starved (fork and exec waiting), not that haproxy is gone; with the old
# timeout (= the 1 s interval) every such run put the node in FAULT: a false failover.
CHECK_TIMEOUT = 5
# FRR's vty sockets are frr:frrvty 0770 (Debian and EL): vtysh needs this group, and root without
# CAP_DAC_OVERRIDE (the metrics unit has no capabilities) is no exception.
FRR_VTY_GROUP = "frrvty"
NFT_TABLE = "ha_ingress_proxy"  # family inet: ours alone, loaded by ha-ingress-proxy-firewall.service


@dataclass(frozen=True)
class VrrpInstance:
    name: str
    interface: str
    router_id: int
    vip: str
    rank: int  # 0 = this node masters the VIP
    priority: int
    state: str  # MASTER | BACKUP (initial state)
    nopreempt: bool
    advert_int: str  # keepalived syntax, e.g. "0.1" or "1"
    version: int  # VRRP protocol version (3 unless the inventory asks for 2)
    source: str  # this node's address (source of adverts)
    peers: tuple[str, ...]  # unicast peers, empty when multicast


@dataclass(frozen=True)
class Listener:
    name: str
    mode: ServiceMode
    binds: tuple[str, ...]  # "addr:port"
    servers: tuple[tuple[str, str, int, str], ...]  # (name, "addr:port", weight, check/track/proxy options)
    check_lines: tuple[str, ...] = ()  # the clusters' check request (only on the listener that runs the checks)


@dataclass(frozen=True)
class HaproxyView:
    maxconn: int
    nofile: int  # LimitNOFILE for the unit: room for both sides of every connection
    timeout_connect: str
    timeout_client: str
    timeout_server: str
    http_server_close: bool  # seed's per-request server connections (else keep-alive)
    retry_on: str  # HTTP listeners' `retry-on` ("": haproxy's default, failed connections only)
    retry_methods: str  # the methods L7 retries may send twice (the rest get `disable-l7-retry`)
    listeners: tuple[Listener, ...]
    stats_bind: str
    metrics_bind: str  # haproxy's Prometheus exporter "addr:port"; "" when metrics.haproxy is false
    stats_path: str
    stats_user: str
    stats_cert: str  # "" = plain HTTP (loopback, or stats.tls: false); else `bind ... ssl crt <this>`
    metrics_cert: str  # the same for haproxy's /metrics (metrics on `node` with metrics.tls), the same certificate
    pidfile: str
    socket: str  # level admin, 0600 root: operators and `drain`
    status_socket: str  # level user (read-only): what `status` reads
    syslog_facility: str
    log_target: str  # the global `log` target: "127.0.0.1:514", "/dev/log" (in the chroot) or "ring@hip_log"
    log_ring: str  # the ring's name when log_transport is ring, else ""
    log_ring_size: int
    log_ring_server: str  # where the ring's forwarder sends (TCP)
    drain_backend: str
    server_state_file: str
    hard_stop_after: str


# mode: bgp. FRR runs in its own pathspace (`frrinit.sh start hip`): /etc/frr/hip/ and
# /run/frr/hip/, so the distro's /etc/frr files stay untouched (they are its conffiles).
FRR_PATHSPACE = layout.FRR_PATHSPACE
VIP_INTERFACE = "hip0"  # the dummy interface every VIP sits on (a /32 each), made by the bgp-gate
BGP_ROUTE_MAP = "HIP-OUT"
BGP_PREFIX_LIST = "HIP-VIPS"


@dataclass(frozen=True)
class BgpPeerView:
    address: str
    asn: int
    password_env: str  # secrets.env variable holding its password; "" when it has none


@dataclass(frozen=True)
class BgpView:
    """What FRR and the bgp-gate need on this node (mode: bgp)."""

    asn: int
    router_id: str
    peers: tuple[BgpPeerView, ...]
    vips: tuple[str, ...]  # "a.b.c.d/32", announced by the gate while haproxy is healthy
    communities: str  # "65010:100 65010:200", "" for none
    bfd_interval_ms: int
    bfd_multiplier: int
    hold_time: int
    keepalive: int
    gate_interval_ms: int
    gate_fall: int
    gate_rise: int
    pathspace: str
    vip_interface: str
    route_map: str
    prefix_list: str
    hostname: str


@dataclass(frozen=True)
class FirewallView:
    """The packet filter: nftables table inet <table>, input hook, drops only (never accepts)."""

    table: str
    vrrp_filter: bool  # drop VRRP (IP protocol 112) from anything but `peers`
    peers: tuple[str, ...]  # every node address of the site (this node's too), sorted
    stats_port: int  # 0 = no rule (stats on loopback); else drop it from anything but `stats_allow`
    stats_allow: tuple[str, ...]  # IPv4 CIDRs
    metrics_ports: tuple[int, ...]  # () = no rule (metrics on loopback); else drop them from anything but `metrics_allow`
    metrics_allow: tuple[str, ...]  # IPv4 CIDRs
    bgp_peers: tuple[str, ...]  # mode bgp: this node's BGP peers; BGP (179/tcp) and BFD from anything else dropped


@dataclass(frozen=True)
class NodePlan:
    site: str
    mode: Mode
    node: Node
    instances: tuple[VrrpInstance, ...]
    check_script: str
    check_interval: int
    check_timeout: int
    check_fall: int
    check_rise: int
    check_user: str  # keepalived script_user
    backup_grace_script: str  # keepalived notify_backup (root): keeps a VIP local for the grace
    backup_grace: int  # seconds
    backup_grace_metric: int  # of the grace route (table local)
    garp_refresh: int  # keepalived vrrp_garp_master_refresh (0 = off)
    heal_garp: bool  # re-announce at once when a split brain heals (lower-priority advert heard)
    vrrp_nice: int  # keepalived vrrp_priority: the VRRP process's nice value (0 = ordinary)
    haproxy_watch: bool  # track haproxy_down_file (written by `watch-haproxy`) besides the polling check
    haproxy_down_file: str
    haproxy_track: str
    run_dir_name: str
    haproxy: HaproxyView
    # `ha-ingress-proxy metrics --listen`: "node:PORT" (the agent's node address, resolved when it
    # starts) keeps the unit identical on every node; the package ships one copy.
    metrics_listen: str
    metrics_cert: str  # "" = plain HTTP; else `ha-ingress-proxy metrics --tls-cert <this>`
    metrics_groups: str  # SupplementaryGroups of the metrics unit: mode bgp's vtysh needs FRR's vty group
    firewall: FirewallView
    config_dir: str
    log_file: str
    log_transport: str  # udp | unix | ring: what rsyslog listens on (haproxy.log_target says where haproxy sends)
    log_socket: str  # unix: the socket rsyslog makes in haproxy's chroot
    nodes: tuple[Node, ...]
    drain_file: str
    drain_track: str
    state_dir: str
    state_dir_name: str
    launcher: str
    bgp: Optional[BgpView] = None  # mode: bgp only

    @property
    def masters(self) -> tuple[str, ...]:
        """VIPs this node masters when every node is healthy."""
        return tuple(i.vip for i in self.instances if i.rank == 0)


def _advert(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text or "0"


def rank(site: Site, node_index: int, vip_index: int) -> int:
    """How far down the failover order node i is for VIP j (0 = its master)."""
    if site.mode == Mode.ACTIVE_PASSIVE:
        return node_index
    return (node_index - vip_index) % len(site.nodes)


def check_port(site: Site, cluster: Cluster) -> int:
    """The port a cluster's health check connects to (the first service's when none is set)."""
    first = min(site.services, key=lambda s: s.port)
    return cluster.health.port if cluster.health.port is not None else first.port


def proxy_ports(site: Site, cluster: Cluster) -> set[int]:
    """The cluster's ports that expect a PROXY header."""
    return {s.port for s in site.services if s.name in cluster.proxy_protocol}


def _server_options(site: Site, service: Service, cluster: Cluster, checker: str) -> str:
    """One traffic server's options.

    Every cluster has ONE health check: on its server in the first listener (lowest
    port); its servers in the other listeners `track` it, so all of a cluster's
    services go down and come back together. haproxy runs passive observation
    (`observe layer4`) only on a server that has its own check, so it watches the
    first listener's traffic. A check with `port` set never carries a PROXY header
    unless asked (`check-send-proxy`, added when that port expects one).
    """
    h = cluster.health
    opts: list[str] = []
    if service.name == checker:
        opts.append("check")
        if h.port is not None:
            opts.append(f"port {h.port}")
            if h.port in proxy_ports(site, cluster):
                opts.append("check-send-proxy")
        if h.tls:
            opts.append("check-ssl verify none")
            if site.health.host:
                opts.append(f"check-sni {site.health.host}")
        opts.append(f"inter {h.inter} fastinter {h.fastinter} downinter {h.downinter} rise {h.rise} fall {h.fall}")
        if h.observe:
            opts.append(f"observe layer4 error-limit {h.error_limit} on-error mark-down")
    else:
        opts.append(f"track {checker}/{cluster.name}")
    if h.slowstart != "0":
        opts.append(f"slowstart {h.slowstart}")
    if service.name in cluster.proxy_protocol:
        opts.append("send-proxy-v2")
    return " ".join(opts)


def _check_lines(site: Site) -> tuple[str, ...]:
    h = site.health
    if h.type == "tcp":
        return ()
    send = f"http-check send meth GET uri {h.path} ver HTTP/1.1 hdr Host {h.host}" if h.host else \
        f"http-check send meth GET uri {h.path} ver HTTP/1.0"
    return ("option httpchk", send, f"http-check expect status {h.status}")


def _listener(site: Site, service: Service, checker: str) -> Listener:
    binds = tuple(f"{vip.address}:{service.port}" for vip in site.vips)
    servers = tuple((cl.name, f"{cl.endpoint}:{service.port}", cl.weight, _server_options(site, service, cl, checker))
                    for cl in site.clusters)
    return Listener(name=service.name, mode=service.mode, binds=binds, servers=servers,
                    check_lines=_check_lines(site) if service.name == checker else ())


def warnings(site: Site) -> list[tuple[str, str]]:
    """(key path, message) for settings that work but are probably not meant."""
    out = []
    for i, cl in enumerate(site.clusters):
        if not cl.proxy_protocol:
            continue
        port = check_port(site, cl)
        if port in proxy_ports(site, cl):
            out.append((f"clusters[{i}].proxy_protocol",
                        f"the check of {cl.name} goes to {port}, a PROXY-protocol port (haproxy sends it a PROXY header): "
                        f"it tests the traffic port, not the ingress controller; set health.type http and health.port "
                        f"to the controller's health port (ingress-nginx: {DEFAULT_HTTP_CHECK_PORT})"))
    return out


def metrics_address(site: Site, node: Node) -> str:
    return node.address if site.metrics.bind == "node" else site.metrics.bind


def _addr_key(addr: str) -> tuple[int, ...]:
    return tuple(int(x) for x in addr.split("."))


def stats_tls(site: Site) -> bool:
    """TLS on every non-loopback stats bind, unless the inventory says tls: false."""
    return site.stats.bind != "127.0.0.1" and site.stats.tls


def metrics_tls(site: Site) -> bool:
    """TLS on metrics bound to the node's address, unless the inventory says metrics.tls: false."""
    return site.metrics.bind == "node" and site.metrics.tls


def metrics_ports(site: Site) -> tuple[int, ...]:
    """The metrics ports off loopback (the packet filter and firewalld restrict them to metrics.allow)."""
    if site.metrics.bind == "127.0.0.1":
        return ()
    return tuple(sorted({site.metrics.node_port, *((site.metrics.haproxy_port,) if site.metrics.haproxy else ())}))


def firewall_view(site: Site, node: Node) -> FirewallView:
    return FirewallView(
        table=NFT_TABLE,
        vrrp_filter=site.vrrp.filter,
        peers=tuple(sorted({n.address for n in site.nodes}, key=_addr_key)),
        stats_port=0 if site.stats.bind == "127.0.0.1" else site.stats.port,
        stats_allow=tuple(site.stats.allow),
        metrics_ports=metrics_ports(site),
        metrics_allow=tuple(site.metrics.allow),
        bgp_peers=() if site.mode.vrrp else tuple(sorted({p.address for p in node.bgp_peers or site.bgp.peers}, key=_addr_key)),
    )


# haproxy.l7_retries safe: what is retried (a connection that failed, or one the cluster closed before
# any byte of an answer), and for which methods (RFC 9110's safe methods: sending one twice changes nothing).
L7_RETRY_ON = "conn-failure empty-response"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def l7_retries(site: Site) -> str:
    """haproxy.l7_retries as it applies: unset means `safe`, except on el8 (haproxy 1.8 has no L7 retries)."""
    return site.haproxy.l7_retries or ("off" if site.target == "el8" else "safe")


def haproxy_view(site: Site, node: Node) -> HaproxyView:
    stats_addr = node.address if site.stats.bind == "node" else site.stats.bind
    services = sorted(site.services, key=lambda s: s.port)
    checker = services[0].name
    return HaproxyView(
        maxconn=site.haproxy.maxconn,
        nofile=2 * site.haproxy.maxconn + 1024,
        timeout_connect=site.haproxy.timeout_connect,
        timeout_client=site.haproxy.timeout_client,
        timeout_server=site.haproxy.timeout_server,
        http_server_close=site.haproxy.http_server_close,
        retry_on=L7_RETRY_ON if l7_retries(site) == "safe" else "",
        retry_methods=" ".join(SAFE_METHODS),
        listeners=tuple(_listener(site, s, checker) for s in services),
        stats_bind=f"{stats_addr}:{site.stats.port}",
        metrics_bind=f"{metrics_address(site, node)}:{site.metrics.haproxy_port}" if site.metrics.haproxy else "",
        stats_path=site.stats.path,
        stats_user=site.stats.user,
        stats_cert=layout.shown(layout.STATS_CERT) if stats_tls(site) else "",
        metrics_cert=layout.shown(layout.STATS_CERT) if metrics_tls(site) else "",
        pidfile=layout.shown(layout.HAPROXY_PIDFILE),
        socket=layout.shown(layout.HAPROXY_SOCKET),
        status_socket=layout.shown(layout.STATUS_SOCKET),
        syslog_facility=SYSLOG_FACILITY,
        log_target={"udp": LOG_UDP, "unix": LOG_DEV, "ring": f"ring@{LOG_RING}"}[site.haproxy.log_transport],
        log_ring=LOG_RING if site.haproxy.log_transport == "ring" else "",
        log_ring_size=LOG_RING_SIZE,
        log_ring_server=LOG_TCP,
        drain_backend=DRAIN_BACKEND,
        server_state_file=layout.shown(layout.SERVER_STATE),
        hard_stop_after=HARD_STOP_AFTER,
    )


def password_env(address: str) -> str:
    """The secrets.env variable that holds a BGP peer's password: BGP_PASSWORD_192_0_2_1."""
    return "BGP_PASSWORD_" + address.replace(".", "_")


def bgp_view(site: Site, node: Node) -> BgpView:
    """mode: bgp: FRR's view for one node. Every node announces every VIP; the peers are the node's own or the site's."""
    b = site.bgp
    assert b.asn is not None and node.router_id is not None, "inventory checks mode: bgp has these"
    peers = node.bgp_peers or b.peers
    return BgpView(
        asn=b.asn,
        router_id=node.router_id,
        peers=tuple(BgpPeerView(p.address, p.asn, password_env(p.address) if p.password else "")
                    for p in sorted(peers, key=lambda p: tuple(int(x) for x in p.address.split(".")))),
        vips=tuple(f"{v.address}/32" for v in site.vips),
        communities=" ".join(b.communities),
        bfd_interval_ms=b.bfd_interval_ms,
        bfd_multiplier=b.bfd_multiplier,
        hold_time=b.hold_time,
        keepalive=max(1, b.hold_time // 3),
        gate_interval_ms=b.gate_interval_ms,
        gate_fall=b.gate_fall,
        gate_rise=b.gate_rise,
        pathspace=FRR_PATHSPACE,
        vip_interface=VIP_INTERFACE,
        route_map=BGP_ROUTE_MAP,
        prefix_list=BGP_PREFIX_LIST,
        hostname=node.name,
    )


def plan(site: Site, node_name: str) -> NodePlan:
    """The plan for one node of the site. KeyError if the node is not in the site."""
    index = next((i for i, n in enumerate(site.nodes) if n.name == node_name), None)
    if index is None:
        raise KeyError(node_name)
    node = site.nodes[index]
    instances = []
    for j, vip in enumerate(site.vips if site.mode.vrrp else ()):
        r = rank(site, index, j)
        peers = tuple(n.address for n in site.nodes if n.name != node.name) if site.vrrp.unicast else ()
        instances.append(
            VrrpInstance(
                name=f"VI_{vip.router_id}",
                interface=node.interface,
                router_id=vip.router_id,
                vip=vip.address,
                rank=r,
                priority=PRIORITY_TOP - PRIORITY_STEP * r,
                state="MASTER" if (site.vrrp.preempt and r == 0) else "BACKUP",
                nopreempt=not site.vrrp.preempt,
                advert_int=_advert(site.vrrp.advert_int),
                version=site.vrrp.version,
                source=node.address,
                peers=peers,
            )
        )
    return NodePlan(
        site=site.site,
        mode=site.mode,
        node=node,
        instances=tuple(sorted(instances, key=lambda i: i.router_id)),
        check_script=layout.shown(layout.CHECK_SCRIPT),
        check_interval=site.vrrp.check_interval,
        check_timeout=max(CHECK_TIMEOUT, site.vrrp.check_interval),
        check_fall=site.vrrp.check_fall,
        check_rise=site.vrrp.check_rise,
        check_user=CHECK_USER,
        backup_grace_script=layout.shown(layout.BACKUP_GRACE_SCRIPT),
        backup_grace=BACKUP_GRACE,
        backup_grace_metric=BACKUP_GRACE_METRIC,
        garp_refresh=site.vrrp.garp_refresh,
        heal_garp=site.vrrp.heal_garp,
        vrrp_nice=site.vrrp.nice,
        haproxy_watch=site.vrrp.haproxy_watch and site.mode.vrrp,
        haproxy_down_file=HAPROXY_DOWN_FILE,
        haproxy_track=HAPROXY_TRACK,
        run_dir_name=RUN_DIR_NAME,
        haproxy=haproxy_view(site, node),
        metrics_listen=f"{site.metrics.bind}:{site.metrics.node_port}",
        metrics_cert=layout.shown(layout.STATS_CERT) if metrics_tls(site) else "",
        metrics_groups="" if site.mode.vrrp else FRR_VTY_GROUP,
        firewall=firewall_view(site, node),
        config_dir=layout.shown(layout.CONFIG_DIR),
        log_file=layout.shown(layout.LOG_FILE),
        log_transport=site.haproxy.log_transport,
        log_socket=layout.shown(layout.LOG_SOCKET),
        nodes=site.nodes,
        drain_file=DRAIN_FILE,
        drain_track=DRAIN_TRACK,
        state_dir=STATE_DIR,
        state_dir_name=STATE_DIR_NAME,
        launcher=layout.shown(layout.LAUNCHER),
        bgp=None if site.mode.vrrp else bgp_view(site, node),
    )


def plans(site: Site) -> list[NodePlan]:
    return [plan(site, n.name) for n in site.nodes]


__all__ = ["NodePlan", "VrrpInstance", "HaproxyView", "FirewallView", "Listener", "plan", "plans", "rank", "warnings", "check_port"]
