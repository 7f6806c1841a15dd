"""pytest-testinfra against a lab node: every command runs inside the node's namespaces.

The backend enters the node's network and mount namespaces (nsenter into the
node's holder process), so testinfra sees the node as a host: its interfaces,
its listening sockets, its files at their real paths, its sysctls.

testinfra is a dev dependency; only tests import this module.
"""

from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend import base

from ha_ingress_lab.netns_lab import Lab
from ha_ingress_proxy.subproc import run


class LabNodeBackend(base.BaseBackend):
    NAME = "hilab"

    def __init__(self, prefix: list[str], hostname: str, **kwargs: Any) -> None:
        self.prefix = prefix
        super().__init__(hostname, **kwargs)

    def get_pytest_id(self) -> str:
        return f"hilab://{self.hostname}"

    @classmethod
    def get_hosts(cls, host: str, **kwargs: Any) -> list[str]:
        return [host]

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        # The project's run helper merges stderr into stdout; testinfra parses
        # stdout, so the command's stderr is dropped inside the node.
        proc = run([*self.prefix, "sh", "-c", f"exec 2>/dev/null\n{cmd}"], check=False, timeout=60)
        return self.result(proc.returncode, self.encode(cmd), proc.stdout or "", "")


def node_host(lab: Lab, node: str) -> testinfra.host.Host:
    """A testinfra Host for one proxy node of a running lab."""
    backend = LabNodeBackend(lab.enter(node), node)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
