"""inventory.yaml -> Site: the only module that reads YAML.

Loading is strict: safe YAML, no aliases, no duplicate keys, no unknown keys,
`schema_version` checked first. Every problem is collected as (key path,
message) and reported together, one line each, as
`<file>: <key path>: <message>`. Nothing here writes anything.

The model is the key table: every field of the model classes below declares
one inventory key (its check, default and one-line description, with
`key()`, `section()` or `entries()`). The loader walks these declarations,
and docs/inventory.md's key reference is generated from them
(ha_ingress_build.inventory_doc), so adding a key is adding one field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import yaml

from ha_ingress_proxy.errors import UserError

SCHEMA_VERSION = 1
MAX_INVENTORY_BYTES = 1 << 20
TARGETS = ("el8", "el9", "el10")
LOG_TRANSPORTS = ("udp", "unix", "ring")
L7_RETRIES = ("safe", "off")


class _StrEnum(str, Enum):
    """A str-valued enum that prints, formats and serialises as its value (Python 3.9 has no StrEnum)."""

    def __str__(self) -> str:
        return str(self.value)


class Mode(_StrEnum):
    """How the VIPs are spread over the nodes."""

    ACTIVE_ACTIVE = "active-active"  # one VIP per node, each node masters one
    ACTIVE_PASSIVE = "active-passive"  # exactly one VIP, the others back it up
    BGP = "bgp"  # every node announces every VIP (/32) over BGP; the routers spread flows (ECMP)

    @property
    def vrrp(self) -> bool:
        """keepalived/VRRP places the VIPs (the two VRRP modes); False in `bgp`, where FRR announces them."""
        return self is not Mode.BGP


class ServiceMode(_StrEnum):
    """How haproxy proxies a service."""

    HTTP = "http"  # HTTP, with X-Forwarded-For
    TCP = "tcp"  # TLS passthrough


MODES = tuple(m.value for m in Mode)
VRRP_MODES = tuple(m.value for m in Mode if m.vrrp)
SERVICE_MODES = tuple(m.value for m in ServiceMode)
CHECK_TYPES = ("tcp", "http")
# ingress-nginx serves /healthz on 10254: its own port, never a PROXY-protocol port.
DEFAULT_HTTP_CHECK_PORT = 10254

# Names land in haproxy section names, keepalived instance names and file
# names: a conservative alphabet means no inventory value can start a new
# config line, open a brace, a quote or a comment.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
SITE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z")
# Linux: at most 15 bytes (IFNAMSIZ - 1), no '/', ':', whitespace; not '.' or '..'.
IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
STATS_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]{0,127}\Z")
HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})\Z")
# haproxy time units (1.8 and later): us, ms, s, m, h, d. The defaults use "1m", and the
# site model the agent re-validates at boot carries them, so every unit a default uses must pass.
DURATION_RE = re.compile(r"[1-9][0-9]{0,5}(?:us|ms|s|m|h|d)?\Z")


# --------------------------------------------------------------------------- checks


def _show(value: Any) -> str:
    """Quote a bad value for an error line; never lets it span lines."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Check:
    """One key's value check: `check(value)` is None or the problem. `type` and `doc` describe it in the docs."""

    type: str
    doc: str
    test: Callable[[Any], Optional[str]]

    def __call__(self, value: Any) -> Optional[str]:
        return self.test(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ipv4_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{_show(value)} is not an IPv4 address"
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        return f"{_show(value)} is not an IPv4 address"
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback or addr == ipaddress.IPv4Address("255.255.255.255"):
        return f"{_show(value)} is not a unicast host address"
    return None


def _regex(rx: re.Pattern[str], what: str, doc: str) -> Check:
    def test(value: Any) -> str | None:
        if isinstance(value, str) and rx.match(value):
            return None
        return f"{_show(value)} is not {what}"

    return Check("string", doc, test)


def _int_range(lo: int, hi: int) -> Check:
    def test(value: Any) -> str | None:
        if _is_int(value) and lo <= value <= hi:
            return None
        return f"{_show(value)} is not an integer in {lo}-{hi}"

    return Check("integer", f"{lo}-{hi}", test)


def _one_of(choices: tuple[str, ...]) -> Check:
    def test(value: Any) -> str | None:
        if value in choices:
            return None
        return f"{_show(value)} is not one of: {', '.join(choices)}"

    return Check("string", ", ".join(f"`{c}`" for c in choices), test)


def _boolean_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{_show(value)} is not true or false"


def _advert_problem(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.01 <= value <= 255:
        if round(value * 100) == value * 100 or abs(round(value * 100) - value * 100) < 1e-6:
            return None
    return f"{_show(value)} is not a number of seconds in 0.01-255 (centisecond steps)"


def _cidr_list_problem(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return f"{_show(value)} is not a list of IPv4 CIDRs"
    if len(value) > 64:
        return f"has {len(value)} entries; at most 64 are supported"
    for item in value:
        if not isinstance(item, str):
            return f"{_show(item)} is not an IPv4 CIDR like 10.0.0.0/24"
        try:
            net = ipaddress.IPv4Network(item, strict=True)
        except ValueError:
            return f"{_show(item)} is not an IPv4 CIDR like 10.0.0.0/24 (host bits must be zero)"
        if "/" not in item:
            return f"{_show(item)} needs a prefix length, e.g. {item}/32"
        if net.prefixlen == 0:
            return f"{_show(item)} opens the stats page to every address; list the admin networks instead"
    if len(set(value)) != len(value):
        return "lists a CIDR twice"
    return None


def _stats_bind_problem(value: Any) -> str | None:
    if value == "node" or value == "127.0.0.1":
        return None
    return _ipv4_problem(value)


def _schema_version_problem(value: Any) -> str | None:
    if _is_int(value) and value == SCHEMA_VERSION:
        return None
    return f"{_show(value)} is not supported (this tool reads schema_version {SCHEMA_VERSION})"


def _slowstart_problem(value: Any) -> str | None:
    if (_is_int(value) and value == 0) or value == "0" or (isinstance(value, str) and DURATION_RE.match(value)):
        return None
    return f"{_show(value)} is not 0 or a haproxy duration like 10s"


def _proxy_protocol_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and NAME_RE.match(v) for v in value):
        if len(set(value)) == len(value):
            return None
        return f"{_show(value)} names a service twice"
    return f"{_show(value)} is not true, false or a list of service names"


def _asn_problem(value: Any) -> str | None:
    if _is_int(value) and 1 <= value <= 4294967294 and value != 23456:
        return None
    return f"{_show(value)} is not an AS number (1-4294967294, not 23456 AS_TRANS)"


COMMUNITY_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})\Z")


