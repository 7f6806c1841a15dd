"""docs/clusters.md shows the ingress-nginx inventory an operator uses: it must be examples/ingress-nginx.yaml,
word for word, and that file must load."""

from __future__ import annotations

from ha_ingress_proxy import inventory

from ..conftest import EXAMPLES, ROOT


def test_the_documented_ingress_nginx_inventory_is_the_example():
    example = (EXAMPLES / "ingress-nginx.yaml").read_text()
    body = example[example.index("schema_version"):]
    page = (ROOT / "docs" / "clusters.md").read_text()
    section = page[page.index("### The ingress side (ingress-nginx)"):page.index("### Pitfalls")]
    assert f"```yaml\n{body}```" in section, "docs/clusters.md's inventory snippet differs from examples/ingress-nginx.yaml"
    site = inventory.load(EXAMPLES / "ingress-nginx.yaml")
    assert site.health.type == "http" and site.health.port == 10254
    assert all(c.proxy_protocol for c in site.clusters)
