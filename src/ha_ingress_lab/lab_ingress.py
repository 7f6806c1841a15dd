"""A lab cluster that behaves like ingress-nginx: Debian's nginx in the cluster's namespace.

Configured the way ingress-nginx configures itself (docs/clusters.md):

- `listen 80` and `listen 443 ssl` (a self-signed ECDSA certificate the lab
  generates once per lab), each with `proxy_protocol` when the tier sends a
  PROXY v2 header to that port (the cluster's `proxy_protocol` services);
- `real_ip_header proxy_protocol` with `set_real_ip_from` only the proxy
  nodes' addresses (ingress-nginx's `proxy-real-ip-cidr`);
- `/healthz` on 10254 (never PROXY), answering 503 while the drain file
  exists (a controller shutting down fails its health check first), and
  503 to a random half of the requests while the flap file exists (a flaky
  controller: each check fails with probability 1/2, independently);
- while the hangup file exists, every request on the service ports is
  answered by closing the connection without a byte (nginx's `444`): what a
  client sees of an ingress pod killed mid-request, on demand;
- an access log with the address nginx believes is the client
  (`$remote_addr`), the peer it came from (`$realip_remote_addr`) and the
  request's method;
- two worker processes (the ingress pods); every answer names the cluster,
  in the body and in `X-Cluster`, so the probe knows which cluster answered.
"""

from __future__ import annotations

from pathlib import Path

from ha_ingress_proxy.subproc import run

HEALTH_PORT = 10254
LOG_FORMAT = "$remote_addr peer=$realip_remote_addr port=$server_port status=$status method=$request_method"


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the lab's ingresses (ECDSA P-256: cheap handshakes)."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / "ingress.crt", directory / "ingress.key"
    if not crt.exists():
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", "30", "-subj", "/CN=lab-ingress"])
    return crt, key


def nginx_conf(name: str, address: str, ports: dict[int, bool], tls_ports: set[int], proxy_nodes: list[str],
               directory: Path, cert: tuple[Path, Path]) -> str:
    """nginx.conf for one cluster. ports: port -> expects PROXY protocol; tls_ports: those served with `ssl`."""
    d = directory
    listens = []
    for port, proxy in sorted(ports.items()):
        flags = (" ssl" if port in tls_ports else "") + (" proxy_protocol" if proxy else "")
        listens.append(f"        listen {address}:{port}{flags};")
    real_ip = ""
    if any(ports.values()):
        real_ip = "".join(f"        set_real_ip_from {n}/32;\n" for n in proxy_nodes) + \
            "        real_ip_header proxy_protocol;\n"
    return f"""# lab cluster {name}: nginx configured like ingress-nginx (src/ha_ingress_lab/lab_ingress.py)
user root;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    log_format ingress '{LOG_FORMAT}';
    # a coin per request for the flapping /healthz (MurmurHash2 of what differs between checks)
    split_clients "${{remote_addr}}:${{remote_port}}:${{connection}}:${{msec}}" $flap_coin {{ 50% fail; * ok; }}
    keepalive_timeout 10s;
    server {{
{chr(10).join(listens)}
        ssl_certificate {cert[0]};
        ssl_certificate_key {cert[1]};
{real_ip}        access_log {d}/access.log ingress;
        location / {{
            if (-f {d}/hangup) {{ return 444; }}
            add_header X-Cluster {name} always;
            default_type text/plain;
            return 200 "{name}\\n";
        }}
    }}
    server {{
        listen {address}:{HEALTH_PORT};
        access_log off;
        location = /healthz {{
            default_type text/plain;
            if (-f {d}/drain) {{ return 503 "draining\\n"; }}
            set $flap "";
            if (-f {d}/flap) {{ set $flap "on"; }}
            if ($flap_coin = fail) {{ set $flap "$flap-fail"; }}
            if ($flap = on-fail) {{ return 503 "flapping\\n"; }}
            return 200 "ok\\n";
        }}
    }}
}}
"""
