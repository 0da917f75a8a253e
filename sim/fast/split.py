"""Large combinational units as separate Verilator models, evaluated only on new inputs.

Verilator evaluates all of a model's logic at every clock edge, whether its inputs moved
or not. In an unrolled dataflow top most of that logic is the adder trees of the dot
units (``<top>.engine<k>.dot.unit``: purely combinational, input the window registers),
and a unit's window changes only in the cycles its engine accepts a beat (conv3 of the
5-bit digits-cnn top: 56 % of the statements, a new window in about 1 cycle of 6).

:func:`split_units` takes such units out of the design: each becomes its own Verilator
model (its module's text, renamed), and in the design its module is replaced by a stub
whose one ``always @*`` calls a DPI function with the unit's inputs and outputs. The
function (C++ written by :func:`dpi_source`) keeps the last inputs and their outputs and
evaluates the unit's model only when the inputs differ, so every cycle sees the outputs
the unit's logic gives for that cycle's inputs: the same design, computed less often.

Gated (the default of ``BuildFlags.gate_units``), a unit with a valid input (a dot
unit's: its engine's output valid, the stream's) is evaluated only while valid is high;
while it is low its outputs carry :data:`POISON`. The stream contract makes a payload
meaningless without its valid, and a convolution's window moves through its padding and
edge positions with valid low (digits-cnn's conv2 scans its 8x8 input padded to 10x10:
100 window positions per image, 64 of them valid; conv3 36, 16 valid). A design
that takes one anyway sees the poison, not the last valid result, so the fault shows as
a mismatch instead of passing by luck; the ports' outputs of a correct design are the
same bit for bit. The trace build never splits (a waveform needs the units' nets).
"""

import dataclasses
import re
from pathlib import Path

__all__ = ["Unit", "dpi_source", "find_units", "split_units", "write_split"]

_MODULE = re.compile(r"^module (\\\S+|\w+) ?\(([^)]*)\);\n(.*?)^endmodule\n", re.M | re.S)
_PORT = re.compile(r"^  (input|output) (?:signed )?(?:\[(\d+):0\] )?(\w+);$", re.M)
_INSTANCE = re.compile(r"^  \\?\S+ +\\?\S+ \($", re.M)
_EDGE = re.compile(r"\b(posedge|negedge)\b")
VALID_PORTS = ("o_valid", "i_valid")  # a unit's stream valid, by rtl_gen.units' port names
POISON = 0x5A5A5A5A  # a gated unit's output words while its valid is low


@dataclasses.dataclass(frozen=True)
class Unit:
    """A combinational module taken out into a model of its own.

    Members:
        module: The module's name in the design (escaped identifier included).
        name: The plain name of its model and DPI function (``inq_hw_unit_<k>``).
        inputs, outputs: ``(port, width)`` in declaration order.
        text: The module's Verilog, renamed to ``name``.
        valid: The unit's one-bit valid input (``o_valid`` or ``i_valid``: a combinational
            unit's valid passes straight through), or None.
    """

    module: str
    name: str
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]
    text: str
    valid: str | None = None


def find_units(verilog: str, *, min_statements: int, first: int = 0) -> list[Unit]:
    """The modules named ``*.unit`` with at least ``min_statements`` assignments, no clock
    edge and no instance inside (pure combinational leaves of the hierarchy), numbered
    from ``first``."""
    units: list[Unit] = []
    for match in _MODULE.finditer(verilog):
        module, body = match.group(1), match.group(3)
        if not module.endswith(".unit") or _EDGE.search(body) or _INSTANCE.search(body):
            continue
        if body.count("\n  assign ") < min_statements:
            continue
        ports = [(d, n, int(m) + 1 if m else 1) for d, m, n in _PORT.findall(body)]
        if sorted(n for _, n, _ in ports) != sorted(p.strip() for p in match.group(2).split(",")):
            continue  # a port this reader does not know (escaped name, [0:n] range): kept
        name = f"inq_hw_unit_{first + len(units)}"
        header = f"module {name}({match.group(2)});\n"
        inputs = tuple((n, w) for d, n, w in ports if d == "input")
        valid = [n for n, w in inputs if w == 1 and n in VALID_PORTS]
        units.append(
            Unit(
                module=module,
                name=name,
                inputs=inputs,
                outputs=tuple((n, w) for d, n, w in ports if d == "output"),
                text=header + body + "endmodule\n",
                valid=valid[0] if len(valid) == 1 else None,
            )
        )
    return units


def _bits(width: int) -> str:
    return "bit" if width == 1 else f"bit [{width - 1}:0]"


def _stub(unit: Unit, ports: str) -> str:
    decls = [f"  input wire {_range(w)}{n};" for n, w in unit.inputs]
    decls += [f"  output reg {_range(w)}{n};" for n, w in unit.outputs]
    args = [f"input {_bits(w)} {n}" for n, w in unit.inputs]
    args += [f"output {_bits(w)} {n}" for n, w in unit.outputs]
    names = ", ".join(n for n, _ in (*unit.inputs, *unit.outputs))
    return (
        f"module {unit.module} ({ports});\n"
        + "\n".join(decls)
        + f'\n  import "DPI-C" function void {unit.name}({", ".join(args)});\n'
        + f"  always @* {unit.name}({names});\nendmodule\n"
    )


def _range(width: int) -> str:
    return "" if width == 1 else f"[{width - 1}:0] "


