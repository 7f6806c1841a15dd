"""The agent's state file: one frozen dataclass, one writer, one reader.

`apply` writes a State (applied or refused) to layout.STATE_FILE; `status`
reads it back. Nothing else builds or parses the file. Every field is always
present in the JSON (null or [] when it does not apply), so a reader never
guesses; schema_version says which shape this is, and a file of another
version, a garbled file or a value of the wrong type is a StateError: one
line naming the file, the key and the value.

Adding a key is adding a field here (with a default); bump SCHEMA_VERSION
when a key changes meaning or goes away.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ha_ingress_proxy import layout
from ha_ingress_proxy.errors import UserError

from . import files

SCHEMA_VERSION = 1
APPLIED = "applied"
REFUSED = "refused"
MAX_STATE = 1 << 20


class StateError(UserError):
    """The state file is there but is not a state this agent wrote."""


@dataclass(frozen=True)
class State:
    """What apply decided for this node (or why it refused). No secrets, ever."""

    ok: bool
    result: str  # APPLIED | REFUSED
    reason: Optional[str]  # why refused; None when applied
    site: Optional[str]  # None when the site model itself could not be read
    mode: Optional[str] = None
    node: Optional[str] = None
    address: Optional[str] = None  # the node's address in the site
    role: Optional[str] = None  # master | backup on two-node sites
    vips: tuple[str, ...] = ()
    vips_source: Optional[str] = None  # "site model" or the file: key of ha_ingress_vips
    masters: tuple[str, ...] = ()  # VIPs this node masters when every node is healthy
    source: Optional[str] = None  # which source named the node
    where: Optional[str] = None  # file: key path of the value that decided
    overrides: tuple[str, ...] = ()
    address_check: Optional[str] = None
    password_source: Optional[str] = None  # where the stats password came from, never the value
    stats_bind: Optional[str] = None  # addr:port of the stats page
    stats_cert: Optional[str] = None  # its certificate's path when served over TLS, else None
    stats_cert_source: Optional[str] = None  # "delivered" | "self-signed by the agent"
    stats_cert_sha256: Optional[str] = None  # the certificate's SHA-256 fingerprint (AA:BB:...)
    warnings: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def refused(cls, reason: str, site: Optional[str], warnings: list[str]) -> "State":
        return cls(ok=False, result=REFUSED, reason=reason, site=site, warnings=tuple(warnings))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (lists, not tuples)."""
        return json.loads(to_bytes(self))


def to_bytes(state: State) -> bytes:
    return (json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n").encode()


def write(root: Path, state: State) -> bool:
    """Write the state file (0644, atomic, only when its bytes change). True if written."""
    return files.write_atomic(root, layout.STATE_FILE, to_bytes(state), layout.mode(layout.STATE_FILE))


# --------------------------------------------------------------------------- reading


_HINTS = typing.get_type_hints(State)


def _check(name: str, value: Any, hint: Any, where: str) -> Any:
    """value as the field's type wants it, or StateError naming the key and the value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union and type(None) in args:  # Optional[X]
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:  # tuple[str, ...]
        if isinstance(value, list) and all(isinstance(v, args[0]) for v in value):
            return tuple(value)
    elif hint is bool or hint is str:
        if isinstance(value, hint):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    else:  # pragma: no cover - a field type this reader does not know; test_state covers every field
        raise TypeError(f"State.{name}: no reader for {hint!r}")
    shown = json.dumps(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise StateError(f"{where}: {name}: {shown} is not {_describe(hint, origin, args)}")


def _describe(hint: Any, origin: Any, args: tuple) -> str:
    if origin is tuple:
        return f"a list of {args[0].__name__}"
    return {bool: "true or false", str: "a string", int: "an integer"}[hint]


def from_dict(data: Any, where: str) -> State:
    """A State from the decoded JSON, checked key by key. StateError (one line) when it is not one."""
    if not isinstance(data, dict):
        raise StateError(f"{where}: not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        found = "no schema_version" if "schema_version" not in data else f"schema_version {json.dumps(version)}"
        raise StateError(
            f"{where}: {found}, this agent reads schema_version {SCHEMA_VERSION}; "
            "run `ha-ingress-proxy apply` to write it again"
        )
    fields = {f.name: f for f in dataclasses.fields(State)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise StateError(f"{where}: {unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    missing = sorted(n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING)
    if missing:
        raise StateError(f"{where}: {missing[0]}: missing")
    values = {name: _check(name, data[name], _HINTS[name], where) for name in fields if name in data}
    if values["result"] not in (APPLIED, REFUSED) or values["ok"] != (values["result"] == APPLIED):
        raise StateError(f"{where}: ok {json.dumps(values['ok'])} with result {json.dumps(values['result'])}: not a state apply writes")
    return State(**values)


def read(root: Path) -> Optional[State]:
    """The state apply last wrote; None when there is none; StateError when the file is unusable."""
    where = layout.shown(layout.STATE_FILE)
    try:
        raw = files.read_limited(root, layout.STATE_FILE, MAX_STATE)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StateError(f"{where}: not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise StateError(f"{where}: not valid JSON ({' '.join(str(exc).split())})") from None
    return from_dict(data, where)
