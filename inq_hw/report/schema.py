"""The ``results.json`` contract between ``inq-hw flow`` and the report, and its validator.

A results file holds every figure of one flow run: the FP32 and 8-bit uniform baselines and,
per INQ bit-width, accuracy, weight statistics, cost (analytic, generic synthesis, iCE40)
and the RTL simulation verdict. Only ``format``, ``version``, ``name``, ``fp32.accuracy``
and, per bit-width, ``bits`` and ``accuracy.inq`` are required; any other part may be
missing or ``null`` (a stage that was skipped or failed) and is reported as "not measured".
Parts that are present must have the right types: a wrong one raises :class:`ResultsError`
naming its place (``bits[1].cost.ice40.lut.mult8``) and ending with the offending value.

Example usage::

    results = load_results("reports/digits-cnn/results.json")   # validated
    validate_results(json.loads(text))                            # the same, from a dict
"""

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from inq_hw.errors import InqHwError

__all__ = [
    "DESIGN_KEYS",
    "IMPLEMENTED_DESIGNS",
    "RESULTS_FORMAT",
    "RESULTS_VERSION",
    "ResultsError",
    "hardware_accuracy",
    "load_results",
    "lookup",
    "twin_accuracy",
    "twin_label",
    "uniform_accuracy",
    "validate_results",
]

RESULTS_FORMAT = "inq-hw-results"
RESULTS_VERSION = 1
#: The designs every cost figure is given for: power-of-two shift-add, its 8-bit uniform
#: multiplier twin, and (analytic only) a dense FP32 twin.
DESIGN_KEYS = ("shift_add", "mult8", "fp32")
#: The designs a whole-network implementation is given for: the shift-add top, its 8-bit
#: multiplier twin with the family's DSP blocks, and the twin on LUTs only (a fair LUT count).
IMPLEMENTED_DESIGNS = ("shift_add", "mult8", "mult8_lut")

Check = Callable[[Any, str], None]


class ResultsError(InqHwError, ValueError):
    """A results file is missing, not JSON, not ours, of another version or malformed."""


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``results.json``; :class:`ResultsError` on any problem."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"Results file not found: {str(source)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"Cannot read results file {str(source)!r}: {exc}") from None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"Results file {str(source)!r} is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return validate_results(results)


def validate_results(results: Any) -> dict[str, Any]:
    """Check ``results`` against the version-1 schema and return it unchanged.

    Raises
    ------
    ResultsError
        Not an object, another format, another version, or a part missing or of the
        wrong type (the message names the part and ends with the offending value).
    """
    if not isinstance(results, dict):
        raise ResultsError(f"Results must be a JSON object, not {_kind(results)}")
    if results.get("format") != RESULTS_FORMAT:
        raise ResultsError(
            f"Not an inq-hw results file: format must be {RESULTS_FORMAT!r}, "
            f"not {results.get('format')!r}"
        )
    version = results.get("version")
    if not _is_int(version) or version < 1:
        raise ResultsError(f"Results version must be a positive integer, not {version!r}")
    if version != RESULTS_VERSION:
        raise ResultsError(
            f"Results version {version} is not supported (this inq-hw reads version "
            f"{RESULTS_VERSION}); re-run the flow or upgrade inq-hw"
        )
    _require(results, "", "name", _text)
    _optional(results, "", "config", _object)
    _optional(results, "", "created", _text)
    _optional(results, "", "machine", _object)
    _optional(results, "", "dataset", _dataset)
    _require(results, "", "fp32", _fields(required={"accuracy": _fraction}))
    _optional(
        results, "", "uniform8", _fields({"accuracy": _fraction, "integer_accuracy": _fraction})
    )
    _require(results, "", "bits", _bit_entries)
    _optional(results, "", "stage_seconds", _mapping(_seconds))
    return results


# -- the parts -------------------------------------------------------------------------------


def _dataset(value: Any, where: str) -> None:
    _fields(required={"name": _text}, optional={"test_samples": _count})(value, where)


