"""A node root for the agent: the rendered example tree of the build, plus helpers to add inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import pytest

from ha_ingress_proxy import inventory, render
from ha_ingress_proxy.agent import apply as agent_apply

from ..conftest import EXAMPLES

PASSWORD = "correct-horse-battery"


class NodeRoot:
    """A directory laid out like a freshly booted node from the image (rendered tree, no role yet)."""

    def __init__(self, path: Path, mode: str = "active-active", site: Optional[inventory.Site] = None) -> None:
        self.path = path
        self.site = site or inventory.load(EXAMPLES / f"{mode}.yaml")
        # the image carries one node's full tree; the role-dependent files get re-rendered at boot
        path.mkdir(parents=True, exist_ok=True)  # write_tree writes below an existing root
        render.write_tree(render.render_node(self.site, self.site.nodes[0].name), path)
        (path / "proc").mkdir()
        self.addresses: list[tuple[str, str]] = []
        # the stats password as the image's user-data delivers it (write_files, root-only)
        self.secrets(f"HAPROXY_STATS_PASSWORD={PASSWORD}\n")

    def cmdline(self, text: str) -> None:
        (self.path / "proc/cmdline").write_text(text + "\n")

    def instance_data(self, meta: Any = None, *, data: Optional[dict] = None, sensitive: bool = False, mode: Optional[int] = None) -> Path:
        """cloud-init's instance data: the world-readable copy (0644), or the root-only one (0600) with sensitive=True."""
        doc = data if data is not None else {"v1": {"cloud_name": "nocloud", "platform": "nocloud"}, "ds": {"meta_data": meta}}
        name = "instance-data-sensitive.json" if sensitive else "instance-data.json"
        path = self.path / "run/cloud-init" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        os.chmod(path, mode if mode is not None else (0o600 if sensitive else 0o644))
        return path

    def no_secrets(self) -> None:
        self.file("etc/ha-ingress-proxy/secrets.env").unlink()

    def node_file(self, text: str, mode: int = 0o600, uid: int = 0) -> Path:
        path = self.path / "etc/ha-ingress-proxy/node.yaml"
        path.write_text(text)
        os.chmod(path, mode)
        os.chown(path, uid, 0)
        return path

    def secrets(self, text: str, mode: int = 0o600) -> Path:
        path = self.path / "etc/ha-ingress-proxy/secrets.env"
        path.write_text(text)
        os.chmod(path, mode)
        return path

    def apply(self) -> agent_apply.Outcome:
        return agent_apply.apply(self.path, addresses=list(self.addresses))

    def state(self) -> dict:
        return json.loads((self.path / "run/ha-ingress-proxy/state.json").read_text())

    def file(self, rel: str) -> Path:
        return self.path / rel


@pytest.fixture
def node_root(tmp_path) -> NodeRoot:
    return NodeRoot(tmp_path / "root")


@pytest.fixture
def passive_root(tmp_path) -> NodeRoot:
    return NodeRoot(tmp_path / "root", mode="active-passive")

