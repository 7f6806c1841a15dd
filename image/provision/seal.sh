#!/bin/sh -eux
# Seal the image: nothing instance-specific and no build credential is left behind.
# cloud-init state and logs, machine-id, SSH host keys, the build user's authorized_keys
# (the running SSH session stays up; Packer's shutdown command reuses it), package lists.
# Idempotent: every step removes or empties; running it twice leaves the same image.

: "${BUILD_USER:=root}"

# cloud-init 22.4 (Debian 12) has --machine-id, and removes /etc/machine-id with it;
# older ones do not. Either way /etc/machine-id ends empty: systemd makes a new one at boot.
if cloud-init clean --help 2>/dev/null | grep -q -- '--machine-id'; then
    cloud-init clean --logs --seed --machine-id
else
    cloud-init clean --logs --seed
fi
: >/etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
    rm -f /var/lib/dbus/machine-id
fi

rm -f /etc/ssh/ssh_host_*

home=$(getent passwd "$BUILD_USER" | cut -d: -f6)
if [ -n "$home" ]; then
    rm -f "$home/.ssh/authorized_keys" "$home/.bash_history"
fi
rm -f /root/.ssh/authorized_keys /root/.bash_history
# A non-root build user still needs its sudo rule for Packer's shutdown command, which
# removes it (packer/sources.pkr.hcl, local.shutdown_command).

if command -v apt-get >/dev/null 2>&1; then
    apt-get clean
    rm -rf /var/lib/apt/lists/*
fi
if command -v dnf >/dev/null 2>&1; then
    dnf clean all
fi

rm -rf /tmp/ha-ingress-proxy-pkgs
find /var/tmp -mindepth 1 -maxdepth 1 ! -name 'systemd-private-*' -exec rm -rf {} +
find /var/log -type f -exec truncate -s 0 {} +
sync
fstrim -av || true
