# amaranth: UnusedElaboratable=no
"""Shared adder graphs: what the search shares, bit-exact units, depth limit, exact counts,
the formal proof, and the ``generate --matrix`` entry point with its rejections."""

import collections
import json
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value

import rtl_gen.arith
from inq_hw.cost import analyze
from inq_hw.intmodel.arith import ActFormat
from inq_hw.intmodel.package import load_package
from rtl_gen import adder_graph as ag
from rtl_gen.generate import build_designs
from rtl_gen.units import ConstDotUnit, Requant
from tests.conftest import Cli
from tests.test_rtl_units import CASES, case_mismatches, po2_matrix

S8, U8 = ActFormat(8, True, 0), ActFormat(8, False, 0)


def _evaluate(graph: ag.AdderGraph, x: list[int]) -> list[int]:
    """The graph's outputs in Python ints (no hardware)."""
    values = list(x)
    for node in graph.nodes:
        b = values[node.b] << node.shift
        values.append(values[node.a] - b if node.subtract else values[node.a] + b)
    return [
        sum((-1 if t.negated else 1) * (values[t.operand] << t.shift) for t in terms)
        for terms in graph.outputs
    ]


def test_recurring_pairs_are_shared_once() -> None:
    # x0 + 2·x1 in all three rows, ±4·(x2 - x3) in the first two
    w = np.array([[1, 2, 4, -4], [1, 2, -4, 4], [2, 4, 0, 8]])
    graph = ag.optimise(w, lo=-128, hi=127)
    assert graph.nodes == [
        ag.GraphNode(0, 1, 1, False, -384, 381, 1),
        ag.GraphNode(2, 3, 0, True, -255, 255, 1),
    ]
    assert graph.adders([0, 0, 0]) == 2 + 3  # two shared, then one per row (tree: 8)
    for x in ([1, 2, 3, 4], [-128, 127, -128, 127], [127, -128, 127, -128]):
        assert _evaluate(graph, x) == (w @ np.array(x)).tolist()


def test_nothing_to_share_chooses_nothing() -> None:
    """Every pair of terms occurs in one output only: no node, one tree's worth of adders."""
    w = np.array([[1, 2, 0, 0, 0, 0], [0, 0, 1, -4, 0, 0], [0, 0, 0, 0, 8, 1], [1, 0, 1, 0, 1, 0]])
    graph = ag.optimise(w, lo=-128, hi=127)
    assert graph.nodes == []
    assert graph.adders([0] * 4) == sum(int((row != 0).sum()) - 1 for row in w)


def test_random_matrix_shares_and_stays_exact() -> None:
    rng = np.random.default_rng(1)
    w = po2_matrix(rng, 16, 72, 4)
    graph = ag.optimise(w, lo=-128, hi=127)
    tree = sum(int((row != 0).sum()) - 1 for row in w)
    assert graph.adders([0] * 16) < 0.8 * tree
    for x in [*rng.integers(-128, 128, (20, 72)).tolist(), [-128] * 72, [127] * 72]:
        assert _evaluate(graph, x) == (w @ np.array(x)).tolist()
    for node in graph.nodes:  # exact ranges: both ends reachable, as interval sums
        lo_a, hi_a, _ = graph.operand_range(node.a)
        lo_b, hi_b, _ = graph.operand_range(node.b)
        b = (
            (-(hi_b << node.shift), -(lo_b << node.shift))
            if node.subtract
            else (
                lo_b << node.shift,
                hi_b << node.shift,
            )
        )
        assert (node.lo, node.hi) == (lo_a + b[0], hi_a + b[1])


@pytest.mark.parametrize("seed", [2, pytest.param(3, marks=pytest.mark.integration)])
def test_depth_limit_holds(seed: int) -> None:
    """Sharing never pushes an output past the limit; below every tree's depth it shares
    nothing; a looser limit never costs adders."""
    w = po2_matrix(np.random.default_rng(seed), 16, 40, 4)
    tree_depth = max(int(np.count_nonzero(row) - 1).bit_length() for row in w)
    adders = []
    for limit in (tree_depth, tree_depth + 1, None):
        graph = ag.optimise(w, lo=-128, hi=127, max_depth=limit)
        if limit is not None:
            assert ag.graph_depth(graph, [0] * 16) <= limit
        adders.append(graph.adders([0] * 16))
    assert adders == sorted(adders, reverse=True)
    shallow = min(int(np.count_nonzero(row) - 1).bit_length() for row in w) - 1
    assert ag.optimise(w, lo=-128, hi=127, max_depth=shallow).nodes == []


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="0 or ±2"):
        ag.optimise(np.array([[3]]), lo=0, hi=1)
    with pytest.raises(ValueError, match="Depth limit"):
        ag.optimise(np.array([[1]]), lo=0, hi=1, max_depth=0)
    with pytest.raises(ValueError, match="multiply"):
        ConstDotUnit(
            weights=np.array([[3, 5]]),
            bias=np.zeros(1),
            in_format=S8,
            mode="multiply",
            adder_graph="shared",
        )


