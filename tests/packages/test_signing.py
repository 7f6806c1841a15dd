"""Signed RPM and yum repo: a throwaway GPG key made here, the real gpg, rpmsign, rpmkeys and dnf.

The key is generated in the test (`gpg --batch --passphrase '' --quick-gen-key`, RSA 3072:
EL8's rpm cannot check EdDSA) in a temporary GnuPG home, exported as a secret key file, and
given to the build as `--sign-key FILE` (or its fingerprint with $GNUPGHOME). Everything is
verified the way an EL host does it: the public key alone in a fresh rpm database
(`rpmkeys --dbpath`), `rpm -K`, `gpg --verify` of repomd.xml.asc, and dnf with gpgcheck and
repo_gpgcheck on a file:// copy of the repo. Tampering must make each of them fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ha_ingress_build import cloudinit, pipeline, signing
from ha_ingress_proxy import inventory
from ha_ingress_proxy.errors import UserError

from ..conftest import EXAMPLES, ROOT, need_root_and

pytestmark = pytest.mark.packages

INVENTORY = EXAMPLES / "active-active.yaml"
BASEURL = "https://repo.example.com/hip/"


@dataclass(frozen=True)
class Key:
    home: Path
    fingerprint: str
    secret_file: Path


def run(*argv: str | os.PathLike, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Iterator[Key]:
    need_root_and("gpg", "rpmsign", "rpmkeys", "createrepo_c")
    home = Path(tempfile.mkdtemp(prefix="hip-tkey-"))  # short path: gpg-agent's socket lives in it
    try:
        run("gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-gen-key",
            "ha-ingress-proxy test <test@example.invalid>", "rsa3072", "sign", "never")
        cols = run("gpg", "--homedir", home, "--batch", "--with-colons", "--list-secret-keys").stdout
        fpr = next(line.split(":")[9] for line in cols.splitlines() if line.startswith("fpr:"))
        secret = tmp_path_factory.mktemp("key") / "signing-key.asc"
        run("gpg", "--homedir", home, "--batch", "--armor", "--output", secret, "--export-secret-keys", fpr)
        os.chmod(secret, 0o600)
        yield Key(home, fpr, secret)
    finally:
        run("gpgconf", "--homedir", home, "--kill", "all", check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def signed_repo(key, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("signed")
    try:
        return pipeline.build_repo(INVENTORY, out, baseurl=BASEURL, sign_key=str(key.secret_file))
    except UserError as exc:
        pytest.fail("\n".join(exc.lines), pytrace=False)


def rpm_db_with(public_key: Path, tmp: Path) -> Path:
    db = tmp / "rpmdb"
    db.mkdir()
    run("rpmkeys", "--dbpath", db, "--import", public_key)
    return db


def the_rpm(repo: Path) -> Path:
    [rpm] = sorted(repo.glob("ha-ingress-proxy-*.noarch.rpm"))
    return rpm


def test_signed_rpm_verifies_against_the_published_key_only(signed_repo, key, tmp_path):
    pub = signed_repo / signing.PUBLIC_KEY_NAME
    shown = run("gpg", "--homedir", tmp_path, "--batch", "--with-colons", "--import-options", "show-only",
                "--import", pub).stdout
    assert f"fpr:::::::::{key.fingerprint}:" in shown
    assert "sec:" not in shown and b"PRIVATE KEY" not in pub.read_bytes()
    rpm = the_rpm(signed_repo)
    db = rpm_db_with(pub, tmp_path)
    checked = run("rpmkeys", "--dbpath", db, "--checksig", "--verbose", rpm).stdout
    assert f"Signature, key ID {key.fingerprint[-8:].lower()}: OK" in checked
    assert "digests signatures OK" in run("rpm", "--dbpath", db, "-K", rpm).stdout
    assert signing.rpm_signature_problem(rpm, pub) == ""
    # without the key imported, the same check does not pass
    empty = tmp_path / "emptydb"
    empty.mkdir()
    assert run("rpmkeys", "--dbpath", empty, "--checksig", rpm, check=False).returncode != 0


def test_tampered_rpm_fails_verification(signed_repo, tmp_path):
    rpm = the_rpm(signed_repo)
    bad = tmp_path / rpm.name
    data = bytearray(rpm.read_bytes())
    data[-100] ^= 0xFF  # inside the compressed payload, well after the signed header
    bad.write_bytes(bytes(data))
    db = rpm_db_with(signed_repo / signing.PUBLIC_KEY_NAME, tmp_path)
    proc = run("rpmkeys", "--dbpath", db, "--checksig", "--verbose", bad, check=False)
    assert proc.returncode != 0 and "Payload SHA256 digest: BAD" in proc.stdout, proc.stdout
    assert run("rpm", "--dbpath", db, "-K", bad, check=False).returncode != 0
    assert "BAD" in signing.rpm_signature_problem(bad, signed_repo / signing.PUBLIC_KEY_NAME)


def test_an_unsigned_rpm_is_not_taken_for_a_signed_one(signed_repo, tmp_path):
    """rpmkeys --checksig says OK for the digests of an RPM with no signature at all: our check must not."""
    rpm = pipeline.build_rpm(INVENTORY, tmp_path / "u", lint=False, unsigned=True).path
    assert run("rpm", "-qp", "--qf", "%{RSAHEADER:pgpsig}", rpm).stdout == "(none)"
    assert signing.rpm_signature_problem(rpm, signed_repo / signing.PUBLIC_KEY_NAME) != ""


def test_repomd_signature_verifies_and_tampering_fails(signed_repo, tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ("gpg", "--homedir", home, "--batch")
    try:
        run(*gpg, "--import", signed_repo / signing.PUBLIC_KEY_NAME)
        repomd = signed_repo / "repodata" / "repomd.xml"
        asc = signed_repo / "repodata" / "repomd.xml.asc"
        assert asc.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
        assert "VALIDSIG" in run(*gpg, "--status-fd", "1", "--verify", asc, repomd).stdout
        bad = tmp_path / "repomd.xml"
        bad.write_bytes(repomd.read_bytes().replace(b"<revision>", b"<revision>1", 1))
        proc = run(*gpg, "--status-fd", "1", "--verify", asc, bad, check=False)
        assert proc.returncode != 0 and "BADSIG" in proc.stdout
    finally:
        run("gpgconf", "--homedir", home, "--kill", "all", check=False)


def test_repo_file_turns_every_check_on(signed_repo, key):
    text = (signed_repo / "ha-ingress-proxy.repo").read_text()
    lines = text.splitlines()
    assert f"baseurl={BASEURL}" in lines
    assert "gpgcheck=1" in lines and "repo_gpgcheck=1" in lines
    assert f"gpgkey={BASEURL}{signing.PUBLIC_KEY_NAME}" in lines
    assert key.fingerprint in text


def _dnf_repoquery(repo: Path, tmp: Path) -> subprocess.CompletedProcess:
    """dnf, with the .repo's checks, on a file:// view of `repo` (baseurl and gpgkey made local)."""
    reposdir = tmp / "repos.d"
    reposdir.mkdir(parents=True)
    text = (repo / "ha-ingress-proxy.repo").read_text().replace(BASEURL, repo.as_uri() + "/")
    (reposdir / "hip.repo").write_text(text)
    return run("dnf", "-y", "--installroot", tmp / "root", f"--setopt=reposdir={reposdir}", "--releasever=9",
               "--setopt=skip_if_unavailable=False", "repoquery", "--qf", "%{name}-%{version}-%{release}",
               "ha-ingress-proxy", check=False)


