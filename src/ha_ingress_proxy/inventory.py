"""inventory.yaml -> Site: the only module that reads YAML.

Loading is strict: safe YAML, no aliases, no duplicate keys, no unknown keys,
`schema_version` checked first. Every problem is collected as (key path,
message) and reported together, one line each, as
`<file>: <key path>: <message>`. Nothing here writes anything.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from ha_ingress_proxy.errors import UserError

SCHEMA_VERSION = 1
MAX_INVENTORY_BYTES = 1 << 20
MODES = ("active-active", "active-passive")
TARGETS = ("el8", "el9", "el10")
SERVICE_MODES = ("http", "tcp")

# Names land in haproxy section names, keepalived instance names and file
# names: a conservative alphabet means no inventory value can start a new
# config line, open a brace, a quote or a comment.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
SITE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z")
# Linux: at most 15 bytes (IFNAMSIZ - 1), no '/', ':', whitespace; not '.' or '..'.
IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
STATS_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]{0,127}\Z")
# haproxy time units (1.8 and later): us, ms, s, m, h, d. The defaults use "1m", and the
# site model the agent re-validates at boot carries them, so every unit a default uses must pass.
DURATION_RE = re.compile(r"[1-9][0-9]{0,5}(?:us|ms|s|m|h|d)?\Z")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    interface: str


@dataclass(frozen=True)
class Vip:
    address: str
    router_id: int


@dataclass(frozen=True)
class Cluster:
    name: str
    endpoint: str
    weight: int


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    mode: str  # http | tcp (TLS passthrough)


@dataclass(frozen=True)
class Stats:
    port: int
    path: str
    bind: str  # "node" (each node's own address) or an IPv4 address
    user: str


@dataclass(frozen=True)
class Health:
    inter: str
    rise: int
    fall: int


@dataclass(frozen=True)
class Vrrp:
    advert_int: float
    preempt: bool
    unicast: bool
    check_interval: int
    check_fall: int
    check_rise: int
    version: int = 3  # VRRP protocol version; 2 only for integral advert_int (the seed's)
    # Seconds between a master's repeated gratuitous ARPs (keepalived
    # vrrp_garp_master_refresh; 0 = never). Bounds how long clients keep a stale
    # ARP entry after a split brain heals (docs/lab.md).
    garp_refresh: int = 60


@dataclass(frozen=True)
class Haproxy:
    maxconn: int
    timeout_connect: str
    timeout_client: str
    timeout_server: str
    # The seed's `option http-server-close` (a new server connection per request);
    # false (default) keeps server-side connections alive.
    http_server_close: bool = False


@dataclass(frozen=True)
class Site:
    """The validated inventory. Frozen: everything downstream only reads it."""

    site: str
    mode: str
    target: str
    interface: str
    nodes: tuple[Node, ...]
    vips: tuple[Vip, ...]
    clusters: tuple[Cluster, ...]
    services: tuple[Service, ...]
    stats: Stats
    health: Health
    vrrp: Vrrp
    haproxy: Haproxy
    schema_version: int = SCHEMA_VERSION

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


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


# --------------------------------------------------------------------------- checks


def _show(value: Any) -> str:
    """Quote a bad value for an error line; never lets it span lines."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")


def _key(key: Any) -> str:
    """A mapping key as it appears in a key path: plain when safe, quoted otherwise."""
    return key if isinstance(key, str) and _PLAIN_KEY.match(key) else _show(key)


class _Collector:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))


