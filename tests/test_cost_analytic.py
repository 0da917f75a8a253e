"""Analytic cost model: tables, scaling, counts against rtl_gen's trees, CLI, bad input."""

import collections
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from hypothesis import given
from hypothesis import strategies as st

import rtl_gen.arith
from inq_hw.cost import HOROWITZ_45NM, CostError, TechTableError, analyze, load_table
from inq_hw.cost.analytic import (
    _range_width,
    csd_digits,
    segment_tree_histogram,
    tree_width_histogram,
)
from inq_hw.cost.check import compare_rankings
from inq_hw.cost.tables import table_from_dict
from inq_hw.intmodel import IntModel, WeightLayer
from inq_hw.intmodel.package import load_package
from rtl_gen.generate import build_designs
from tests.conftest import Cli


def _rtl_adder_widths(model: IntModel, layer: str, baseline: str | None) -> list[int]:
    """Widths of the adders rtl_gen really builds, recorded while the unit elaborates."""
    (design,) = build_designs(model, unit=f"layer:{layer}", baseline=baseline)
    widths: list[int] = []
    combine = rtl_gen.arith._combine

    def record(*args: Any) -> Any:
        term = combine(*args)
        widths.append(Value.cast(term.value).shape().width)
        return term

    with mock.patch.object(rtl_gen.arith, "_combine", record):
        Fragment.get(design.component, None)
    return sorted(widths)


def test_adder_counts_match_the_trees_rtl_gen_builds(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    cost = analyze(model)
    for layer in cost.layers:
        if layer.kind not in ("conv2d", "linear"):
            continue
        built = _rtl_adder_widths(model, layer.name, None)
        counted = collections.Counter(layer.counts["adds_by_width"])
        assert collections.Counter(built) == counted, layer.name
        twin = _rtl_adder_widths(model, layer.name, "mult8")
        assert layer.designs["mult8"].adds == len(twin)
        assert layer.designs["mult8"].add_bits == sum(twin)


def test_energies_follow_the_table(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    cost = analyze(model)
    fc = next(layer for layer in cost.layers if layer.name == "classifier.fc")
    expected = sum(
        n * HOROWITZ_45NM.energy("int_add", w) for w, n in fc.counts["adds_by_width"].items()
    )
    assert fc.designs["shift-add"].energy_pj == pytest.approx(expected)
    assert fc.designs["shift-add"].mults == 0
    layer = model.layer("classifier.fc")
    assert isinstance(layer, WeightLayer) and layer.baseline_weights is not None
    mults = int(np.count_nonzero(layer.baseline_weights))
    assert fc.designs["mult8"].mults == mults
    assert fc.designs["fp32"].energy_pj == pytest.approx(layer.codes.size * (3.7 + 0.9))
    conv1 = cost.layers[0]
    assert conv1.positions == int(np.prod(model.layers[1].shape[1:]))
    assert conv1.counts["weights"] * conv1.counts["bits"] == conv1.designs["shift-add"].weight_bits
    ratios = cost.ratios("mult8")
    assert ratios["energy_pj"] > 1 and ratios["area_um2"] > 1  # type: ignore[operator]
    assert ratios["weight_bits"] == pytest.approx(8 / 4)
    doc = json.loads(json.dumps(cost.to_dict()))
    assert doc["sources"]["int_add"] and doc["ratios"]["fp32"]["weight_bits"] == pytest.approx(
        32 / 4
    )


def test_scaling_rules() -> None:
    table = HOROWITZ_45NM
    assert table.energy("int_add", 8) == pytest.approx(0.03)
    assert table.energy("int_add", 12) == pytest.approx(0.05 * 12 / 16)  # nearest: 16 bits
    assert table.area("int_add", 64) == pytest.approx(137 * 2)
    assert table.energy("int_mult", 8, 8) == pytest.approx(0.2)
    assert table.energy("int_mult", 8, 4) == pytest.approx(0.1)  # ∝ n·m
    assert table.area("fp_mult", 32) == 7700
    assert table.barrel_shifter(8, 8) == pytest.approx(8 * 3 * 1.862)  # n · log2 S muxes
    assert table.memory_read(64, 4 << 10)[0] == 10.0
    assert table.memory_read(64, 1 << 19)[0] == 100.0
    assert table.memory_read(64, 1 << 30)[0] == 1300.0
    with pytest.raises(CostError, match="fp_add at \\[16, 32\\] bits, not 64"):
        table.energy("fp_add", 64)


def test_user_table_round_trips_through_json_and_toml(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(HOROWITZ_45NM.to_dict()))
    table = load_table(path)
    assert table.energy("int_mult", 32, 32) == 3.1 and table.sources() == HOROWITZ_45NM.sources()
    figs = "\n".join(
        f"[[operations.{op}]]\nbits = {b}\nenergy_pj = 1.0\narea_um2 = 2.0\n"
        'capacity_bytes = 99999\nsource = "me"'
        for op, b in [
            ("int_add", 8), ("int_mult", 8), ("fp_add", 32), ("fp_mult", 32),
            ("mux2", 1), ("register", 1), ("sram_read", 64),
        ]
    )  # fmt: skip
    toml = tmp_path / "t.toml"
    toml.write_text(f'format = "inq-hw-tech"\nversion = 1\nname = "mine"\nnode_nm = 7\n{figs}\n')
    mine = load_table(toml)
    assert mine.name == "mine" and mine.energy("int_add", 16) == 2.0


def _corrupt(change: Any) -> dict[str, Any]:
    obj = json.loads(json.dumps(HOROWITZ_45NM.to_dict()))
    change(obj)
    return obj


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o["operations"].pop("int_mult"), "required operation 'int_mult'"),
        (lambda o: o["operations"]["int_add"][1].update(energy_pj=-1), r"int_add\[1\].energy_pj"),
        (lambda o: o["operations"]["fp_add"][0].pop("source"), r"fp_add\[0\].source"),
        (lambda o: o["operations"]["int_add"][0].update(bits="8"), "bits must be a positive"),
        (lambda o: o["operations"].update(int_div=[]), "unknown operation 'int_div'"),
        (lambda o: o.update(version=2), "format and version"),
        (lambda o: o["operations"]["sram_read"][0].pop("capacity_bytes"), "capacity_bytes"),
        (
            lambda o: (
                o["operations"]["mux2"][0].pop("energy_pj")
                and o["operations"]["mux2"][0].pop("area_um2")
            ),
            "needs energy_pj or area_um2",
        ),
    ],
)
def test_corrupted_table_is_refused(change: Any, message: str) -> None:
    with pytest.raises(TechTableError, match=message):
        table_from_dict(_corrupt(change), origin="t.json")


