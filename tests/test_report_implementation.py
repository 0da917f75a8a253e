"""The report's whole-network section and plot, rendered from a results dict: every cell is
the results' figure, ratios are twin ÷ shift-add, a refused design reads "does not fit",
and a bad implementation part is a one-line validation error naming its place."""

import copy
from pathlib import Path
from typing import Any

import pytest

from inq_hw.report import ResultsError, render_report, validate_results
from inq_hw.report.plots import throughput_plot
from tests.test_report import PNG_MAGIC, make_results, md_tables


def _design(lut: int, ff: int, dsp: int, fmax: float, interval: int) -> dict[str, Any]:
    rate = fmax * 1e6 / interval
    used = {"lut": lut, "ff": ff, "carry": lut // 3, "bram": 4, "dsp": dsp}
    have = {"lut": 24288, "ff": 24288, "bram": 56, "dsp": 28}
    return {
        "resources": used,
        "device_share": {**{k: used[k] / have[k] for k in have}, "carry": None},
        "fmax_mhz": fmax,
        "timing_met": fmax >= 25.0,
        "images_per_second": rate,
        "us_per_image": 1e6 / rate,
        "latency_us": 2 * interval / fmax,
        "interval_cycles": interval,
        "latency_cycles": 2 * interval,
        "dsp": None,
        "seconds": 61.5,
        "tool_seconds": {"synth": 20.1, "pnr": 40.2, "pack": 1.2},
        "bitstream": "/runs/flow/stages/implement-x/implement/top.bit",
    }


def with_implementation() -> dict[str, Any]:
    results = make_results()
    for entry in results["bits"]:
        bits = entry["bits"]
        designs = {
            "shift_add": _design(1000 * bits, 900, 0, 40.0 - bits, 2900),
            "mult8": _design(9000, 2000, 20, 21.5, 2900),
            "mult8_lut": _design(30000, 2000, 0, 18.25, 2900),
        }
        if bits == 5:
            designs["mult8"] = {
                "refused": "dataflow_mult8 does not fit ecp5-25k: it needs 569 DSP (has 28)"
            }
        entry["implementation"] = {
            "device": "ecp5-25k",
            "part": "LFE5U-25F-CABGA381",
            "device_resources": {"lut": 24288, "ff": 24288, "bram": 56, "dsp": 28},
            "clock_mhz": 25.0,
            "folding": {"features.conv1": 16, "features.conv2": 32},
            "designs": designs,
        }
        entry["stage_seconds"] = {"implement shift-add": 61.5}
    return results


def _section(tmp_path: Path, results: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    render_report(results, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    return markdown, md_tables(markdown)["Whole network on an FPGA"]


def test_whole_network_table_equals_the_results(tmp_path: Path) -> None:
    results = with_implementation()
    markdown, rows = _section(tmp_path, results)
    assert len(rows) == 4 * 3
    table = {(row["bits"], row["design"]): row for row in rows}
    for entry in results["bits"]:
        designs = entry["implementation"]["designs"]
        base = designs["shift_add"]
        for design, name in (
            ("shift_add", "shift-add"),
            ("mult8", "mult8 twin, DSP"),
            ("mult8_lut", "mult8 twin, LUT only"),
        ):
            row, figures = table[(str(entry["bits"]), name)], designs[design]
            if "refused" in figures:
                assert row["LUT4"] == "does not fit" and row["Fmax (MHz)"] == "—"
                continue
            used = figures["resources"]
            assert [row[k] for k in ("LUT4", "FF", "carry", "BRAM", "DSP")] == [
                f"{used[k]:,}" for k in ("lut", "ff", "carry", "bram", "dsp")
            ]
            assert row["device fill"].startswith(
                f"LUT {100 * figures['device_share']['lut']:.1f}%, "
            )
            assert row["Fmax (MHz)"] == f"{figures['fmax_mhz']:.1f}"
            assert row["timing"] == ("met" if figures["timing_met"] else "NOT met") + " at 25 MHz"
            assert row["images/s at Fmax"] == f"{figures['images_per_second']:,.0f}"
            assert row["µs per image"] == f"{figures['us_per_image']:.2f}"
            if design == "shift_add":
                assert row["LUT twin ÷ shift-add"] == "—"
            else:  # the one ratio direction: twin ÷ shift-add
                lut = used["lut"] / base["resources"]["lut"]
                rate = figures["images_per_second"] / base["images_per_second"]
                assert row["LUT twin ÷ shift-add"] == f"{lut:.2f}x"
                assert row["images/s twin ÷ shift-add"] == f"{rate:.2f}x"
    assert "does not fit: 5-bit mult8 twin, DSP: dataflow_mult8 does not fit" in markdown
    assert "ecp5-25k (LFE5U-25F-CABGA381), clock constraint 25 MHz" in markdown
    assert "of 2, 3, 4, 5 bits and its 8-bit multiplier twin" in markdown
    assert "whose place and route is in 'Whole network on an FPGA'" in markdown
    stages = markdown.split("| stage (seconds)")[1]
    assert "| implement shift-add | — | 61.5 | 61.5 | 61.5 | 61.5 |" in stages
    assert (tmp_path / "throughput.png").read_bytes().startswith(PNG_MAGIC)


def without_implementation() -> dict[str, Any]:
    results = make_results()
    for entry in results["bits"]:
        entry.pop("implementation", None)
    return results


def test_without_implementation_the_section_says_not_measured(tmp_path: Path) -> None:
    render_report(without_implementation(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split("## Whole network on an FPGA")[1].split("##")[0]
    assert "Place and route of the whole network: not measured." in section
    assert "which was not implemented" in markdown
    assert not (tmp_path / "throughput.png").exists()
    assert throughput_plot(without_implementation()) is None


def test_throughput_plot_only_from_placed_designs() -> None:
    results = with_implementation()
    for entry in results["bits"]:
        entry["implementation"]["designs"] = {
            "mult8": {"refused": "dataflow_mult8 does not fit ecp5-25k: it needs 569 DSP"}
        }
    assert throughput_plot(results) is None
    assert throughput_plot(with_implementation()).startswith(PNG_MAGIC)  # type: ignore[union-attr]


def _edit(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    results = copy.deepcopy(with_implementation())
    part = results["bits"][0]["implementation"]
    for key in path[:-1]:
        part = part[key]
    part[path[-1]] = value
    return results


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("device",), 3, "bits[0].implementation.device must be a non-empty string, not 3"),
        (("clock_mhz",), -1, "bits[0].implementation.clock_mhz must be a non-negative"),
        (("designs", "mult4"), {}, "keys must be among ('shift_add', 'mult8', 'mult8_lut')"),
        (
            ("designs", "shift_add", "timing_met"),
            "yes",
            "bits[0].implementation.designs.shift_add.timing_met must be true or false",
        ),
        (
            ("designs", "mult8", "resources", "lut"),
            -5,
            "designs.mult8.resources.lut must be a non-negative integer, not -5",
        ),
        (("designs", "mult8_lut"), {"fmax_mhz": 3.0}, "must hold resources or refused"),
    ],
)
def test_bad_implementation_parts_are_named(
    path: tuple[Any, ...], value: Any, fragment: str
) -> None:
    with pytest.raises(ResultsError) as error:
        validate_results(_edit(path, value))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_valid_implementation_part_passes() -> None:
    results = with_implementation()
    assert validate_results(results) is results
