"""Signing the RPM and the yum repo metadata with a GPG key, and checking a repo URL.

    with signing_key("/path/to/exported-secret.asc") as key:   # or a key id in $GNUPGHOME
        sign_rpm(rpm_path, key)          # rpmsign --addsign (%_gpg_name, %_gpg_path)
        sign_file(repomd_xml, key)       # repomd.xml.asc, detached and armored
        export_public_key(key, dest)     # RPM-GPG-KEY-ha-ingress-proxy

Every signature is checked right after it is made, against the exported public key
alone (a fresh rpm database, a fresh GnuPG home), so a wrong key fails the build.
Keys without a passphrase sign unattended; a key with one must sit in the user's
keyring (give its id), where gpg-agent asks for it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ha_ingress_proxy.errors import UserError
from ha_ingress_proxy.subproc import require_tool, run

PUBLIC_KEY_NAME = "RPM-GPG-KEY-ha-ingress-proxy"
# What may appear in a repo URL: RFC 3986 characters (and dnf's $releasever-style
# variables). No whitespace, no control characters, no quotes: the URL lands in an
# INI line (.repo) and in YAML (cloud-init), where a newline would add keys.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+\Z")
UNSIGNED_WARNING = "warning: building UNSIGNED ({what}, --unsigned): nothing proves where it came from; do not publish it"


@dataclass(frozen=True)
class SigningKey:
    """A usable secret key: the GnuPG home that holds it and its fingerprint."""

    homedir: Path
    fingerprint: str
    source: str


def _gpg(homedir: Path, *args: str | os.PathLike[str], check: bool = True, context: str = "gpg"):
    return run(["gpg", "--homedir", homedir, "--batch", "--no-tty", "--quiet", *args], check=check, context=context)


def _one_secret_key(homedir: Path, key_id: str | None, spec: str) -> str:
    """The fingerprint of the one signing-capable secret key `key_id` names (or the only one in homedir)."""
    proc = _gpg(homedir, "--with-colons", "--list-secret-keys", *([key_id] if key_id else []), check=False)
    rows = [line.split(":") for line in proc.stdout.splitlines()]
    keys: list[tuple[list[str], str]] = []
    for i, row in enumerate(rows):
        if row[0] == "sec":
            fpr = next((r[9] for r in rows[i + 1:] if r[0] == "fpr"), "")
            keys.append((row, fpr))
    if proc.returncode != 0 or not keys:
        where = f"in {homedir}" if key_id else f"in {spec}"
        raise UserError(f"--sign-key {spec}: no secret key {where}")
    if len(keys) > 1:
        raise UserError(f"--sign-key {spec}: names {len(keys)} secret keys; give one fingerprint")
    row, fpr = keys[0]
    if row[1] in ("r", "e", "d", "i") or (len(row) > 14 and row[14].startswith("#")):
        raise UserError(f"--sign-key {spec}: key {fpr} is revoked, expired or its secret part is missing")
    caps = row[11] if len(row) > 11 else ""
    if "S" not in caps:
        raise UserError(f"--sign-key {spec}: key {fpr} cannot sign (capabilities {caps!r})")
    return fpr


@contextmanager
def signing_key(spec: str) -> Iterator[SigningKey]:
    """The key `spec` names: an exported secret key file (imported into a temporary GnuPG home,
    removed afterwards) or a key id / fingerprint in $GNUPGHOME (default ~/.gnupg)."""
    require_tool("gpg", "gnupg")
    spec = str(spec).strip()
    if not spec:
        raise UserError("--sign-key: empty; give an exported secret key file or a key id")
    path = Path(spec).expanduser()
    if path.is_file():
        home = Path(tempfile.mkdtemp(prefix="hip-gpg-"))  # short: gpg-agent's socket lives here
        try:
            proc = _gpg(home, "--import", path, check=False)
            if proc.returncode != 0:
                raise UserError(f"--sign-key {spec}: gpg cannot import it ({_first_line(proc.stdout)})")
            yield SigningKey(home, _one_secret_key(home, None, spec), spec)
        finally:
            run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
            shutil.rmtree(home, ignore_errors=True)
    elif "/" in spec or spec.startswith("."):
        raise UserError(f"--sign-key {spec}: no such file")
    else:
        home = Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")
        yield SigningKey(home, _one_secret_key(home, spec, spec), spec)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def export_public_key(key: SigningKey, dest: Path) -> Path:
    """The armored public key (only this key) at dest."""
    dest.unlink(missing_ok=True)
    _gpg(key.homedir, "--yes", "--armor", "--export-options", "export-minimal", "--output", dest, "--export",
         key.fingerprint, context="gpg --export")
    if not dest.is_file() or b"BEGIN PGP PUBLIC KEY BLOCK" not in dest.read_bytes():
        raise UserError(f"gpg exported no public key for {key.fingerprint}")
    return dest


def sign_rpm(rpm_path: Path, key: SigningKey) -> None:
    """rpmsign --addsign with %_gpg_name (the fingerprint) and %_gpg_path (its GnuPG home), then check it."""
    require_tool("rpmsign", "rpm")
    run(["rpmsign", "--addsign",
         "--define", f"_gpg_name {key.fingerprint}",
         "--define", f"_gpg_path {key.homedir}",
         "--define", "__gpg /usr/bin/gpg",
         "--define", "_gpg_digest_algo sha256",
         rpm_path], env={"GNUPGHOME": str(key.homedir)}, context=f"rpmsign {rpm_path.name}")
    with tempfile.TemporaryDirectory(prefix="hip-sigcheck-") as tmp:
        pub = export_public_key(key, Path(tmp) / PUBLIC_KEY_NAME)
        problem = rpm_signature_problem(rpm_path, pub)
    if problem:
        raise UserError(f"{rpm_path.name}: signed, but the signature does not check: {problem}")


def rpm_signature_problem(rpm_path: Path, public_key: Path) -> str:
    """"" when rpmkeys --checksig, against only `public_key` in a fresh rpm database, says the
    RPM's digests and signatures are OK; else what it said."""
    with tempfile.TemporaryDirectory(prefix="hip-rpmdb-") as db:
        run(["rpmkeys", "--dbpath", db, "--import", public_key], context="rpmkeys --import")
        proc = run(["rpmkeys", "--dbpath", db, "--checksig", "--verbose", rpm_path], check=False)
    out = proc.stdout or ""
    if proc.returncode == 0 and "Signature, key ID" in out and "NOT OK" not in out and "NOKEY" not in out:
        return ""
    return " / ".join(line.strip() for line in out.splitlines() if line.strip())