# Optional, not `str | None`: this alias is evaluated at import, and the agent runs on
# EL9's Python 3.9, where `str | None` outside an annotation is a TypeError.
Check = Callable[[Any], Optional[str]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ipv4(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{_show(value)} is not an IPv4 address"
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        return f"{_show(value)} is not an IPv4 address"
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback or addr == ipaddress.IPv4Address("255.255.255.255"):
        return f"{_show(value)} is not a unicast host address"
    return None


def _regex(rx: re.Pattern[str], what: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and rx.match(value):
            return None
        return f"{_show(value)} is not {what}"

    return check


def _int_range(lo: int, hi: int) -> Check:
    def check(value: Any) -> str | None:
        if _is_int(value) and lo <= value <= hi:
            return None
        return f"{_show(value)} is not an integer in {lo}-{hi}"

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"{_show(value)} is not one of: {', '.join(choices)}"

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{_show(value)} is not true or false"


def _advert(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.01 <= value <= 255:
        if round(value * 100) == value * 100 or abs(round(value * 100) - value * 100) < 1e-6:
            return None
    return f"{_show(value)} is not a number of seconds in 0.01-255 (centisecond steps)"


def _stats_bind(value: Any) -> str | None:
    if value == "node" or value == "127.0.0.1":
        return None
    return _ipv4(value)


_name = _regex(NAME_RE, "a name ([A-Za-z0-9_.-], starting with a letter or digit, at most 63)")
_ifname = _regex(IFNAME_RE, "a Linux interface name ([A-Za-z0-9_.-], at most 15)")
_duration = _regex(DURATION_RE, "a haproxy duration like 2s or 500ms")
_port = _int_range(1, 65535)

# Schema as data: key -> (required, check, default). Lists are handled below.
NODE_KEYS = {"name": (True, _name, None), "address": (True, _ipv4, None), "interface": (False, _ifname, None)}
VIP_KEYS = {"address": (True, _ipv4, None), "router_id": (False, _int_range(1, 255), None)}
CLUSTER_KEYS = {"name": (True, _name, None), "endpoint": (True, _ipv4, None), "weight": (False, _int_range(1, 256), 1)}
SERVICE_KEYS = {"name": (True, _name, None), "port": (True, _port, None), "mode": (False, _one_of(SERVICE_MODES), None)}
STATS_KEYS = {
    "port": (True, _port, None),
    "path": (True, _regex(STATS_PATH_RE, "a URL path like /proxy"), None),
    "bind": (False, _stats_bind, "node"),
    "user": (False, _name, "admin"),
}
HEALTH_KEYS = {"inter": (False, _duration, "2s"), "rise": (False, _int_range(1, 100), 2), "fall": (False, _int_range(1, 100), 5)}
VRRP_KEYS = {
    "advert_int": (False, _advert, 0.1),
    "preempt": (False, _boolean, False),
    "unicast": (False, _boolean, False),
    "check_interval": (False, _int_range(1, 60), 1),
    "check_fall": (False, _int_range(1, 10), 1),
    "check_rise": (False, _int_range(1, 10), 2),
    "version": (False, _int_range(2, 3), 3),
    "garp_refresh": (False, _int_range(0, 3600), 60),
}
HAPROXY_KEYS = {
    "maxconn": (False, _int_range(1, 1_000_000), 20000),
    "timeout_connect": (False, _duration, "5s"),
    "timeout_client": (False, _duration, "1m"),
    "timeout_server": (False, _duration, "1m"),
    "http_server_close": (False, _boolean, False),
}
TOP_KEYS = {
    "schema_version", "site", "mode", "target", "interface", "nodes", "vips",
    "clusters", "services", "stats", "health", "vrrp", "haproxy",
}


def _section(c: _Collector, value: Any, path: str, keys: dict[str, tuple[bool, Check, Any]]) -> dict[str, Any] | None:
    """Check one mapping against its key table; return the values with defaults filled in."""
    if not isinstance(value, dict):
        c.add(path, f"{_show(value)} is not a mapping")
        return None
    out: dict[str, Any] = {}
    ok = True
    for key in sorted(value, key=str):
        if key not in keys:
            c.add(f"{path}.{_key(key)}" if path else _key(key), f"unknown key (known: {', '.join(sorted(keys))})")
            ok = False
    for key, (required, check, default) in keys.items():
        sub = f"{path}.{key}" if path else key
        if key not in value or value[key] is None:
            if required:
                c.add(sub, "required key is missing")
                ok = False
            else:
                out[key] = default
            continue
        problem = check(value[key])
        if problem:
            c.add(sub, problem)
            ok = False
        else:
            out[key] = value[key]
    return out if ok else None


def _list(c: _Collector, value: Any, path: str, keys: dict, minimum: int = 1) -> list[dict[str, Any] | None]:
    if not isinstance(value, list):
        c.add(path, f"{_show(value)} is not a list")
        return []
    if len(value) < minimum:
        c.add(path, f"needs at least {minimum} entr{'y' if minimum == 1 else 'ies'}")
    if len(value) > 64:
        c.add(path, f"has {len(value)} entries; at most 64 are supported")
        return []
    return [_section(c, item, f"{path}[{i}]", keys) for i, item in enumerate(value)]


def _unique(c: _Collector, items: list[tuple[str, Any]], what: str) -> None:
    seen: dict[Any, str] = {}
    for path, value in items:
        if value in seen:
            c.add(path, f"{_show(value)} is used twice as {what} (also at {seen[value]})")
        else:
            seen[value] = path


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


def _default_service_mode(port: int) -> str:
    return "http" if port in (80, 8080) else "tcp"


def validate(data: Any, source: str) -> Site:
    """Turn parsed YAML into a Site, or raise InventoryError with every problem found."""
    c = _Collector()
    if not isinstance(data, dict):
        raise InventoryError(source, [("", f"the inventory must be a mapping, not {_show(data)}")])
    version = data.get("schema_version")
    if version is None:
        raise InventoryError(source, [("schema_version", f"required key is missing (this tool reads schema_version {SCHEMA_VERSION})")])
    if not _is_int(version) or version != SCHEMA_VERSION:
        raise InventoryError(source, [("schema_version", f"{_show(version)} is not supported (this tool reads schema_version {SCHEMA_VERSION})")])

    for key in sorted(data, key=str):
        if key not in TOP_KEYS:
            c.add(_key(key), f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")

    def top(key: str, check: Check, default: Any = None, required: bool = True) -> Any:
        if key not in data or data[key] is None:
            if required:
                c.add(key, "required key is missing")
            return default
        problem = check(data[key])
        if problem:
            c.add(key, problem)
            return None
        return data[key]

    site = top("site", _regex(SITE_RE, "a site name ([a-z0-9-], at most 40, no leading or trailing '-')"))
    mode = top("mode", _one_of(MODES))
    target = top("target", _one_of(TARGETS), "el9", required=False)
    interface = top("interface", _ifname)
    def required_list(key: str, keys: dict) -> list[dict[str, Any] | None]:
        if data.get(key) is None:
            c.add(key, "required key is missing")
            return []
        return _list(c, data[key], key, keys)

    nodes = required_list("nodes", NODE_KEYS)
    vips = required_list("vips", VIP_KEYS)
    clusters = required_list("clusters", CLUSTER_KEYS)
    services = required_list("services", SERVICE_KEYS)
    stats = None
    if data.get("stats") is None:
        c.add("stats", "required key is missing")
    else:
        stats = _section(c, data["stats"], "stats", STATS_KEYS)
    health = _section(c, {} if data.get("health") is None else data["health"], "health", HEALTH_KEYS)
    vrrp = _section(c, {} if data.get("vrrp") is None else data["vrrp"], "vrrp", VRRP_KEYS)
    hap = _section(c, {} if data.get("haproxy") is None else data["haproxy"], "haproxy", HAPROXY_KEYS)

    # ---- cross-field (semantic) checks, on the entries that passed their own checks
    good_nodes = [(i, n) for i, n in enumerate(nodes) if n]
    good_vips = [(i, v) for i, v in enumerate(vips) if v]
    _unique(c, [(f"nodes[{i}].name", n["name"]) for i, n in good_nodes], "a node name")
    _unique(c, [(f"nodes[{i}].address", n["address"]) for i, n in good_nodes], "a node address")
    _unique(c, [(f"vips[{i}].address", v["address"]) for i, v in good_vips], "a VIP")
    _unique(c, [(f"vips[{i}].router_id", v["router_id"]) for i, v in good_vips if v["router_id"] is not None], "a router_id")
    node_addrs = {n["address"]: f"nodes[{i}].address" for i, n in good_nodes}
    for i, v in good_vips:
        if v["address"] in node_addrs:
            c.add(f"vips[{i}].address", f"{_show(v['address'])} is also a node address ({node_addrs[v['address']]})")
    good_clusters = [(i, cl) for i, cl in enumerate(clusters) if cl]
    _unique(c, [(f"clusters[{i}].name", cl["name"]) for i, cl in good_clusters], "a cluster name")
    _unique(c, [(f"clusters[{i}].endpoint", cl["endpoint"]) for i, cl in good_clusters], "a cluster endpoint")
    tier = set(node_addrs) | {v["address"] for _, v in good_vips}
    for i, cl in good_clusters:
        if cl["endpoint"] in tier:
            c.add(f"clusters[{i}].endpoint", f"{_show(cl['endpoint'])} is an address of the proxy tier itself")
    good_services = [(i, s) for i, s in enumerate(services) if s]
    _unique(c, [(f"services[{i}].name", s["name"]) for i, s in good_services], "a service name")
    _unique(c, [(f"services[{i}].port", s["port"]) for i, s in good_services], "a service port")
    if stats:
        for i, s in good_services:
            if s["port"] == stats["port"]:
                c.add(f"services[{i}].port", f"{s['port']} collides with stats.port")
        if stats["bind"] not in ("node", "127.0.0.1") and stats["bind"] not in tier:
            c.add("stats.bind", f"{_show(stats['bind'])} is neither 'node', '127.0.0.1' nor a node or VIP address of this site")
    if mode and not c.problems:
        if mode == "active-passive" and len(vips) != 1:
            c.add("vips", f"active-passive takes exactly one VIP, got {len(vips)}")
        if mode == "active-active" and len(vips) != len(nodes):
            c.add("vips", f"active-active takes one VIP per node: {len(nodes)} nodes, {len(vips)} VIPs")
    if vrrp and vrrp["version"] == 2 and float(vrrp["advert_int"]) != int(vrrp["advert_int"]):
        c.add("vrrp.advert_int", f"{_show(vrrp['advert_int'])} needs VRRP version 3 (version 2 adverts are whole seconds)")
    if len(nodes) > 8 and not c.problems:
        c.add("nodes", f"has {len(nodes)} nodes; at most 8 are supported")

    if c.problems:
        raise InventoryError(source, c.problems)

    router_ids = derive_router_ids(site, [v["router_id"] for v in vips])
    return Site(
        site=site,
        mode=mode,
        target=target,
        interface=interface,
        nodes=tuple(Node(n["name"], n["address"], n["interface"] or interface) for n in nodes),
        vips=tuple(Vip(v["address"], rid) for v, rid in zip(vips, router_ids)),
        clusters=tuple(Cluster(cl["name"], cl["endpoint"], cl["weight"]) for cl in clusters),
        services=tuple(Service(s["name"], s["port"], s["mode"] or _default_service_mode(s["port"])) for s in services),
        stats=Stats(**stats),
        health=Health(**health),
        vrrp=Vrrp(advert_int=float(vrrp["advert_int"]), **{k: v for k, v in vrrp.items() if k != "advert_int"}),
        haproxy=Haproxy(**hap),
    )


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


def to_dict(site: Site) -> dict[str, Any]:
    """The Site as plain data in inventory shape (every default filled in), for the node's copy."""
    data = asdict(site)
    data = {"schema_version": data.pop("schema_version"), **data}
    return data
