"""The trade-off report: files, numbers read back from report.md, HTML, validation, atomicity."""

import base64
import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from inq_hw.cli import main
from inq_hw.report import ResultsError, load_results, render_report, validate_results
from inq_hw.report import render as render_module
from inq_hw.report.plots import PLOTS, Plot, pareto_front

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LAYERS = {"features.conv1": 144, "features.conv2": 4608, "classifier": 10496}


def _histogram(bits: int, weights: int, zeros: int) -> dict[str, int]:
    n1 = -1
    exponents = range(n1 + 1 - 2 ** (bits - 2), n1 + 1)
    share, extra = divmod(weights - zeros, len(exponents))
    histogram = {str(e): share + (i < extra) for i, e in enumerate(exponents)}
    return {**histogram, "zero": zeros}


def _bit_entry(bits: int) -> dict[str, Any]:
    zero_fraction = {2: 0.41, 3: 0.22, 4: 0.14, 5: 0.12}[bits]
    layers: dict[str, dict[str, Any]] = {}
    for i, (name, weights) in enumerate(LAYERS.items()):
        zeros = int(weights * zero_fraction) + i
        layers[name] = {
            "count": weights,
            "zero_fraction": zeros / weights,
            "exponent_histogram": _histogram(bits, weights, zeros),
        }
    total = sum(LAYERS.values())
    return {
        "bits": bits,
        "accuracy": {
            "inq": {2: 0.9192, 3: 0.9805, 4: 0.9916, 5: 0.9916}[bits],
            "integer": {2: 0.9220, 3: 0.9805, 4: 0.9889, 5: 0.9889}[bits],
            "one_shot": {2: 0.1476, 3: 0.7716, 4: 0.9861, 5: 0.9944}[bits],
            "agreement": {2: 0.9972, 3: 1.0, 4: 0.9972, 5: 0.9972}[bits],
        },
        "weights": {
            "count": total,
            "zero_fraction": sum(layer["exponent_histogram"]["zero"] for layer in layers.values())
            / total,
            "memory_bits": total * bits,
            "baseline_memory_bits": total * 8,
            "layers": layers,
        },
        "cost": {
            "analytic": {
                "energy_pj": {"shift_add": 1.1e4 + 900.5 * bits, "mult8": 8.04e4, "fp32": 4.1e5},
                "area_um2": {"shift_add": 2.3e5 * bits, "mult8": 3.31e6, "fp32": 1.9e7},
            },
            "generic": {
                "gates": {"shift_add": 5000 + 1200 * bits, "mult8": 40123},
                "transistors": {"shift_add": 31000.5 * bits, "mult8": 240000.0},
            },
            "ice40": {
                "lut": {"shift_add": 1800 + 300 * bits, "mult8": 9050},
                "ff": {"shift_add": 400 + bits, "mult8": 610},
                "dsp": {"shift_add": 0, "mult8": 8},
                "fmax_mhz": {"shift_add": 61.37 - bits, "mult8": 38.2} if bits != 3 else None,
                "slice_outputs": 2,
            },
        },
        "rtl": {
            "simulator": "verilator",
            "simulator_version": "5.036",
            "samples": 64,
            "mismatched_samples": 0,
            "cycles_per_image": 100 + bits,
            "latency_cycles": 116 + bits,
            "timing_matches_manifest": True,
            "folding": {"features.conv1": 8, "features.conv2": 8, "classifier": 8},
        },
        "stage_seconds": {"quantize": 12.3 + bits, "lower": 0.4, "simulate": 20.0},
    }


def make_results() -> dict[str, Any]:
    """A realistic results.json of the default flow on digits-cnn."""
    results: dict[str, Any] = {
        "format": "inq-hw-results",
        "version": 1,
        "name": "digits-cnn",
        "config": {
            "dataset": "digits",
            "model": "digits-cnn",
            "bits": [2, 3, 4, 5],
            "simulator": "verilator",
            "samples": 64,
            "skip_synthesis": False,
        },
        "created": "2025-01-01T12:00:00+00:00",
        "machine": {"cpus": 2, "python": "3.11.2"},
        "dataset": {"name": "digits", "test_samples": 359},
        "fp32": {"accuracy": 0.9889},
        "uniform8": {"accuracy": 0.9861, "integer_accuracy": 0.9861},
        "bits": [_bit_entry(bits) for bits in (2, 3, 4, 5)],
        "stage_seconds": {"train": 30.5, "report": 2.0},
    }
    results["bits"][0]["implementation"] = _implementation()  # the default: smallest width
    return results


