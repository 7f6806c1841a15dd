"""What each source says about this node: raw claims, each with where it was found.

Nothing here knows the site; resolve.py checks every value against it. A
source that is malformed (bad JSON, duplicate JSON keys, nesting past
MAX_JSON_DEPTH, a datasource shape that is not a mapping, a key it does not
know, a node file that others can read, anything but a regular file) is
refused here, one line naming the file and key path. A stats password is
taken from metadata only out of the root-only instance-data-sensitive.json, and
only when the world-readable instance-data.json does not hold it too. No
message ever shows a password.

Sources, in the order resolve.py consults them:

1. kernel command line  <root>/proc/cmdline: ha_ingress.role= ha_ingress.node= ha_ingress.vips=a,b
2. cloud-init metadata  <root>/run/cloud-init/instance-data-sensitive.json (root-only,
                        nothing redacted) if present, else instance-data.json (world-readable);
                        keys ha_ingress_role / ha_ingress_node / ha_ingress_vips /
                        ha_ingress_stats_password in every datasource's shape (SHAPES)
3. local node file      <root>/etc/ha-ingress-proxy/node.yaml, root-owned, mode 0600 or stricter
4. host addresses       `ip -j -4 addr` (or a saved copy of its output, for tests)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ha_ingress_proxy import inventory, layout
from ha_ingress_proxy.subproc import run
from ha_ingress_proxy.errors import UserError

from . import files

KERNEL = "kernel command line"
METADATA = "cloud-init metadata"
NODE_FILE = "local node file"
ADDRESSES = "host addresses"

# The metadata contract's key names (docs/agent.md), one spelling everywhere: underscores.
META_KEYS = {
    "ha_ingress_role": "role",
    "ha_ingress_node": "node",
    "ha_ingress_vips": "vips",
    "ha_ingress_stats_password": "password",
}
CMDLINE_KEYS = {"ha_ingress.role": "role", "ha_ingress.node": "node", "ha_ingress.vips": "vips"}
NODE_FILE_KEYS = {k: v for k, v in META_KEYS.items() if v != "password"}

# Where each cloud-init datasource puts user-defined metadata inside instance-data.json.
# (cloud-init's standardized v1.* keys have no slot for user metadata; v1.cloud_name /
# v1.platform only label the source.)
SHAPES = (
    ("ds.meta_data", ("ds", "meta_data")),  # NoCloud meta-data, VMware guestinfo.metadata: flat keys
    ("ds.meta_data.meta", ("ds", "meta_data", "meta")),  # OpenStack instance metadata (`--property`)
    ("ds.meta_data.tags.instance", ("ds", "meta_data", "tags", "instance")),  # EC2 instance tags in IMDS
    ("ds.meta_data.instance.attributes", ("ds", "meta_data", "instance", "attributes")),  # GCE attributes
)
REDACTED = "redacted for non-root user"
MAX_INSTANCE_DATA = 16 << 20
MAX_CMDLINE = 64 << 10
MAX_NODE_FILE = 64 << 10
MAX_JSON_DEPTH = 64  # cloud-init's instance data nests about 8 deep
SECRETS_HINT = f"{layout.shown(layout.SECRETS_ENV)} (root-only, mode 0600; cloud-init user-data write_files can deliver it)"
_LOOKALIKE = re.compile(r"ha[-_.]?ingress[-_.]", re.I)


class Refusal(UserError):
    """Fail closed: the node claims no VIP. One line, naming the file, key path and value."""


@dataclass(frozen=True)
class Value:
    """One value from one source: what it is and where it was found (`file: key path`)."""

    value: Any
    where: str


@dataclass
class Claims:
    """What one source says. Absent keys are None."""

    source: str  # KERNEL, METADATA (+ datasource), NODE_FILE, ADDRESSES
    role: Optional[Value] = None
    node: Optional[Value] = None
    vips: Optional[Value] = None
    password: Optional[Value] = None
    file: str = ""  # the file read, as on the node


def _set(claims: Claims, attr: str, value: Value) -> None:
    old = getattr(claims, attr)
    if old is not None and old.value != value.value:
        if attr == "password":  # a secret: name the two places, never the values
            raise Refusal(f"{value.where}: disagrees with {old.where} (two different stats passwords; values not shown)")
        raise Refusal(
            f"{value.where}: {inventory._show(value.value)} disagrees with {old.where}: {inventory._show(old.value)}"
        )
    if old is None:
        setattr(claims, attr, value)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _too_deep(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def load_json(raw: bytes, name: str) -> Any:
    """Parse JSON strictly: UTF-8, no duplicate keys (json alone keeps the last one), bounded nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(f"{name}: not UTF-8 text (byte {exc.start})") from None
    deep = f"{name}: JSON nested more than {MAX_JSON_DEPTH} levels deep"
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise Refusal(f"{name}: duplicate key {inventory._show(exc.key)} in one JSON object; refusing to guess which one counts") from None
    except RecursionError:
        raise Refusal(deep) from None
    except ValueError as exc:
        raise Refusal(f"{name}: not valid JSON ({' '.join(str(exc).split())})") from None
    if _too_deep(data, MAX_JSON_DEPTH):
        raise Refusal(deep)
    return data


