"""cocotb testbench of the dataflow top: stream images in, check every output integer.

Driven by a JSON configuration (``sim.runner``): the test vectors (``input`` images and
the golden executor's ``output`` logits and ``prediction``), the stream formats from the
manifest, a seed, the probabilities of an idle input cycle and of a stalled output cycle,
and a cycle limit.

Every cycle, at the falling clock edge, the driver offers a beat (or, with the idle
probability, none; a beat once offered stays until taken) and the sink raises or drops
``o.ready``; after the logic settles the monitor records the transfers the next rising
edge makes. The first ``timing_images`` images run without gaps or stalls, to measure the
latency and the interval; the rest with both. The scoreboard (:mod:`sim.scoreboard`, shared with the
compiled engine) compares each result beat with the golden executor's logits and class.
"""

import itertools
import random
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from sim.scoreboard import score_stream
from sim.streams import decode_fields, encode_beats
from sim.tb_io import read_config, write_result


class _Scoreboard:
    """Collects the decoded result beats; :func:`sim.scoreboard.score_stream` judges them."""

    def __init__(self, expected: np.ndarray, labels: np.ndarray, fmt: dict[str, Any]) -> None:
        self.expected, self.labels, self.fmt = expected, labels, fmt
        self.seen: list[list[int]] = []

    @property
    def received(self) -> int:
        return len(self.seen)

    def check(self, payload: int) -> None:
        fmt = self.fmt
        logits = decode_fields(payload, fmt["elems"], fmt["bits"], fmt["signed"])
        self.seen.append([*logits, payload >> (fmt["elems"] * fmt["bits"])])

    def verdict(self) -> tuple[int, list[dict[str, Any]]]:
        seen = np.array(self.seen, dtype=np.int64).reshape(len(self.seen), self.fmt["elems"] + 1)
        return score_stream(self.expected, self.labels, seen)


@cocotb.test()
async def stream_images(dut: Any) -> None:
    cfg = read_config()
    vectors = np.load(cfg["vectors"])
    count = cfg["samples"]
    beats = encode_beats(vectors["input"][:count], cfg["input"])
    per_image = cfg["input"]["beats"]
    board = _Scoreboard(vectors["output"][:count], vectors["prediction"][:count], cfg["output"])
    rng = random.Random(cfg["seed"])
    timed = min(cfg["timing_images"], count)

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    # Cycle 0 is the first clock edge out of reset, as in the control model: a
    # convolution walks its padding from there whether beats come or not, so an idle edge
    # before the first offer would shorten the latency measured from the first transfer
    # when the top's input has a FIFO (a pipelined top's).
    sent, offering, cycle, first_in = 0, False, 0, None
    out_cycles: list[int] = []
    while board.received < count and cycle < cfg["max_cycles"]:
        if cycle:
            await FallingEdge(dut.clk)
        calm = board.received < timed
        if not offering and sent < len(beats):
            offering = calm or rng.random() >= cfg["idle"]
            if offering:
                dut.i__payload.value = beats[sent]
        dut.i__valid.value = int(offering)
        ready = calm or rng.random() >= cfg["stall"]
        dut.o__ready.value = int(ready)
        await ReadOnly()
        if offering and dut.i__ready.value == 1:
            first_in = cycle if first_in is None else first_in
            sent, offering = sent + 1, False
        if ready and dut.o__valid.value == 1:
            board.check(dut.o__payload.value.to_unsigned())
            out_cycles.append(cycle)
        cycle += 1

    gaps = [b - a for a, b in itertools.pairwise(out_cycles[:timed])]
    mismatched, mismatches = board.verdict()
    result = {
        "samples": count,
        "received": board.received,
        "sent_beats": sent,
        "beats_per_image": per_image,
        "cycles": cycle,
        "timeout": board.received < count,
        "mismatched_samples": mismatched,
        "mismatches": mismatches,
        "latency_cycles": out_cycles[0] - first_in if out_cycles and first_in is not None else None,
        "interval_cycles": gaps[-1] if gaps else None,
        "timing_intervals": gaps,
    }
    write_result(cfg, result)
    assert not result["timeout"], f"no result after {cycle} cycles ({board.received}/{count})"
    assert mismatched == 0, mismatches[:3]
