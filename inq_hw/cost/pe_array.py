"""Energy and area of the programmable PE array, from the cycle model's counts.

:func:`estimate_energy` prices a :class:`sim.cycle_model.CycleReport` (any object with its
``config`` and ``total(name)``) by the project's technology tables
(:class:`inq_hw.cost.tables.TechTable`, default :data:`~inq_hw.cost.tables.HOROWITZ_45NM`:
Horowitz ISSCC 2014 at 45 nm, scaled by bit-width: adder ∝ n, multiplier ∝ n·m, barrel
shifter ∝ n·log n; NanGate cells for multiplexers and registers). Memory writes are priced
as reads; idle PEs are not clock-gated (every PE accumulates in every compute cycle).

Example usage::

    report = sim.cycle_model.predict(compile_program(model, config))
    energy = estimate_energy(report)          # pJ per inference, by category
"""

from typing import Protocol

from inq_hw.cost.tables import HOROWITZ_45NM, TechTable
from rtl_gen.pe_program import ArrayConfig

__all__ = ["estimate_area", "estimate_energy", "pe_op_energy"]


class _Counts(Protocol):
    """What is priced: the array's configuration and its access counts by name."""

    @property
    def config(self) -> ArrayConfig: ...

    def total(self, name: str) -> int: ...


def _shifter(config: ArrayConfig, table: TechTable, quantity: str) -> float:
    """The PE's barrel shifter over the code's 2**(b-2) shift amounts (none for b = 2)."""
    amounts = 1 << max(config.weight_bits - 2, 0)
    if amounts == 1:
        return 0.0
    return table.barrel_shifter(_shifted_bits(config), amounts, quantity)


def _shifted_bits(config: ArrayConfig) -> int:
    return config.act_bits + (1 << max(config.weight_bits - 2, 0)) - 1


def _pe(config: ArrayConfig, table: TechTable, quantity: str) -> float:
    """One PE: shifter and zero select, or multiplier; the add/subtract with its operand
    select, and the accumulator register."""
    scaled = table.energy if quantity == "energy_pj" else table.area
    acc = config.acc_bits
    tail = scaled("int_add", acc) + scaled("mux2", acc) + scaled("register", acc)
    if config.pe == "mult":
        return scaled("int_mult", config.act_bits, config.weight_bits) + tail
    return _shifter(config, table, quantity) + scaled("mux2", _shifted_bits(config)) + tail


def pe_op_energy(config: ArrayConfig, table: TechTable = HOROWITZ_45NM) -> float:
    """pJ of one PE accumulate (:func:`_pe`)."""
    return _pe(config, table, "energy_pj")


def _access(table: TechTable, word_bits: int, depth: int) -> float:
    """pJ of one access of a ``depth × word_bits`` memory (a write priced as a read)."""
    return table.memory_read(word_bits, -(-depth * word_bits // 8))[0]


def estimate_energy(report: _Counts, table: TechTable = HOROWITZ_45NM) -> dict[str, float]:
    """pJ per inference by category (``pe``, ``act_mem``, ``weight_mem``, ``bias_mem``,
    ``program_mem``, ``vector``) and ``total``, priced by a technology table
    (:mod:`inq_hw.cost.tables`; default Horowitz 45 nm)."""
    cfg = report.config
    acc = cfg.acc_bits
    energy = {
        "pe": report.total("pe_ops") * pe_op_energy(cfg, table),
        "act_mem": (report.total("act_reads") + report.total("act_writes"))
        * _access(table, cfg.act_bits, cfg.act_depth),
        "weight_mem": report.total("weight_reads")
        * _access(table, cfg.cols * cfg.weight_bits, cfg.weight_depth),
        "bias_mem": report.total("bias_reads") * _access(table, acc, cfg.bias_depth),
        "program_mem": report.total("program_reads")
        * _access(table, cfg.word_bits, cfg.program_depth),
        # One add (reduce or bias) and one requantising shift per vector operation.
        "vector": report.total("vector_ops")
        * (table.energy("int_add", acc) + table.energy("mux2", acc)),
    }
    energy["total"] = sum(energy.values())
    return energy


def estimate_area(config: ArrayConfig, table: TechTable = HOROWITZ_45NM) -> dict[str, float]:
    """µm² by category (``pes``, ``drain_mux``, ``memories``: SRAM cells only) and
    ``total``; the controller's counters are not counted (they do not grow with R×C)."""
    pes = config.rows * config.cols
    bits = (
        config.act_depth * config.act_bits
        + config.weight_depth * config.cols * config.weight_bits
        + config.bias_depth * config.acc_bits
        + config.program_depth * config.word_bits
    )
    area = {
        "pes": pes * _pe(config, table, "area_um2"),
        "drain_mux": table.area("mux2", max(pes - 1, 0) * config.acc_bits),
        "memories": table.area("sram_bit", bits),
    }
    area["total"] = sum(area.values())
    return area
