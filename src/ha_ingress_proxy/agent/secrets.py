"""The stats password: from root-only metadata or the existing secrets.env, into secrets.env (0600). Never logged.

haproxy accepts an empty `stats auth` password without a word, so no password
at all is a refusal, not a default.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ha_ingress_proxy import layout

from . import files
from .sources import Claims, Refusal

VARIABLE = "HAPROXY_STATS_PASSWORD"
# Printable ASCII without whitespace, quotes or backslash: systemd's EnvironmentFile
# treats quotes and backslashes specially, haproxy.cfg puts the value inside "...".
PASSWORD_RE = re.compile(r"[!#-&(-\[\]-~]{12,128}\Z")
RULE = "12-128 printable ASCII characters without whitespace, quotes or backslashes"
MAX_SECRETS = 4096


@dataclass(frozen=True)
class Password:
    value: str
    source: str  # where it came from (file: key), never the value

    def __repr__(self) -> str:  # never the value, not even in a traceback
        return f"Password(source={self.source!r})"


def password_problem(value: object) -> Optional[str]:
    """None for a good stats password, else what is wrong with it (never the value).

    The one password rule: the agent applies it at boot, the build side
    (cloud-init user-data) before it writes a password anywhere.
    """
    if isinstance(value, str) and PASSWORD_RE.match(value):
        return None
    length = f"{len(value)} characters" if isinstance(value, str) else f"a {type(value).__name__}"
    return f"the stats password must be {RULE} (got {length}; value not shown)"


def _check(value: object, where: str) -> str:
    problem = password_problem(value)
    if problem:
        raise Refusal(f"{where}: {problem}")
    assert isinstance(value, str)
    return value


def from_secrets_env(root: Path) -> Optional[Password]:
    """The password in an existing secrets.env; refused when others can read the file (never chmod'ed quietly)."""
    rel = layout.SECRETS_ENV
    name = layout.shown(rel)
    try:
        raw, st = files.read_with_stat(root, rel, MAX_SECRETS)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Refusal(f"{name}: cannot read: {exc}") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        # the secret may already have been read: say so rather than quietly tightening the mode
        raise Refusal(
            f"{name}: mode {mode:04o} lets group or others read the stats password; make it root-only "
            f"(chmod 600 {name}) and, since it may have been read, change the password"
        )
    if st.st_uid != os.geteuid():
        raise Refusal(f"{name}: owned by uid {st.st_uid}, not by the agent's user ({os.geteuid()}); it must be root-only (chown root:root)")
    found = None
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if key.strip() != VARIABLE or not sep:
            raise Refusal(f"{name}: line {number}: only {VARIABLE}=... belongs here")
        found = _check(value, f"{name}: line {number}: {VARIABLE}")
    if found is None:
        return None
    return Password(found, name)


def choose(root: Path, metadata: Claims) -> Password:
    """Metadata's password if it gives one (sources.py took it only from the root-only copy), else the
    one already in secrets.env, else refuse. An existing secrets.env is checked either way."""
    existing = from_secrets_env(root)
    if metadata.password is not None:
        return Password(_check(metadata.password.value, metadata.password.where), metadata.password.where)
    if existing is None:
        raise Refusal(
            f"no stats password: put {VARIABLE}=... in {layout.shown(layout.SECRETS_ENV)} (root-only, mode 0600; "
            "cloud-init user-data write_files can deliver it); haproxy would accept an empty one"
        )
    return existing


def write(root: Path, password: Password) -> bool:
    """secrets.env, root-only 0600. True if written."""
    changed = files.write_atomic(root, layout.SECRETS_ENV, f"{VARIABLE}={password.value}\n".encode(), 0o600)
    st = files.stat_below(root, layout.SECRETS_ENV)
    if stat.S_IMODE(st.st_mode) != 0o600:  # pragma: no cover - write_atomic chmods
        raise Refusal(f"{layout.shown(layout.SECRETS_ENV)}: could not make it mode 0600")
    return changed
