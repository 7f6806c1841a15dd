#!/bin/sh -eux
# Write /usr/share/ha-ingress-proxy/image-manifest.json: what the image is and what it carries.
# MANIFEST_PATHS (space-separated) lists the files and directories the package installs;
# configs_sha256 is a sha256 over "<sha256>  <path>" lines of every regular file below them,
# sorted by path, so the same package always gives the same digest.
# Idempotent: the manifest is rewritten whole each time.

: "${MANIFEST_PATHS:?MANIFEST_PATHS must list the package files to digest}"
: "${IMAGE_NAME:=ha-ingress-proxy}"
: "${IMAGE_VERSION:=unknown}"
: "${IMAGE_BASE:=unknown}"
OUT_DIR=/usr/share/ha-ingress-proxy
OUT=$OUT_DIR/image-manifest.json

if command -v dpkg-query >/dev/null 2>&1; then
    pkg_version=$(dpkg-query -W -f='${Version}' ha-ingress-proxy)
    pkg_arch=$(dpkg-query -W -f='${Architecture}' ha-ingress-proxy)
else
    pkg_version=$(rpm -q --qf '%{VERSION}-%{RELEASE}' ha-ingress-proxy)
    pkg_arch=$(rpm -q --qf '%{ARCH}' ha-ingress-proxy)
fi

# JSON strings: refuse anything that would need escaping rather than write bad JSON.
check_plain() {
    case "$1" in
        *[\"\\]*) echo "cannot put '$1' into the manifest" >&2; exit 1 ;;
    esac
}

list=$(mktemp)
trap 'rm -f "$list"' EXIT
present=""
missing=""
for p in $MANIFEST_PATHS; do
    check_plain "$p"
    if [ -e "$p" ]; then
        present="$present $p"
    else
        missing="$missing $p"
    fi
done
if [ -n "$present" ]; then
    # World-readable files only: a file only root may read (secrets.env, node.yaml) is no
    # package file, and its digest in a world-readable manifest would be a secret's digest.
    # shellcheck disable=SC2086 # present is a list of paths without spaces
    find $present -type f -perm -o=r -print | LC_ALL=C sort -u | while read -r f; do
        check_plain "$f"
        sha256sum "$f"
    done >"$list"
fi
[ -s "$list" ] || { echo "none of MANIFEST_PATHS holds a file: $MANIFEST_PATHS" >&2; exit 1; }
digest=$(sha256sum <"$list" | cut -d' ' -f1)

json_list() {
    sep=""
    for x in "$@"; do
        printf '%s"%s"' "$sep" "$x"
        sep=", "
    done
}

mkdir -p "$OUT_DIR"
tmp=$(mktemp "$OUT_DIR/.manifest.XXXXXX")
{
    printf '{\n'
    printf '  "image": "%s",\n' "$IMAGE_NAME"
    printf '  "image_version": "%s",\n' "$IMAGE_VERSION"
    printf '  "base": "%s",\n' "$IMAGE_BASE"
    printf '  "package": "ha-ingress-proxy",\n'
    printf '  "package_version": "%s",\n' "$pkg_version"
    printf '  "package_arch": "%s",\n' "$pkg_arch"
    printf '  "configs_sha256": "%s",\n' "$digest"
    # shellcheck disable=SC2086 # word splitting wanted: lists of paths
    printf '  "paths": [%s],\n' "$(json_list $present)"
    # shellcheck disable=SC2086
    printf '  "missing_paths": [%s],\n' "$(json_list $missing)"
    printf '  "files": {\n'
    sep=""
    while read -r sum f; do
        printf '%s    "%s": "%s"' "$sep" "$f" "$sum"
        sep=",
"
    done <"$list"
    printf '\n  }\n}\n'
} >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$OUT"
cat "$OUT"