def test_dnf_checks_the_signed_metadata(signed_repo, tmp_path):
    if not shutil.which("dnf"):
        pytest.fail("dnf is needed (Debian's dnf package): ./invokew test installs it")
    ok = _dnf_repoquery(signed_repo, tmp_path / "a")
    assert ok.returncode == 0 and "ha-ingress-proxy-0.1.0-1.dc1_ingress" in ok.stdout, ok.stdout + ok.stderr
    tampered = tmp_path / "tampered"
    shutil.copytree(signed_repo, tampered)
    repomd = tampered / "repodata" / "repomd.xml"
    repomd.write_bytes(repomd.read_bytes().replace(b"<revision>", b"<revision>1", 1))
    bad = _dnf_repoquery(tampered, tmp_path / "b")
    assert bad.returncode != 0 and "GPG signature verification error" in bad.stdout + bad.stderr


def test_sign_with_a_key_id_from_the_keyring(key, tmp_path, monkeypatch):
    monkeypatch.setenv("GNUPGHOME", str(key.home))
    rpm = pipeline.build_rpm(INVENTORY, tmp_path, lint=False, sign_key=key.fingerprint).path
    assert f"Key ID {key.fingerprint[-16:].lower()}" in run("rpm", "-qp", "--qf", "%{RSAHEADER:pgpsig}", rpm).stdout


def test_bad_keys_are_refused_with_one_line(key, tmp_path, monkeypatch):
    monkeypatch.setenv("GNUPGHOME", str(key.home))
    public_only = tmp_path / "public.asc"
    run("gpg", "--homedir", key.home, "--batch", "--armor", "--output", public_only, "--export", key.fingerprint)
    for spec, words in ((str(public_only), "no secret key"), ("0123456789ABCDEF0123456789ABCDEF01234567", "no secret key"),
                        (str(tmp_path / "missing.asc"), "no such file")):
        with pytest.raises(UserError) as exc:
            pipeline.build_rpm(INVENTORY, tmp_path / "o", lint=False, sign_key=spec)
        assert len(exc.value.lines) == 1 and words in exc.value.lines[0] and spec in exc.value.lines[0]
    assert not (tmp_path / "o" / "packages").exists()


def _invoke(*args: str, out: Path) -> subprocess.CompletedProcess:
    invoke = Path(sys.executable).with_name("invoke")
    return run(invoke, *args, "--out", out, check=False, env={"PYTHONDONTWRITEBYTECODE": "1"})


