#!/bin/sh -eux
# Seal the image: nothing instance-specific and no build credential is left behind.
# cloud-init state and logs, machine-id, SSH host keys, the build user's authorized_keys
# (the running SSH session stays up; Packer's shutdown command reuses it), package lists,
# the build network's resolv.conf.
# Idempotent: every step removes or empties; running it twice leaves the same image.
# The one sealing recipe: the Packer bake runs it over SSH, and the base image build
# (ha_ingress_build.base_image.seal) runs it in its chroot.

: "${BUILD_USER:=root}"

# cloud-init 22.4 (Debian 12) has --machine-id, and removes /etc/machine-id with it;
# older ones do not. Either way /etc/machine-id ends empty: systemd makes a new one at boot.
if ! command -v cloud-init >/dev/null 2>&1; then
    :
elif cloud-init clean --help 2>/dev/null | grep -q -- '--machine-id'; then
    cloud-init clean --logs --seed --machine-id
else
    cloud-init clean --logs --seed
fi
: >/etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
    rm -f /var/lib/dbus/machine-id
fi

rm -f /etc/ssh/ssh_host_*

# Secrets the build VM was given (the bake seed plants a canary here) belong to no node.
rm -f /etc/ha-ingress-proxy/secrets.env
# The entropy seed: saved now by stopping its service (so shutdown does not save it again),
# then removed; every node must start from its own.
systemctl stop systemd-random-seed.service 2>/dev/null || true
rm -f /var/lib/systemd/random-seed
# vSphere: the build seed (throwaway root key, disable_root: false) sits in guestinfo, which
# a template keeps. cloud-init's cleanup-guestinfo overwrote it once read; clear it again,
# and refuse to seal a VMware guest where that cannot be done.
# Not from a chroot (the base image build): the VM there would be the build host.
if ! systemd-detect-virt --chroot 2>/dev/null && [ "$(systemd-detect-virt 2>/dev/null || true)" = vmware ]; then
    command -v vmware-rpctool >/dev/null 2>&1 || { echo "vmware guest without vmware-rpctool: cannot clear guestinfo" >&2; exit 1; }
    # as cloud-init's own redaction does: "---" (empty YAML) and no encoding
    for key in userdata metadata vendordata; do
        vmware-rpctool "info-set guestinfo.$key ---"
        vmware-rpctool "info-set guestinfo.$key.encoding "
    done
fi

# The build network's name servers; the DHCP client (or NetworkManager) writes the
# node's own at boot. A link (systemd-resolved's stub) is left alone.
if [ -f /etc/resolv.conf ] && [ ! -L /etc/resolv.conf ]; then
    : >/etc/resolv.conf
fi

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
# A deleted file keeps its bytes in the freed blocks (cloud-init rewrote its copies of the
# build's user-data several times), and fstrim cannot discard a block that shares a qcow2
# cluster with live data: overwrite all free space with zeros first. detect-zeroes=unmap
# turns whole zero clusters into holes, so the image does not grow.
dd if=/dev/zero of=/var/tmp/seal-zeros bs=1M 2>/dev/null || true
rm -f /var/tmp/seal-zeros
sync
fstrim -av || true
