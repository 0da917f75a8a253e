"""Adder graphs for a whole constant matrix: sums that several outputs need, computed once.

A power-of-two matrix ``W`` (outputs x inputs, every entry 0 or ±2**k) makes every output
``y_o = Σ_i W[o, i]·x_i`` a sum of terms ``±x_i << k``. :func:`optimise` finds pairs of
terms that recur across outputs, ``x_p ± (x_q << d)`` at any common shift and sign (common
subexpression elimination in the style of Hartley, "Subexpression sharing in filters using
canonic signed digit multipliers", IEEE TCAS-II 43(10), 1996), and makes each a shared
node, itself an operand of later pairs. The greedy choice takes the pair found in the most
outputs (each choice of a pair found in ``n`` outputs saves ``n - 1`` adders), ties to the
smallest relative shift (the narrowest adder). Pair counts are kept in a table and a lazy
heap, updated only for the outputs a choice rewrites, so a 72 x 16 matrix takes well under
a second. Ties between equally frequent pairs matter, so the search runs again with the
input columns in seeded random orders (up to :data:`MAX_RESTARTS` times, fewer for large
matrices) and keeps the graph with the fewest adder bits (:func:`adder_bits`).

Every node carries its exact value range (interval arithmetic as
:func:`rtl_gen.arith.sum_range`), hence its width, and its depth in adders. With
``max_depth`` a pair is taken for an output only while that output can still be summed
within the limit: ``k`` operands of depths ``d_i`` need ``ceil(log2 Σ 2**d_i)`` levels,
which summing the two shallowest first achieves; :func:`plan_sums` adds the
narrowest operands first within the deepest output's bound.

:func:`build` turns a graph into Amaranth logic with the same building blocks as the
adder trees (:func:`rtl_gen.arith.add_terms`), pipelined by level with
:func:`rtl_gen.arith.register_levels`; :func:`adder_widths` lists the width of every
adder it builds, for the cost model.

Example usage::

    graph = optimise(np.array([[1, 2, -4], [1, 2, 4]]), lo=-128, hi=127)
    graph.adders([0, 0])          # 3: x0 + 2·x1 once, then ∓4·x2 per output
"""

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Const, Module, Value

from rtl_gen.arith import Term, add_terms, range_shape, register_levels, register_term, sum_range

__all__ = [
    "MAX_RESTARTS",
    "RESTART_BUDGET",
    "AdderGraph",
    "Bracket",
    "GraphNode",
    "OutputTerm",
    "adder_bits",
    "adder_widths",
    "brackets",
    "build",
    "graph_depth",
    "optimise",
    "plan_sums",
]


@dataclass(frozen=True)
class GraphNode:
    """A shared adder ``x_a + (x_b << shift)`` (``x_a - (x_b << shift)`` when
    ``subtract``), over inputs or earlier nodes, with value range ``[lo, hi]``."""

    a: int
    b: int
    shift: int
    subtract: bool
    lo: int
    hi: int
    depth: int


@dataclass(frozen=True)
class OutputTerm:
    """``±operand << shift`` in an output's sum (operand: an input or a node id)."""

    operand: int
    shift: int
    negated: bool


@dataclass
class AdderGraph:
    """Inputs ``0..inputs-1``, shared nodes ``inputs..``, and each output's terms."""

    inputs: int
    lo: int
    hi: int
    nodes: list[GraphNode] = field(default_factory=list)
    outputs: list[list[OutputTerm]] = field(default_factory=list)

    def operand_range(self, operand: int) -> tuple[int, int, int]:
        """``(lo, hi, depth)`` of an input or node."""
        if operand < self.inputs:
            return self.lo, self.hi, 0
        node = self.nodes[operand - self.inputs]
        return node.lo, node.hi, node.depth

    def adders(self, constants: Sequence[int]) -> int:
        """Two-input adders built with these per-output constants (0: none)."""
        return len(adder_widths(self, constants))


@dataclass(frozen=True)
class _Operand:
    """An operand of a sum, for planning: bounds as :class:`rtl_gen.arith.Term`, level."""

    lo: int
    hi: int
    shift: int
    negated: bool
    level: int


