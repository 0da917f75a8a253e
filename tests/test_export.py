"""Verilog export, manifests, identifiers and Verilator lint (rtl_gen.export, rtl_gen.names)."""

import json
import re
from pathlib import Path
from typing import Any

import amaranth
import pytest
from amaranth.hdl import Elaboratable, Fragment, Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from hypothesis import given
from hypothesis import strategies as st

from inq_hw.errors import InqHwError
from rtl_gen import export
from rtl_gen.export import (
    WAIVERS,
    Design,
    PortInfo,
    RTLError,
    export_design,
    load_manifest,
    verilator_lint,
    write_designs,
)
from rtl_gen.names import (
    MAX_IDENTIFIER_LENGTH,
    RESERVED_WORDS,
    is_verilog_identifier,
    verilog_identifier,
)

# --- designs under test -------------------------------------------------------------------


class SignedAdder(wiring.Component):
    """Combinational: ``y = x[0] + x[1] + x[2] + x[3]``."""

    def __init__(self) -> None:
        super().__init__({"x": In(data.ArrayLayout(signed(8), 4)), "y": Out(signed(10))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.y.eq(self.x[0] + self.x[1] + self.x[2] + self.x[3])
        return m


class RegisteredAdder(wiring.Component):
    """``y = a + b`` one clock later."""

    def __init__(self) -> None:
        super().__init__({"a": In(signed(8)), "b": In(signed(8)), "y": Out(signed(9))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.sync += self.y.eq(self.a + self.b)
        return m


class StreamAdder(wiring.Component):
    """Nested ports (streams) around a submodule: a registered, stalling adder."""

    def __init__(self) -> None:
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(signed(8), 4))),
                "o": Out(stream.Signature(signed(10))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.adder = adder = SignedAdder()
        m.d.comb += [adder.x.eq(self.i.payload), self.i.ready.eq(~self.o.valid | self.o.ready)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(adder.y), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


HASH = "ab" * 32


def _spare(elaboratable: Elaboratable) -> Any:
    """``elaboratable``, marked as used: a test that never exports it stays quiet."""
    Fragment.get(elaboratable, None)  # Amaranth warns (UnusedElaboratable) about unused ones
    return elaboratable


def _designs() -> list[Design]:
    """Fresh instances each call, so determinism is tested across elaborations."""
    return [
        Design("signed_adder", SignedAdder(), 0, {"inputs": 4, "bits": 8}, HASH),
        Design("registered_adder", RegisteredAdder(), 1, {"bits": 8}, None),
        Design("stream_adder", StreamAdder(), 1, {"inputs": 4}, HASH),
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("rtl")
    return out, write_designs(_designs(), out)


def _top(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    (top,) = [t for t in manifest["tops"] if t["name"] == name]
    return top


def _ports(top: dict[str, Any]) -> dict[str, tuple[str, int, bool, int]]:
    return {p["name"]: (p["direction"], p["width"], p["signed"], p["count"]) for p in top["ports"]}


def _module_header(text: str, name: str) -> list[str]:
    match = re.search(rf"^module {name}\(([^)]*)\);", text, re.M)
    assert match is not None, f"no module {name} in the Verilog"
    return [port.strip() for port in match[1].split(",")]


# --- files and manifest -------------------------------------------------------------------


def test_files_written(written: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = written
    names = ["signed_adder", "registered_adder", "stream_adder"]
    assert (out / "files.f").read_text() == "".join(f"{n}.v\n" for n in names)
    assert manifest["files"] == [f"{n}.v" for n in names]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for name in names:
        text = (out / f"{name}.v").read_text()
        assert _module_header(text, name)
        assert "src =" not in text  # emit_src=False: no host paths in the Verilog
    assert not list(out.glob(".*.tmp"))  # no atomic-write leftovers
    assert load_manifest(out).to_json() == manifest


def test_manifest_combinational_ports(written: tuple[Path, dict[str, Any]]) -> None:
    top = _top(written[1], "signed_adder")
    assert _ports(top) == {"x": ("in", 32, True, 4), "y": ("out", 10, True, 1)}
    assert top["latency"] == 0
    assert top["params"] == {"inputs": 4, "bits": 8}
    assert top["source_hash"] == HASH
    assert top["file"] == "signed_adder.v"
    assert top["ports"][0]["shape"] == "ArrayLayout(signed(8), 4)"


def test_manifest_clocked_ports(written: tuple[Path, dict[str, Any]]) -> None:
    top = _top(written[1], "registered_adder")
    assert [p["name"] for p in top["ports"]] == ["clk", "rst", "a", "b", "y"]
    assert _ports(top)["clk"] == ("in", 1, False, 1)
    assert _ports(top)["y"] == ("out", 9, True, 1)
    assert top["latency"] == 1
    assert top["source_hash"] is None


def test_manifest_nested_ports_match_verilog(written: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = written
    top = _top(manifest, "stream_adder")
    assert _ports(top) == {
        "clk": ("in", 1, False, 1),
        "rst": ("in", 1, False, 1),
        "i__payload": ("in", 32, True, 4),
        "i__valid": ("in", 1, False, 1),
        "i__ready": ("out", 1, False, 1),
        "o__payload": ("out", 10, True, 1),
        "o__valid": ("out", 1, False, 1),
        "o__ready": ("in", 1, False, 1),
    }
    header = _module_header((out / "stream_adder.v").read_text(), "stream_adder")
    assert sorted(header) == sorted(_ports(top))


def test_manifest_tools(written: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = written
    tools = manifest["tools"]
    assert tools["amaranth"] == amaranth.__version__
    assert "Yosys" in tools["yosys"]
    assert tools["yosys"] in (out / "signed_adder.v").read_text().splitlines()[0]
    assert manifest["format"] == "inq-hw-rtl"
    assert manifest["version"] == 1


def test_export_is_deterministic(tmp_path: Path) -> None:
    write_designs(_designs(), tmp_path / "first")
    write_designs(_designs(), tmp_path / "second")
    first = sorted(p.name for p in (tmp_path / "first").iterdir())
    assert first == sorted(p.name for p in (tmp_path / "second").iterdir())
    for name in first:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_export_design_returns_manifest(tmp_path: Path) -> None:
    manifest = export_design(Design("adder", SignedAdder(), 0), tmp_path)
    top = manifest.top("adder")
    assert top.port("x") == PortInfo("x", "in", 32, True, 4, "ArrayLayout(signed(8), 4)")
    assert manifest == load_manifest(tmp_path)


def test_rewrite_replaces_files(tmp_path: Path) -> None:
    write_designs([Design("adder", SignedAdder(), 0, {"run": 1})], tmp_path)
    write_designs([Design("adder", SignedAdder(), 0, {"run": 2})], tmp_path)
    assert load_manifest(tmp_path).top("adder").params == {"run": 2}


# --- names in the Verilog -----------------------------------------------------------------


def test_hostile_top_name_is_sanitised(tmp_path: Path) -> None:
    hostile = "fc.1; $finish"
    manifest = write_designs([Design(hostile, SignedAdder(), 0)], tmp_path)
    (top,) = manifest["tops"]
    name = top["name"]
    assert is_verilog_identifier(name)
    assert name == "fc_1_finish"
    assert top["requested"] == hostile
    assert top["file"] == f"{name}.v"
    text = (tmp_path / top["file"]).read_text()
    assert _module_header(text, name)
    assert "$finish" not in text
    assert "fc.1" not in text
    assert f"\\{name}" not in text  # the module is not an escaped identifier
    assert "\\fc" not in text
    assert load_manifest(tmp_path).top(hostile).name == name


def test_keyword_top_name_is_not_escaped(tmp_path: Path) -> None:
    manifest = write_designs([Design("reg", RegisteredAdder(), 1)], tmp_path)
    name = manifest["tops"][0]["name"]
    assert name == "reg_"
    assert "module reg_(" in (tmp_path / "reg_.v").read_text()


def test_colliding_names_get_distinct_tops(tmp_path: Path) -> None:
    designs = [Design("a.b", SignedAdder(), 0), Design("a_b", SignedAdder(), 0)]
    names = [top["name"] for top in write_designs(designs, tmp_path)["tops"]]
    assert names[0] == "a_b"
    assert names[1].startswith("a_b_")
    assert len(set(names)) == 2
    assert sorted(p.name for p in tmp_path.glob("*.v")) == sorted(f"{n}.v" for n in names)


def test_duplicate_requested_names_are_refused(tmp_path: Path) -> None:
    designs = [Design("adder", _spare(SignedAdder()), 0), Design("adder", _spare(SignedAdder()), 0)]
    with pytest.raises(ValueError, match=r"not \['adder'\] twice$"):
        write_designs(designs, tmp_path)
    with pytest.raises(ValueError, match=r"not \[\]$"):
        write_designs([], tmp_path)


class ZeroWidth(wiring.Component):
    def __init__(self) -> None:
        super().__init__({"x": In(0), "y": Out(1)})

    def elaborate(self, platform: object) -> Module:
        return Module()


class ReservedPort(wiring.Component):
    def __init__(self) -> None:
        super().__init__({"wire": In(1), "y": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.y.eq(self.wire)
        return m


@pytest.mark.parametrize(
    ("component", "message"), [(ZeroWidth, "has no bits"), (ReservedPort, "not 'wire'$")]
)
def test_inexpressible_ports_are_refused(
    tmp_path: Path, component: type[wiring.Component], message: str
) -> None:
    with pytest.raises(RTLError, match=message):
        export_design(Design("bad", _spare(component()), 0), tmp_path)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"top": ""}, ValueError, "not ''$"),
        ({"top": 3}, TypeError, "not 3$"),
        ({"top": "  "}, ValueError, "not '  '$"),
        (
            {"component": _spare(Module())},
            TypeError,
            "not <amaranth.hdl._dsl.Module object at 0x\\w+>$",
        ),
        ({"latency": -1}, ValueError, "not -1$"),
        ({"latency": True}, ValueError, "not True$"),
        ({"latency": 1.0}, ValueError, "not 1.0$"),
        ({"params": [1]}, TypeError, r"not \[1\]$"),
        ({"params": {"x": float("nan")}}, ValueError, r"not \{'x': nan\}$"),
        ({"params": {"x": object}}, TypeError, r"not \{'x': <class 'object'>\}$"),
        ({"source_hash": 5}, TypeError, "not 5$"),
    ],
)
def test_design_validation(kwargs: dict[str, Any], error: type, message: str) -> None:
    good: dict[str, Any] = {"top": "t", "component": _spare(SignedAdder()), "latency": 0}
    with pytest.raises(error, match=message):
        Design(**{**good, **kwargs})


def test_design_params_are_a_json_copy() -> None:
    params: dict[str, Any] = {"shape": (3, 4), "nested": {"a": [1]}}
    design = Design("t", _spare(SignedAdder()), 0, params)
    params["nested"]["a"].append(2)
    assert design.params == {"shape": [3, 4], "nested": {"a": [1]}}


# --- manifest checks ----------------------------------------------------------------------


def test_stale_manifest_is_detected(tmp_path: Path) -> None:
    write_designs([Design("adder", SignedAdder(), 0)], tmp_path)
    path = tmp_path / "adder.v"
    path.write_text(path.read_text().replace("endmodule", "endmodule\n// edited"))
    with pytest.raises(RTLError, match="differs from its manifest"):
        load_manifest(tmp_path)
    path.unlink()
    with pytest.raises(RTLError, match="missing"):
        load_manifest(tmp_path)


def test_foreign_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RTLError, match="Cannot read"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "inq-hw-rtl", "version": 99}))
    with pytest.raises(RTLError, match="version 1"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "inq-hw-rtl", "version": 1}))
    with pytest.raises(RTLError, match="Malformed"):
        load_manifest(tmp_path)


def test_rtl_error_is_a_project_error() -> None:
    assert issubclass(RTLError, InqHwError)


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("features.conv1", "features_conv1"),
        ("fc.1; $finish", "fc_1_finish"),
        ("already_legal_1", "already_legal_1"),
        ("_x", "_x"),
        ("Reg", "Reg"),  # keywords are lower case; Verilog is case-sensitive
        ("reg", "reg_"),
        ("std", "std_"),
        ("1x", "_1x"),
        ("café", "cafe"),
        ("$display", "display"),
        ("..a..b..", "a_b"),
    ],
)
def test_identifier_examples(name: str, expected: str) -> None:
    assert verilog_identifier(name) == expected


