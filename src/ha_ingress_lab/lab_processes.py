"""The lab's own small processes: a cluster endpoint and a client probe loop.

Run inside a lab network namespace (started by netns_lab.py through subproc.start):

    python -m ha_ingress_lab.lab_processes serve NAME ADDR [--http 80] [--tcp 443]
        HTTP on --http answers 200 with body "NAME\\n" (and X-Cluster: NAME);
        --tcp writes "NAME\\n" and closes (plain TCP, what the tier passes through);
        a client that sends "HOLD\\n" first gets "NAME\\n" and then an echo of
        every line until it closes (a long-lived stream, as TLS passthrough is).

    python -m ha_ingress_lab.lab_processes hold --out FILE --http ADDR:PORT --tcp ADDR:PORT
        Two long-lived connections held open through the tier: an HTTP/1.1
        keep-alive client (a GET every --interval on one connection) and a TCP
        stream (HOLD, then a line echoed every --interval; with --tls, for the
        lab's nginx clusters, an HTTPS keep-alive connection instead). A broken connection
        (reset, EOF mid-exchange, no answer within --timeout) is a reset; a clean
        close (`Connection: close` on a response, or EOF while idle) is not. Either
        way it reconnects. On SIGTERM it writes
        {"http": {...}, "tcp": {...}} with counts and the reset times to FILE.

    python -m ha_ingress_lab.lab_processes probe --out FILE TARGET...
        TARGET is ADDR:PORT:http, ADDR:PORT:https (TLS, no verification) or ADDR:PORT:tcp. Every --interval seconds
        (default 0.02) one request is started to every target, independent of
        the ones still running, each with a --timeout (default 0.3 s). On
        SIGTERM/SIGINT it writes every result to FILE as JSON:
        [[t_start, t_end, target, ok, status, cluster], ...] where the times are
        CLOCK_MONOTONIC seconds (shared by every namespace on the host).

Standard library only: it runs with whatever python3 started the lab.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import signal
import ssl
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(name: str, addr: str, http_port: int, tcp_port: int) -> None:
    body = f"{name}\n".encode()

    class Http(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Cluster", name)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # quiet
            pass

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(body)
            # A held stream says HOLD first; the probe says nothing and reads to EOF.
            ready, _, _ = select.select([self.request], [], [], 0.01)
            if not ready:
                return
            first = self.request.recv(5)
            if first != b"HOLD\n":
                return
            while True:
                data = self.request.recv(4096)
                if not data:
                    return
                self.request.sendall(data)

    class TcpServer(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    servers = []
    if http_port:
        servers.append(ThreadingHTTPServer((addr, http_port), Http))
    if tcp_port:
        servers.append(TcpServer((addr, tcp_port), Tcp))
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {name} on {addr} http:{http_port} tcp:{tcp_port}", flush=True)
    servers[0].serve_forever()


_TLS: list = []


def _tls_context() -> ssl.SSLContext:
    """One client context for every probe (no CA store to load: the lab's ingress certificate is self-signed)."""
    if not _TLS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _TLS.append(ctx)
    return _TLS[0]


async def _one(target: str, timeout: float) -> list:
    host, port, kind = target.rsplit(":", 2)
    t0 = time.monotonic()
    status, cluster, ok = 0, "", False
    writer = None
    try:
        async def exchange() -> tuple[int, str]:
            nonlocal writer
            tls = _tls_context() if kind == "https" else None
            reader, writer = await asyncio.open_connection(host, int(port), ssl=tls)
            if kind in ("http", "https"):
                writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = await reader.read(-1)
                head, _, payload = data.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].split()
                code = int(line[1]) if len(line) > 1 else 0
                return code, payload.decode(errors="replace").strip()
            data = await reader.read(-1)
            text = data.decode(errors="replace").strip()
            return (200 if text else 0), text

        status, cluster = await asyncio.wait_for(exchange(), timeout)
        ok = status == 200
    except (OSError, asyncio.TimeoutError, ValueError, IndexError, ssl.SSLError):
        pass
    finally:
        if writer is not None:
            writer.close()
    return [t0, time.monotonic(), target, ok, status, cluster]


async def _probe(targets: list[str], interval: float, timeout: float, stop: asyncio.Event) -> list:
    results: list = []
    tasks: set = set()
    next_tick = time.monotonic()
    while not stop.is_set():
        for target in targets:
            task = asyncio.ensure_future(_one(target, timeout))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), results.append(t.result())))
        next_tick += interval
        delay = next_tick - time.monotonic()
        if delay < 0:
            next_tick = time.monotonic()
            delay = 0
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout + 1)
    return results


def probe(targets: list[str], out: str, interval: float, timeout: float) -> None:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    results = loop.run_until_complete(_probe(targets, interval, timeout, stop))
    results.sort(key=lambda r: r[0])
    with open(out, "w") as fh:
        json.dump(results, fh)


class _Held:
    """Counts for one held connection kind."""

    def __init__(self) -> None:
        self.exchanges = 0
        self.connections = 0
        self.clean_closes = 0
        self.resets: list[float] = []
        self.errors: list[str] = []

    def reset(self, why: str) -> None:
        self.resets.append(time.monotonic())
        if len(self.errors) < 20:
            self.errors.append(why)

    def report(self) -> dict:
        return {"exchanges": self.exchanges, "connections": self.connections, "clean_closes": self.clean_closes,
                "resets": len(self.resets), "reset_times": self.resets, "errors": self.errors}