def _validate(weights: np.ndarray, lo: int, hi: int, max_depth: int | None) -> np.ndarray:
    weights = np.asarray(weights, dtype=object)
    if weights.ndim != 2:
        raise ValueError(f"Weights must be an (outputs, inputs) matrix, not shape {weights.shape}")
    magnitude = np.abs(weights)
    if not all(v == 0 or (int(v) & (int(v) - 1)) == 0 for v in magnitude.ravel()):
        raise ValueError("Adder graphs need weights that are all 0 or ±2**k")
    if lo > hi:
        raise ValueError(f"Input range must have lo <= hi, not [{lo}, {hi}]")
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
    ):
        raise ValueError(f"Depth limit must be a positive integer or None, not {max_depth!r}")
    return weights


class _Search:
    """The greedy pair search: per-output terms, per-operand outputs, pair counts.

    A pair ``x_p ± (x_q << d)`` (``p`` the term of smaller shift, then smaller operand) is
    one integer key; counts of at least 2 sit in buckets by count and relative shift, so
    the best pair is found without a heap of stale entries.
    """

    def __init__(self, weights: np.ndarray, constants: Sequence[int], max_depth: int | None):
        outputs, inputs = weights.shape
        self.rows: list[dict[int, tuple[int, bool]]] = []
        self.where: list[set[int]] = [set() for _ in range(inputs)]
        self.depth = [0] * inputs
        for o in range(outputs):
            row = {}
            for i in np.flatnonzero(weights[o] != 0).tolist():
                w = int(weights[o, i])
                row[i] = (abs(w).bit_length() - 1, w < 0)
                self.where[i].add(o)
            self.rows.append(row)
        # Σ 2**depth over each output's operands (its constant included): the depth bound
        self.load = [len(r) + (1 if c else 0) for r, c in zip(self.rows, constants, strict=True)]
        self.limit = None if max_depth is None else 1 << max_depth
        self.span = 1 + max((s for r in self.rows for s, _ in r.values()), default=0)
        self.ids = inputs + sum(len(r) for r in self.rows) // 2 + 1  # operands ever made
        self.counts: dict[int, int] = {}
        self.buckets: list[dict[int, set[int]]] = [{} for _ in range(outputs + 1)]
        self.top = 0
        self._count_initial()

    def key(self, p: int, term_p: tuple[int, bool], q: int, term_q: tuple[int, bool]) -> int:
        """The pair of two terms as one integer (module docstring of the class)."""
        if term_q[0] < term_p[0] or (term_q[0] == term_p[0] and q < p):
            p, term_p, q, term_q = q, term_q, p, term_p
        d = term_q[0] - term_p[0]
        return ((p * self.ids + q) * self.span + d) * 2 + (term_p[1] != term_q[1])

    def decode(self, key: int) -> tuple[int, int, int, bool]:
        rest, d = divmod(key >> 1, self.span)
        p, q = divmod(rest, self.ids)
        return p, q, d, bool(key & 1)

    def _count_initial(self) -> None:
        """Every pair of terms of every output, counted at once with numpy."""
        keys = []
        for row in self.rows:
            if len(row) < 2:
                continue
            cols = np.fromiter(row, np.int64, len(row))
            shift = np.fromiter((s for s, _ in row.values()), np.int64, len(row))
            neg = np.fromiter((g for _, g in row.values()), np.int64, len(row))
            i, j = np.triu_indices(len(row), 1)  # cols ascending: i < j as operands
            swap = shift[j] < shift[i]
            p, q = np.where(swap, cols[j], cols[i]), np.where(swap, cols[i], cols[j])
            d = np.abs(shift[j] - shift[i])
            keys.append(((p * self.ids + q) * self.span + d) * 2 + (neg[i] ^ neg[j]))
        if not keys:
            return
        unique, counts = np.unique(np.concatenate(keys), return_counts=True)
        shared = counts > 1
        for key, count in zip(unique[shared].tolist(), counts[shared].tolist(), strict=True):
            self.counts[key] = count
            self._file(key, count)

    def _file(self, key: int, count: int) -> None:
        d = (key >> 1) % self.span
        self.buckets[count].setdefault(d, set()).add(key)
        self.top = max(self.top, count)

    def _unfile(self, key: int, count: int) -> None:
        self.buckets[count][(key >> 1) % self.span].discard(key)

    def _fits(self, o: int, depth_p: int, depth_q: int) -> bool:
        if self.limit is None:
            return True
        load = self.load[o] - (1 << depth_p) - (1 << depth_q) + (2 << max(depth_p, depth_q))
        return load <= self.limit

    def _best(self) -> int | None:
        """The key of the highest count, then the smallest relative shift, taken out of
        its bucket (``set.pop``: constant time, and the same on every run)."""
        while self.top > 1:
            bucket = self.buckets[self.top]
            for d in sorted(bucket):
                if bucket[d]:
                    return bucket[d].pop()
                del bucket[d]
            self.top -= 1
        return None

    def next_choice(self) -> tuple[tuple[int, int, int, bool], list[int]] | None:
        """The most frequent pair still worth sharing, and the outputs that take it.

        Counts are upper bounds (a pair's count is not lowered when a choice consumes one
        of its terms): a pair's outputs are recounted when it comes up, and it is filed
        again under its true count if that is lower (lazy greedy, exact for the maximum).
        """
        while (key := self._best()) is not None:
            p, q, _, _ = pair = self.decode(key)
            count = self.counts[key]
            rows = [
                o
                for o in self.where[p] & self.where[q]
                if self.key(p, self.rows[o][p], q, self.rows[o][q]) == key
            ]
            if len(rows) < count:
                self.counts[key] = len(rows)
                if len(rows) > 1:
                    self._file(key, len(rows))
                continue
            rows = sorted(o for o in rows if self._fits(o, self.depth[p], self.depth[q]))
            self.counts[key] = 0  # taken, or ruled out for good by the depth limit
            if len(rows) > 1:
                return pair, rows
        return None

    def apply(self, pair: tuple[int, int, int, bool], rows: list[int], node: int) -> None:
        """Rewrite ``rows``: the pair's two terms become one term of ``node``, and the new
        node's pairs with the rows' other terms are counted."""
        p, q, _, _ = pair
        self.where.append(set())
        self.depth.append(max(self.depth[p], self.depth[q]) + 1)
        counts, ids, span = self.counts, self.ids, self.span
        for o in rows:
            row = self.rows[o]
            term_p = row.pop(p)  # p has the smaller shift
            del row[q]
            self.where[p].discard(o)
            self.where[q].discard(o)
            sp, gp = term_p
            for c, (sc, gc) in row.items():
                # the canonical key: c first when its shift is smaller or equal (c < node)
                if sc <= sp:
                    k = ((c * ids + node) * span + sp - sc) * 2 + (gc != gp)
                else:
                    k = ((node * ids + c) * span + sc - sp) * 2 + (gc != gp)
                count = counts.get(k, 0) + 1
                counts[k] = count
                if count > 1:
                    if count > 2:
                        self.buckets[count - 1][(k >> 1) % span].discard(k)
                    self._file(k, count)
            row[node] = term_p
            self.where[node].add(o)
            self.load[o] += (1 << self.depth[node]) - (1 << self.depth[p]) - (1 << self.depth[q])