def _communities_problem(value: Any) -> str | None:
    if not isinstance(value, list) or len(value) > 16:
        return f"{_show(value)} is not a list of at most 16 BGP communities like 65010:100"
    for item in value:
        m = COMMUNITY_RE.match(item) if isinstance(item, str) else None
        if not m or int(m.group(1)) > 65535 or int(m.group(2)) > 65535:
            hint = "" if isinstance(item, str) else " (quote it: YAML reads 65010:100 unquoted as a number)"
            return f"{_show(item)} is not a BGP community ASN:VALUE, each 0-65535{hint}"
    if len(set(value)) != len(value):
        return f"{_show(value)} names a community twice"
    return None


_name = _regex(NAME_RE, "a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)",
               "`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 63")

# Plain scalars some YAML reader takes for something other than a string: YAML 1.1
# (PyYAML, cloud-init) and 1.2's core schema, plus the y/n booleans of YAML 1.1 that
# other readers (Go's yaml.v2) honour. A node name lands in meta-data and node.yaml;
# `ha_ingress_node: on` would reach the agent as True and every node would refuse.
_YAML_NOT_STRING = re.compile(
    r"(?:~|null|Null|NULL|y|Y|n|N|yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
    r"|[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F_]+|0b[01_]+"
    r"|[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
)


def _yaml_reads_as(value: str) -> Optional[str]:
    """What an unquoted value is to YAML when it is not a string (e.g. 'a boolean'), else None."""
    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError:
        loaded = value
    if not isinstance(loaded, str):
        names = {bool: "a boolean", int: "an integer", float: "a number", type(None): "null"}
        return names.get(type(loaded), f"a {type(loaded).__name__}")
    if _YAML_NOT_STRING.match(value):
        return "a boolean, number or null by some YAML readers"
    return None


def _node_name_problem(value: Any) -> str | None:
    problem = _name(value)
    if problem:
        return problem
    reads_as = _yaml_reads_as(value)
    if reads_as:
        return (f"{_show(value)} is read as {reads_as} by YAML, not as a string: node names land unquoted in "
                f"hand-written meta-data and node.yaml; choose another, e.g. 'proxy-{value}'")
    return None


