"""A fast FPGA resource model of the programmable shift-PE array: LUT, FF, carry, BRAM.

The dataflow top's model (:mod:`inq_hw.cost.fpga`) counts the logic of constant-weight
engines; the PE array (:class:`rtl_gen.pe_array.PEArray`) is the same logic whatever the
network, sized by its :class:`rtl_gen.pe_program.ArrayConfig`, so its model is a few
features of the configuration with weights per family fitted to synthesis:

* ``pe``: per PE, ``acc_bits × (weight_bits - 1)``: the accumulator's adder and the
  barrel shifter's ``weight_bits - 2`` levels of the code's index (a 2-bit code has no
  index: sign and zero only), so one accumulator-wide adder per PE at 2 bits.
* ``acc``: per PE, ``acc_bits``: the accumulator register and the drain's select of it.
* ``rows``: per row, the activation address bits (the row's address generation, padding
  check and read port).
* ``base``: one: the controller, the requantiser, the vector unit, the host ports.

Flip-flops and carries are fitted to the same features. Block RAM is counted from the
memories (:func:`inq_hw.cost.fpga.bram_blocks`): the activation memory once per row (each
row reads through its own port, so Yosys copies it), the weight memory (``cols`` codes per
word), the bias memory; the program and the term table are a few words and map to logic.

:data:`WEIGHTS` are non-negative least squares on the relative error over the syntheses
listed there (``synth_ice40`` / ``synth_ecp5`` with :func:`inq_hw.cost.synth.synthesize`'s
fast ABC mapping) of the shift arrays of two digits-cnn packages (2 and 4 bits) at 1×1 to
4×4 and 1×32 PEs; README ("The PE array as an implement target") gives the errors. The
multiplier-PE twin is not modelled (:func:`estimate_pe_array` refuses it).

Example usage::

    estimate = estimate_pe_array(program.config, "ice40")
    estimate.lut, estimate.ff, estimate.bram
"""

from typing import Any

from inq_hw.cost.errors import CostError
from inq_hw.cost.fpga import ICE40_BRAM_COST, Estimate, _check_family, bram_blocks

__all__ = ["PE_FEATURES", "WEIGHTS", "estimate_pe_array", "pe_array_bram", "pe_features"]

PE_FEATURES = ("base", "rows", "pe", "acc")

#: Per family, per resource, the weight of each feature (module docstring), fitted on
#: iCE40: 12 syntheses (2-bit digits-cnn at 1×1, 1×2, 1×4, 1×8, 1×16, 1×32, 2×2, 2×4;
#: 4-bit at 1×4, 1×16, 2×4, 4×4); ECP5: 7 (2-bit at 1×1, 1×4, 1×16, 2×4; 4-bit at 1×4,
#: 1×16, 4×4); re-fitted when the array gained its pipeline registers (240 to 430 FF
#: more than the previous weights predicted, up to 7% fewer LUT).
WEIGHTS: dict[str, dict[str, dict[str, float]]] = {
    "ice40": {
        "lut": {"base": 1049.1, "rows": 30.6117, "pe": 0.8037, "acc": 2.8535},
        "ff": {"base": 575.079, "rows": 10.8918, "pe": 0.0173, "acc": 0.9527},
        "carry": {"base": 402.693, "rows": 22.2564, "pe": 0.0168, "acc": 0.8775},
    },
    "ecp5": {
        "lut": {"base": 1380.79, "rows": 36.5407, "pe": 0.8773, "acc": 3.918},
        "ff": {"base": 649.432, "rows": 10.9991, "pe": 0.0169, "acc": 0.9424},
        "carry": {"base": 286.314, "rows": 12.0155, "pe": 0.018, "acc": 0.4454},
    },
}  # fmt: skip


def pe_features(config: Any) -> dict[str, float]:
    """The model's features of an :class:`rtl_gen.pe_program.ArrayConfig` (module
    docstring)."""
    pes = config.rows * config.cols
    return {
        "base": 1.0,
        "rows": float(config.rows * max(config.act_depth - 1, 1).bit_length()),
        "pe": float(pes * config.acc_bits * (config.weight_bits - 1)),
        "acc": float(pes * config.acc_bits),
    }


#: Yosys ``memory_libmap``'s cost of a bit of ROM in logic (``-logic-cost-rom``, default
#: 1/16; a bit of RAM costs 1): on iCE40 a ROM stays logic unless its bits cost more than
#: the blocks it would take (:data:`inq_hw.cost.fpga.ICE40_BRAM_COST` each). Seen on the
#: micro CNN's 1×2 array: its 32 × 8-bit weights and 8 × 14-bit biases in logic, its
#: 32 × 9-bit activation RAM in one SB_RAM40_4K.
ROM_BIT_COST = 1 / 16


def pe_array_bram(config: Any, family: str) -> int:
    """Block RAMs of the array's memories on ``family`` (module docstring): a memory
    Yosys maps to logic (iCE40: its bits, at :data:`ROM_BIT_COST` each for the weight and
    bias ROMs, cost no more than :data:`inq_hw.cost.fpga.ICE40_BRAM_COST` per block it
    would take) counts none."""
    memories = (  # depth, width, copies, cost of a bit in logic
        (config.act_depth, config.act_bits, config.rows, 1.0),
        (config.weight_depth, config.cols * config.weight_bits, 1, ROM_BIT_COST),
        (config.bias_depth, config.acc_bits, 1, ROM_BIT_COST),
    )
    total = 0
    for depth, width, copies, bit_cost in memories:
        blocks = bram_blocks(depth, width, family)
        if family == "ice40" and depth * width * bit_cost <= ICE40_BRAM_COST * blocks:
            continue
        total += copies * blocks
    return total


def estimate_pe_array(config: Any, family: str) -> Estimate:
    """The predicted resources of a shift-PE array of ``config`` on ``family``.

    Raises:
        CostError: An unknown family, or the multiplier-PE twin (not modelled).
    """
    _check_family(family)
    if config.pe != "shift":
        raise CostError("The FPGA model covers the shift-PE array only, not the multiplier twin")
    features = pe_features(config)
    weights = WEIGHTS[family]

    def total(resource: str) -> int:
        return round(sum(weights[resource][name] * features[name] for name in PE_FEATURES))

    return Estimate(
        family=family,
        lut=total("lut"),
        ff=total("ff"),
        carry=total("carry"),
        bram=pe_array_bram(config, family),
        dsp=0,
    )