def test_identifier_truncation_and_empty() -> None:
    long = verilog_identifier("layer" * 40)
    assert len(long) == MAX_IDENTIFIER_LENGTH
    assert re.fullmatch(r"(layer)+\w*_[0-9a-f]{8}", long)
    assert long != verilog_identifier("layer" * 41)
    assert re.fullmatch(r"id_[0-9a-f]{8}", verilog_identifier("日本"))
    assert verilog_identifier("") != verilog_identifier("日本")
    assert len(verilog_identifier("x" * 100, max_length=16)) == 16


def test_identifier_taken() -> None:
    taken = {"conv"}
    first = verilog_identifier("conv", taken=taken)
    assert re.fullmatch(r"conv_[0-9a-f]{8}", first)
    assert verilog_identifier("CONV", taken=taken) != "CONV"  # file names may ignore case
    assert first in taken
    assert len(taken) == 3


def test_identifier_argument_errors() -> None:
    with pytest.raises(TypeError, match=r"not 3$"):
        verilog_identifier(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not 8$"):
        verilog_identifier("x", max_length=8)


@given(st.text())
def test_any_string_gives_a_legal_identifier(name: str) -> None:
    result = verilog_identifier(name)
    assert is_verilog_identifier(result)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", result)
    assert result not in RESERVED_WORDS
    assert not result.startswith("$")
    assert len(result) <= MAX_IDENTIFIER_LENGTH
    assert verilog_identifier(name) == result  # deterministic


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,63}", fullmatch=True))
def test_legal_identifiers_are_kept(name: str) -> None:
    if name not in RESERVED_WORDS:
        assert verilog_identifier(name) == name