def _vip_pool_problem(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{_show(value)} is not a list of IPv4 CIDRs like 192.168.1.32/28"
    if len(value) > MAX_ENTRIES:
        return f"has {len(value)} entries; at most {MAX_ENTRIES} are supported"
    return None  # each entry: _check_vip_pool, which names it by its index


_vip_pool = Check("list of strings", "IPv4 CIDRs (`192.168.1.32/28`), no host bits, not loopback/multicast/link-local/reserved, no overlaps, holding no node address or cluster endpoint", _vip_pool_problem)
_node_name = Check("string", "`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 63; not a word or number YAML reads as non-string (`on`, `010`, `null`, `1e3`)", _node_name_problem)
_site_name = _regex(SITE_RE, "a site name ([a-z0-9-], at most 40, no leading or trailing '-')",
                    "`[a-z0-9-]`, at most 40, no leading/trailing `-`")
_ifname = _regex(IFNAME_RE, "a Linux interface name ([A-Za-z0-9_.-], at most 15)",
                 "1-15 of `[A-Za-z0-9_.-]`, not `.`/`..`")
_duration = _regex(DURATION_RE, "a haproxy duration like 2s or 500ms", "haproxy duration: `2s`, `500ms`, `1m` (us/ms/s/m/h/d)")
_stats_path = _regex(STATS_PATH_RE, "a URL path like /proxy", "`/[A-Za-z0-9._~/-]*`")
_port = _int_range(1, 65535)
_ipv4 = Check("string", "unicast IPv4 address", _ipv4_problem)
_boolean = Check("boolean", "`true` or `false`", _boolean_problem)
_advert = Check("number", "0.01-255, centisecond steps", _advert_problem)
_stats_bind = Check("string", "`node`, `127.0.0.1` or a unicast IPv4 address", _stats_bind_problem)
_cidrs = Check("list", "IPv4 CIDRs (`10.0.0.0/8`, `192.0.2.7/32`), not `0.0.0.0/0`", _cidr_list_problem)
_schema_version = Check("integer", f"`{SCHEMA_VERSION}`", _schema_version_problem)
_host = _regex(HOST_RE, "a host name ([A-Za-z0-9.-], at most 253)", "host name, `[A-Za-z0-9.-]`, at most 253")
_check_path = _regex(STATS_PATH_RE, "a URL path like /healthz", "`/[A-Za-z0-9._~/-]*`")
_slowstart = Check("string", "`0` or a haproxy duration", _slowstart_problem)
_asn = Check("integer", "1-4294967294, not 23456", _asn_problem)
_communities = Check("list of strings", "`ASN:VALUE` (each 0-65535), quoted; at most 16", _communities_problem)
_proxy_protocol = Check("boolean or list", "`true` (every service), `false`, or a list of service names", _proxy_protocol_problem)


# --------------------------------------------------------------------------- the key table


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_KEY = "ha_ingress_proxy.inventory.key"


@dataclass(frozen=True)
class Key:
    """One declared inventory key: a scalar (check), a mapping (model) or a list of mappings (model, many)."""

    doc: str
    check: Optional[Check] = None
    default: Any = REQUIRED
    default_doc: Optional[str] = None  # for a default the loader derives (None in the table)
    convert: Optional[Callable[[Any], Any]] = None  # checked value -> model value (enums, float)
    model: Optional[type] = None
    many: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


_NO_ARG: Any = object()


def key(check: Check, doc: str, default: Any = REQUIRED, *, default_doc: str | None = None,
        convert: Callable[[Any], Any] | None = None, arg_default: Any = _NO_ARG) -> Any:
    """A scalar key: its check, its description, its default (REQUIRED when it has none).

    arg_default: a default for the model's constructor too (a key added to a class that
    code builds by hand, e.g. Node(name, address, interface)); the loader never uses it."""
    meta = {_KEY: Key(doc, check, default, default_doc, convert)}
    return field(metadata=meta) if arg_default is _NO_ARG else field(default=arg_default, metadata=meta)


def section(model: type, doc: str, *, required: bool = False) -> Any:
    """A mapping of the model's keys; when optional and absent, every key takes its default."""
    return field(metadata={_KEY: Key(doc, default=REQUIRED if required else {}, model=model)})


def entries(model: type, doc: str, *, required: bool = True, arg_default: Any = _NO_ARG) -> Any:
    """A list of mappings of the model's keys; when optional and absent, empty. arg_default: as for key()."""
    meta = {_KEY: Key(doc, default=REQUIRED if required else (), model=model, many=True)}
    return field(metadata=meta) if arg_default is _NO_ARG else field(default=arg_default, metadata=meta)


@dataclass(frozen=True)
class BgpPeer:
    """One upstream router this node peers with (eBGP or iBGP, single hop)."""

    address: str = key(_ipv4, "the router's address on the node's segment; unique per node")
    asn: int = key(_asn, "the router's AS number")
    password: bool = key(_boolean, "`true`: TCP-MD5 password from `BGP_PASSWORD_<address with _>` in the node's root-only "
                         "secrets.env (never in the inventory); the bgp-gate sets it through vtysh", False)


@dataclass(frozen=True)
class Node:
    name: str = key(_node_name, "unique")
    address: str = key(_ipv4, "unique")
    interface: str = key(_ifname, "per-node override", None, default_doc="the site's `interface`")
    router_id: Optional[str] = key(_ipv4, "`mode: bgp`: this node's BGP router-id; unique", None,
                                   default_doc="the node's `address`", arg_default=None)
    bgp_peers: tuple[BgpPeer, ...] = entries(BgpPeer, "`mode: bgp`: this node's routers, replacing `bgp.peers` "
                                             "(e.g. nodes in different racks)", required=False, arg_default=())


@dataclass(frozen=True)
class Vip:
    address: str = key(_ipv4, "unique, not a node address")
    router_id: int = key(_int_range(1, 255), "VRRP router id; unique", None,
                         default_doc="derived from sha256(site), skipping taken ids, so every node and build agree")


_SITE_HEALTH = "`health`'s value"


@dataclass(frozen=True)
class ClusterHealth:
    """One cluster's check, as far as haproxy lets it differ per server. The check request
    itself (type, path, status, host) is one per listener, so it is site-wide (`health`)."""

    port: Optional[int] = key(_port, "the check's port", None, default_doc=_SITE_HEALTH)
    tls: bool = key(_boolean, "HTTPS check", None, default_doc=_SITE_HEALTH)
    inter: str = key(_duration, "check interval while up", None, default_doc=_SITE_HEALTH)
    fastinter: str = key(_duration, "check interval while changing state", None, default_doc=_SITE_HEALTH)
    downinter: str = key(_duration, "check interval while down", None, default_doc=_SITE_HEALTH)
    rise: int = key(_int_range(1, 100), "passed checks before up", None, default_doc=_SITE_HEALTH)
    fall: int = key(_int_range(1, 100), "failed checks before down", None, default_doc=_SITE_HEALTH)
    observe: bool = key(_boolean, "passive observation of real traffic", None, default_doc=_SITE_HEALTH)
    error_limit: int = key(_int_range(1, 100), "consecutive failed connections that mark it down", None,
                           default_doc=_SITE_HEALTH)
    slowstart: str = key(_slowstart, "ramp-up on return", None, default_doc=_SITE_HEALTH, convert=str)

    KEYS_ELSEWHERE = {k: f"set it in health.{k}: haproxy sends one check request per listener, the same to every cluster"
                      for k in ("type", "path", "status", "host")}


@dataclass(frozen=True)
class Cluster:
    name: str = key(_name, "unique")
    endpoint: str = key(_ipv4, "the cluster's kube-vip/ingress address; unique, not a tier address")
    weight: int = key(_int_range(1, 256), "haproxy server weight", 1)
    health: ClusterHealth = section(ClusterHealth, "this cluster's check timing, port and TLS (docs/clusters.md)")
    proxy_protocol: tuple[str, ...] = key(_proxy_protocol, "send a PROXY v2 header to this cluster "
                                          "(docs/clusters.md); the model holds the service names", False,
                                          convert=tuple)


@dataclass(frozen=True)
class Service:
    name: str = key(_name, "unique")
    port: int = key(_port, "unique, not the stats port")
    mode: ServiceMode = key(_one_of(SERVICE_MODES), "`http` (HTTP, X-Forwarded-For) or `tcp` (TLS passthrough)", None,
                            default_doc="`http` for 80/8080, else `tcp`", convert=ServiceMode)


@dataclass(frozen=True)
class Stats:
    port: int = key(_port, "port of the stats page; not a service port")
    path: str = key(_stats_path, "URL path of the stats page")
    bind: str = key(_stats_bind, "`127.0.0.1` (loopback only); `node`: each node's own address; or a node/VIP "
                    "address of the site. Not loopback: TLS, and only `allow` reaches it", "127.0.0.1")
    user: str = key(_name, "the password is never in the inventory: `HAPROXY_STATS_PASSWORD` in the node's "
                    "root-only `/etc/ha-ingress-proxy/secrets.env`", "admin")
    tls: bool = key(_boolean, "a non-loopback `bind` is served over TLS (`bind ... ssl crt`, the root-only "
                    "`/etc/ha-ingress-proxy/stats.pem`; self-signed at first boot when none is delivered, its "
                    "SHA-256 in `ha-ingress-proxy status`); plain HTTP there only with an explicit `false`", True)
    allow: tuple[str, ...] = key(_cidrs, "sources the packet filter (and firewalld) let reach a non-loopback stats "
                                 "page; none by default", (), convert=tuple)


@dataclass(frozen=True)
class Metrics:
    bind: str = key(_one_of(("127.0.0.1", "node")), "where both Prometheus endpoints listen: `127.0.0.1` (a Prometheus or "
                    "agent on the node, or a tunnel) or `node` (each node's own address; TLS and "
                    "`allow`, as for the stats page)", "127.0.0.1")
    haproxy: bool = key(_boolean, "haproxy's built-in exporter (`http-request use-service prometheus-exporter`); "
                        "`false` where the target's haproxy is built without it (`invoke lint` says so)", True)
    haproxy_port: int = key(_port, "port of haproxy's `/metrics`; not a service or stats port", 9101)
    node_port: int = key(_port, "port of `ha-ingress-proxy metrics` (VRRP state, VIPs held, keepalived/haproxy up, "
                         "role), read live at each scrape", 9165)
    tls: bool = key(_boolean, "on `node`, both endpoints are served over TLS with the stats page's certificate "
                    "(`/etc/ha-ingress-proxy/stats.pem`, delivered or self-signed at first boot); plain HTTP there only "
                    "with an explicit `false`", True)
    allow: tuple[str, ...] = key(_cidrs, "sources the packet filter (and firewalld) let reach the metrics ports on "
                                 "`node`; none by default, as for the stats page", (), convert=tuple)


@dataclass(frozen=True)
class Health:
    """Every cluster's health check (docs/clusters.md): the request, and the defaults of `clusters[].health`."""

    inter: str = key(_duration, "check interval while a cluster is up", "1s")
    rise: int = key(_int_range(1, 100), "passed checks before a cluster is up", 5)
    fall: int = key(_int_range(1, 100), "failed checks before a cluster is down", 2)
    type: str = key(_one_of(CHECK_TYPES), "`tcp` (connect) or `http` (GET `path`, expect `status`)", "tcp")
    path: str = key(_check_path, "URL path of the HTTP check", "/healthz")
    status: int = key(_int_range(100, 599), "HTTP status the check expects", 200)
    host: Optional[str] = key(_host, "Host header of the HTTP check (HTTP/1.1); without it HTTP/1.0 and no Host", None)
    port: Optional[int] = key(_port, "the check's port", None,
                              default_doc=f"the first service's port (`tcp`), {DEFAULT_HTTP_CHECK_PORT} (`http`, ingress-nginx)")
    tls: bool = key(_boolean, "HTTPS check: `check-ssl verify none` (+ `check-sni` host)", False)
    fastinter: str = key(_duration, "check interval while a cluster changes state", "250ms")
    downinter: str = key(_duration, "check interval while a cluster is down", "1s")
    observe: bool = key(_boolean, "`observe layer4 error-limit N on-error mark-down` on real traffic (never layer7)", True)
    error_limit: int = key(_int_range(1, 100), "consecutive failed connections of real traffic that mark a cluster down", 5)
    slowstart: str = key(_slowstart, "a returning cluster's share ramps up over this (`0`: at once)", "10s", convert=str)


@dataclass(frozen=True)
class Vrrp:
    advert_int: float = key(_advert, "seconds between adverts (VRRPv3, so sub-second works; v3 has no authentication)",
                            0.1, convert=float)
    preempt: bool = key(_boolean, "see \"Preemption\"", False)
    unicast: bool = key(_boolean, "`true`: unicast adverts to the other nodes (`unicast_src_ip`, `unicast_peer`, "
                        "`check_unicast_src`); `false`: multicast to 224.0.0.18", True)
    check_interval: int = key(_int_range(1, 60), "seconds between keepalived's haproxy checks: a dead haproxy drops "
                              "the node's VIPs within about a second", 1)
    check_fall: int = key(_int_range(1, 10), "failed haproxy checks before the node gives up its VIPs", 1)
    check_rise: int = key(_int_range(1, 10), "passed haproxy checks before it takes part again", 2)
    haproxy_watch: bool = key(_boolean, "`true`: `ha-ingress-proxy-haproxy-watch.service` holds a pidfd on haproxy's "
                              "master and puts keepalived in FAULT the moment it exits (a track_file), so a dead haproxy "
                              "gives its VIPs up within one advert interval; the check above stays as the backstop. "
                              "`false`: only the check (docs/lab.md)", True)
    version: int = key(_int_range(2, 3), "VRRP protocol version; `2` only with a whole-second `advert_int` "
                       "(the seed's baseline in `invoke bench`)", 3)
    garp_refresh: int = key(_int_range(0, 3600), "seconds between a master's repeated gratuitous ARPs "
                            "(`vrrp_garp_master_refresh`; `0` never); bounds how long clients keep a stale ARP "
                            "entry after a split brain heals (docs/lab.md)", 60)
    filter: bool = key(_boolean, "the packet filter (nftables table `inet ha_ingress_proxy`, loaded before "
                       "keepalived) drops VRRP from anything but the site's nodes; `false` only where another "
                       "filter does that (or for the seed's baseline in `invoke bench`)", True)
    heal_garp: bool = key(_boolean, "`true`: when a split brain heals the remaining master re-announces its VIPs "
                          "at once (`vrrp_garp_lower_prio_repeat`, `vrrp_higher_prio_send_advert`; docs/lab.md)", True)
    nice: int = key(_int_range(-20, 19), "nice value of keepalived's VRRP process (`vrrp_priority`): at -20 its "
                    "adverts leave on time while busy processes hold the node's CPUs, so a busy master is not "
                    "taken for a dead one (docs/lab.md); `0`: ordinary", -20)


@dataclass(frozen=True)
class Bgp:
    """`mode: bgp` only (docs/bgp.md): every node announces every VIP as a /32 to its routers, while haproxy is healthy."""

    asn: Optional[int] = key(_asn, "the proxy nodes' AS number (required in `mode: bgp`)", None, default_doc="none")
    peers: tuple[BgpPeer, ...] = entries(BgpPeer, "the upstream routers every node peers with (unless "
                                         "`nodes[].bgp_peers` replaces them); required in `mode: bgp`", required=False)
    bfd_interval_ms: int = key(_int_range(50, 10000), "BFD transmit and receive interval (ms)", 300)
    bfd_multiplier: int = key(_int_range(2, 255), "BFD detect multiplier: a silent node is down after "
                              "interval x multiplier (900 ms by default)", 3)
    communities: tuple[str, ...] = key(_communities, "communities every VIP announcement carries", (), convert=tuple)
    hold_time: int = key(_int_range(3, 65535), "BGP hold time (s); keepalive is a third of it. BFD, not this, "
                         "detects a dead node", 9)
    gate_interval_ms: int = key(_int_range(50, 5000), "the bgp-gate's haproxy check interval (ms)", 200)
    gate_fall: int = key(_int_range(1, 10), "failed haproxy checks before the node withdraws its VIPs", 2)
    gate_rise: int = key(_int_range(1, 100), "passed haproxy checks before it announces them (again)", 3)


@dataclass(frozen=True)
class Haproxy:
    maxconn: int = key(_int_range(1, 1_000_000), "the unit's `LimitNOFILE` is derived from it (2 x maxconn + 1024)", 20000)
    timeout_connect: str = key(_duration, "haproxy `timeout connect` to the clusters: how long a request waits for a "
                               "cluster that does not answer before it is retried on another, and (haproxy caps "
                               "it at 1 s) the pause before the retry when a refused connection leaves one "
                               "cluster in rotation. Clusters in the same datacenter; raise it for clusters a "
                               "WAN away (docs/clusters.md)", "200ms")
    timeout_client: str = key(_duration, "haproxy `timeout client`", "1m")
    timeout_server: str = key(_duration, "haproxy `timeout server`", "1m")
    http_server_close: bool = key(_boolean, "`true`: the seed's `option http-server-close` (a new server connection "
                                  "per request, about 2x the haproxy CPU per request, docs/lab.md); `false`: "
                                  "`option http-keep-alive`", False)
    log_transport: str = key(_one_of(LOG_TRANSPORTS), "how haproxy hands its log lines (one per request) to the "
                             "node's rsyslog: `udp` (127.0.0.1:514, one datagram per line), `unix` (rsyslog's socket "
                             "inside haproxy's chroot, /var/lib/haproxy/dev/log) or `ring` (haproxy's ring buffer, "
                             "forwarded in batches over TCP to 127.0.0.1:514; haproxy >= 2.2, not `el8`); "
                             "docs/lab.md compares them", "udp")
    l7_retries: Optional[str] = key(_one_of(L7_RETRIES), "HTTP services: `safe` sends a GET, HEAD or OPTIONS request "
                                    "again, to another cluster, when its cluster closed the connection without "
                                    "answering (an ingress killed mid-request; haproxy `retry-on conn-failure "
                                    "empty-response`); other methods are never sent twice. `off`: only failed "
                                    "connections are retried (haproxy < 2.0; docs/clusters.md)", None,
                                    default_doc="`safe`; `off` on target `el8`")


@dataclass(frozen=True)
class Site:
    """The validated inventory. Frozen: everything downstream only reads it."""

    schema_version: int = key(_schema_version, "checked before anything else")
    site: str = key(_site_name, "names the package release and image")
    mode: Mode = key(_one_of(MODES), "`active-active` (one VIP per node), `active-passive` (exactly one VIP) or "
                     "`bgp` (every node announces every VIP; docs/bgp.md)", convert=Mode)
    target: str = key(_one_of(TARGETS), "the EL release the packages are for; see \"Targets\" below", "el9")
    interface: str = key(_ifname, "Linux interface name; carries VRRP and the VIPs")
    nodes: tuple[Node, ...] = entries(Node, "1-8 proxy nodes, in priority order")
    vips: tuple[Vip, ...] = entries(Vip, "floating addresses; `vips[i]` is mastered by `nodes[i]` (active-active)")
    vip_pool: tuple[str, ...] = key(
        _vip_pool, "addresses a VIP override (`ha_ingress_vips` in metadata, a tag or the kernel command line) may use "
        "besides `vips`; without it an override may only reorder `vips` (docs/agent.md)", (), default_doc="none", convert=tuple)
    clusters: tuple[Cluster, ...] = entries(Cluster, "the Kubernetes clusters behind the tier")
    services: tuple[Service, ...] = entries(Service, "the ports the tier serves, each to every cluster")
    stats: Stats = section(Stats, "haproxy's stats page", required=True)
    health: Health = section(Health, "haproxy's server checks")
    vrrp: Vrrp = section(Vrrp, "keepalived's VRRP (the VRRP modes)")
    bgp: Bgp = section(Bgp, "FRR's BGP and BFD, and the health gate (`mode: bgp`)")
    haproxy: Haproxy = section(Haproxy, "haproxy's limits and timeouts")
    metrics: Metrics = section(Metrics, "Prometheus endpoints: haproxy's exporter and the node's VRRP exporter (docs/observability.md)")

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def declared(model: type) -> dict[str, Key]:
    """The keys a model class declares, in order."""
    return {f.name: f.metadata[_KEY] for f in fields(model)}


def declared_keys(model: type = Site, prefix: str = "") -> Iterator[tuple[str, Key]]:
    """Every declared key with its path (`vrrp.advert_int`, `nodes[].name`), depth first, in order."""
    for name, spec in declared(model).items():
        path = f"{prefix}{name}"
        yield (f"{path}[]" if spec.many else path), spec
        if spec.model is not None:
            yield from declared_keys(spec.model, f"{path}[]." if spec.many else f"{path}.")


class InventoryError(UserError):
    """Every problem found in one inventory, one `file: path: message` line each."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(*(f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems))


# --------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases (no billion laughs)."""


def _compose_node(self: _StrictLoader, parent: Any, index: Any) -> Any:
    if self.check_event(yaml.AliasEvent):
        event = self.peek_event()
        raise yaml.MarkedYAMLError(
            problem=f"YAML aliases are not allowed (*{event.anchor})", problem_mark=event.start_mark
        )
    return yaml.composer.Composer.compose_node(self, parent, index)


def _construct_mapping(self: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = self.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.MarkedYAMLError(
                problem="mapping keys must be plain scalars", problem_mark=key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.MarkedYAMLError(
                problem=f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                problem_mark=key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return yaml.SafeLoader.construct_mapping(self, node, deep=deep)


_StrictLoader.compose_node = _compose_node  # type: ignore[method-assign]
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML strictly; any syntax problem becomes one InventoryError line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise InventoryError(source, [("", f"{where}{problem}")]) from None
    except yaml.YAMLError as exc:
        raise InventoryError(source, [("", " ".join(str(exc).split()))]) from None
    except RecursionError:
        raise InventoryError(source, [("", "YAML nested too deeply")]) from None



# --------------------------------------------------------------------------- loading


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")
MAX_ENTRIES = 64


def _key(key: Any) -> str:
    """A mapping key as it appears in a key path: plain when safe, quoted otherwise."""
    return key if isinstance(key, str) and _PLAIN_KEY.match(key) else _show(key)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Collector:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))


def _mapping(c: _Collector, value: Any, path: str, model: type) -> dict[str, Any] | None:
    """Check a mapping against the model's keys: its values with defaults filled in, None where a key failed."""
    if not isinstance(value, dict):
        c.add(path, f"{_show(value)} is not a mapping")
        return None
    keys = declared(model)
    moved = getattr(model, "KEYS_ELSEWHERE", {})  # key -> why it is not here
    for name in sorted(value, key=str):
        if name in moved:
            c.add(_join(path, _key(name)), moved[name])
        elif name not in keys:
            c.add(_join(path, _key(name)), f"unknown key (known: {', '.join(sorted(keys))})")
    return {name: _value(c, value.get(name), _join(path, name), spec) for name, spec in keys.items()}


def _section(c: _Collector, value: Any, path: str, model: type) -> dict[str, Any] | None:
    """A mapping that is only used when every key in it passed."""
    before = len(c.problems)
    out = _mapping(c, value, path, model)
    return out if len(c.problems) == before else None


def _list(c: _Collector, value: Any, path: str, model: type) -> list[dict[str, Any] | None]:
    if not isinstance(value, list):
        c.add(path, f"{_show(value)} is not a list")
        return []
    if not value:
        c.add(path, "needs at least 1 entry")
    if len(value) > MAX_ENTRIES:
        c.add(path, f"has {len(value)} entries; at most {MAX_ENTRIES} are supported")
        return []
    return [_section(c, item, f"{path}[{i}]", model) for i, item in enumerate(value)]


def _value(c: _Collector, value: Any, path: str, spec: Key) -> Any:
    """One key's checked value (its default when absent), or None (a list: []) when it has a problem."""
    if value is None:
        if spec.required:
            c.add(path, "required key is missing")
            return [] if spec.many else None
        if spec.model is None:
            return spec.default
        if spec.many:
            return []
        value = spec.default
    if spec.many:
        if value == [] and not spec.required:
            return []  # an optional list written out empty (as to_dict does) is the same as absent
        return _list(c, value, path, spec.model)
    if spec.model is not None:
        return _section(c, value, path, spec.model)
    problem = spec.check(value)
    if problem:
        c.add(path, problem)
        return None
    return value


def _unique(c: _Collector, items: list[tuple[str, Any]], what: str) -> None:
    seen: dict[Any, str] = {}
    for path, value in items:
        if value in seen:
            c.add(path, f"{_show(value)} is used twice as {what} (also at {seen[value]})")
        else:
            seen[value] = path


def _good(values: dict[str, Any], name: str) -> list[tuple[int, dict[str, Any]]]:
    """The entries of a list key that passed their own checks, with their index."""
    return [(i, item) for i, item in enumerate(values[name]) if item]


def derive_router_ids(site: str, explicit: list[int | None]) -> list[int]:
    """VRRP router ids: explicit ones kept, the rest derived from the site name.

    Deterministic (sha256 of the site name picks a start in 1-255; consecutive
    ids after it, skipping ones already taken) so every node and every rebuild
    agree without anyone choosing numbers.
    """
    taken = {rid for rid in explicit if rid is not None}
    start = int.from_bytes(hashlib.sha256(site.encode()).digest()[:2], "big") % 255
    out: list[int] = []
    cursor = start
    for rid in explicit:
        if rid is not None:
            out.append(rid)
            continue
        while (cursor % 255) + 1 in taken:
            cursor += 1
        new = (cursor % 255) + 1
        taken.add(new)
        out.append(new)
    return out


def _default_service_mode(port: int) -> ServiceMode:
    return ServiceMode.HTTP if port in (80, 8080) else ServiceMode.TCP


# ---- cross-field (semantic) checks, on the entries that passed their own checks


def _check_tier_addresses(c: _Collector, v: dict[str, Any]) -> None:
    """Node names and addresses, VIPs and router ids unique; no VIP is a node address."""
    nodes, vips = _good(v, "nodes"), _good(v, "vips")
    _unique(c, [(f"nodes[{i}].name", n["name"]) for i, n in nodes], "a node name")
    _unique(c, [(f"nodes[{i}].address", n["address"]) for i, n in nodes], "a node address")
    _unique(c, [(f"vips[{i}].address", vip["address"]) for i, vip in vips], "a VIP")
    _unique(c, [(f"vips[{i}].router_id", vip["router_id"]) for i, vip in vips if vip["router_id"] is not None], "a router_id")
    node_addrs = {n["address"]: f"nodes[{i}].address" for i, n in nodes}
    for i, vip in vips:
        if vip["address"] in node_addrs:
            c.add(f"vips[{i}].address", f"{_show(vip['address'])} is also a node address ({node_addrs[vip['address']]})")


def _tier(v: dict[str, Any]) -> set[str]:
    """Every node and VIP address that passed its checks."""
    return {n["address"] for _, n in _good(v, "nodes")} | {vip["address"] for _, vip in _good(v, "vips")}


def _check_clusters(c: _Collector, v: dict[str, Any]) -> None:
    """Cluster names and endpoints unique; no endpoint is an address of the tier itself."""
    clusters, tier = _good(v, "clusters"), _tier(v)
    _unique(c, [(f"clusters[{i}].name", cl["name"]) for i, cl in clusters], "a cluster name")
    _unique(c, [(f"clusters[{i}].endpoint", cl["endpoint"]) for i, cl in clusters], "a cluster endpoint")
    for i, cl in clusters:
        if cl["endpoint"] in tier:
            c.add(f"clusters[{i}].endpoint", f"{_show(cl['endpoint'])} is an address of the proxy tier itself")


def _check_proxy_protocol(c: _Collector, v: dict[str, Any]) -> None:
    """Every service a cluster's proxy_protocol names exists."""
    names = {s["name"] for _, s in _good(v, "services")}
    for i, cl in _good(v, "clusters"):
        if isinstance(cl["proxy_protocol"], (list, tuple)):
            for j, name in enumerate(cl["proxy_protocol"]):
                if name not in names:
                    c.add(f"clusters[{i}].proxy_protocol[{j}]",
                          f"{_show(name)} is not a service name (known: {', '.join(sorted(names))})")


def _check_services_and_stats(c: _Collector, v: dict[str, Any]) -> None:
    """Service names and ports unique, apart from the stats port; stats bound to an address of this site."""
    services, stats = _good(v, "services"), v["stats"]
    _unique(c, [(f"services[{i}].name", s["name"]) for i, s in services], "a service name")
    _unique(c, [(f"services[{i}].port", s["port"]) for i, s in services], "a service port")
    if not stats:
        return
    for i, s in services:
        if s["port"] == stats["port"]:
            c.add(f"services[{i}].port", f"{s['port']} collides with stats.port")
    if stats["bind"] not in ("node", "127.0.0.1") and stats["bind"] not in _tier(v):
        c.add("stats.bind", f"{_show(stats['bind'])} is neither 'node', '127.0.0.1' nor a node or VIP address of this site")
    if stats["bind"] == "127.0.0.1" and stats["allow"]:
        c.add("stats.allow", "only applies to a stats page on a non-loopback stats.bind (it is on 127.0.0.1)")


def _check_metrics_ports(c: _Collector, v: dict[str, Any]) -> None:
    """The metrics ports collide with nothing: services, the stats port, each other."""
    metrics, stats = v["metrics"], v["stats"]
    if not metrics:
        return
    if metrics["bind"] == "127.0.0.1" and metrics["allow"]:
        c.add("metrics.allow", "only applies to metrics on bind: node (they are on 127.0.0.1)")
    taken = {s["port"]: f"services[{i}].port" for i, s in _good(v, "services")}
    if stats:
        taken[stats["port"]] = "stats.port"
    for name in ("haproxy_port", "node_port"):
        if metrics[name] in taken:
            c.add(f"metrics.{name}", f"{metrics[name]} collides with {taken[metrics[name]]}")
        taken[metrics[name]] = f"metrics.{name}"


def _check_vip_count(c: _Collector, v: dict[str, Any]) -> None:
    """The mode decides how many VIPs there are (checked once everything else is sound)."""
    mode, vips, nodes = v["mode"], v["vips"], v["nodes"]
    if not mode or c.problems:
        return
    if mode == Mode.ACTIVE_PASSIVE and len(vips) != 1:
        c.add("vips", f"active-passive takes exactly one VIP, got {len(vips)}")
    if mode == Mode.ACTIVE_ACTIVE and len(vips) != len(nodes):
        c.add("vips", f"active-active takes one VIP per node: {len(nodes)} nodes, {len(vips)} VIPs")


def _check_bgp(c: _Collector, v: dict[str, Any]) -> None:
    """`mode: bgp` needs an ASN and peers for every node; bgp keys outside it are refused; router ids and peers unique."""
    bgp, nodes = v["bgp"], _good(v, "nodes")
    if not bgp or not v["mode"]:
        return
    is_bgp = v["mode"] == Mode.BGP
    if not is_bgp:
        if bgp["asn"] is not None or bgp["peers"]:
            c.add("bgp", f"is for mode: bgp only (mode is {v['mode']})")
        for i, n in nodes:
            if n["router_id"] is not None or n["bgp_peers"]:
                c.add(f"nodes[{i}]", f"router_id and bgp_peers are for mode: bgp only (mode is {v['mode']})")
        return
    if bgp["asn"] is None:
        c.add("bgp.asn", "required key is missing (mode: bgp)")
    _unique(c, [(f"nodes[{i}].router_id", n["router_id"] or n["address"]) for i, n in nodes], "a router_id")
    _unique(c, [(f"bgp.peers[{j}].address", p["address"]) for j, p in enumerate(bgp["peers"]) if p], "a peer address")
    tier, told = _tier(v), set()
    for i, n in nodes:
        own = n["bgp_peers"]
        where = f"nodes[{i}].bgp_peers" if own else "bgp.peers"
        peers = own or bgp["peers"]
        if not peers:
            c.add(f"nodes[{i}]", "has no BGP peers: set bgp.peers (every node) or nodes[].bgp_peers (this one)")
        if own:
            _unique(c, [(f"{where}[{j}].address", p["address"]) for j, p in enumerate(own) if p], "a peer address")
        for j, p in enumerate(peers):
            if p and p["address"] in tier and f"{where}[{j}]" not in told:
                told.add(f"{where}[{j}]")
                c.add(f"{where}[{j}].address", f"{_show(p['address'])} is an address of the proxy tier itself")


# Ranges no VIP can come from (VIPs are unicast host addresses).
_NOT_FOR_VIPS = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network'"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved and broadcast"),
)


def _check_vip_pool(c: _Collector, v: dict[str, Any]) -> None:
    """Each pool entry a real CIDR of unicast space, no two overlapping, none holding a node or cluster address."""
    pool = v["vip_pool"]
    if not pool:
        return
    taken = [(f"nodes[{i}].address", n["address"]) for i, n in _good(v, "nodes")]
    taken += [(f"clusters[{i}].endpoint", cl["endpoint"]) for i, cl in _good(v, "clusters")]
    seen: list[tuple[int, ipaddress.IPv4Network]] = []
    for i, text in enumerate(pool):
        path = f"vip_pool[{i}]"
        if "/" not in text:
            c.add(path, f"{_show(text)} is not a CIDR: give the prefix length (e.g. {text}/32)")
            continue
        try:
            net = ipaddress.IPv4Network(text)
        except ValueError:
            try:
                loose = ipaddress.IPv4Network(text, strict=False)
            except ValueError:
                c.add(path, f"{_show(text)} is not an IPv4 CIDR like 192.168.1.32/28")
            else:
                c.add(path, f"{_show(text)} has host bits set (the network is {loose})")
            continue
        special = [f"{bad} ({what})" for bad, what in _NOT_FOR_VIPS if net.overlaps(bad)]
        if special:
            c.add(path, f"{_show(text)} overlaps {special[0]}; VIPs are unicast host addresses")
            continue
        for j, other in seen:
            if net.overlaps(other):
                c.add(path, f"{_show(text)} overlaps vip_pool[{j}] ({other})")
        for where, address in taken:
            if ipaddress.IPv4Address(address) in net:
                c.add(path, f"{_show(text)} holds {address} ({where}); a VIP override could then claim it")
        seen.append((i, net))


def _check_vrrp_version(c: _Collector, v: dict[str, Any]) -> None:
    vrrp = v["vrrp"]
    if vrrp and vrrp["version"] == 2 and float(vrrp["advert_int"]) != int(vrrp["advert_int"]):
        c.add("vrrp.advert_int", f"{_show(vrrp['advert_int'])} needs VRRP version 3 (version 2 adverts are whole seconds)")


# haproxy values EL8's haproxy 1.8 refuses: key -> (value, why and what to use instead)
EL8_HAPROXY_REFUSES = {
    "log_transport": ("ring", "needs haproxy >= 2.2; target el8 ships haproxy 1.8 (use udp or unix)"),  # `ring` section
    "l7_retries": ("safe", "needs haproxy >= 2.0; target el8 ships haproxy 1.8 (use off)"),  # `retry-on`
}


def _check_el8_haproxy(c: _Collector, v: dict[str, Any]) -> None:
    """Values of `haproxy` keys that EL8's haproxy 1.8 would refuse at `haproxy -c`."""
    haproxy = v.get("haproxy")
    if not isinstance(haproxy, dict) or v.get("target") != "el8":
        return
    for name, (value, why) in EL8_HAPROXY_REFUSES.items():
        if haproxy.get(name) == value:
            c.add(f"haproxy.{name}", f"{_show(value)} {why}")


def _check_node_count(c: _Collector, v: dict[str, Any]) -> None:
    if len(v["nodes"]) > 8 and not c.problems:
        c.add("nodes", f"has {len(v['nodes'])} nodes; at most 8 are supported")


CROSS_CHECKS: tuple[Callable[[_Collector, dict[str, Any]], None], ...] = (
    _check_tier_addresses,
    _check_clusters,
    _check_proxy_protocol,
    _check_services_and_stats,
    _check_metrics_ports,
    _check_vip_count,
    _check_bgp,
    _check_vip_pool,
    _check_vrrp_version,
    _check_el8_haproxy,
    _check_node_count,
)


# ---- from checked values to the model


def _check_schema_version(data: Any, source: str) -> None:
    """The version decides how to read the rest, so it is checked alone, first."""
    if not isinstance(data, dict):
        raise InventoryError(source, [("", f"the inventory must be a mapping, not {_show(data)}")])
    version = data.get("schema_version")
    if version is None:
        raise InventoryError(source, [("schema_version", f"required key is missing (this tool reads schema_version {SCHEMA_VERSION})")])
    problem = _schema_version(version)
    if problem:
        raise InventoryError(source, [("schema_version", problem)])


def _derive_defaults(v: dict[str, Any]) -> None:
    """Fill the defaults that depend on other keys (documented in the table's default_doc)."""
    for node in v["nodes"]:
        node["interface"] = node["interface"] or v["interface"]
        if v["mode"] == Mode.BGP:
            node["router_id"] = node["router_id"] or node["address"]
    for vip, rid in zip(v["vips"], derive_router_ids(v["site"], [vip["router_id"] for vip in v["vips"]])):
        vip["router_id"] = rid
    for service in v["services"]:
        service["mode"] = service["mode"] or _default_service_mode(service["port"])
    health = v["health"]
    if health["type"] == "http" and health["port"] is None:
        health["port"] = DEFAULT_HTTP_CHECK_PORT
    for cl in v["clusters"]:
        cl["health"] = {k: health[k] if value is None else value for k, value in cl["health"].items()}
        pp = cl["proxy_protocol"]
        cl["proxy_protocol"] = [s["name"] for s in v["services"]] if pp is True else [] if pp is False else pp


def _build(model: type, values: dict[str, Any]) -> Any:
    """The model object for checked values, nested models and conversions included."""
    kwargs: dict[str, Any] = {}
    for name, spec in declared(model).items():
        value = values[name]
        if spec.many:
            value = tuple(_build(spec.model, item) for item in value)
        elif spec.model is not None:
            value = _build(spec.model, value)
        elif spec.convert is not None:
            value = spec.convert(value)
        kwargs[name] = value
    return model(**kwargs)


def validate(data: Any, source: str) -> Site:
    """Turn parsed YAML into a Site, or raise InventoryError with every problem found."""
    _check_schema_version(data, source)
    c = _Collector()
    values = _mapping(c, data, "", Site)
    assert values is not None  # data is a mapping
    for check in CROSS_CHECKS:
        check(c, values)
    if c.problems:
        raise InventoryError(source, c.problems)
    _derive_defaults(values)
    return _build(Site, values)


def load(path: str | os.PathLike[str]) -> Site:
    """Read, parse and validate one inventory file."""
    source = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InventoryError(source, [("", f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_INVENTORY_BYTES:
        raise InventoryError(source, [("", f"file is {len(raw)} bytes; an inventory is at most {MAX_INVENTORY_BYTES}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(source, [("", f"not UTF-8 text (byte {exc.start})")]) from None
    return validate(parse_yaml(text, source), source)


def _plain_fields(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {name: value.value if isinstance(value, Enum) else value for name, value in items}


def to_dict(site: Site) -> dict[str, Any]:
    """The Site as plain data in inventory shape (every default filled in), for the node's copy."""
    return asdict(site, dict_factory=_plain_fields)
