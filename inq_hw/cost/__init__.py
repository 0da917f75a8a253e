"""The cost model: what each design costs, and what its multiplier twin would cost.

:mod:`~inq_hw.cost.tables` (per-operation energy and area of a technology, each figure
with its source), :mod:`~inq_hw.cost.analytic` (operation counts of an integer model
priced by a table) and :mod:`~inq_hw.cost.synth` (Yosys and nextpnr on the Verilog rtl_gen
writes, cached by design hash). The two are shown side by side, never mixed.
"""

from inq_hw.cost.analytic import DESIGNS, DesignCost, LayerCost, NetworkCost, analyze
from inq_hw.cost.errors import (
    CostError,
    SynthesisError,
    SynthesisTimeout,
    TechTableError,
    ToolNotFound,
)
from inq_hw.cost.tables import HOROWITZ_45NM, Figure, TechTable, load_table, table_from_dict

__all__ = [
    "DESIGNS",
    "HOROWITZ_45NM",
    "CostError",
    "DesignCost",
    "Figure",
    "LayerCost",
    "NetworkCost",
    "SynthesisError",
    "SynthesisTimeout",
    "TechTable",
    "TechTableError",
    "ToolNotFound",
    "analyze",
    "load_table",
    "table_from_dict",
]