@pytest.mark.parametrize("task", ["rpm", "repo"])
def test_unsigned_without_the_flag_is_refused_with_one_line(task, tmp_path):
    proc = subprocess.run([os.fspath(Path(sys.executable).with_name("invoke")), task, "--out", os.fspath(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"refusing to build {'the RPM' if task == 'rpm' else 'the yum repo'} unsigned: give --sign-key FILE|KEYID "
        "(a GPG secret key), or --unsigned to build it without a signature"]
    assert not (tmp_path / "o").exists()


def test_unsigned_with_the_flag_warns_and_the_repo_file_says_so(tmp_path, capsys):
    repo = pipeline.build_repo(INVENTORY, tmp_path, unsigned=True)
    assert "warning: building UNSIGNED (the yum repo, --unsigned)" in capsys.readouterr().err
    lines = (repo / "ha-ingress-proxy.repo").read_text().splitlines()
    assert "gpgcheck=0" in lines and "repo_gpgcheck=0" in lines and not any(l.startswith("gpgkey=") for l in lines)
    assert any(l.startswith("# NOT SIGNED") for l in lines)
    assert not (repo / "repodata" / "repomd.xml.asc").exists() and not (repo / signing.PUBLIC_KEY_NAME).exists()
    with pytest.raises(UserError, match="choose one"):
        pipeline.build_repo(INVENTORY, tmp_path, unsigned=True, sign_key="x")


# --- repo URLs: https, one line, properly quoted ----------------------------------------

BAD_URLS = {
    "http://repo.example.com/hip/": "plain http",
    "https://repo.example.com/hip/\ngpgcheck=0": "'\\n' is not allowed",
    "https://repo.example.com/hip/\rgpgcheck=0": "'\\r' is not allowed",
    "https://repo.example.com/h p/": "' ' is not allowed",
    'https://repo.example.com/"x': "'\"' is not allowed",
    "ftp://repo.example.com/hip/": "must be an https:// URL",
    "https:///hip/": "no host",
    "repo.example.com/hip": "must be an https:// URL",
    "https://repo.example.com/hip/?token=x": "no ?query or #fragment",
    "https://repo.example.com/hip/#x": "no ?query or #fragment",
    "": "empty",
}


@pytest.mark.parametrize("url", list(BAD_URLS), ids=range(len(BAD_URLS)))
def test_bad_repo_urls_are_refused(url):
    with pytest.raises(UserError) as exc:
        signing.check_repo_url(url, "--baseurl")
    assert len(exc.value.lines) == 1 and exc.value.lines[0].startswith("--baseurl: ")
    assert BAD_URLS[url] in exc.value.lines[0]


def test_http_needs_the_flag_and_bad_baseurl_writes_nothing(tmp_path):
    assert signing.check_repo_url("http://mirror.lan/hip/", "--baseurl", allow_http=True) == "http://mirror.lan/hip/"
    assert signing.check_repo_url("https://r.example.com/el$releasever/", "--baseurl") == "https://r.example.com/el$releasever/"
    with pytest.raises(UserError, match="pass --allow-http"):
        pipeline.build_repo(INVENTORY, tmp_path / "o", baseurl="http://mirror.lan/hip/", unsigned=True)
    with pytest.raises(UserError, match="is not allowed"):
        pipeline.build_repo(INVENTORY, tmp_path / "o", baseurl="https://x.example.com/\n[evil]", unsigned=True)
    assert not (tmp_path / "o").exists()


def test_cloud_init_repo_url_is_checked_quoted_and_gpg_checked(tmp_path):
    site = inventory.load(INVENTORY)
    password = cloudinit.generate_password()
    with pytest.raises(UserError, match="--repo-url: .* is not allowed"):
        cloudinit.seeds(site, "stock-el", password, repo_url="https://r.example.com/\nruncmd: [reboot]")
    with pytest.raises(UserError, match="pass --allow-http"):
        cloudinit.seeds(site, "stock-el", password, repo_url="http://r.example.com/hip")
    # quoted (a JSON string is a YAML scalar): the URL comes back whole, whatever it holds
    url = "https://r.example.com/~hip/el$releasever/a,b;c=(1)*&[x]!"
    seeds = cloudinit.seeds(site, "stock-el", password, repo_url=url)
    [line] = [x for x in seeds[0].user_data.splitlines() if x.startswith("    baseurl: ")]
    assert line.startswith('    baseurl: "') and json.loads(line.split(": ", 1)[1]) == url
    cloudinit.write_seeds(seeds, tmp_path / "signed", iso=False)  # the real cloud-init schema
    repo = yaml.safe_load(seeds[0].user_data)["yum_repos"]["ha-ingress-proxy"]
    assert repo["baseurl"] == url
    assert repo["gpgcheck"] is True and repo["repo_gpgcheck"] is True
    assert repo["gpgkey"] == f"{url}/{signing.PUBLIC_KEY_NAME}"
    seeds = cloudinit.seeds(site, "stock-el", password, repo_url="http://mirror.lan/hip", allow_http=True,
                            unsigned_repo=True)
    cloudinit.write_seeds(seeds, tmp_path / "unsigned", iso=False)
    repo = yaml.safe_load(seeds[0].user_data)["yum_repos"]["ha-ingress-proxy"]
    assert repo["gpgcheck"] is False and repo["repo_gpgcheck"] is False and "gpgkey" not in repo
