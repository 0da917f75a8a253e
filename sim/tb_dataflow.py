"""cocotb testbench of the dataflow top: stream images in, check every output integer.

Driven by a JSON configuration (``sim.runner``): the test vectors (``input`` images and
the golden executor's ``output`` logits and ``prediction``), the stream formats from the
manifest, a seed, the probabilities of an idle input cycle and of a stalled output cycle,
and a cycle limit.

Every cycle, at the falling clock edge, the driver offers a beat (or, with the idle
probability, none; a beat once offered stays until taken) and the sink raises or drops
``o.ready``; after the logic settles the monitor records the transfers the next rising
edge makes. The first ``timing_images`` images run without gaps or stalls, to measure the
latency and the interval; the rest with both. The scoreboard compares each result beat
with the golden executor's logits and class and records every mismatch.
"""

import itertools
import random
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from sim.streams import decode_fields, encode_beats
from sim.tb_io import read_config, write_result

_KEPT_MISMATCHES = 20


class _Scoreboard:
    def __init__(self, expected: np.ndarray, labels: np.ndarray, fmt: dict[str, Any]) -> None:
        self.expected, self.labels, self.fmt = expected, labels, fmt
        self.received = 0
        self.mismatched_samples = 0
        self.mismatches: list[dict[str, Any]] = []

    def check(self, payload: int) -> None:
        n, fmt = self.received, self.fmt
        logits = decode_fields(payload, fmt["elems"], fmt["bits"], fmt["signed"])
        label = payload >> (fmt["elems"] * fmt["bits"])
        seen = [*logits, label]
        want = [*(int(v) for v in self.expected[n]), int(self.labels[n])]
        wrong = [k for k, (a, b) in enumerate(zip(want, seen, strict=True)) if a != b]
        if wrong:
            self.mismatched_samples += 1
            for k in wrong:
                if len(self.mismatches) < _KEPT_MISMATCHES:
                    index: Any = "class" if k == fmt["elems"] else k
                    self.mismatches.append(
                        {"sample": n, "output": index, "expected": want[k], "seen": seen[k]}
                    )
        self.received += 1


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

    sent, offering, cycle, first_in = 0, False, 0, None
    out_cycles: list[int] = []
    while board.received < count and cycle < cfg["max_cycles"]:
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
    result = {
        "samples": count,
        "received": board.received,
        "sent_beats": sent,
        "beats_per_image": per_image,
        "cycles": cycle,
        "timeout": board.received < count,
        "mismatched_samples": board.mismatched_samples,
        "mismatches": board.mismatches,
        "latency_cycles": out_cycles[0] - first_in if out_cycles and first_in is not None else None,
        "interval_cycles": gaps[-1] if gaps else None,
        "timing_intervals": gaps,
    }
    write_result(cfg, result)
    assert not result["timeout"], f"no result after {cycle} cycles ({board.received}/{count})"
    assert board.mismatched_samples == 0, board.mismatches[:3]