def sign_file(path: Path, key: SigningKey) -> Path:
    """<path>.asc: a detached, armored signature (repodata/repomd.xml -> repomd.xml.asc), then checked."""
    sig = path.with_name(path.name + ".asc")
    sig.unlink(missing_ok=True)
    _gpg(key.homedir, "--yes", "--local-user", key.fingerprint, "--armor", "--detach-sign", "--output", sig, path,
         context=f"gpg --detach-sign {path.name}")
    with tempfile.TemporaryDirectory(prefix="hip-sigcheck-") as tmp:
        pub = export_public_key(key, Path(tmp) / PUBLIC_KEY_NAME)
        problem = detached_signature_problem(path, sig, pub)
    if problem:
        raise UserError(f"{sig.name}: made, but it does not verify: {problem}")
    return sig


def detached_signature_problem(path: Path, sig: Path, public_key: Path) -> str:
    """"" when gpg --verify, with only `public_key` in a fresh GnuPG home, accepts sig over path."""
    home = Path(tempfile.mkdtemp(prefix="hip-gpgv-"))
    try:
        _gpg(home, "--import", public_key, context="gpg --import (public key)")
        proc = _gpg(home, "--status-fd", "1", "--verify", sig, path, check=False)
    finally:
        run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)
    if proc.returncode == 0 and "[GNUPG:] VALIDSIG" in proc.stdout:
        return ""
    return _first_line(proc.stdout)


def warn_unsigned(what: str) -> None:
    print(UNSIGNED_WARNING.format(what=what), file=sys.stderr, flush=True)


def check_repo_url(url: str, option: str, allow_http: bool = False, allow_file: bool = False) -> str:
    """A repo base URL fit for a .repo line and a YAML scalar: https (http only with allow_http,
    file:// only with allow_file), a host, and only URL characters. Returns it; UserError otherwise."""
    if not _URL_CHARS.match(url or ""):
        bad = next((c for c in url if not _URL_CHARS.match(c)), "") if url else ""
        why = f"character {bad!r} is not allowed in a URL" if bad else "empty"
        raise UserError(f"{option}: {url!r}: {why}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise UserError(f"{option}: {url!r}: a repo base URL takes no ?query or #fragment")
    if scheme == "https" or (scheme == "http" and allow_http):
        if not parts.hostname:
            raise UserError(f"{option}: {url!r}: no host")
        return url
    if scheme == "file" and allow_file:
        return url
    if scheme == "http":
        raise UserError(f"{option}: {url!r}: plain http (anyone on the path can swap the metadata); use https, or pass --allow-http")
    raise UserError(f"{option}: {url!r}: must be an https:// URL")


def public_key_url(baseurl: str) -> str:
    """Where the repo publishes its public key: next to repodata/."""
    return baseurl.rstrip("/") + "/" + PUBLIC_KEY_NAME


__all__ = ["SigningKey", "signing_key", "sign_rpm", "sign_file", "export_public_key", "rpm_signature_problem",
           "detached_signature_problem", "check_repo_url", "public_key_url", "warn_unsigned", "PUBLIC_KEY_NAME"]