def _idle_closed(sock: socket.socket) -> bool:
    """True when the peer closed the connection while it was idle (EOF waiting, nothing sent yet)."""
    ready, _, _ = select.select([sock], [], [], 0)
    if not ready:
        return False
    try:
        if isinstance(sock, ssl.SSLSocket):
            # TLS: readable may be a record that is no data (a TLS 1.3 session ticket); MSG_PEEK is not allowed.
            sock.settimeout(0.01)
            return sock.recv(1) == b""
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (socket.timeout, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def _hold(kind: str, connect, exchange, interval: float, stop: threading.Event, st: _Held,
          errors: tuple[type[BaseException], ...] = (OSError, ConnectionError)) -> None:
    """Keep one connection open until stopped: connect when there is none, then one exchange per
    interval. exchange(sock) returns the socket to go on with (None: it was closed cleanly); a
    failure is counted as a reset and the next round connects again."""
    sock = None
    while not stop.is_set():
        try:
            if sock is None:
                sock = connect()
                st.connections += 1
            sock = exchange(sock)
        except errors as exc:
            st.reset(f"{kind}: {type(exc).__name__}: {exc}")
            if sock is not None:
                sock.close()
            sock = None
        stop.wait(interval)
    if sock is not None:
        sock.close()


def _hold_http(host: str, port: int, interval: float, timeout: float, stop: threading.Event, st: _Held,
               tls: bool = False) -> None:
    """An HTTP/1.1 keep-alive connection (tls: HTTPS, the lab's nginx ending the TLS the tier passes through)."""

    def connect():
        sock = socket.create_connection((host, port), timeout=timeout)
        return _tls_context().wrap_socket(sock) if tls else sock

    def exchange(sock):
        if _idle_closed(sock):  # closed by the server between requests: a clean close, connect again now
            st.clean_closes += 1
            sock.close()
            sock = connect()
            st.connections += 1
        sock.settimeout(timeout)
        sock.sendall(f"GET /held HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("EOF before the response headers")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        headers = head.decode(errors="replace").lower()
        length = 0
        for line in headers.split("\r\n")[1:]:
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        while len(rest) < length:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("EOF in the response body")
            rest += chunk
        if not head.split(b" ", 2)[1:2] == [b"200"]:
            raise ConnectionError(f"status {head.split(b' ', 2)[1:2]}")
        st.exchanges += 1
        if "\r\nconnection: close" in headers:
            st.clean_closes += 1
            sock.close()
            return None
        return sock

    _hold("http", connect, exchange, interval, stop, st, (OSError, ConnectionError, ValueError, IndexError))


def _hold_tcp(host: str, port: int, interval: float, timeout: float, stop: threading.Event, st: _Held) -> None:
    """A TCP connection to the lab's echo server: a greeting, then one echoed line per interval."""
    sent = 0
    greeted = None  # the socket the greeting was read on

    def connect():
        return socket.create_connection((host, port), timeout=timeout)

    def exchange(sock):
        nonlocal sent, greeted
        if greeted is not sock:
            sock.sendall(b"HOLD\n")
            name = b""
            while not name.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    raise ConnectionError("EOF before the greeting")
                name += chunk
            greeted = sock
        sent += 1
        line = f"ping {sent}\n".encode()
        sock.settimeout(timeout)
        sock.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionError("EOF waiting for the echo")
            got += chunk
        if got != line:
            raise ConnectionError(f"echo {got!r} != {line!r}")
        st.exchanges += 1
        return sock

    _hold("tcp", connect, exchange, interval, stop, st)


def _hold_https(host: str, port: int, interval: float, timeout: float, stop: threading.Event, st: _Held) -> None:
    _hold_http(host, port, interval, timeout, stop, st, tls=True)


def hold(http: str, tcp: str, out: str, interval: float, timeout: float, tls: bool = False) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats = {"http": _Held(), "tcp": _Held()}
    threads = []
    for kind, target, fn in (("http", http, _hold_http), ("tcp", tcp, _hold_https if tls else _hold_tcp)):
        if target:
            host, port = target.rsplit(":", 1)
            t = threading.Thread(target=fn, args=(host, int(port), interval, timeout, stop, stats[kind]), daemon=True)
            t.start()
            threads.append(t)
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(timeout + 2)
    with open(out, "w") as fh:
        json.dump({k: v.report() for k, v in stats.items()}, fh)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ha_ingress_lab.lab_processes")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("name")
    s.add_argument("addr")
    s.add_argument("--http", type=int, default=80)
    s.add_argument("--tcp", type=int, default=443)
    p = sub.add_parser("probe")
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--timeout", type=float, default=0.3)
    p.add_argument("targets", nargs="+")
    h = sub.add_parser("hold")
    h.add_argument("--out", required=True)
    h.add_argument("--http", default="")
    h.add_argument("--tcp", default="")
    h.add_argument("--interval", type=float, default=0.05)
    h.add_argument("--timeout", type=float, default=1.0)
    h.add_argument("--tls", action="store_true", help="the --tcp stream is HTTPS keep-alive (the lab's nginx clusters)")
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.name, args.addr, args.http, args.tcp)
    elif args.cmd == "hold":
        hold(args.http, args.tcp, args.out, args.interval, args.timeout, args.tls)
    else:
        probe(args.targets, args.out, args.interval, args.timeout)


if __name__ == "__main__":
    main()