# --------------------------------------------------------------------------- 1. kernel command line


def kernel_cmdline(root: Path) -> Claims:
    rel = layout.CMDLINE
    name = layout.shown(rel)
    claims = Claims(KERNEL, file=name)
    try:
        text = files.read_limited(root, rel, MAX_CMDLINE).decode("utf-8", "replace")
    except FileNotFoundError:
        return claims
    except (OSError, ValueError) as exc:
        raise Refusal(f"{name}: cannot read: {exc}") from None
    try:
        words = shlex.split(text)  # the kernel allows key="a b"
    except ValueError:
        words = text.split()
    for word in words:
        key, sep, value = word.partition("=")
        if not _LOOKALIKE.match(key):
            continue
        if key == "ha_ingress.stats_password":
            raise Refusal(
                f"{name}: {key}: the kernel command line is readable by every local user; "
                f"put it in {SECRETS_HINT}"
            )
        if key not in CMDLINE_KEYS or not sep:
            raise Refusal(f"{name}: {key}: unknown key (known: {', '.join(sorted(CMDLINE_KEYS))}, each as key=value)")
        attr = CMDLINE_KEYS[key]
        if attr == "vips":
            value = [v for v in value.split(",")] if value else []
        _set(claims, attr, Value(value, f"{name}: {key}"))
    return claims


# --------------------------------------------------------------------------- 2. cloud-init metadata


def _dig(data: Any, path: tuple[str, ...], name: str) -> Optional[dict]:
    """The mapping at path, or None when it is absent (or null). Present but not a mapping is a refusal:
    skipping it would let a node go on (say, by its address) while its metadata is garbled."""
    for depth in range(len(path)):
        if data is None:
            return None
        if not isinstance(data, dict):
            break
        data = data.get(path[depth])
    else:
        if data is None or isinstance(data, dict):
            return data
        depth = len(path)
    # the value is not shown: it may hold anything, a password included
    raise Refusal(f"{name}: {'.'.join(path[:depth])}: is a {type(data).__name__}, not a mapping; refusing malformed metadata")


def _datasource(data: dict) -> str:
    v1 = data.get("v1") if isinstance(data.get("v1"), dict) else {}
    for key in ("cloud_name", "platform"):
        value = v1.get(key)
        if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", value) and value != "unknown":
            return value
    return ""


def _read_instance_data(root: Path, rel: str) -> tuple[Optional[dict], Optional[os.stat_result], bytes]:
    """(parsed, stat, raw bytes) of one instance-data file; (None, None, b"") when it is absent."""
    name = layout.shown(rel)
    try:
        raw, st = files.read_with_stat(root, rel, MAX_INSTANCE_DATA)
    except FileNotFoundError:
        return None, None, b""
    except (OSError, ValueError) as exc:
        raise Refusal(f"{name}: cannot read: {exc}") from None
    data = load_json(raw, name)
    if not isinstance(data, dict):
        raise Refusal(f"{name}: not a JSON object")
    return data, st, raw