def _implementation() -> dict[str, Any]:
    """The flow's implementation of one bit-width: the shift-add top placed, the twin refused."""
    used = {"lut": 7844, "ff": 7747, "carry": 2094, "bram": 0, "dsp": 0}
    return {
        "device": "ecp5-25k",
        "part": "LFE5U-25F-CABGA381",
        "device_resources": {"lut": 24288, "ff": 24288, "bram": 56, "dsp": 28},
        "clock_mhz": 12.0,
        "folding": {"features.conv1": 16, "features.conv2": 32, "classifier": 10},
        "designs": {
            "shift_add": {
                "resources": used,
                "device_share": {"lut": 7844 / 24288, "ff": 7747 / 24288, "bram": 0.0, "dsp": 0.0},
                "fmax_mhz": 15.61,
                "timing_met": True,
                "images_per_second": 15.61e6 / 2228,
                "us_per_image": 2228 / 15.61,
                "latency_us": 2512 / 15.61,
                "interval_cycles": 2228,
                "latency_cycles": 2512,
                "seconds": 134.1,
            },
            "mult8": {"refused": "dataflow_mult8 does not fit ecp5-25k: it needs 569 DSP (has 28)"},
        },
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, list[Path]]:
    results = make_results()
    out = tmp_path_factory.mktemp("report")
    return results, out, render_report(results, out)


# -- reading report.md back ------------------------------------------------------------------


def md_tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Every Markdown table as rows of ``{header: cell}``, keyed by the heading above it."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, lines = "", markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and lines[i + 1 : i + 2] and lines[i + 1].startswith("|---"):
            headers = _cells(line)
            rows = []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(headers, _cells(body), strict=True)))
            tables.setdefault(heading, rows)
    return tables


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _percent(cell: str) -> float:
    assert cell.endswith("%"), cell
    return float(cell[:-1]) / 100


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def check_bit_table(rows: list[dict[str, str]], entry: dict[str, Any], results: dict[str, Any]):
    bits = entry["bits"]
    ours, twin, fp32 = (
        f"INQ {bits}-bit (shift-add)",
        "8-bit uniform (multiplier twin)",
        "FP32",
    )
    table = {row[""]: row for row in rows}
    accuracy, weights, cost, rtl = entry["accuracy"], entry["weights"], entry["cost"], entry["rtl"]
    for metric, value in (
        ("accuracy, float", accuracy["inq"]),
        ("accuracy, integer", accuracy["integer"]),
        ("accuracy, one-shot (no re-training)", accuracy["one_shot"]),
        ("float/integer agreement", accuracy["agreement"]),
        ("zero weights", weights["zero_fraction"]),
    ):
        assert _percent(table[metric][ours]) == pytest.approx(value, abs=5e-5), metric
    assert _percent(table["accuracy, float"][fp32]) == pytest.approx(results["fp32"]["accuracy"])
    assert _percent(table["accuracy, integer"][twin]) == pytest.approx(
        results["uniform8"]["integer_accuracy"]
    )
    assert _number(table["weight memory (bits)"][ours]) == weights["memory_bits"]
    assert _number(table["weight memory (bits)"][twin]) == weights["baseline_memory_bits"]
    for metric, key, scale in (
        ("energy per inference (nJ, analytic, unrolled units)", "energy_pj", 1e-3),
        ("area (mm², analytic, unrolled units)", "area_um2", 1e-6),
    ):
        for column, design in ((ours, "shift_add"), (twin, "mult8"), (fp32, "fp32")):
            expected = cost["analytic"][key][design] * scale
            assert _number(table[metric][column]) == pytest.approx(expected, rel=1e-3)
    for metric, part in (
        ("generic gates (Yosys, 2-output slices)", cost["generic"]["gates"]),
        ("iCE40 LUT (2-output slices)", cost["ice40"]["lut"]),
        ("iCE40 FF (2-output slices)", cost["ice40"]["ff"]),
        ("iCE40 DSP (2-output slices)", cost["ice40"]["dsp"]),
    ):
        assert _number(table[metric][ours]) == part["shift_add"], metric
        assert _number(table[metric][twin]) == part["mult8"], metric
    fmax = cost["ice40"]["fmax_mhz"]
    fmax_row = "iCE40 Fmax (MHz, nextpnr, 2-output slices)"
    if fmax is None:  # an unmeasured figure in every design is no row at all
        assert fmax_row not in table
    for column, design in ((ours, "shift_add"), (twin, "mult8")) if fmax else ():
        assert _number(table[fmax_row][column]) == pytest.approx(fmax[design], rel=1e-3)
    assert _number(table["RTL samples simulated"][ours]) == rtl["samples"]
    assert _number(table["RTL mismatched samples"][ours]) == rtl["mismatched_samples"]
    folded = "dataflow top, folding 8 on every layer"
    assert _number(table[f"cycles per image ({folded})"][ours]) == rtl["cycles_per_image"]
    assert _number(table[f"latency (cycles, {folded})"][ours]) == rtl["latency_cycles"]
    verdict = table["RTL simulation"][ours]
    assert verdict.startswith("bit-exact on 64 of 359 test images (verilator")