def test_unreadable_table_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TechTableError, match=r"bad\.json is not valid JSON"):
        load_table(bad)
    with pytest.raises(TechTableError, match="Cannot read"):
        load_table(tmp_path / "missing.toml")


def test_package_without_baseline_is_refused(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    layers = [
        dataclasses.replace(
            layer,
            baseline_weights=None,
            baseline_bias=None,
            baseline_exp=None,
            baseline_shift=None,
            baseline_acc_bits=None,
        )
        if isinstance(layer, WeightLayer)
        else layer
        for layer in model.layers
    ]
    with pytest.raises(CostError, match="no uniform baseline for layer"):
        analyze(IntModel(layers=tuple(layers), output=model.output))


def test_cli_analytic_writes_json(cli: Cli, tiny_package: Path, tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    code, text, err = cli("cost", str(tiny_package), "--out", str(out))
    assert code == 0, err
    assert "mult8 / shift-add" in text and "classifier.fc" in text and "energy_pj" in text
    # One direction for ratios (issue 20): twin ÷ shift-add, so the multiplier twin's larger
    # network energy shows as a ratio above 1.
    network = [line.split() for line in text.splitlines() if line.split()[:1] == ["network"]]
    energy = next(cells for cells in network if cells[1] == "energy_pj")
    assert float(energy[4]) == pytest.approx(float(energy[3]) / float(energy[2]), rel=1e-2)
    assert float(energy[4]) > 1
    doc = json.loads(out.read_text())
    assert doc["target"] == "analytic" and len(doc["layers"]) >= 4
    code, text, err = cli(
        "cost", str(tiny_package), "--baseline", "fp32", "--json", "--out", str(out)
    )
    assert code == 0, err and json.loads(text)["baseline"] == "fp32"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "asic"], "Target must be one of"),
        (["--target", "generic", "--baseline", "fp32"], "Baseline for target 'generic'"),
        (["--baseline", "mult4"], "Baseline for target 'analytic'"),
    ],
)
def test_cli_bad_options(cli: Cli, tiny_package: Path, args: list[str], message: str) -> None:
    code, _, err = cli("cost", str(tiny_package), *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli_corrupted_table(cli: Cli, tiny_package: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.json"
    table.write_text(
        json.dumps(_corrupt(lambda o: o["operations"]["int_add"][0].update(area_um2=0)))
    )
    code, _, err = cli("cost", str(tiny_package), "--tech", str(table))
    assert code == 2 and "int_add[0].area_um2 must be a positive number, not 0" in err


def test_compare_rankings() -> None:
    same = compare_rankings({"a": 1.0, "b": 4.0, "c": 9.0}, {"a": 10.0, "b": 40.0, "c": 90.0})
    assert same["same_ranking"] and same["spearman"] == pytest.approx(1.0)
    assert same["spread"] == pytest.approx(1.0)
    swapped = compare_rankings({"a": 1.0, "b": 4.0, "c": 9.0}, {"a": 90.0, "b": 40.0, "c": 10.0})
    assert not swapped["same_ranking"] and swapped["spearman"] == pytest.approx(-1.0)
    assert swapped["spread"] == pytest.approx(90.0 / (10.0 / 9.0))
    with pytest.raises(CostError, match="same layers"):
        compare_rankings({"a": 1.0}, {"b": 1.0})


def _fewest_signed_digits(limit: int, digits: int = 10) -> dict[int, int]:
    """Brute force: the fewest nonzero digits of any {-1, 0, 1} form of 0..limit."""
    best: dict[int, int] = {}
    for form in itertools.product((-1, 0, 1), repeat=digits):
        value = sum(d << i for i, d in enumerate(form))
        if 0 <= value <= limit:
            weight = sum(1 for d in form if d)
            best[value] = min(best.get(value, weight), weight)
    return best


def test_csd_digits_are_the_fewest_signed_digits() -> None:
    best = _fewest_signed_digits(256)
    values = np.arange(257)
    assert list(csd_digits(values)) == [best[v] for v in range(257)]
    assert list(csd_digits(np.array([-7, 7, 127, -128, 85]))) == [2, 2, 2, 1, 4]


def test_twin_constant_multipliers_are_priced_by_their_csd_digits(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    layer = model.layer("classifier.fc")
    assert isinstance(layer, WeightLayer) and layer.baseline_weights is not None
    w = layer.baseline_weights[layer.baseline_weights != 0]
    fc = next(c for c in analyze(model).layers if c.name == "classifier.fc")
    twin = fc.designs["mult8"]
    assert twin.mults == w.size and twin.mult_adds == int((csd_digits(w) - 1).sum())
    powers = dataclasses.replace(
        layer, baseline_weights=np.where(layer.baseline_weights != 0, 64, 0).astype(np.int8)
    )
    swapped = IntModel(
        layers=tuple(powers if x.name == layer.name else x for x in model.layers),
        output=model.output,
    )
    cheap = next(c for c in analyze(swapped).layers if c.name == "classifier.fc")
    assert cheap.designs["mult8"].mult_adds == 0  # a power of two is wiring
    assert cheap.designs["mult8"].area_um2 < twin.area_um2
    assert cheap.designs["mult8"].pe_mac_area_um2 == twin.pe_mac_area_um2  # runtime: n x m


@given(st.integers(-(2**45), 2**45), st.integers(0, 2**45))
def test_range_width_is_rtl_gens_range_shape(lo: int, span: int) -> None:
    width = _range_width(np.array([float(lo)]), np.array([float(lo + span)]))
    assert int(width[0]) == rtl_gen.arith.range_shape(lo, lo + span).width


@given(st.integers(0, 2**32 - 1))
def test_segment_trees_equal_term_by_term_trees(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, segments = 3, int(rng.integers(1, 7))
    length = rng.integers(0, 6, size=(rows, segments))
    shift = np.sort(rng.integers(0, 4, size=(rows, segments)), axis=1)
    positive = rng.random((rows, segments)) < 0.6
    base = rng.integers(0, 9, size=(rows, segments)) * np.ldexp(1.0, shift)
    lo = np.where(positive, base, -base - np.ldexp(1.0, shift))
    hi = np.where(positive, base + np.ldexp(1.0, shift), -base)
    n = length.sum(axis=1)
    m = max(int(n.max()), 1)
    expanded = [np.zeros((rows, m)) for _ in range(3)] + [np.zeros((rows, m), bool)]
    for r in range(rows):
        for i, values in enumerate((lo, hi, shift, positive)):
            expanded[i][r, : n[r]] = np.repeat(values[r], length[r])
    by_term = tree_width_histogram(
        expanded[0], expanded[1], n, expanded[2].astype(np.int64), expanded[3]
    )
    by_segment = segment_tree_histogram(length, lo, hi, shift, positive)
    assert list(np.trim_zeros(by_term, "b")) == list(np.trim_zeros(by_segment, "b"))
