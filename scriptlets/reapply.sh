# Upgrade, when booted: render the role files again from the new package's templates
# and reload (never restart) each running daemon whose config changed
# (`ha-ingress-proxy apply` does both; docs/operations.md). Not `try-restart` of the
# agent unit: haproxy and keepalived Require= it, so restarting it restarts them,
# which drops connections and moves the VIPs.
if [ -d /run/systemd/system ] && systemctl is-active --quiet ha-ingress-proxy-agent.service; then
    /usr/bin/ha-ingress-proxy apply >/dev/null 2>&1 || true
fi