#: Restarts of the search (a new column order each) fit in this many terms' worth of work
#: (:func:`optimise`): 16 restarts up to ~3,000 nonzero weights, one beyond 50,000.
RESTART_BUDGET = 50_000
MAX_RESTARTS = 16


def optimise(
    weights: np.ndarray,
    *,
    lo: int,
    hi: int,
    max_depth: int | None = None,
    constants: Sequence[int] | None = None,
    restarts: int | None = None,
) -> AdderGraph:
    """The shared adder graph of a power-of-two matrix (module docstring).

    The greedy search breaks ties between equally frequent pairs by the order it meets
    them, which matters (on INQ matrices with many levels the adder count varies by some
    5% with the order). So it runs once as given and ``restarts - 1`` more times with the
    input columns in a seeded random order, and keeps the graph with the fewest adder
    bits (:func:`adder_bits`; then fewest adders; the first such), the same on every run.

    Args:
        weights: ``(outputs, inputs)`` integers, each 0 or ±2**k.
        lo, hi: The range of every input.
        max_depth: Adder levels no output may exceed through sharing (``None``: no limit).
            An output whose plain tree is deeper than the limit shares nothing.
        constants: Per-output constant added last (0: none); counts towards the depth.
        restarts: Searches to run (``None``: ``RESTART_BUDGET // nonzero weights``,
            between 1 and ``MAX_RESTARTS``).

    Raises:
        ValueError: Not a matrix, a weight that is not 0 or ±2**k, a bad range, limit or
            restart count.
    """
    weights = _validate(weights, lo, hi, max_depth)
    outputs, inputs = weights.shape
    constants = list(constants) if constants is not None else [0] * outputs
    if restarts is None:
        nonzero = max(1, int(np.count_nonzero(weights != 0)))
        restarts = max(1, min(MAX_RESTARTS, RESTART_BUDGET // nonzero))
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"Restarts must be a positive integer or None, not {restarts!r}")
    rng = np.random.default_rng(0)
    best: tuple[tuple[int, int], AdderGraph] | None = None
    for run in range(restarts):
        order = np.arange(inputs) if run == 0 else rng.permutation(inputs)
        graph = _relabel(_search(weights[:, order], lo, hi, max_depth, constants), order)
        cost = (adder_bits(graph, constants), graph.adders(constants))
        if best is None or cost < best[0]:
            best = cost, graph
    assert best is not None
    return best[1]


def _search(
    weights: np.ndarray, lo: int, hi: int, max_depth: int | None, constants: list[int]
) -> AdderGraph:
    """One greedy search (:class:`_Search`) and the graph it builds."""
    inputs = weights.shape[1]
    search = _Search(weights, constants, max_depth)
    graph = AdderGraph(inputs, lo, hi)
    while (choice := search.next_choice()) is not None:
        pair, rows = choice
        p, q, d, subtract = pair
        lo_p, hi_p, depth_p = graph.operand_range(p)
        lo_q, hi_q, depth_q = graph.operand_range(q)
        node_lo, node_hi, _, _ = sum_range(
            _Operand(lo_p, hi_p, 0, False, 0), _Operand(lo_q, hi_q, d, subtract, 0)
        )
        graph.nodes.append(
            GraphNode(p, q, d, subtract, node_lo, node_hi, max(depth_p, depth_q) + 1)
        )
        search.apply(pair, rows, inputs + len(graph.nodes) - 1)
    graph.outputs = [[OutputTerm(c, s, g) for c, (s, g) in row.items()] for row in search.rows]
    return graph


def _relabel(graph: AdderGraph, order: np.ndarray) -> AdderGraph:
    """The graph of the matrix whose column ``k`` was column ``order[k]``, in the original
    column numbers (nodes keep theirs); output terms sorted by shift, then operand."""
    column = order.tolist()

    def name(operand: int) -> int:
        return column[operand] if operand < graph.inputs else operand

    out = AdderGraph(graph.inputs, graph.lo, graph.hi)
    out.nodes = [
        GraphNode(name(n.a), name(n.b), n.shift, n.subtract, n.lo, n.hi, n.depth)
        for n in graph.nodes
    ]
    out.outputs = [
        sorted(
            (OutputTerm(name(t.operand), t.shift, t.negated) for t in terms),
            key=lambda t: (t.shift, t.operand),
        )
        for terms in graph.outputs
    ]
    return out


def _constant_term(constant: int) -> tuple[int, int]:
    """``(value, shift)`` of a nonzero constant as :class:`ConstDotUnit` adds it: its
    trailing zeros as a shift."""
    shift = (constant & -constant).bit_length() - 1
    return constant >> shift, shift


def plan_sums(graph: AdderGraph, constants: Sequence[int]) -> list[list[tuple[int, int]]]:
    """Per output, the order of its adds: pairs of operand indices (its terms, then the
    constant if nonzero, then each add's result in turn).

    The two operands of smallest value range are added first (Huffman's order, which keeps
    narrow operands out of wide adders), as long as the output can still be summed within
    the graph's depth: the levels the deepest output needs when summed two shallowest
    first, ``ceil(log2 Σ 2**level)`` over its operands (:func:`_depth_bound`). So no
    output gets deeper than the graph already is, and none beyond ``max_depth``."""
    items_per_output = [
        _sum_operands(graph, t, c) for t, c in zip(graph.outputs, constants, strict=True)
    ]
    limit = 1 << _depth_bound(items_per_output)
    return [_plan(items, limit) for items in items_per_output]


def _sum_operands(graph: AdderGraph, terms: Sequence[OutputTerm], constant: int) -> list[_Operand]:
    items = [_term_operand(graph, t) for t in terms]
    if constant:
        value, shift = _constant_term(int(constant))
        items.append(_Operand(value, value, shift, False, 0))
    return items


def _depth_bound(items_per_output: Sequence[Sequence[_Operand]]) -> int:
    """The fewest levels every output fits in (Kraft: ``Σ 2**level <= 2**depth``)."""
    loads = (sum(1 << op.level for op in items) for items in items_per_output)
    return max(((load - 1).bit_length() for load in loads if load), default=0)


#: How many of the narrowest operands :func:`_plan` tries to pair before it falls back
#: to the two shallowest.
_PLAN_WINDOW = 6


def _plan(items: list[_Operand], limit: int) -> list[tuple[int, int]]:
    """One output's adds, narrowest first within ``Σ 2**level <= limit`` (the bound holds
    to the end: adding the two shallowest never needs more levels than the bound)."""
    items = list(items)
    live = sorted((_magnitude(op), k) for k, op in enumerate(items))
    load = sum(1 << op.level for op in items)
    steps = []
    while len(live) > 1:
        x, y, load = _pick(items, live, load, limit)
        i, j = live[x][1], live[y][1]
        del live[y], live[x]  # y > x
        a, b = items[i], items[j]
        lo, hi, shift, negated = sum_range(a, b)
        items.append(_Operand(lo, hi, shift, negated, max(a.level, b.level) + 1))
        steps.append((i, j))
        bisect.insort(live, (_magnitude(items[-1]), len(items) - 1))
    return steps


def _pick(
    items: list[_Operand], live: list[tuple[int, int]], load: int, limit: int
) -> tuple[int, int, int]:
    """Positions ``x < y`` in ``live`` of the next pair, and the load after it."""

    def after(x: int, y: int) -> int:
        a, b = items[live[x][1]], items[live[y][1]]
        return load - (1 << a.level) - (1 << b.level) + (2 << max(a.level, b.level))

    window = min(len(live), _PLAN_WINDOW)
    for x in range(window):
        for y in range(x + 1, window):
            if (new := after(x, y)) <= limit:
                return x, y, new
    x, y = sorted(range(len(live)), key=lambda n: (items[live[n][1]].level, live[n][1]))[:2]
    x, y = min(x, y), max(x, y)
    return x, y, after(x, y)


def _magnitude(op: _Operand) -> int:
    """The width of the range of values an operand stands for."""
    return (op.hi - op.lo) << op.shift


def _term_operand(graph: AdderGraph, term: OutputTerm) -> _Operand:
    lo, hi, depth = graph.operand_range(term.operand)
    return _Operand(lo, hi, term.shift, term.negated, depth)


def _adds(graph: AdderGraph, constants: Sequence[int]) -> list[tuple[int, int]]:
    """Every adder :func:`build` makes, shared nodes first: ``(width, low bits)``, the low
    bits being those of the operand with the smaller shift alone (wired, no adder logic)."""
    adds = [(range_shape(n.lo, n.hi).width, n.shift) for n in graph.nodes]
    for terms, constant, steps in zip(
        graph.outputs, constants, plan_sums(graph, constants), strict=True
    ):
        items = _sum_operands(graph, terms, constant)
        for i, j in steps:
            lo, hi, shift, negated = sum_range(items[i], items[j])
            items.append(_Operand(lo, hi, shift, negated, 0))
            adds.append((range_shape(lo, hi).width, abs(items[i].shift - items[j].shift)))
    return adds


def adder_widths(graph: AdderGraph, constants: Sequence[int]) -> list[int]:
    """The width of every adder :func:`build` makes: shared nodes, then each output's sum."""
    return [width for width, _ in _adds(graph, constants)]


def adder_bits(graph: AdderGraph, constants: Sequence[int]) -> int:
    """Adder bits that are logic: each adder's width less its wired low bits (the measure
    :func:`optimise` minimises; generic gates grow about 4.5 per such bit)."""
    return sum(width - low for width, low in _adds(graph, constants))


def graph_depth(graph: AdderGraph, constants: Sequence[int]) -> int:
    """Adder levels from the inputs to the deepest output."""
    return max(_levels(graph, constants)[1], default=0)


def _levels(graph: AdderGraph, constants: Sequence[int]) -> tuple[list[int], list[int]]:
    """Level of every operand (inputs 0, nodes their depth) and of every output's root."""
    levels = [0] * graph.inputs + [n.depth for n in graph.nodes]
    roots = []
    for terms, constant, steps in zip(
        graph.outputs, constants, plan_sums(graph, constants), strict=True
    ):
        item_levels = [levels[t.operand] for t in terms] + ([0] if constant else [])
        for i, j in steps:
            item_levels.append(max(item_levels[i], item_levels[j]) + 1)
        roots.append(item_levels[-1] if item_levels else 0)
    return levels, roots


class _Pipeline:
    """Values by level, delayed through the pipeline registers they cross; the delayed
    copies of inputs and shared nodes are shared by all their users."""

    def __init__(self, m: Module, chosen: set[int], domain: str) -> None:
        self.m, self.chosen, self.domain = m, chosen, domain
        self.chains: dict[int, list[Term]] = {}

    def registers(self, produced: int, used: int) -> int:
        """Registers between a value of level ``produced`` and an adder of level ``used``."""
        return sum(1 for b in self.chosen if produced <= b < used)

    def delay(self, term: Term, registers: int) -> Term:
        for _ in range(registers):
            term = register_term(self.m, term, self.domain)
        return term

    def shared(self, key: int, term: Term, registers: int) -> Term:
        chain = self.chains.setdefault(key, [term])
        while len(chain) <= registers:
            chain.append(register_term(self.m, chain[-1], self.domain))
        return chain[registers]


def build(
    m: Module,
    graph: AdderGraph,
    inputs: Sequence[Value],
    constants: Sequence[int],
    *,
    stages: int = 0,
    domain: str = "sync",
) -> list[Term]:
    """The graph's logic in ``m``: one root :class:`~rtl_gen.arith.Term` per output, with
    exactly ``stages`` registers on every path, after the levels
    :func:`rtl_gen.arith.register_levels` chooses (the rest at the outputs)."""
    levels, roots = _levels(graph, constants)
    top = max([*roots, *levels], default=0)
    chosen = register_levels(top, stages)
    pipe = _Pipeline(m, chosen, domain)
    values = [Term(Value.cast(x), graph.lo, graph.hi) for x in inputs]

    def operand(index: int, shift: int, negated: bool, used: int) -> Term:
        base = pipe.shared(index, values[index], pipe.registers(levels[index], used))
        return Term(base.value, base.lo, base.hi, shift, negated)

    for node in graph.nodes:
        a = operand(node.a, 0, False, node.depth)
        b = operand(node.b, node.shift, node.subtract, node.depth)
        values.append(add_terms(m, a, b))
    extra = stages - len(chosen)
    plans = plan_sums(graph, constants)
    out = []
    for terms, constant, steps in zip(graph.outputs, constants, plans, strict=True):
        # per operand of the sum: (level, term, operand index or -1 for a private value)
        items = [
            (levels[t.operand], Term(Const(0), 0, 0, t.shift, t.negated), t.operand) for t in terms
        ]
        if constant:
            value, shift = _constant_term(int(constant))
            const = Term(Const(value, range_shape(value, value)), value, value, shift)
            items.append((0, const, -1))
        if not items:
            items.append((0, Term(Const(0, 1), 0, 0), -1))

        def fetch(item: tuple[int, Term, int], used: int) -> Term:
            level, term, index = item
            if index >= 0:
                return operand(index, term.shift, term.negated, used)
            return pipe.delay(term, pipe.registers(level, used))

        for i, j in steps:
            level = max(items[i][0], items[j][0]) + 1
            items.append((level, add_terms(m, fetch(items[i], level), fetch(items[j], level)), -1))
        out.append(pipe.delay(fetch(items[-1], top + 1), extra))
    return out


#: A summation order: an input column (a leaf), ``-1`` for the constant, or a pair.
Bracket = int | tuple["Bracket", "Bracket"]


def brackets(graph: AdderGraph, constants: Sequence[int]) -> list[Bracket]:
    """Per output, how :func:`build` brackets its sum, down to the input columns (shared
    nodes expanded): for a reference that adds the matrix's own terms in the same order
    (:func:`rtl_gen.formal.reference_verilog`), which a SAT solver then matches node for
    node."""

    def expand(operand: int) -> Bracket:
        if operand < graph.inputs:
            return operand
        node = graph.nodes[operand - graph.inputs]
        return (expand(node.a), expand(node.b))

    out = []
    for terms, constant, steps in zip(
        graph.outputs, constants, plan_sums(graph, constants), strict=True
    ):
        items: list[Bracket] = [expand(t.operand) for t in terms] + ([-1] if constant else [])
        for i, j in steps:
            items.append((items[i], items[j]))
        out.append(items[-1] if items else -1)
    return out
