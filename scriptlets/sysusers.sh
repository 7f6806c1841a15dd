# keepalived runs the haproxy check script as this unprivileged user (script_user
# in keepalived.conf): systemd-sysusers creates it from the package's sysusers.d
# file; where that tool is missing, useradd does the same.
systemd-sysusers @SYSUSERS@ >/dev/null 2>&1 \
    || getent passwd @CHECK_USER@ >/dev/null 2>&1 \
    || useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin --user-group @CHECK_USER@ >/dev/null 2>&1 \
    || true
