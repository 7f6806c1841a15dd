"""`apply`: resolve this node's role and write its role-dependent files, or refuse.

The site model is the renderer's own site.json, loaded through the same
inventory.validate as an inventory; the files come from the same plan() and
render() as the build (layout.ROLE_FILES only). Nothing here renders or
validates on its own.

On refusal keepalived.conf is removed (keepalived's drop-in has
ConditionFileNotEmpty on it, and Requires= this unit), so the node claims no
VIP; the reason goes to the state file and, as one line, to the journal.
keepalived.conf is written last, after haproxy.cfg and secrets.env: it is the
file whose presence lets keepalived start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ha_ingress_proxy import inventory, layout, render
from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.plan import plan
from ha_ingress_proxy.subproc import run

from . import files, resolve, secrets, sources, state, stats_cert
from .state import State

MAX_SITE_MODEL = 1 << 20


@dataclass
class Outcome:
    state: Optional[State] = None  # set by apply(), applied or refused
    changes: list[tuple[str, str]] = field(default_factory=list)  # (path as on the node, written|unchanged|removed)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state is not None and self.state.ok


def load_site(root: Path) -> inventory.Site:
    name = layout.shown(layout.SITE_MODEL)
    try:
        raw = files.read_limited(root, layout.SITE_MODEL, MAX_SITE_MODEL)
    except FileNotFoundError:
        raise sources.Refusal(f"{name}: missing; the ha-ingress-proxy package ships it (is the package installed?)") from None
    except (OSError, ValueError) as exc:
        raise sources.Refusal(f"{name}: cannot read: {exc}") from None
    data = sources.load_json(raw, name)
    try:
        return inventory.validate(data, name)
    except inventory.InventoryError as exc:
        raise sources.Refusal("; ".join(exc.lines)) from None


def _refused(root: Path, reason: str, outcome: Outcome, partial: dict[str, Any]) -> Outcome:
    try:
        if files.remove(root, layout.KEEPALIVED_CONF):
            outcome.changes.append((layout.shown(layout.KEEPALIVED_CONF), "removed"))
    except (UserError, OSError) as exc:  # e.g. its directory leads out of --root: nothing of ours there
        reason = _also(reason, exc)
    outcome.state = State.refused(reason, partial.get("site"), outcome.warnings)
    try:
        state.write(root, outcome.state)
    except (UserError, OSError) as exc:  # e.g. the state directory leads out of --root: say so on the one line
        outcome.state = State.refused(_also(reason, exc), partial.get("site"), outcome.warnings)
    return outcome


def _also(reason: str, exc: Exception) -> str:
    extra = "; ".join(exc.lines) if isinstance(exc, UserError) else " ".join(str(exc).split())
    # the same cause met again on another path (a link on the way to both) is said once
    return reason if extra.split(": ", 1)[-1] in reason else f"{reason}; {extra}"


def _reload_firewall(root: Path) -> str:
    """The filter changed on a running system: have its unit load it again (one nft transaction
    replaces the table). At boot the unit is not active yet and starts after this agent; under
    --root (tests, image builds) nothing runs."""
    if Path(root).resolve() != Path("/") or not os.path.isdir("/run/systemd/system"):
        return ""
    unit = layout.FIREWALL_UNIT.rsplit("/", 1)[1]
    proc = run(["systemctl", "--no-block", "try-reload-or-restart", unit], check=False, timeout=30)
    if proc.returncode != 0:
        return f"{unit}: reload failed (exit {proc.returncode}); the previous filter stays loaded"
    return ""


def apply(root: Path = Path("/"), ip_json: Optional[Path] = None, addresses: Optional[list[tuple[str, str]]] = None) -> Outcome:
    """Resolve, render, write. Never raises for a refusal: the Outcome says refused and why.

    addresses: the host's (interface, address) pairs; None asks `ip -j -4 addr`
    (or reads ip_json, a saved copy of that output).
    """
    root = Path(root)
    outcome = Outcome()
    partial: dict[str, Any] = {}
    try:
        # where apply writes must stay inside --root before anything is read or written
        files.ensure_dir(root, layout.CONFIG_DIR)
        files.ensure_dir(root, layout.STATE_DIR)
        site = load_site(root)
        partial["site"] = site.site
        kernel = sources.kernel_cmdline(root)
        metadata = sources.cloud_init(root)
        local = sources.node_file(root)
        if addresses is None:
            addresses = sources.host_addresses(ip_json)
        decision = resolve.decide(site, [kernel, metadata, local], addresses)
        password = secrets.choose(root, metadata)
        node_plan = plan(decision.site, decision.node)
        tree = render.render(node_plan, only=layout.ROLE_FILES)
        # Before haproxy.cfg names it: a delivered certificate is checked, else one is made.
        cert = stats_cert.ensure(root, node_plan)
        # keepalived.conf last: its presence is what lets keepalived start.
        order = sorted(tree, key=lambda rel: (rel == layout.KEEPALIVED_CONF, rel))
        for rel in order:
            if rel == layout.KEEPALIVED_CONF:
                changed = secrets.write(root, password)
                outcome.changes.append((layout.shown(layout.SECRETS_ENV), "written" if changed else "unchanged"))
            changed = files.write_atomic(root, rel, tree[rel].content, tree[rel].mode)
            outcome.changes.append((layout.shown(rel), "written" if changed else "unchanged"))
            if rel == layout.FIREWALL_NFT and changed:
                warning = _reload_firewall(root)
                if warning:
                    outcome.warnings.append(warning)
    except UserError as exc:
        return _refused(root, "; ".join(exc.lines), outcome, partial)
    except OSError as exc:  # a read-only or full file system, a permission: one line, not a traceback
        return _refused(root, f"reading or writing below --root {root}: {' '.join(str(exc).split())}", outcome, partial)
    except BaseException:
        # a bug or an interrupt: still fail closed, then let the CLI report it
        _refused(root, "internal error in the agent (see the journal)", outcome, partial)
        raise
    outcome.state = State(
        ok=True,
        result=state.APPLIED,
        reason=None,
        site=decision.site.site,
        mode=str(decision.site.mode.value),
        node=decision.node,
        address=node_plan.node.address,
        role=decision.role,
        vips=tuple(v.address for v in decision.site.vips),
        vips_source=decision.vips_source,
        masters=node_plan.masters,
        source=decision.source,
        where=decision.where,
        overrides=decision.overrides,
        address_check=decision.address_check,
        password_source=password.source,
        stats_bind=node_plan.haproxy.stats_bind,
        stats_cert=cert.path if cert else None,
        stats_cert_source=cert.source if cert else None,
        stats_cert_sha256=cert.sha256 if cert else None,
        warnings=tuple(outcome.warnings),
    )
    state.write(root, outcome.state)
    return outcome