@given(st.lists(st.text(max_size=80), unique=True, max_size=40))
def test_shared_taken_never_collides(names: list[str]) -> None:
    taken: set[str] = set()
    results = [verilog_identifier(name, taken=taken) for name in names]
    assert len({r.lower() for r in results}) == len(names)
    assert taken == set(results)
    assert all(is_verilog_identifier(r) for r in results)
    again: set[str] = set()
    assert [verilog_identifier(name, taken=again) for name in names] == results


# --- Verilator lint -----------------------------------------------------------------------


@pytest.mark.hw
@pytest.mark.parametrize("name", ["signed_adder", "registered_adder", "stream_adder"])
def test_lint_clean(written: tuple[Path, dict[str, Any]], name: str) -> None:
    out, manifest = written
    assert verilator_lint([out / _top(manifest, name)["file"]], name) == []
    # The whole file list at once, as a simulator would read it.
    assert verilator_lint([out / f for f in manifest["files"]], name) == []


@pytest.mark.hw
def test_lint_hostile_name_clean(tmp_path: Path) -> None:
    top = write_designs([Design("fc.1; $finish", RegisteredAdder(), 1)], tmp_path)["tops"][0]
    assert verilator_lint([tmp_path / top["file"]], top["name"]) == []


@pytest.mark.hw
def test_every_waiver_is_needed(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Units and a small dataflow top (whose engines' counters bring CASEINCOMPLETE)."""
    from rtl_gen.dataflow import dataflow_design
    from tests.test_dataflow import small_cnn

    out, manifest = written
    flow = write_designs([dataflow_design(small_cnn(), folding={"c1": 3})], tmp_path)
    checked = [(out, top) for top in manifest["tops"]] + [(tmp_path, flow["tops"][0])]
    fired = set()
    for directory, top in checked:
        warnings = verilator_lint([directory / top["file"]], top["name"], waivers={})
        fired |= {re.match(r"%Warning-(\w+):", w)[1] for w in warnings}  # type: ignore[index]
    assert fired == set(WAIVERS)


HAND_WRITTEN = """\
module hand(input wire a, input wire b, output wire y);
  wire spare;
  assign spare = b;
  assign y = a;
endmodule
"""


@pytest.mark.hw
def test_lint_reports_unused_signal(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "hand.v"
    path.write_text(HAND_WRITTEN)
    warnings = verilator_lint([path], "hand")
    assert any(w.startswith("%Warning-UNUSEDSIGNAL:") and "'spare'" in w for w in warnings)
    # Waivers cover the generated files only, even when linted together with this one.
    out = written[0]
    together = verilator_lint([out / "signed_adder.v", path], "hand")
    assert together == warnings


@pytest.mark.hw
def test_sanitised_keywords_lint_clean(tmp_path: Path) -> None:
    names = sorted(verilog_identifier(word) for word in RESERVED_WORDS)
    ports = ", ".join(f"input wire {n}" for n in names)
    path = tmp_path / "keywords.v"
    parity = ", ".join(names)
    path.write_text(
        f"module keywords({ports}, output wire y);\n  assign y = ^{{{parity}}};\nendmodule\n"
    )
    assert verilator_lint([path], "keywords") == []


@pytest.mark.hw
def test_lint_errors_raise(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out = written[0]
    with pytest.raises(RTLError, match="no_such_top"):
        verilator_lint([out / "signed_adder.v"], "no_such_top")
    broken = tmp_path / "broken.v"
    broken.write_text("module broken(input wire a\nendmodule\n")
    with pytest.raises(RTLError, match="%Error"):
        verilator_lint([broken], "broken")
    with pytest.raises(RTLError, match="not found"):
        verilator_lint([tmp_path / "absent.v"], "absent")


def test_missing_verilator_is_reported(
    written: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    monkeypatch.setattr(export, "_bundled_verilator_root", lambda: None)
    with pytest.raises(RTLError, match="Verilator not found"):
        verilator_lint([written[0] / "signed_adder.v"], "signed_adder")
