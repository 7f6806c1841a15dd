# After erase, when booted: our drop-ins and rsyslog rule are gone, back to the
# distribution's own.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl try-restart rsyslog.service >/dev/null 2>&1 || true
fi
