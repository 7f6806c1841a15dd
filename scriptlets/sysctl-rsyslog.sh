# Booted only: in a chroot this would set the build host's kernel; there
# systemd-sysctl.service applies our sysctl file at first boot.
if [ -d /run/systemd/system ]; then
    for conf in /usr/lib/sysctl.d/*-ha-ingress-proxy.conf; do
        if [ -f "$conf" ]; then /usr/lib/systemd/systemd-sysctl "$conf" >/dev/null 2>&1 || true; fi
    done
    # rsyslog re-reads its config only on restart (HUP just reopens files).
    systemctl try-restart rsyslog.service >/dev/null 2>&1 || true
fi
