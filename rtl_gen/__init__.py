"""rtl_gen: multiplier-free hardware from the integer model, in Amaranth 0.5.

* :mod:`rtl_gen.arith` — exact-width adder trees of shifted terms, requantisation.
* :mod:`rtl_gen.units` — constant-weight units (shift-add) and their multiplier twins.
* :mod:`rtl_gen.pe` — programmable shift-MAC and multiply-accumulate PEs.
* :mod:`rtl_gen.export` — Verilog, file list, manifest, Verilator lint.
* :mod:`rtl_gen.generate` — designs of an integer model package.

It reads the integer model of :mod:`inq_hw.intmodel` and nothing from PyTorch models.
"""
