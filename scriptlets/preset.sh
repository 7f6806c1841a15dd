# First install: haproxy, keepalived and rsyslog were installed (and preset) before
# our preset file existed; apply it now, to our own units too. Works offline in
# image chroots as well.
if command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload preset haproxy.service keepalived.service rsyslog.service @UNITS@ >/dev/null 2>&1 || true
fi