def check_report(markdown: str, results: dict[str, Any]) -> None:
    tables = md_tables(markdown)
    for entry in results["bits"]:
        check_bit_table(tables[f"{entry['bits']}-bit"], entry, results)
    summary = tables["Summary"]
    assert [int(row["bits"]) for row in summary] == [e["bits"] for e in results["bits"]]
    for row, entry in zip(summary, results["bits"], strict=True):
        assert _percent(row["integer"]) == pytest.approx(entry["accuracy"]["integer"], abs=5e-5)
        shift = entry["cost"]["analytic"]["energy_pj"]["shift_add"]
        assert _number(row["energy shift-add (nJ)"]) == pytest.approx(shift * 1e-3, rel=1e-3)
        lut = row["iCE40 LUT shift-add (2-output slices)"]
        assert _number(lut) == entry["cost"]["ice40"]["lut"]["shift_add"]
        twin = entry["cost"]["analytic"]["energy_pj"]["mult8"]
        assert row["energy twin ÷ shift-add"] == f"{twin / shift:.1f}x"


# -- the tests -------------------------------------------------------------------------------


def test_render_writes_every_file(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    results, out, files = rendered
    names = {path.name for path in files}
    assert names == {"report.md", "report.html", "results.json", *(p.file for p in PLOTS)}
    assert all(path.parent == out and path.stat().st_size > 0 for path in files)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary files
    assert load_results(out / "results.json") == results


def test_plots_are_valid_pngs(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    from matplotlib.image import imread

    _, out, _ = rendered
    for plot in PLOTS:
        data = (out / plot.file).read_bytes()
        assert data.startswith(PNG_MAGIC), plot.file
        height, width, _ = imread(out / plot.file).shape
        assert width > 300 and height > 200, plot.file


def test_markdown_numbers_equal_results(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    results, out, _ = rendered
    markdown = (out / "report.md").read_text()
    check_report(markdown, results)
    for plot in PLOTS:
        assert f"]({plot.file})" in markdown


def test_read_back_catches_a_wrong_number(
    rendered: tuple[dict[str, Any], Path, list[Path]],
) -> None:
    results, out, _ = rendered
    markdown = (out / "report.md").read_text()
    tampered = markdown.replace(
        "| iCE40 LUT (2-output slices) | 3,300 |", "| iCE40 LUT (2-output slices) | 3,301 |"
    )
    assert tampered != markdown
    with pytest.raises(AssertionError):
        check_report(tampered, results)


def test_html_is_self_contained(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    _, out, _ = rendered
    page = (out / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(PLOTS)
    assert {base64.b64decode(data) for data in embedded} == {
        (out / plot.file).read_bytes() for plot in PLOTS
    }
    assert not re.search(r"<script|<link|@import|(src|href)=\"(?!data:)", page)
    assert "<table>" in page and "3,300" in page


def test_paper_figures_are_labelled(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    _, out, _ = rendered
    markdown = (out / "report.md").read_text()
    section = markdown.split("## Beside the paper's ImageNet results")[1].split("\n## ")[0]
    assert "> The figures in the paper columns below are the paper's own" in section
    assert "not ours" in section
    rows = {row["bits"]: row for row in md_tables(markdown)["Beside the paper's ImageNet results"]}
    assert rows["5"]["paper: ResNet-18 INQ top-1 (ImageNet)"] == "68.98%"
    assert rows["5"]["paper: change vs its FP32 68.27% (points)"] == "+0.71"
    assert rows["2 (ternary)"]["paper: ResNet-18 INQ top-1 (ImageNet)"] == "66.02%"
    assert rows["5"]["ours: INQ float (digits)"] == "99.16%"
    assert "ResNet-50 | 73.2% / 91.2% | 74.8% / 92.5%" in section
    assert "68.98" not in markdown.split("## Beside the paper's")[0]  # only in that section


def test_missing_parts_render_as_not_measured(
    rendered: tuple[dict[str, Any], Path, list[Path]], tmp_path: Path
) -> None:
    shutil.copytree(rendered[1], tmp_path, dirs_exist_ok=True)
    results = make_results()
    del results["uniform8"], results["config"], results["stage_seconds"]
    for entry in results["bits"]:
        entry["cost"] = entry["rtl"] = entry["implementation"] = None
        del entry["weights"], entry["accuracy"]["integer"]
    files = render_report(results, tmp_path)
    names = {"accuracy.png", "results.json", "report.md", "report.html"}
    assert {p.name for p in files} == names
    assert {p.name for p in tmp_path.iterdir()} == names  # the old cost.png etc. are gone
    markdown = (tmp_path / "report.md").read_text()
    table = {row[""]: row for row in md_tables(markdown)["4-bit"]}
    assert table["iCE40 LUT (per-layer slices)"]["INQ 4-bit (shift-add)"] == "not measured"
    assert table["RTL simulation"]["INQ 4-bit (shift-add)"] == "not measured"
    assert table["accuracy, integer"]["8-bit uniform (multiplier twin)"] == "not measured"
    assert "RTL simulation: not measured." in markdown and "cost.png" not in markdown


def test_pareto_front() -> None:
    points = [(10.0, 0.90), (20.0, 0.95), (15.0, 0.89), (30.0, 0.95), (5.0, 0.5)]
    assert pareto_front(points) == [0, 1, 4]


# -- validation ------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Any:
    def edit(results: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        part: Any = results
        for key in parents:
            part = part[int(key)] if isinstance(part, list) else part[key]
        if value is _DELETE:
            del part[last]
        else:
            part[last] = value

    return edit


_DELETE = object()

BAD_RESULTS = [
    (_set("format", "inq-hw-package"), "format must be 'inq-hw-results', not 'inq-hw-package'"),
    (_set("version", 2), "Results version 2 is not supported"),
    (_set("version", "1"), "version must be a positive integer, not '1'"),
    (_set("name", _DELETE), "lack the required 'name'"),
    (_set("fp32", {}), "lack the required 'fp32.accuracy'"),
    (_set("fp32.accuracy", 98.89), "fp32.accuracy must be a fraction from 0 to 1, not 98.89"),
    (_set("bits", []), "bits must be a non-empty list"),
    (_set("bits.1.accuracy.inq", "0.98"), "bits[1].accuracy.inq must be a fraction"),
    (_set("bits.0.bits", 9), "bits[0].bits must be an integer from 2 to 8, not 9"),
    (_set("bits.0.bits", 3), "each bit-width once, ascending, not [3, 3, 4, 5]"),
    (_set("bits.2.cost.ice40.lut.mult8", 9050.5), "ice40.lut.mult8 must be a non-negative integer"),
    (_set("bits.2.cost.analytic.energy_pj", {"shift-add": 1.0}), "not 'shift-add'"),
    (_set("bits.3.rtl.samples", True), "bits[3].rtl.samples must be a non-negative integer"),
    (_set("bits.3.rtl.mismatched_samples", 65), "must not exceed bits[3].rtl.samples (64)"),
    (
        _set("bits.0.weights.layers.classifier.exponent_histogram", {"...": 0}),
        "keys must be integer exponents or 'zero', not '...'",
    ),
    (_set("config", [1]), "config must be an object, not [1]"),
]


@pytest.mark.parametrize(("edit", "fragment"), BAD_RESULTS)
def test_validation_errors(edit: Any, fragment: str) -> None:
    results = make_results()
    edit(results)
    with pytest.raises(ResultsError, match=re.escape(fragment)):
        validate_results(results)


def test_a_valid_fixture_passes_and_no_file_is_written_for_a_bad_one(tmp_path: Path) -> None:
    assert validate_results(make_results())["name"] == "digits-cnn"
    results = make_results()
    results["version"] = 2
    with pytest.raises(ResultsError):
        render_report(results, tmp_path / "report")
    assert not (tmp_path / "report").exists()


# -- the command line ------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _write(path: Path, results: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results if isinstance(results, str) else json.dumps(results))
    return path


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"format": "inq-hw-results", "version": 1,', "is not valid JSON (line 1, column"),
        ("[1, 2]", "Results must be a JSON object, not a list"),
        ({**make_results(), "version": 7}, "Results version 7 is not supported"),
        ({**make_results(), "format": None}, "Not an inq-hw results file"),
        ({**make_results(), "bits": [{"bits": 4}]}, "lack the required 'bits[0].accuracy'"),
        (None, "Results file not found"),
    ],
)
def test_cli_bad_results_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: Any, fragment: str
) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        _write(path, content)
    code, _, err = _run(capsys, "report", str(path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("inq-hw report: error: ") and fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == (["results.json"] if content else [])


def test_cli_rerenders_beside_results(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    rendered: tuple[dict[str, Any], Path, list[Path]],
) -> None:
    results, first, _ = rendered
    source = _write(tmp_path / "run" / "results.json", results)
    code, out, _ = _run(capsys, "report", str(source), "--json")
    assert code == 0
    summary = json.loads(out)
    assert Path(summary["out"]) == source.parent.resolve()
    assert (source.parent / "report.md").read_text() == (first / "report.md").read_text()
    for plot in PLOTS:  # deterministic PNGs: the same results give the same bytes
        assert (source.parent / plot.file).read_bytes() == (first / plot.file).read_bytes()


def test_cli_out_option(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import inq_hw.report

    calls = []

    def render(results: object, out: Path) -> list[Path]:
        calls.append((results, out))
        return []

    monkeypatch.setattr(inq_hw.report, "render_report", render)
    source = _write(tmp_path / "results.json", make_results())
    code, _, _ = _run(capsys, "report", str(source), "--out", str(tmp_path / "elsewhere"))
    assert code == 0 and calls == [(make_results(), tmp_path / "elsewhere")]


# -- interruption ----------------------------------------------------------------------------


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_failing_plot_leaves_report_untouched(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    rendered: tuple[dict[str, Any], Path, list[Path]],
) -> None:
    shutil.copytree(rendered[1], tmp_path, dirs_exist_ok=True)
    before = _snapshot(tmp_path)
    results = make_results()
    results["fp32"]["accuracy"] = 0.5

    def explode(results: dict[str, Any]) -> bytes:
        raise RuntimeError("plot failed midway")

    broken = list(PLOTS)
    broken[2] = Plot(broken[2].file, broken[2].caption, explode)
    monkeypatch.setattr(render_module, "PLOTS", tuple(broken))
    with pytest.raises(RuntimeError, match="plot failed midway"):
        render_report(results, tmp_path)
    assert _snapshot(tmp_path) == before


def test_interrupted_writes_leave_only_whole_files(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    rendered: tuple[dict[str, Any], Path, list[Path]],
) -> None:
    import inq_hw.files

    shutil.copytree(rendered[1], tmp_path, dirs_exist_ok=True)
    before = _snapshot(tmp_path)
    results = make_results()
    changed = copy.deepcopy(results)
    changed["name"] = "digits-cnn-2"
    real_write, calls = inq_hw.files.atomic_write, []

    def interrupted(path: Path, write: Any) -> Path:
        calls.append(path)
        if len(calls) == 6:  # results.json: half written, then Ctrl-C

            def half(tmp: Path) -> None:
                tmp.write_text('{"format": "inq-hw-res')
                raise KeyboardInterrupt

            return real_write(path, half)
        return real_write(path, write)

    monkeypatch.setattr(inq_hw.files, "atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render_report(changed, tmp_path)
    after = _snapshot(tmp_path)
    assert sorted(after) == sorted(before)  # no temporary or extra files
    assert after["results.json"] == before["results.json"]
    assert load_results(tmp_path / "results.json") == results
    assert after["report.md"] == before["report.md"]
    assert all(data.startswith(PNG_MAGIC) for name, data in after.items() if name.endswith(".png"))


def _variant() -> dict[str, Any]:
    """The results with what the next three tests look at changed, together (one render,
    plots included): combinational, unplaced slices (no FF, DSP or Fmax figures) and no
    test-set size; Nangate45 figures for 2 bits; stage times."""
    results = make_results()
    for entry in results["bits"]:
        entry["cost"]["ice40"]["ff"] = {"shift_add": 0, "mult8": 0}
        entry["cost"]["ice40"]["dsp"] = {"shift_add": 0, "mult8": 0}
        entry["cost"]["ice40"]["fmax_mhz"] = None
        entry["stage_seconds"] = {"simulate": 20.0 + entry["bits"]}
    del results["dataset"]["test_samples"]
    results["bits"][0]["cost"]["nangate45"] = {
        key: {"shift_add": 1000.0, "mult8": 4000.0}
        for key in ("area_um2", "analytic_area_um2", "energy_pj", "analytic_energy_pj")
    }
    results["stage_seconds"] = {"train FP32": 4.5, "INQ 2-bit": 4.1, "INQ 3-bit": 3.6}
    return results


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """:func:`_variant` and its rendered report.md."""
    results, out = _variant(), tmp_path_factory.mktemp("variant")
    render_report(results, out)
    return results, (out / "report.md").read_text()


def test_labels_say_which_design_and_how_many_images(variant: tuple[dict[str, Any], str]) -> None:
    _, markdown = variant
    table = {row[""]: row for row in md_tables(markdown)["2-bit"]}
    # combinational, unplaced slices: no all-zero FF / DSP rows, no empty Fmax row
    assert not [label for label in table if "FF" in label or "DSP" in label or "Fmax" in label]
    verdict = table["RTL simulation"]["INQ 2-bit (shift-add)"]
    assert verdict.startswith("bit-exact on 64 test images (test-set size not recorded)")
    notes = markdown.split("## Which design each figure measures")[1].split("##")[0]
    assert "folded streaming dataflow top" in notes and "folding 8 on every layer" in notes
    assert "fully unrolled" in notes and "2-output slices" in notes
    assert "twin ÷ shift-add" in notes


def test_one_unit_and_one_ratio_direction(variant: tuple[dict[str, Any], str]) -> None:
    results, markdown = variant
    entry = results["bits"][0]
    assert "pJ" not in markdown and "µm" not in markdown
    table = {row[""]: row for row in md_tables(markdown)["2-bit"]}
    assert table["Nangate45 area (mm², 2-output slices)"]["INQ 2-bit (shift-add)"] == "0.001000"
    assert table["analytic energy, same slices (nJ)"]["8-bit uniform (multiplier twin)"] == "4.000"
    energy = entry["cost"]["analytic"]["energy_pj"]
    area = entry["cost"]["analytic"]["area_um2"]
    expected = (
        f"2 bits {energy['mult8'] / energy['shift_add']:.1f}x energy, "
        f"{area['mult8'] / area['shift_add']:.1f}x area"
    )
    assert f"Multiplier twin ÷ shift-add design (analytic, unrolled units): {expected}" in markdown


def test_stage_table_one_row_per_stage(variant: tuple[dict[str, Any], str]) -> None:
    _, markdown = variant
    stages = "# stages\n| stage (seconds)" + markdown.split("| stage (seconds)")[1]
    rows = {row["stage (seconds)"]: row for row in md_tables(stages)["stages"]}
    assert rows["train FP32"]["once"] == "4.5" and rows["train FP32"]["2-bit"] == "—"
    assert (rows["INQ"]["2-bit"], rows["INQ"]["3-bit"], rows["INQ"]["4-bit"]) == ("4.1", "3.6", "—")
    assert [rows["simulate"][f"{b}-bit"] for b in (2, 3, 4, 5)] == ["22.0", "23.0", "24.0", "25.0"]
    assert "INQ 2-bit" not in rows


def test_pareto_labels_the_twin_once_and_cost_titles_its_designs() -> None:
    from inq_hw.report import plots

    results = make_results()
    for entry in results["bits"]:  # twins a rounding apart, as the flow measures them
        entry["cost"]["analytic"]["energy_pj"]["mult8"] = 8.04e4 + 1e-9 * entry["bits"]
    fig = plots._figure(6, 4)
    ax = fig.subplots()
    plots._annotate(ax, plots.trade_off_points(results))
    texts = [t.get_text() for t in ax.texts]
    assert [t for t in texts if "twin" in t and "FP32" not in t] == [
        "8-bit twin (same at every bit-width)"
    ]
    assert sorted(t for t in texts if "shift-add" in t) == [
        f"shift-add ({b}-bit)" for b in (2, 3, 4, 5)
    ]
    assert plots._image_points(results) == pytest.approx(100 / 359)
    assert plots._slice_label(results) == "2-output slices"
