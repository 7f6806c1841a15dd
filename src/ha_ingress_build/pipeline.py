"""The build-side jobs tasks.py calls: one function each, typed in and out."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ha_ingress_build import cloudinit, lint, packages, payload, release_roots, signing
from ha_ingress_build.digest import file_sha256
from ha_ingress_build.step_timer import StepTimer
from ha_ingress_proxy import inventory, plan, render
from ha_ingress_proxy.errors import UserError


def render_site(inventory_path: Path, out_dir: Path) -> list[str]:
    """inventory -> build/nodes/<node>/ for every node. Returns the node names."""
    site = inventory.load(inventory_path)
    for path, message in plan.warnings(site):
        print(f"warning: {inventory_path}: {path}: {message}", file=sys.stderr)
    trees = render.write_site(site, Path(out_dir))
    return sorted(trees)


def lint_site(out_dir: Path, releases: tuple[str, ...] = ()) -> None:
    """Lint the rendered nodes on the host (and on each named release); UserError on any failure."""
    for label in releases:
        if label not in release_roots.RELEASES:
            raise UserError(f"unknown release {label!r}; known: {', '.join(sorted(release_roots.RELEASES))}")
    extra = {label: release_roots.ensure_root(label, Path(out_dir) / "roots") for label in releases}
    findings = lint.lint(Path(out_dir), extra)
    if findings:
        raise UserError(*(f.line() for f in findings))


def render_and_lint(inventory_path: Path, out_dir: Path, releases: tuple[str, ...] = ()) -> dict[str, float]:
    """render + lint, timed (seconds per step)."""
    t0 = time.monotonic()
    render_site(inventory_path, out_dir)
    t1 = time.monotonic()
    lint_site(out_dir, releases)
    t2 = time.monotonic()
    return {"render": t1 - t0, "lint": t2 - t1}


def collect_payload(inventory_path: Path, out_dir: Path) -> payload.Payload:
    """inventory -> build/nodes/ -> the payload both packages ship."""
    render_site(Path(inventory_path), Path(out_dir))
    return payload.collect(Path(out_dir) / "nodes")


def _signing_choice(sign_key: str | None, unsigned: bool, what: str) -> None:
    """Signed needs a key, unsigned needs saying so: refuse anything else before building."""
    if sign_key and unsigned:
        raise UserError("--sign-key and --unsigned: choose one")
    if not sign_key and not unsigned:
        raise UserError(f"refusing to build {what} unsigned: give --sign-key FILE|KEYID (a GPG secret key), "
                        "or --unsigned to build it without a signature")


@contextmanager
def _maybe_key(sign_key: str | None, what: str) -> Iterator[signing.SigningKey | None]:
    if sign_key:
        with signing.signing_key(sign_key) as key:
            yield key
    else:
        signing.warn_unsigned(what)
        yield None


def _rpm(inventory_path: Path, out: Path, release: int, lint: bool, key: signing.SigningKey | None) -> packages.Built:
    built = packages.rpm_from_payload(collect_payload(inventory_path, out), out, release, lint)
    if key is None:
        return built
    signing.sign_rpm(built.path, key)
    return packages.Built(built.path, file_sha256(built.path))


def build_rpm(inventory_path: Path, out_dir: Path, release: int = 1, lint: bool = True, *,
              sign_key: str | None = None, unsigned: bool = False) -> packages.Built:
    """inventory -> <out>/packages/ha-ingress-proxy-<version>-<n>.<site>.noarch.rpm (rpmbuild, rpm/ha-ingress-proxy.spec).

    Then: no macro left unexpanded, (lint=True) rpmlint clean with rpm/ha-ingress-proxy.rpmlintrc,
    and signed with sign_key (an exported secret key file or a key id; checked with rpmkeys
    against the public key alone). Without a key only when unsigned=True (it warns).
    """
    _signing_choice(sign_key, unsigned, "the RPM")
    out = Path(out_dir).resolve()
    with _maybe_key(sign_key, "the RPM") as key:
        return _rpm(inventory_path, out, release, lint, key)


def build_deb(inventory_path: Path, out_dir: Path, release: int = 1) -> packages.Built:
    """inventory -> <out>/packages/ha-ingress-proxy_<version>-<n>+<site>_all.deb (dpkg-deb, deb/)."""
    out = Path(out_dir).resolve()
    return packages.deb_from_payload(collect_payload(inventory_path, out), out, release)


def build_repo(inventory_path: Path, out_dir: Path, baseurl: str = "", release: int = 1, *,
               sign_key: str | None = None, unsigned: bool = False, allow_http: bool = False) -> Path:
    """inventory -> <out>/repo/: the RPM, repodata/ (createrepo_c) and ha-ingress-proxy.repo.

    Signed (sign_key): the RPM (rpmsign), repodata/repomd.xml.asc and the public key
    RPM-GPG-KEY-ha-ingress-proxy, with gpgcheck=1, repo_gpgcheck=1 and gpgkey= in the
    .repo. baseurl must be https (http only with allow_http; file:// is the default).
    """
    _signing_choice(sign_key, unsigned, "the yum repo")
    if baseurl:
        signing.check_repo_url(baseurl, "--baseurl", allow_http, allow_file=True)
    out = Path(out_dir).resolve()
    with _maybe_key(sign_key, "the yum repo") as key:
        built = _rpm(inventory_path, out, release, True, key)
        site = payload.collect(out / "nodes").facts.site
        return packages.repo_from_rpm(built, site, out, baseurl, key, allow_http)


def cloud_init(
    inventory_path: Path,
    out_dir: Path,
    kind: str,
    secrets_file: Path | None = None,
    repo_url: str = "",
    ssh_key_files: tuple[Path, ...] = (),
    iso: bool = True,
    allow_http: bool = False,
    unsigned_repo: bool = False,
) -> Path:
    """inventory -> <out>/cloud-init/<node>/ user-data, meta-data, seed.iso (checked by cloud-init schema)."""
    site = inventory.load(inventory_path)
    password = cloudinit.read_password(path=secrets_file)
    keys = []
    for key_file in ssh_key_files:
        try:
            keys.append(Path(key_file).read_text().strip())
        except OSError as exc:
            raise UserError(f"{key_file}: cannot read: {exc.strerror}") from None
    seeds = cloudinit.seeds(site, kind, password, repo_url=repo_url, ssh_keys=tuple(keys),
                            allow_http=allow_http, unsigned_repo=unsigned_repo)
    return cloudinit.write_seeds(seeds, Path(out_dir), iso=iso)


# What a baked image is made from besides the package and the base: the Packer
# templates and the provisioning scripts. Their digest is part of the bake stamp.
BAKE_RECIPE_DIRS = ("packer", "image/provision")


def bake_recipe_digest(root: Path) -> str:
    """sha256 over the path and bytes of every file in BAKE_RECIPE_DIRS below `root`, sorted by path."""
    h = hashlib.sha256()
    for rel in BAKE_RECIPE_DIRS:
        for f in sorted(p for p in (root / rel).rglob("*") if p.is_file()):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def bake_stamp_path(out_dir: Path, base: str = "debian-12") -> Path:
    """Where build_image records what its image was baked from (next to the image directory)."""
    return Path(out_dir) / "image" / f"{base}.stamp.json"


def reusable_image(stamp_path: Path, wanted: dict[str, str]) -> Path | None:
    """The image the stamp names, if every input in `wanted` matches and the image is unchanged."""
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or any(stamp.get(k) != v for k, v in wanted.items()):
        return None
    image = Path(str(stamp.get("image", "")))
    if not image.is_file() or file_sha256(image) != stamp.get("image_sha256"):
        return None
    return image


def _stamp_canary(stamp_path: Path) -> str:
    """The build canary a bake stamp records ("" when none): the throwaway secret the build VM held."""
    try:
        value = json.loads(stamp_path.read_text()).get("build_canary", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def build_image(
    inventory_path: Path,
    out_dir: Path,
    accelerator: str | None = None,
    rebuild_base: bool = False,
    release: int = 1,
    rebake: bool = False,
) -> dict[str, object]:
    """The main job: render + lint, the .deb, the Debian 12 base, then the Packer (qemu) bake.

    The bake is skipped when <out>/image/debian-12.stamp.json says the image there was
    baked from this very package (sha256), base (sha256 of its qcow2) and Packer +
    provisioning recipe, and the image still has the sha256 recorded (rebake=True bakes
    anyway). Returns what was made, whether it was reused, the step times and the build
    canary (the throwaway password the build VM held, bake.write_bake_seed: the image test
    proves the image does not hold it); prints progress and a step-time summary.
    """
    from ha_ingress_build import bake, base_image

    out = Path(out_dir).resolve()
    timer = StepTimer("build-image")
    with timer.step("render"):
        render_site(inventory_path, out)
    with timer.step("lint"):
        lint_site(out)
    with timer.step("package (.deb)"):
        built, pkg_dir = _image_package(inventory_path, out, release)
    with timer.step("base image (debian-12)"):
        base = base_image.build_base(out / "base", force=rebuild_base)
        base_sha256 = file_sha256(base)
    wanted = {
        "package_sha256": built.sha256,
        "base_sha256": base_sha256,
        "bake_recipe_sha256": bake_recipe_digest(bake.REPO_ROOT),
    }
    stamp_path = bake_stamp_path(out)
    reused = None if rebake else reusable_image(stamp_path, wanted)
    canary = _stamp_canary(stamp_path) if reused is not None else ""
    if reused is not None and not canary:
        reused = None  # a stamp from before the build canary: bake again, the image test needs it
    if reused is not None:
        print(f"image up to date (same package, base and bake recipe): {reused}")
        image, accel = reused, ""
    else:
        image, accel, canary = _bake_and_stamp(base, pkg_dir, built, out, wanted, accelerator, timer)
    print(timer.summary())
    return {
        "image": str(image),
        "size_bytes": image.stat().st_size,
        "package": str(built.path),
        "package_sha256": built.sha256,
        "base_sha256": base_sha256,
        "reused": reused is not None,
        "accelerator": accel,
        "steps": timer.as_dict(),
        "build_canary": canary,
    }


def _image_package(inventory_path: Path, out: Path, release: int) -> tuple[packages.Built, Path]:
    """The .deb, alone in <out>/image-packages/: what the bake installs."""
    built = build_deb(inventory_path, out, release)
    pkg_dir = out / "image-packages"
    shutil.rmtree(pkg_dir, ignore_errors=True)
    pkg_dir.mkdir(parents=True)
    shutil.copy2(built.path, pkg_dir / built.path.name)
    return built, pkg_dir


def _bake_and_stamp(base: Path, pkg_dir: Path, built: packages.Built, out: Path, wanted: dict[str, str],
                    accelerator: str | None, timer: StepTimer) -> tuple[Path, str, str]:
    """Bake the image, then record what it was baked from (the stamp reusable_image reads);
    returns the image, the accelerator and the build canary."""
    from ha_ingress_build import bake

    stamp_path = bake_stamp_path(out)
    with timer.step("accelerator"):
        accel = accelerator or bake.detect_accelerator()
    with timer.step("bake (packer, qemu)"):
        stamp_path.unlink(missing_ok=True)
        result = bake.bake(base, pkg_dir, out / "image", accel, image_version=built.path.name.split("_")[1])
    stamp = {"image": str(result.image), "image_sha256": file_sha256(result.image),
             "package": built.path.name, **wanted, "accelerator": accel,
             "bake_s": round(result.seconds, 1), "build_canary": result.build_canary}
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    return result.image, accel, result.build_canary
