# SELinux stays enforcing: label the ports haproxy binds http_port_t (80 and
# 443 already are; the stats port usually is not). -a fails for a port the
# policy already types, -m then overrides it locally.
if command -v semanage >/dev/null 2>&1 && command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    for port in @TCP_PORTS@; do
        semanage port -a -t http_port_t -p tcp "$port" >/dev/null 2>&1 \
            || semanage port -m -t http_port_t -p tcp "$port" >/dev/null 2>&1 || true
    done
fi
