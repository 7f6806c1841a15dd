# firewalld, when running: the served ports, VRRP (IP protocol 112) from the
# tier's nodes only, a non-loopback stats page from stats.allow only and metrics
# on the node's address from metrics.allow only, in the
# default zone. $firewalld says what to do with them: add (install) or remove
# (erase). Whether or not firewalld runs, our own nftables table
# (ha-ingress-proxy-firewall.service) drops VRRP from anything else: the rules
# here only let the peers' adverts past firewalld's own zone.
if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
    for port in @OPEN_PORTS@; do
        firewall-cmd --permanent "--$firewalld-port=$port/tcp" >/dev/null 2>&1 || true
    done
    for peer in @PEERS@; do
        firewall-cmd --permanent "--$firewalld-rich-rule=rule family=\"ipv4\" source address=\"$peer\" protocol value=\"vrrp\" accept" >/dev/null 2>&1 || true
    done
    stats_allow="@STATS_ALLOW@"
    # shellcheck disable=SC2086
    for cidr in $stats_allow; do
        firewall-cmd --permanent "--$firewalld-rich-rule=rule family=\"ipv4\" source address=\"$cidr\" port port=\"@STATS_PORT@\" protocol=\"tcp\" accept" >/dev/null 2>&1 || true
    done
    metrics_allow="@METRICS_ALLOW@"
    metrics_ports="@METRICS_PORTS@"
    # shellcheck disable=SC2086
    for cidr in $metrics_allow; do
        for port in $metrics_ports; do
            firewall-cmd --permanent "--$firewalld-rich-rule=rule family=\"ipv4\" source address=\"$cidr\" port port=\"$port\" protocol=\"tcp\" accept" >/dev/null 2>&1 || true
        done
    done
    firewall-cmd --reload >/dev/null 2>&1 || true
fi
