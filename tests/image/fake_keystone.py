"""A fake OpenStack Keystone (v3 password auth only) for `packer validate` of the openstack source.

Packer 1.6.6 authenticates while validating the openstack source. The tests run this
server and packer inside a network namespace of their own that has only a loopback
interface, so nothing leaves it. It answers every POST .../auth/tokens with a token and
a catalog that points compute and image back at itself, and exits after `--seconds`.

usage: python3 fake_keystone.py PORT [--seconds N]
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


def catalog(base: str) -> list[dict]:
    def svc(kind: str, name: str, url: str) -> dict:
        return {"type": kind, "name": name, "id": name,
                "endpoints": [{"id": f"{name}-{i}", "interface": i, "region": "RegionFake",
                               "region_id": "RegionFake", "url": url}
                              for i in ("public", "internal", "admin")]}
    return [svc("identity", "keystone", f"{base}/v3"), svc("compute", "nova", f"{base}/compute/v2.1"),
            svc("image", "glance", f"{base}/image"), svc("network", "neutron", f"{base}/network")]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write("fake-keystone: " + fmt % args + "\n")

    def _json(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/auth/tokens"):
            self._json(404, {"error": {"code": 404, "message": "fake keystone: not here"}})
            return
        base = f"http://{self.headers.get('Host')}"
        token = {"token": {"methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
                           "issued_at": "2024-01-01T00:00:00.000000Z",
                           "user": {"id": "fake", "name": "fake", "domain": {"id": "default", "name": "Default"}},
                           "project": {"id": "fake", "name": "fake", "domain": {"id": "default", "name": "Default"}},
                           "catalog": catalog(base)}}
        self._json(201, token, {"X-Subject-Token": "fake-token"})

    def do_GET(self) -> None:  # noqa: N802
        base = f"http://{self.headers.get('Host')}"
        self._json(200, {"version": {"id": "v3.14", "status": "stable",
                                     "links": [{"rel": "self", "href": f"{base}/v3/"}]}})


def main() -> None:
    port = int(sys.argv[1])
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 120.0
    server = HTTPServer(("127.0.0.1", port), Handler)
    threading.Timer(seconds, server.shutdown).start()
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
