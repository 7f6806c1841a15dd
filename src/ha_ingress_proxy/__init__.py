"""ha-ingress-proxy: one inventory -> a highly available HAProxy + keepalived ingress tier."""

__version__ = "0.1.0"