def _check_password_file(root: Path, claims: Claims, rel: str, st: os.stat_result) -> None:
    """A password from metadata is accepted only from the root-only copy, and only if the public copy lacks it."""
    where = claims.password.where
    how = f"put it in {SECRETS_HINT} instead"
    if rel == layout.INSTANCE_DATA:
        raise Refusal(f"{where}: the stats password is in {layout.shown(rel)}, which every local user can read (value not shown); {how}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 or st.st_uid != os.geteuid():
        raise Refusal(
            f"{where}: {layout.shown(rel)} is mode {mode:04o}, owner uid {st.st_uid}: not root-only, so the stats password "
            f"in it is refused (value not shown); {how}"
        )
    # cloud-init redacts only a datasource's own sensitive keys in the world-readable copy;
    # user meta-data (and so this key) normally stays there in the clear.
    public, _, raw = _read_instance_data(root, layout.INSTANCE_DATA)
    if public is None:
        return
    password = claims.password.value
    for shape, path in SHAPES:
        mapping = _dig(public, path, layout.shown(layout.INSTANCE_DATA))
        if mapping and "ha_ingress_stats_password" in mapping and mapping["ha_ingress_stats_password"] != REDACTED:
            raise Refusal(
                f"{where}: the stats password is also in {layout.shown(layout.INSTANCE_DATA)}: {shape}.ha_ingress_stats_password, "
                f"which every local user can read (value not shown); {how}"
            )
    if isinstance(password, str) and len(password) >= 8 and password.encode() in raw:
        raise Refusal(
            f"{where}: the stats password also appears in {layout.shown(layout.INSTANCE_DATA)}, which every local user can read "
            f"(value not shown); {how}"
        )


def cloud_init(root: Path) -> Claims:
    """ha_ingress_* keys from every datasource shape; two shapes disagreeing is a refusal."""
    rel = layout.INSTANCE_DATA_SENSITIVE if files.exists(root, layout.INSTANCE_DATA_SENSITIVE) else layout.INSTANCE_DATA
    name = layout.shown(rel)
    data, st, _ = _read_instance_data(root, rel)
    if data is None or st is None:
        return Claims(METADATA, file=name)
    ds = _datasource(data)
    claims = Claims(f"{METADATA} ({ds})" if ds else METADATA, file=name)
    for shape, path in SHAPES:
        mapping = _dig(data, path, name)
        if mapping is None:
            continue
        for key in sorted(mapping, key=str):
            if not isinstance(key, str) or not _LOOKALIKE.match(key):
                continue
            where = f"{name}: {shape}.{key}"
            if key not in META_KEYS:
                hint = key.replace("-", "_").replace(".", "_").lower()
                known = f"; did you mean {hint}?" if hint in META_KEYS else ""
                raise Refusal(f"{where}: unknown key (known: {', '.join(sorted(META_KEYS))}){known}")
            value = mapping[key]
            if value == REDACTED:
                raise Refusal(f"{where}: redacted in this copy; the agent must run as root to read {layout.shown(layout.INSTANCE_DATA_SENSITIVE)}")
            attr = META_KEYS[key]
            if attr == "vips" and isinstance(value, str):
                value = value.split(",") if value else []  # tags and attributes are strings
            _set(claims, attr, Value(value, where))
    if claims.password is not None:
        _check_password_file(root, claims, rel, st)
    return claims


# --------------------------------------------------------------------------- 3. the local node file


def node_file(root: Path) -> Claims:
    """The root-only node file of hosts installed with yum; refused unless root-owned and 0600 or stricter."""
    rel = layout.NODE_FILE
    name = layout.shown(rel)
    claims = Claims(NODE_FILE, file=name)
    try:
        raw, st = files.read_with_stat(root, rel, MAX_NODE_FILE, follow=False)
    except FileNotFoundError:
        return claims
    except ValueError:
        raise Refusal(f"{name}: larger than {MAX_NODE_FILE} bytes") from None
    except OSError as exc:
        raise Refusal(f"{name}: cannot read: {exc.strerror}") from None
    if st.st_uid != 0:
        raise Refusal(f"{name}: owned by uid {st.st_uid}, not root; it must be root-owned (chown root:root)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise Refusal(f"{name}: mode {mode:04o} lets group or others read or write it; it must be root-only (chmod 600)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(f"{name}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = inventory.parse_yaml(text, name)  # the one YAML reader: strict, no aliases, no duplicates
    except UserError as exc:
        raise Refusal(*exc.lines) from None
    if not isinstance(data, dict) or not data:
        raise Refusal(f"{name}: must be a mapping with at least one of: {', '.join(sorted(NODE_FILE_KEYS))}")
    for key in sorted(data, key=str):
        if key not in NODE_FILE_KEYS:
            raise Refusal(f"{name}: {key}: unknown key (known: {', '.join(sorted(NODE_FILE_KEYS))})")
        value = data[key]
        attr = NODE_FILE_KEYS[key]
        if attr == "vips" and isinstance(value, str):
            value = value.split(",") if value else []
        _set(claims, attr, Value(value, f"{name}: {key}"))
    return claims


# --------------------------------------------------------------------------- 4. the host's addresses


def host_addresses(ip_json: Optional[Path] = None) -> list[tuple[str, str]]:
    """(interface, IPv4 address) pairs of this host: `ip -j -4 addr`, or a saved copy of its output."""
    if ip_json is not None:
        try:
            text = Path(ip_json).read_text()
        except OSError as exc:
            raise Refusal(f"{ip_json}: cannot read: {exc.strerror}") from None
        what = str(ip_json)
    else:
        text = run(["ip", "-j", "-4", "addr"], timeout=30, context="reading this host's addresses").stdout or ""
        what = "ip -j -4 addr"
    try:
        data = json.loads(text)
    except ValueError:
        raise Refusal(f"{what}: output is not JSON") from None
    out = []
    for link in data if isinstance(data, list) else []:
        if not isinstance(link, dict):
            continue
        for info in link.get("addr_info") or []:
            if isinstance(info, dict) and info.get("family", "inet") == "inet" and isinstance(info.get("local"), str):
                out.append((str(link.get("ifname", "?")), info["local"]))
    return out
