"""docs/inventory.md's key reference is generated from the inventory model and must be current."""

from __future__ import annotations

import dataclasses

import pytest

from ha_ingress_build import inventory_doc
from ha_ingress_proxy import inventory
from ha_ingress_proxy.errors import UserError

from ..conftest import ROOT

PAGE = ROOT / "docs" / "inventory.md"


def test_key_reference_is_current():
    text = PAGE.read_text()
    assert inventory_doc.updated(text) == text, "docs/inventory.md's key reference is stale: run ./invokew docs"


def test_every_model_field_is_a_documented_key():
    paths = [path for path, _ in inventory.declared_keys()]
    assert len(paths) == len(set(paths))
    reference = inventory_doc.key_reference()
    for path, spec in inventory.declared_keys():
        assert f"| `{path}` |" in reference
        assert spec.doc and "|" not in spec.doc and "\n" not in spec.doc
    # every field of every model class is declared (the loader reads nothing else)
    models = {inventory.Site} | {spec.model for _, spec in inventory.declared_keys() if spec.model}
    for model in models:
        assert set(inventory.declared(model)) == {f.name for f in dataclasses.fields(model)}


def test_a_new_field_is_a_new_key(tmp_path, example_text):
    """Adding a key is one declaration: the loader checks it, defaults it and builds it, and the doc lists it."""

    @dataclasses.dataclass(frozen=True)
    class Extra:
        level: int = inventory.key(inventory._int_range(1, 9), "how much", 3)

    fields = [(f.name, f.type, f) for f in dataclasses.fields(inventory.Site)]
    fields.append(("extra", "Extra", inventory.section(Extra, "an extra section")))
    site_model = dataclasses.make_dataclass("Site", fields, frozen=True)
    paths = [path for path, _ in inventory.declared_keys(site_model)]
    assert paths[-2:] == ["extra", "extra.level"]

    import yaml

    data = yaml.safe_load(example_text())
    c = inventory._Collector()
    values = inventory._mapping(c, {**data, "extra": {"level": 12}}, "", site_model)
    assert c.problems == [("extra.level", "12 is not an integer in 1-9")]
    c = inventory._Collector()
    values = inventory._mapping(c, data, "", site_model)
    assert not c.problems and values["extra"] == {"level": 3}


def test_a_page_without_markers_is_refused():
    with pytest.raises(UserError):
        inventory_doc.updated("# no table here\n")
