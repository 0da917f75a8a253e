"""The adder-graph bench's matrices: INQ layers as (C·kh·kw) x outputs power-of-two integer
matrices, and the shared graph of each stays exact on them (Python evaluation, no
synthesis; the synthesised comparison itself is ``python -m benches adder_graph``)."""

import numpy as np
import pytest

from benches import bench_adder_graph as bench
from rtl_gen import adder_graph as ag
from tests.test_adder_graph import _evaluate


def test_inq_rows_cover_both_models_at_three_widths() -> None:
    names = bench._all_names()
    assert set(bench.DEFAULT_MATRICES) <= set(names)  # the default run has no unknown name
    assert any(n.startswith("digits-cnn") for n in bench.DEFAULT_MATRICES)
    assert any(n.startswith("lenet5") for n in bench.DEFAULT_MATRICES)
    for model in ("digits-cnn", "lenet5"):
        for bits in (3, 4, 5):
            assert any(n.startswith(model) and n.endswith(f"-b{bits}") for n in names)


@pytest.mark.parametrize(
    ("name", "shape", "levels"),
    [
        ("digits-cnn.features.conv1-b3", (1 * 3 * 3, 16), 2),
        ("digits-cnn.features.conv1-b5", (1 * 3 * 3, 16), 8),
        ("lenet5.features.conv1-b4", (1 * 5 * 5, 6), 4),
    ],
)
def test_inq_matrix_is_a_conv_window_of_po2_levels(
    name: str, shape: tuple[int, int], levels: int
) -> None:
    """A conv layer (out, C, kh, kw) becomes (C·kh·kw) x out; entries 0 or ±2**k with at
    most 2**(b-2) magnitudes (INQ's levels, scaled by the smallest)."""
    w = bench._matrix(name)
    assert w.shape == shape and w.dtype == np.int64
    magnitudes = {int(v) for v in np.abs(w[w != 0])}
    assert all(v & (v - 1) == 0 for v in magnitudes) and min(magnitudes) == 1
    assert len(magnitudes) <= levels


@pytest.mark.parametrize("name", ["digits-cnn.features.conv1-b4", "lenet5.features.conv1-b5"])
def test_shared_graph_of_inq_matrix_is_exact_at_extremes(name: str) -> None:
    w = bench._matrix(name)
    graph = ag.optimise(w.T, lo=-128, hi=127)
    assert graph.nodes, "INQ matrices have recurring pairs"
    rng = np.random.default_rng(0)
    samples = [np.full(w.shape[0], -128), np.full(w.shape[0], 127)]
    samples += [rng.choice([-128, 127], w.shape[0]) for _ in range(8)]
    for x in samples:
        assert _evaluate(graph, x.tolist()) == (x.astype(object) @ w.astype(object)).tolist()


def test_restarts_keep_the_cheapest_graph_and_stay_exact() -> None:
    """More column orders never give more adder bits than the first, the choice is the same
    on every run, and the graph kept (columns renamed back) computes the matrix."""
    w = bench._matrix("lenet5.classifier.fc3-b5").T  # outputs x inputs
    zeros = [0] * w.shape[0]
    once = ag.optimise(w, lo=-128, hi=127, restarts=1)
    many = ag.optimise(w, lo=-128, hi=127, restarts=6)
    assert ag.adder_bits(many, zeros) <= ag.adder_bits(once, zeros)
    assert ag.optimise(w, lo=-128, hi=127, restarts=6) == many
    rng = np.random.default_rng(1)
    for x in [np.full(w.shape[1], -128), *(rng.choice([-128, 127], w.shape[1]) for _ in range(6))]:
        assert _evaluate(many, x.tolist()) == (w.astype(object) @ x.astype(object)).tolist()
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="Restarts must be a positive integer"):
            ag.optimise(w, lo=-128, hi=127, restarts=bad)  # type: ignore[arg-type]


def test_adder_bits_leave_out_wired_low_bits() -> None:
    """x0 + 4·x1 (8-bit inputs): an 11-bit adder whose 2 low bits are x0's, wired."""
    graph = ag.optimise(np.array([[1, 4]]), lo=-128, hi=127)
    assert ag.adder_widths(graph, [0]) == [11]
    assert ag.adder_bits(graph, [0]) == 9