@pytest.mark.parametrize("stages", [0, 1, 3])
@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("shift-add")])
def test_shared_units_stream_golden_results(name: str, stages: int) -> None:
    """Random and extreme inputs (every output's worst case), every pipelining."""
    case = CASES[name]()
    dut = ConstDotUnit(
        weights=case.weights,
        bias=case.bias,
        in_format=case.in_format,
        requant=case.requant,
        stages=stages,
        adder_graph="shared",
    )
    assert dut.latency == stages
    bad = case_mismatches(case, dut, seed=stages)
    assert not bad, "\n".join(bad[:10])


def test_stream_check_catches_a_wrong_shared_node() -> None:
    case = CASES["shift-add-signed-raw"]()
    dut = ConstDotUnit(
        weights=case.weights, bias=case.bias, in_format=case.in_format, adder_graph="shared"
    )
    node = dut.graph.nodes[0]
    dut.graph.nodes[0] = ag.GraphNode(
        node.a, node.b, node.shift, not node.subtract, -(1 << 20), 1 << 20, node.depth
    )
    assert case_mismatches(case, dut, seed=0)


def _built_widths(component: Any) -> list[int]:
    widths: list[int] = []
    combine = rtl_gen.arith._combine

    def record(*args: Any) -> Any:
        term = combine(*args)
        widths.append(Value.cast(term.value).shape().width)
        return term

    with mock.patch.object(rtl_gen.arith, "_combine", record):
        Fragment.get(component, None)
    return sorted(widths)


def test_cost_model_counts_the_shared_graph_as_built(tiny_package: Path) -> None:
    model = load_package(tiny_package)
    cost = analyze(model, adder_graph="shared")
    tree = analyze(model, adder_graph="tree")
    for layer, plain in zip(cost.layers, tree.layers, strict=True):
        if layer.kind not in ("conv2d", "linear"):
            continue
        (design,) = build_designs(model, unit=f"layer:{layer.name}", adder_graph="shared")
        built = _built_widths(design.component)
        assert collections.Counter(built) == collections.Counter(layer.counts["adds_by_width"])
        assert layer.designs["shift-add"].adds <= plain.designs["shift-add"].adds


@pytest.mark.hw
def test_shared_unit_is_proven_and_a_wrong_node_is_not() -> None:
    from rtl_gen.formal import prove_dot_unit

    w = np.array(
        [[1, 2, 4, -4, 0, 8], [2, 4, -1, 1, 1, 0], [1, 2, 4, -4, 2, 0], [0, 0, 4, -4, 0, 1]]
    )
    unit = ConstDotUnit(
        weights=w,
        bias=np.array([3, -5, 0, 7]),
        in_format=S8,
        requant=Requant(shift=2, relu=True, out=U8),
        adder_graph="shared",
    )
    assert len(unit.graph.nodes) >= 2
    result = prove_dot_unit(unit, timeout_s=120)
    assert result.proven, result.counterexample
    node = unit.graph.nodes[0]
    unit.graph.nodes[0] = ag.GraphNode(
        node.a, node.b, node.shift + 1, node.subtract, node.lo * 2, node.hi * 2, node.depth
    )
    assert not prove_dot_unit(unit, timeout_s=120).proven


def test_generate_matrix_writes_the_unit(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "W.npy"
    np.save(path, np.array([[1, -2], [4, 0], [0, 8], [2, 2]]))
    code, out, _ = cli(
        "generate",
        "--matrix",
        str(path),
        "--in-bits",
        "6",
        "--unsigned",
        "--adder-graph",
        "shared",
        "--out",
        str(tmp_path / "rtl"),
    )
    assert code == 0, out
    assert "4 inputs x 2 outputs, shared adder graph" in out
    assert (tmp_path / "rtl" / "matrix_shiftadd.v").exists()


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.array([[1, 3]]), "W[0, 1] = 3 is not 0 or ±2**k"),
        (np.array([[1.0, 0.5]]), "W[0, 1] = 0.5 is not an integer"),
        (np.array([1, 2]), "must be 2-D"),
        (np.array([["a"]]), "must be integers"),
    ],
)
def test_generate_matrix_rejects_bad_matrices_in_one_line(
    tmp_path: Path, cli: Cli, matrix: np.ndarray, message: str
) -> None:
    path = tmp_path / "W.npy"
    np.save(path, matrix)
    code, _, err = cli("generate", "--matrix", str(path), "--out", str(tmp_path / "o"))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_generate_dataflow_threads_the_shared_graph(
    tiny_package: Path, tmp_path: Path, cli: Cli
) -> None:
    pkg = tiny_package
    names = [layer.name for layer in load_package(pkg).weight_layers()]
    out = tmp_path / "rtl"
    argv = ["generate", str(pkg), "--unit", "dataflow", "--out", str(out)]
    code, text, err = cli(*argv, "--adder-graph", "shared", "--fold", f"{names[0]}=2")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    params = manifest["tops"][0]["params"]
    assert params["adder_graph"] == "shared"
    graphs = {e["layer"]: e["adder_graph"] for e in params["engines"] if e["layer"] in names}
    assert graphs == {name: None if name == names[0] else "shared" for name in names}
    assert "adder graph" in text and "shared" in text
    folded = ["--fold=all=2", "--out", str(tmp_path / "o2")]
    code, _, err = cli(
        "generate", str(pkg), "--unit", "dataflow", *folded, "--adder-graph", "shared"
    )
    assert code == 2 and "folded layers have no adder graph" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o2").exists()
