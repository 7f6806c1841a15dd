"""The state file: one dataclass written by apply and read back by status; a bad file is one line, exit 1."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ha_ingress_proxy import cli, layout
from ha_ingress_proxy.agent import state
from ha_ingress_proxy.agent.state import State, StateError


# The keys docs/agent.md promises (and scripts may read): extended, never renamed.
DOCUMENTED = {
    "ok", "result", "reason", "site", "mode", "node", "role", "address", "vips", "vips_source",
    "masters", "source", "where", "overrides", "address_check", "password_source", "warnings",
    "stats_bind", "stats_cert", "stats_cert_source", "stats_cert_sha256",
}
WHERE = layout.shown(layout.STATE_FILE)


def _applied(node_root) -> State:
    node_root.instance_data({"ha_ingress_role": "backup"})
    out = node_root.apply()
    assert out.ok, out.state
    return out.state


def test_apply_writes_what_status_reads(node_root):
    written = _applied(node_root)
    assert state.read(node_root.path) == written
    data = node_root.state()
    assert set(data) == DOCUMENTED | {"schema_version"}
    assert data["schema_version"] == state.SCHEMA_VERSION
    assert (data["node"], data["role"], data["vips"], data["masters"]) == ("proxy-2", "backup", ["192.168.1.10", "192.168.1.12"], ["192.168.1.12"])
    assert (node_root.path / layout.STATE_FILE).read_bytes() == state.to_bytes(written)


def test_a_refusal_has_the_same_keys(node_root):
    node_root.instance_data({"ha_ingress_node": "proxy-9"})
    out = node_root.apply()
    data = node_root.state()
    assert set(data) == DOCUMENTED | {"schema_version"}
    assert (data["ok"], data["result"], data["site"], data["node"], data["vips"]) == (False, "refused", "dc1-ingress", None, [])
    assert state.read(node_root.path) == out.state


def test_no_state_file_is_not_applied(node_root):
    assert state.read(node_root.path) is None


def test_every_field_round_trips():
    """Each field's type has a reader (a new field of a new type fails here, not on a node)."""
    sample = State(
        ok=True, result=state.APPLIED, reason=None, site="s", mode="active-active", node="n", address="10.0.0.1",
        role="master", vips=("10.0.0.10",), vips_source="site model", masters=("10.0.0.10",), source="x", where="y",
        overrides=("o",), address_check="c", password_source="p", warnings=("w",),
        stats_bind="127.0.0.1:8888", stats_cert="/c", stats_cert_source="delivered", stats_cert_sha256="AA",
    )
    unset = [f.name for f in dataclasses.fields(State) if getattr(sample, f.name) in (None, ())]
    assert unset == ["reason"], "give every field a value here"
    assert state.from_dict(json.loads(state.to_bytes(sample)), "t") == sample


def _good(**change) -> dict:
    data = State(ok=True, result="applied", reason=None, site="dc1-ingress", vips=("192.168.1.10",)).to_dict()
    data.update(change)
    return data


BAD = [
    ("garbled", b"\xff\xfe{", f"{WHERE}: not UTF-8 (byte 0)"),
    ("truncated", b'{"ok": true, "res', f"{WHERE}: not valid JSON (Unterminated string starting at: line 1 column 14 (char 13))"),
    ("empty", b"", f"{WHERE}: not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ("a list", b"[1, 2]", f"{WHERE}: not a JSON object"),
    ("an older agent's file", json.dumps({k: v for k, v in _good().items() if k != "schema_version"}).encode(),
     f"{WHERE}: no schema_version, this agent reads schema_version 1; run `ha-ingress-proxy apply` to write it again"),
    ("a newer schema", json.dumps(_good(schema_version=2)).encode(),
     f"{WHERE}: schema_version 2, this agent reads schema_version 1; run `ha-ingress-proxy apply` to write it again"),
    ("schema as text", json.dumps(_good(schema_version="1")).encode(),
     f'{WHERE}: schema_version "1", this agent reads schema_version 1; run `ha-ingress-proxy apply` to write it again'),
    ("unknown key", json.dumps(_good(colour="red")).encode(), f"{WHERE}: colour: unknown key (known: {', '.join(sorted(f.name for f in dataclasses.fields(State)))})"),
    ("missing key", json.dumps({k: v for k, v in _good().items() if k != "site"}).encode(), f"{WHERE}: site: missing"),
    ("vips as a string", json.dumps(_good(vips="192.168.1.10")).encode(), f'{WHERE}: vips: "192.168.1.10" is not a list of str'),
    ("ok as text", json.dumps(_good(ok="yes")).encode(), f'{WHERE}: ok: "yes" is not true or false'),
    ("ok without applied", json.dumps(_good(ok=False)).encode(), f'{WHERE}: ok false with result "applied": not a state apply writes'),
]


@pytest.mark.parametrize("content, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_status_on_a_bad_state_file_is_one_line(node_root, tmp_path, capsys, content, message, as_json):
    path = node_root.path / layout.STATE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(StateError) as exc:
        state.read(node_root.path)
    assert exc.value.lines == [message]
    ip = tmp_path / "ip.json"
    ip.write_text("[]")
    argv = ["status", "--root", str(node_root.path), "--ip-addr-json", str(ip), *(["--json"] if as_json else [])]
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"ha-ingress-proxy: {message}\n"


def test_status_on_an_unreadable_state_path_is_one_line(node_root, tmp_path, capsys):
    (node_root.path / layout.STATE_FILE).mkdir(parents=True)  # a directory where the file should be
    ip = tmp_path / "ip.json"
    ip.write_text("[]")
    assert cli.main(["status", "--root", str(node_root.path), "--ip-addr-json", str(ip)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"ha-ingress-proxy: {WHERE}: is a directory, not a regular file; refusing to read it\n")


def test_apply_rewrites_a_bad_state_file(node_root, tmp_path, capsys):
    path = node_root.path / layout.STATE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    written = _applied(node_root)
    assert state.read(node_root.path) == written
