# firewalld, when running: the served ports, and VRRP (IP protocol 112) from
# the tier's nodes only, in the default zone. $firewalld says what to do with
# them: add (install) or remove (erase).
if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
    for port in @OPEN_PORTS@; do
        firewall-cmd --permanent "--$firewalld-port=$port/tcp" >/dev/null 2>&1 || true
    done
    for peer in @PEERS@; do
        firewall-cmd --permanent "--$firewalld-rich-rule=rule family=\"ipv4\" source address=\"$peer\" protocol value=\"vrrp\" accept" >/dev/null 2>&1 || true
    done
    firewall-cmd --reload >/dev/null 2>&1 || true
fi
