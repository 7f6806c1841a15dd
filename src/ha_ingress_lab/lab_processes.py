"""The lab's own small processes: a cluster endpoint and a client probe loop.

Run inside a lab network namespace (started by netns_lab.py through subproc.start):

    python -m ha_ingress_lab.lab_processes serve NAME ADDR [--http 80] [--tcp 443]
        HTTP on --http answers 200 with body "NAME\\n" (and X-Cluster: NAME);
        --tcp writes "NAME\\n" and closes (plain TCP, what the tier passes through).

    python -m ha_ingress_lab.lab_processes probe --out FILE TARGET...
        TARGET is ADDR:PORT:http or ADDR:PORT:tcp. Every --interval seconds
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
import signal
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


async def _one(target: str, timeout: float) -> list:
    host, port, kind = target.rsplit(":", 2)
    t0 = time.monotonic()
    status, cluster, ok = 0, "", False
    writer = None
    try:
        async def exchange() -> tuple[int, str]:
            nonlocal writer
            reader, writer = await asyncio.open_connection(host, int(port))
            if kind == "http":
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
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
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
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.name, args.addr, args.http, args.tcp)
    else:
        probe(args.targets, args.out, args.interval, args.timeout)


if __name__ == "__main__":
    main()
