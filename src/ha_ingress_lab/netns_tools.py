"""Small programs the VM-pair harness runs inside its network namespaces (`ip netns exec NS python3 netns_tools.py ...`).

    relay HOST PORT            stdin/stdout <-> TCP HOST:PORT (an ssh ProxyCommand: the VMs are
                               reachable from inside the test's namespace only)
    serve NAME ADDR            a stand-in cluster ingress: HTTP on ADDR:80 answers "cluster NAME",
                               TCP on ADDR:443 sends "cluster NAME" and closes
    probe N URL...             N requests to each URL, one JSON line each: url, ok, body
    loop OUT URL...            request every URL every --interval s with --timeout s, forever (until
                               killed); one JSON line per request to OUT: t (CLOCK_MONOTONIC, the same
                               clock as the test's time.monotonic()), url, ok, body, and the MAC the
                               client's ARP table gives the URL's host right after (who answered)
    hold OUT URL               one HTTP/1.1 keep-alive connection to URL, a request on it every 0.5 s; one
                               JSON line per request to OUT: t, event ok | closed (the server closed it
                               cleanly: Connection: close or a FIN while idle; it reconnects) | reset
                               (an error on an open connection: RST, EOF mid-response, timeout)
    vrrp OUT IFACE             every VRRP packet seen on IFACE (a VM's tap: all it sends), one JSON
                               line each to OUT: t (CLOCK_MONOTONIC), src, vrid, priority

Standard library only; nothing here leaves the namespace it runs in.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def relay(host: str, port: int) -> None:
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    fds = [0, sock.fileno()]
    while True:
        readable, _, _ = select.select(fds, [], [])
        for fd in readable:
            if fd == 0:
                data = os.read(0, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    fds.remove(0)
                else:
                    sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(1, data)


def serve(name: str, addr: str) -> None:
    body = f"cluster {name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer((addr, 80), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((addr, 443))
    tcp.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = tcp.accept()
        try:
            conn.sendall(body)
        except OSError:
            pass
        conn.close()


def arp_mac(ip: str) -> str:
    try:
        with open("/proc/net/arp") as fh:
            for line in fh.read().splitlines()[1:]:
                parts = line.split()
                if parts and parts[0] == ip and parts[2] != "0x0":
                    return parts[3]
    except OSError:
        pass
    return ""


def request(url: str, timeout: float) -> tuple[bool, str]:
    """One request on a fresh connection: HTTP GET for http://, read-until-close for tcp://."""
    u = urllib.parse.urlsplit(url)
    port = u.port or (80 if u.scheme == "http" else 443)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout) as s:
            s.settimeout(timeout)
            if u.scheme == "http":
                s.sendall(f"GET {u.path or '/'} HTTP/1.0\r\nHost: {u.hostname}\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return False, type(exc).__name__
    text = data.decode(errors="replace")
    if u.scheme == "http":
        if not text.startswith("HTTP/1.0 200") and not text.startswith("HTTP/1.1 200"):
            return False, text.split("\r\n", 1)[0]
        text = text.split("\r\n\r\n", 1)[-1]
    return (text.startswith("cluster "), text.strip())


def loop(out: str, urls: list[str], interval: float, timeout: float) -> None:
    with open(out, "a", buffering=1) as fh:
        while True:
            for url in urls:
                started = time.monotonic()
                ok, body = request(url, timeout)
                host = urllib.parse.urlsplit(url).hostname or ""
                fh.write(json.dumps({"t": started, "done": time.monotonic(), "url": url, "ok": ok,
                                     "body": body, "mac": arp_mac(host)}) + "\n")
                rest = interval - (time.monotonic() - started)
                if rest > 0:
                    time.sleep(rest)


def _response(sock: socket.socket) -> tuple[bool, bool]:
    """Read one HTTP/1.1 response: (complete 200, server says Connection: close). OSError on errors."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("EOF before the response headers")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode(errors="replace").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("EOF inside the response body")
        body += chunk
    return lines[0].split(" ")[1:2] == ["200"], headers.get("connection", "").lower() == "close"


def hold(out: str, url: str, every: float = 0.5, timeout: float = 2.0) -> None:
    u = urllib.parse.urlsplit(url)
    sock = None
    with open(out, "a", buffering=1) as fh:
        while True:
            started = time.monotonic()
            event = "ok"
            try:
                if sock is None:
                    sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
                    sock.settimeout(timeout)
                else:
                    # a FIN while idle (a reload's old worker closing an idle keep-alive
                    # connection) is a clean close: peek without blocking
                    sock.setblocking(False)
                    try:
                        if sock.recv(1, socket.MSG_PEEK) == b"":
                            raise EOFError
                    except BlockingIOError:
                        pass
                    finally:
                        sock.settimeout(timeout)
                sock.sendall(f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}\r\n\r\n".encode())
                ok, close = _response(sock)
                if not ok:
                    event = "reset"
                if close:
                    event = "closed" if ok else event
                    sock.close()
                    sock = None
            except EOFError:
                event = "closed"
                sock.close()
                sock = None
            except OSError as exc:
                event = "reset"
                fh.write(json.dumps({"t": started, "event": "error", "error": type(exc).__name__}) + "\n")
                if sock is not None:
                    sock.close()
                sock = None
            fh.write(json.dumps({"t": started, "event": event}) + "\n")
            rest = every - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)


ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def vrrp(out: str, iface: str) -> None:
    # ETH_P_ALL, not ETH_P_IP: the tap is a bridge port, and the bridge takes every frame the VM
    # sends before protocol-specific packet sockets would see it (only ETH_P_ALL ones run first);
    # an ETH_P_IP socket here recorded nothing at all.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    with open(out, "a", buffering=1) as fh:
        while True:
            frame, addr = sock.recvfrom(2048)
            if addr[2] == PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue  # towards the VM (what it hears), or not IPv4
            ip = frame[14:]
            if len(ip) < 20 or ip[9] != 112:
                continue
            body = ip[(ip[0] & 0x0F) * 4:]
            if len(body) < 3:
                continue
            fh.write(json.dumps({"t": time.monotonic(), "src": socket.inet_ntoa(ip[12:16]), "vrid": body[1],
                                 "priority": body[2]}) + "\n")


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "relay":
        relay(argv[1], int(argv[2]))
    elif cmd == "serve":
        serve(argv[1], argv[2])
    elif cmd == "probe":
        for url in argv[2:]:
            for _ in range(int(argv[1])):
                ok, body = request(url, 2.0)
                print(json.dumps({"url": url, "ok": ok, "body": body}), flush=True)
    elif cmd == "hold":
        hold(argv[1], argv[2])
    elif cmd == "vrrp":
        vrrp(argv[1], argv[2])
    elif cmd == "loop":
        interval, timeout = 0.02, 0.2
        rest = argv[2:]
        if "--interval" in rest:
            i = rest.index("--interval")
            interval = float(rest[i + 1])
            del rest[i:i + 2]
        if "--timeout" in rest:
            i = rest.index("--timeout")
            timeout = float(rest[i + 1])
            del rest[i:i + 2]
        loop(argv[1], rest, interval, timeout)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