def _bit_entries(value: Any, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise ResultsError(f"{where} must be a non-empty list of bit-width entries, not {value!r}")
    for index, entry in enumerate(value):
        _bit_entry(entry, f"{where}[{index}]")
    widths = [entry["bits"] for entry in value]
    if widths != sorted(set(widths)):
        raise ResultsError(f"{where} must list each bit-width once, ascending, not {widths!r}")


def _bit_entry(value: Any, where: str) -> None:
    accuracy = {"integer": _fraction, "one_shot": _fraction, "agreement": _fraction}
    _fields(
        required={
            "bits": _bit_width,
            "accuracy": _fields(required={"inq": _fraction}, optional=accuracy),
        },
        optional={
            "weights": _weights,
            "cost": _cost,
            "rtl": _rtl,
            "implementation": _implementation,
            "stage_seconds": _mapping(_seconds),
            "twin": _twin,
        },
    )(value, where)


def _twin(value: Any, where: str) -> None:
    """The multiplier twin trained at the entry's own width (flow ``twin = "uniform"``)."""
    accuracy = {"integer": _fraction, "one_shot": _fraction}
    _fields(
        required={"kind": _text, "weight_bits": _bit_width, "inq": _fraction}, optional=accuracy
    )(value, where)


def _implementation(value: Any, where: str) -> None:
    """Place and route of each bit-width's whole dataflow top (and its twins) on a device."""
    _fields(
        required={"device": _text, "clock_mhz": _amount},
        optional={
            "part": _text,
            "device_resources": _fields(dict.fromkeys(("lut", "ff", "bram", "dsp"), _count)),
            "folding": _mapping(_count),
            "foldings": _mapping(_mapping(_count)),
            "fit": _flag,
            "designs": _designs(_implemented_design, IMPLEMENTED_DESIGNS),
        },
    )(value, where)


def _implemented_design(value: Any, where: str) -> None:
    """One top: its figures, or ``refused`` (why it was not placed: it does not fit)."""
    resources = ("lut", "ff", "carry", "bram", "dsp")
    _fields(
        {
            "refused": _text,
            "resources": _fields(dict.fromkeys(resources, _count)),
            "device_share": _fields(dict.fromkeys(resources, _amount)),
            "fmax_mhz": _amount,
            "timing_met": _flag,
            "images_per_second": _amount,
            "latency_us": _amount,
            "us_per_image": _amount,
            "interval_cycles": _count,
            "latency_cycles": _count,
            "dsp": _flag,
            "seconds": _seconds,
            "tool_seconds": _mapping(_seconds),
            "bitstream": _text,
        }
    )(value, where)
    if value.get("refused") is None and lookup(value, "resources", "lut") is None:
        raise ResultsError(f"{where} must hold resources or refused, not {value!r}")


def _weights(value: Any, where: str) -> None:
    layer = _fields({"count": _count, "zero_fraction": _fraction, "exponent_histogram": _histogram})
    _fields(
        {
            "count": _count,
            "zero_fraction": _fraction,
            "memory_bits": _count,
            "baseline_memory_bits": _count,
            "layers": _mapping(layer),
        }
    )(value, where)


def _histogram(value: Any, where: str) -> None:
    _object(value, where)
    for key, count in value.items():
        if key != "zero" and not _is_exponent(key):
            raise ResultsError(f"{where} keys must be integer exponents or 'zero', not {key!r}")
        _count(count, f"{where}.{key}")


def _cost(value: Any, where: str) -> None:
    _fields(
        {
            "analytic": _fields({"energy_pj": _designs(_amount), "area_um2": _designs(_amount)}),
            "generic": _fields({"gates": _designs(_count), "transistors": _designs(_amount)}),
            "ice40": _fields(
                {
                    "lut": _designs(_count),
                    "ff": _designs(_count),
                    "dsp": _designs(_count),
                    "fmax_mhz": _designs(_amount),
                    "slice_outputs": _count,
                }
            ),
            "nangate45": _fields(
                {
                    name: _designs(_amount)
                    for name in (
                        "area_um2",
                        "critical_ns",
                        "power_mw",
                        "energy_pj",
                        "analytic_area_um2",
                        "analytic_energy_pj",
                    )
                }
            ),
        }
    )(value, where)


def _rtl(value: Any, where: str) -> None:
    _fields(
        required={"samples": _count, "mismatched_samples": _count},
        optional={
            "simulator": _text,
            "simulator_version": _text,
            "cycles_per_image": _count,
            "latency_cycles": _count,
            "timing_matches_manifest": _flag,
            "folding": _mapping(_count),
        },
    )(value, where)
    if value["mismatched_samples"] > value["samples"]:
        raise ResultsError(
            f"{where}.mismatched_samples must not exceed {where}.samples "
            f"({value['samples']}), not {value['mismatched_samples']!r}"
        )


def _designs(check: Check, keys: tuple[str, ...] = DESIGN_KEYS) -> Check:
    """A ``{design: figure}`` object over ``keys`` (default :data:`DESIGN_KEYS`); a figure
    may be null."""

    def validate(value: Any, where: str) -> None:
        _object(value, where)
        for key, figure in value.items():
            if key not in keys:
                raise ResultsError(f"{where} keys must be among {keys}, not {key!r}")
            if figure is not None:
                check(figure, f"{where}.{key}")

    return validate


# -- combinators -----------------------------------------------------------------------------


def _fields(
    optional: Mapping[str, Check] | None = None, *, required: Mapping[str, Check] | None = None
) -> Check:
    """An object with ``required`` keys and ``optional`` (missing or null) ones."""

    def validate(value: Any, where: str) -> None:
        _object(value, where)
        for key, check in (required or {}).items():
            _require(value, where, key, check)
        for key, check in (optional or {}).items():
            _optional(value, where, key, check)

    return validate


def _mapping(check: Check) -> Check:
    def validate(value: Any, where: str) -> None:
        _object(value, where)
        for key, item in value.items():
            check(item, f"{where}.{key}")

    return validate


def _require(parent: dict[str, Any], where: str, key: str, check: Check) -> None:
    place = f"{where}.{key}" if where else key
    if parent.get(key) is None:
        raise ResultsError(f"Results lack the required {place!r}")
    check(parent[key], place)


def _optional(parent: dict[str, Any], where: str, key: str, check: Check) -> None:
    if parent.get(key) is not None:
        check(parent[key], f"{where}.{key}" if where else key)


# -- leaves ----------------------------------------------------------------------------------


def _object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ResultsError(f"{where} must be an object, not {value!r}")


def _text(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise ResultsError(f"{where} must be a non-empty string, not {value!r}")


def _flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise ResultsError(f"{where} must be true or false, not {value!r}")


def _fraction(value: Any, where: str) -> None:
    if not _is_number(value) or not 0 <= value <= 1:
        raise ResultsError(f"{where} must be a fraction from 0 to 1, not {value!r}")


def _count(value: Any, where: str) -> None:
    if not _is_int(value) or value < 0:
        raise ResultsError(f"{where} must be a non-negative integer, not {value!r}")


def _amount(value: Any, where: str) -> None:
    if not _is_number(value) or value < 0:
        raise ResultsError(f"{where} must be a non-negative number, not {value!r}")


_seconds = _amount


def _bit_width(value: Any, where: str) -> None:
    if not _is_int(value) or not 2 <= value <= 8:
        raise ResultsError(f"{where} must be an integer from 2 to 8, not {value!r}")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_exponent(key: str) -> bool:
    try:
        int(key)
    except ValueError:
        return False
    return True


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), repr(value))