def split_units(verilog: str, *, min_statements: int, first: int = 0) -> tuple[str, list[Unit]]:
    """``verilog`` with the units of :func:`find_units` replaced by DPI stubs, and the units."""
    found = find_units(verilog, min_statements=min_statements, first=first)
    units = {unit.module: unit for unit in found}

    def replace(match: re.Match[str]) -> str:
        unit = units.get(match.group(1))
        return match.group(0) if unit is None else _stub(unit, match.group(2))

    return _MODULE.sub(replace, verilog), list(units.values())


def _words(width: int) -> int:
    return -(-width // 32)


def dpi_source(units: list[Unit], *, gate: bool = False) -> str:
    """The C++ of the units' DPI functions: evaluate a unit's model only on new inputs,
    and with ``gate`` only while its valid input is high (:func:`_function`)."""
    parts = [
        "// Written by sim/fast/split.py: one memoising DPI function per split unit.",
        "#include <cstdint>\n#include <cstring>",
        '#include "svdpi.h"\n#include "verilated.h"',
        *[f'#include "V{u.name}.h"' for u in units],
        _HELPERS,
    ]
    for unit in units:
        parts.append(_function(unit, gate=gate))
    return "\n".join(parts) + "\n"


_HELPERS = """namespace {
template <std::size_t N> void put(VlWide<N>& port, const svBitVecVal* w) {
    for (std::size_t k = 0; k < N; ++k) port[k] = w[k];
}
inline void put(CData& port, const svBitVecVal* w) { port = static_cast<CData>(w[0]); }
inline void put(SData& port, const svBitVecVal* w) { port = static_cast<SData>(w[0]); }
inline void put(IData& port, const svBitVecVal* w) { port = w[0]; }
inline void put(QData& port, const svBitVecVal* w) { port = w[0] | (QData{w[1]} << 32); }
template <std::size_t N> void get(const VlWide<N>& port, svBitVecVal* w) {
    for (std::size_t k = 0; k < N; ++k) w[k] = port[k];
}
inline void get(CData port, svBitVecVal* w) { w[0] = port; }
inline void get(SData port, svBitVecVal* w) { w[0] = port; }
inline void get(IData port, svBitVecVal* w) { w[0] = port; }
inline void get(QData port, svBitVecVal* w) {
    w[0] = static_cast<uint32_t>(port);
    w[1] = static_cast<uint32_t>(port >> 32);
}
}  // namespace"""


def _function(unit: Unit, *, gate: bool = False) -> str:
    """One unit's DPI function. Gated (``gate`` and the unit has a valid input), it
    evaluates nothing while valid is low and drives :data:`POISON` onto the outputs: a
    stream's payload means nothing without its valid, and a design that takes it anyway
    sees a pattern no unit computes instead of a stale result that may be right by luck.
    The key is then the other inputs (valid is high whenever the model is evaluated)."""
    gated = unit.valid if gate else None
    args = [f"{'svBit' if w == 1 else 'const svBitVecVal*'} {n}" for n, w in unit.inputs] + [
        f"{'svBit*' if w == 1 else 'svBitVecVal*'} {n}" for n, w in unit.outputs
    ]
    keyed = [(n, w) for n, w in unit.inputs if n != gated]
    words = sum(_words(w) for _, w in keyed)
    load, offset = [], 0
    for name, width in keyed:
        if width == 1:
            load.append(f"    key[{offset}] = {name};")
        else:
            load.append(f"    std::memcpy(&key[{offset}], {name}, {4 * _words(width)});")
        offset += _words(width)
    feed = [
        f"        model->{n} = {n};" if w == 1 else f"        put(model->{n}, {n});"
        for n, w in unit.inputs
    ]
    out = [
        f"    *{n} = model->{n};" if w == 1 else f"    get(model->{n}, {n});"
        for n, w in unit.outputs
    ]
    poison = [f"        {_poison(n, w)}" for n, w in unit.outputs] + ["        return;"]
    return "\n".join(
        [
            f'extern "C" void {unit.name}({", ".join(args)}) {{',
            # never destroyed: the model outlives every call, to the process's exit
            f"    static V{unit.name}* model = nullptr;",
            *([f"    if (!{gated}) {{", *poison, "    }"] if gated else []),
            f"    static uint32_t last[{words}];",
            f"    uint32_t key[{words}] = {{}};",
            *load,
            "    if (!model || std::memcmp(key, last, sizeof last) != 0) {",
            f"        if (!model) model = new V{unit.name};",
            "        std::memcpy(last, key, sizeof last);",
            *feed,
            "        model->eval();",
            "    }",
            *out,
            "}",
        ]
    )


def _poison(name: str, width: int) -> str:
    """C++ that sets output ``name`` to :data:`POISON` (cut to its width)."""
    if width == 1:
        return f"*{name} = {POISON & 1};"
    words = [POISON] * _words(width)
    if width % 32:
        words[-1] &= (1 << width % 32) - 1
    return " ".join(f"{name}[{k}] = {word:#x}u;" for k, word in enumerate(words))


def write_split(
    sources: list[Path], work: Path, *, min_statements: int
) -> tuple[list[Path], list[Unit]]:
    """Split the units out of ``sources`` into ``work``: the design's files (stubs in place
    of the units; a file without units stays as it is) and the units found."""
    paths: list[Path] = []
    units: list[Unit] = []
    for index, source in enumerate(sources):
        text, found = split_units(
            source.read_text(), min_statements=min_statements, first=len(units)
        )
        if not found:
            paths.append(source)
            continue
        path = work / f"design_{index}.sv"
        path.write_text(text)
        paths.append(path)
        units += found
    return paths, units
