#!/bin/sh -eux
# Install the project's package from the directory Packer uploaded (PACKAGE_DIR).
# Debian: apt-get install ./ha-ingress-proxy_*.deb (dependencies from the image or its mirror).
# EL: dnf install from a file:// repo when PACKAGE_DIR has repodata/, else the .rpm files.
# Idempotent: installing the same package again changes nothing.

: "${PACKAGE_DIR:?PACKAGE_DIR must name the uploaded package directory}"
REPO_FILE=/etc/yum.repos.d/ha-ingress-proxy-local.repo

if command -v apt-get >/dev/null 2>&1; then
    set -- "$PACKAGE_DIR"/ha-ingress-proxy_*.deb
    [ -f "$1" ] || { echo "no ha-ingress-proxy_*.deb in $PACKAGE_DIR" >&2; exit 1; }
    [ "$#" -eq 1 ] || { echo "more than one ha-ingress-proxy_*.deb in $PACKAGE_DIR: $*" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$1"
    dpkg-query -W -f='${Status}\n' ha-ingress-proxy | grep -qx 'install ok installed'
elif command -v dnf >/dev/null 2>&1; then
    if [ -d "$PACKAGE_DIR/repodata" ]; then
        cat >"$REPO_FILE" <<REPO
[ha-ingress-proxy-local]
name=ha-ingress-proxy (local build)
baseurl=file://$PACKAGE_DIR
enabled=1
gpgcheck=0
REPO
        dnf install -y ha-ingress-proxy
        rm -f "$REPO_FILE"
    else
        set -- "$PACKAGE_DIR"/ha-ingress-proxy-[0-9]*.rpm
        [ -f "$1" ] || { echo "no repodata/ and no ha-ingress-proxy-*.rpm in $PACKAGE_DIR" >&2; exit 1; }
        dnf install -y "$@"
    fi
    rpm -q ha-ingress-proxy
else
    echo "neither apt-get nor dnf found: unsupported base" >&2
    exit 1
fi

rm -rf "$PACKAGE_DIR"
