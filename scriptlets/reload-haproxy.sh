# After install and upgrade, when booted: pick up changed drop-ins, then reload
# haproxy (-Ws master-worker: the old workers finish their established
# connections). Not a restart, and nothing when haproxy is not running.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl try-reload-or-restart haproxy.service >/dev/null 2>&1 || true
fi
