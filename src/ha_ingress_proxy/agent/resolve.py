"""Site model + what the sources say -> one Decision (node, VIPs, where from), or a Refusal.

Rules (docs/agent.md says the same for operators):

- Every value any source gives is checked, even one a higher source overrides:
  a garbage value anywhere is a refusal, not something to route around.
- Identity (ha_ingress_role / ha_ingress_node) and the VIP set are resolved
  separately; for each, the first source in the order kernel command line,
  cloud-init metadata, local node file that gives one wins.
- The one documented override: the kernel command line wins over metadata and
  the node file (an operator at the console, e.g. a recovery boot). Metadata and
  the node file disagreeing is a refusal: neither is meant to override the other.
- Within one source, role and node must name the same node.
- The host's own addresses are a fact, not a setting: when the host holds
  exactly one node's address, that is the node, and any source naming another
  node is refused (no override, not even the kernel command line). When no
  source names a node, that address match decides. Addresses of two nodes on
  one host are refused.
- ha_ingress_role is for two-node sites: master = nodes[0], backup = nodes[1].
  In active-active, "master" is node 0's role (masters VIP 0, backs up VIP 1),
  "backup" node 1's.
- ha_ingress_vips replaces the site's VIP set: the site is rebuilt with
  dataclasses.replace and put through inventory.validate again, so the same
  checks (addresses, collisions, count for the mode) apply to it. Each VIP
  must also be one the site owns: one of the inventory's VIPs, or inside the
  inventory's vip_pool. No pool, no foreign VIP.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from ha_ingress_proxy import inventory, layout
from ha_ingress_proxy.inventory import Site, Vip

from .sources import ADDRESSES, KERNEL, Claims, Refusal, Value

ROLES = ("master", "backup")
MAX_NAME = 255
MAX_VIPS_TEXT = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_show = inventory._show


@dataclass(frozen=True)
class Decision:
    site: Site  # the site model, with the VIP override applied
    node: str
    role: Optional[str]  # master | backup on two-node sites, else None
    source: str  # which source named the node
    where: str  # file: key path of the value that decided
    vips_source: str  # "site model" or the file: key path of ha_ingress_vips
    overrides: tuple[str, ...]  # documented overrides that happened, one sentence each
    address_check: str  # what the host's addresses said


def role_of(site: Site, node: str) -> Optional[str]:
    """master/backup: the node's place in a two-node VRRP site (what `status` shows); None otherwise
    (three or more nodes, or mode bgp, where every node announces every VIP and none is master)."""
    if len(site.nodes) != 2 or site.mode == inventory.Mode.BGP:
        return None
    return ROLES[[n.name for n in site.nodes].index(node)]


def _text(v: Value, limit: int = MAX_NAME) -> str:
    """A metadata string: a string, one line, no control characters, not oversize."""
    if not isinstance(v.value, str):
        raise Refusal(f"{v.where}: {_show(v.value)} is not a string")
    if len(v.value) > limit:
        raise Refusal(f"{v.where}: value is {len(v.value)} characters; at most {limit} are accepted")
    if _CONTROL.search(v.value):
        raise Refusal(f"{v.where}: {_show(v.value)} contains a newline or another control character")
    return v.value


def _node_from_name(site: Site, v: Value) -> str:
    name = _text(v)
    names = [n.name for n in site.nodes]
    if name not in names:
        raise Refusal(f"{v.where}: {_show(name)} is not a node of site {site.site} (nodes: {', '.join(names)})")
    return name


def _node_from_role(site: Site, v: Value) -> str:
    role = _text(v)
    if role not in ROLES:
        raise Refusal(f"{v.where}: {_show(role)} is not a role (roles: {', '.join(ROLES)})")
    if len(site.nodes) != 2:
        raise Refusal(
            f"{v.where}: {_show(role)}: roles name the nodes of two-node sites; site {site.site} has "
            f"{len(site.nodes)} nodes, so name the node with ha_ingress_node"
        )
    return site.nodes[ROLES.index(role)].name


def identity(site: Site, claims: Claims) -> Optional[tuple[str, Value]]:
    """The node one source names (checking role and node agree), with the value that named it."""
    by_role = _node_from_role(site, claims.role) if claims.role is not None else None
    by_name = _node_from_name(site, claims.node) if claims.node is not None else None
    if by_role and by_name and by_role != by_name:
        raise Refusal(
            f"{claims.role.where}: {_show(claims.role.value)} means node {by_role}, "
            f"but {claims.node.where} is {_show(claims.node.value)}"
        )
    if by_name:
        return by_name, claims.node
    if by_role:
        return by_role, claims.role
    return None


def _vip_list(v: Value) -> list[str]:
    value = v.value
    if isinstance(value, str):  # cannot happen from sources.py, which splits; kept for direct callers
        value = value.split(",")
    if not isinstance(value, list):
        raise Refusal(f"{v.where}: {_show(value)} is not a list of addresses (or a comma-separated string)")
    if sum(len(x) if isinstance(x, str) else 0 for x in value) > MAX_VIPS_TEXT:
        raise Refusal(f"{v.where}: longer than {MAX_VIPS_TEXT} characters")
    out = []
    for i, item in enumerate(value):
        out.append(_text(Value(item.strip() if isinstance(item, str) else item, f"{v.where}[{i}]"), 64))
    if not out:
        raise Refusal(f"{v.where}: empty; give at least one VIP or leave the key out")
    return out


def with_vips(site: Site, v: Value) -> Site:
    """The site with its VIP set replaced, validated by the same inventory.validate as the build."""
    addresses = _vip_list(v)
    # router ids stay with the position (the counts the mode allows equal the site's)
    vips = tuple(Vip(a, site.vips[i].router_id if i < len(site.vips) else None) for i, a in enumerate(addresses))
    candidate = dataclasses.replace(site, vips=vips)
    try:
        # through JSON, exactly as the site model itself arrives (lists, not tuples)
        new_site = inventory.validate(json.loads(json.dumps(inventory.to_dict(candidate))), v.where)
    except inventory.InventoryError as exc:
        lines = []
        for path, msg in exc.problems:
            # the validator speaks of vips[i].address; name the metadata key instead
            msg = re.sub(r"vips\[(\d+)\]\.address", lambda m: f"{_key(v)}[{m.group(1)}]", msg)
            if path == "vips":
                lines.append(f"{v.where}: {msg}")
            elif re.fullmatch(r"vips\[\d+\]\.address", path):
                lines.append(f"{v.where}[{path[5:path.index(']')]}]: {msg}")
            else:
                lines.append(f"{v.where}: with these VIPs, {path}: {msg}" if path else f"{v.where}: {msg}")
        raise Refusal("; ".join(lines)) from None
    _owned(site, v, addresses)
    return new_site


def _owned(site: Site, v: Value, addresses: list[str]) -> None:
    """Every overriding VIP is one the site owns: one of its VIPs, or inside its vip_pool.

    An instance tag (which many more people can edit than have root) must not make
    a node claim, say, the LAN gateway's address. No pool means no foreign VIP.
    """
    own = [x.address for x in site.vips]
    pool = site.vip_pool
    networks = [ipaddress.IPv4Network(p) for p in pool]
    for i, address in enumerate(addresses):
        if address in own or any(ipaddress.IPv4Address(address) in n for n in networks):
            continue
        where = f"{v.where}[{i}]: {_show(address)}"
        if networks:
            raise Refusal(
                f"{where} is neither a VIP of site {site.site} ({', '.join(own)}) nor inside its vip_pool "
                f"({', '.join(pool)}); a VIP override stays inside what the site owns"
            )
        raise Refusal(
            f"{where} is not a VIP of site {site.site} ({', '.join(own)}), and the inventory declares no vip_pool; "
            "a VIP override stays inside what the site owns"
        )


def _key(v: Value) -> str:
    return v.where.split(": ", 1)[-1]


def _pick(kind: str, found: list[tuple[Claims, Any, Value]], show: Any = _show) -> tuple[Optional[tuple[Claims, Any, Value]], list[str]]:
    """First source wins; the kernel command line may override; any other disagreement refuses."""
    if not found:
        return None, []
    first = found[0]
    overrides = []
    for claims, result, value in found[1:]:
        if result == first[1]:
            continue
        if first[0].source == KERNEL:
            overrides.append(
                f"{first[2].where} ({show(first[1])}) overrides {value.where} ({show(result)})"
            )
            continue
        raise Refusal(
            f"{value.where}: {kind} {show(result)} disagrees with {first[2].where}: {show(first[1])}; "
            "only the kernel command line overrides other sources"
        )
    return first, overrides


def decide(site: Site, sources: list[Claims], addresses: list[tuple[str, str]]) -> Decision:
    """The node and VIP set for this host, or a Refusal saying why not."""
    named = []
    vip_sets = []
    for claims in sources:
        ident = identity(site, claims)
        if ident is not None:
            named.append((claims, ident[0], ident[1]))
        if claims.vips is not None:
            new_site = with_vips(site, claims.vips)
            vip_sets.append((claims, tuple(v.address for v in new_site.vips), claims.vips))

    by_addr = {n.address: n.name for n in site.nodes}
    matched = sorted({(by_addr[a], a, ifname) for ifname, a in addresses if a in by_addr})
    if len({m[0] for m in matched}) > 1:
        held = ", ".join(f"{n} ({a} on {i})" for n, a, i in matched)
        raise Refusal(f"{ADDRESSES}: this host holds the addresses of several nodes: {held}")

    chosen, overrides = _pick("node", named, show=lambda x: x)
    if chosen is None:
        if not matched:
            raise Refusal(
                f"no role: no ha_ingress.role/ha_ingress.node on {layout.shown(layout.CMDLINE)}, no ha_ingress_role/ha_ingress_node "
                f"in cloud-init metadata, no {layout.shown(layout.NODE_FILE)}, and none of this host's addresses is a "
                f"node address of site {site.site}"
            )
        node, addr, ifname = matched[0]
        source, where = ADDRESSES, f"{ADDRESSES}: {addr} on {ifname}"
        check = f"{addr} on {ifname} is {node}'s address"
    else:
        claims, node, value = chosen
        source, where = claims.source, value.where
        if matched and matched[0][0] != node:
            other, addr, ifname = matched[0]
            raise Refusal(
                f"{where}: {_show(value.value)} names node {node}, but this host has {other}'s address "
                f"{addr} (on {ifname}); refusing to act as another node"
            )
        check = f"{matched[0][1]} on {matched[0][2]} is {node}'s address" if matched else f"none of this host's addresses is a node address (nothing to check {node} against)"

    vchosen, voverrides = _pick("VIP set", vip_sets, show=lambda x: ",".join(x))
    if vchosen is not None:
        site = with_vips(site, vchosen[2])
        vips_source = vchosen[2].where
    else:
        vips_source = "site model"
    return Decision(
        site=site,
        node=node,
        role=role_of(site, node),
        source=source,
        where=where,
        vips_source=vips_source,
        overrides=tuple(overrides + voverrides),
        address_check=check,
    )
