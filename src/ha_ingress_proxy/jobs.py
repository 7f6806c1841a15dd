"""The build-side jobs tasks.py calls: one function each, typed in and out."""

from __future__ import annotations

import time
from pathlib import Path

from . import cloudinit, inventory, lint, render, roots
from .errors import UserError



def render_site(inventory_path: Path, out_dir: Path) -> list[str]:
    """inventory -> build/nodes/<node>/ for every node. Returns the node names."""
    site = inventory.load(inventory_path)
    trees = render.write_site(site, Path(out_dir))
    return sorted(trees)


def lint_site(out_dir: Path, releases: tuple[str, ...] = ()) -> None:
    """Lint the rendered nodes on the host (and on each named release); UserError on any failure."""
    extra = {label: roots.ensure_root(label, Path(out_dir) / "roots") for label in releases}
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


def cloud_init(
    inventory_path: Path,
    out_dir: Path,
    kind: str,
    secrets_file: Path | None = None,
    repo_url: str = "",
    ssh_key_files: tuple[Path, ...] = (),
    iso: bool = True,
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
    seeds = cloudinit.seeds(site, kind, password, repo_url=repo_url, ssh_keys=tuple(keys))
    return cloudinit.write_seeds(seeds, Path(out_dir), iso=iso)


def build_image(
    inventory_path: Path,
    out_dir: Path,
    accelerator: str | None = None,
    rebuild_base: bool = False,
    release: int = 1,
) -> dict[str, object]:
    """The main job: render + lint, the .deb, the Debian 12 base, then the Packer (qemu) bake.

    Returns what was made and the step times; prints progress and a step-time summary.
    """
    import shutil

    from . import image, image_base, package
    from .steps import StepTimer

    out = Path(out_dir).resolve()
    timer = StepTimer("build-image")
    with timer.step("render"):
        render_site(inventory_path, out)
    with timer.step("lint"):
        lint_site(out)
    with timer.step("package (.deb)"):
        built = package.build_deb(inventory_path, out, release)
        pkg_dir = out / "image-packages"
        shutil.rmtree(pkg_dir, ignore_errors=True)
        pkg_dir.mkdir(parents=True)
        shutil.copy2(built.path, pkg_dir / built.path.name)
    with timer.step("base image (debian-12)"):
        base = image_base.build_base(out / "base", force=rebuild_base)
    with timer.step("accelerator"):
        accel = accelerator or image.detect_accelerator()
    version = built.path.name.split("_")[1]
    with timer.step("bake (packer, qemu)"):
        result = image.bake(base, pkg_dir, out / "image", accel, image_version=version)
    print(timer.summary())
    return {
        "image": str(result.image),
        "size_bytes": result.size_bytes,
        "package": str(built.path),
        "package_sha256": built.sha256,
        "accelerator": accel,
        "steps": timer.as_dict(),
    }