def lookup(part: Any, *keys: str) -> Any:
    """``part[k1][k2]...``, or None where a level is missing or null (not measured)."""
    for key in keys:
        if not isinstance(part, dict) or part.get(key) is None:
            return None
        part = part[key]
    return part


def hardware_accuracy(entry: dict[str, Any]) -> float:
    """What the hardware of a bit-width entry computes: the integer model's accuracy (the
    float INQ model's where the integer one was not measured)."""
    integer = lookup(entry, "accuracy", "integer")
    return entry["accuracy"]["inq"] if integer is None else integer


def twin_label(entry: dict[str, Any]) -> str:
    """What the multiplier twin of a bit-width entry is, for a column or legend."""
    twin = entry.get("twin")
    if twin is None:
        return "8-bit uniform (multiplier twin)"
    return f"{twin['weight_bits']}-bit uniform, INQ-trained (multiplier twin)"


def twin_accuracy(results: dict[str, Any], entry: dict[str, Any], which: str) -> float | None:
    """The twin's ``"float"`` or ``"integer"`` accuracy at ``entry``: its own trained twin,
    else the 8-bit one of the whole run."""
    if entry.get("twin") is not None:
        return lookup(entry, "twin", "inq" if which == "float" else "integer")
    return lookup(results, "uniform8", "accuracy" if which == "float" else "integer_accuracy")


def uniform_accuracy(results: dict[str, Any]) -> float | None:
    """The 8-bit uniform multiplier twin's accuracy: integer, else float, else None."""
    integer = lookup(results, "uniform8", "integer_accuracy")
    return lookup(results, "uniform8", "accuracy") if integer is None else integer
