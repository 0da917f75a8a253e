"""The 8-bit uniform baseline every weight layer carries: the multiplier twin's weights.

Checked against a reference written from the definition with Python fractions, run by the
golden executor (accuracy near the FP32 model, extreme inputs within the stated
accumulator), round-tripped through the package, refused when corrupted, and absent (with
the reason in ``meta``) when the FP32 source checkpoint is gone.
"""

import dataclasses
import json
import math
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from inq_hw.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from inq_hw.driver import load_model
from inq_hw.errors import ConfigError, ModelError, PackageError
from inq_hw.intmodel import (
    ActFormat,
    Conv2dLayer,
    InputLayer,
    IntModel,
    LinearLayer,
    WeightLayer,
    baseline_exponent,
    baseline_fields,
    load_package,
    predict,
    quantize_input,
    run,
    save_package,
)
from inq_hw.lower import lower_checkpoint, lower_model
from inq_hw.train import evaluate
from tests.test_package import assert_refused, edit_json, layer_entry, rewrite_tensors

# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lowered(tiny_inq: Path) -> IntModel:
    return lower_checkpoint(tiny_inq)


@pytest.fixture
def package(lowered: IntModel, tmp_path: Path) -> Path:
    return save_package(lowered, tmp_path / "pkg")


def _inputs_of(model: IntModel, layer: WeightLayer) -> ActFormat:
    return model.layer(layer.inputs[0]).out


def _is_po2(values: np.ndarray) -> np.ndarray:
    magnitude = np.abs(values.astype(np.int64))
    return (magnitude > 0) & ((magnitude & (magnitude - 1)) == 0)


# --- the definition -----------------------------------------------------------------------


def ref_exponent(max_abs: Fraction) -> int:
    """The smallest integer k with max|W| / 2**k <= 127, by walking k (no logarithms)."""
    k = 0
    while max_abs / Fraction(2) ** k > 127:
        k += 1
    while max_abs / Fraction(2) ** (k - 1) <= 127:
        k -= 1
    return k


def ref_round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def test_fields_follow_the_definition(lowered: IntModel, tiny_fp32: Path) -> None:
    """Every baseline field recomputed from the FP32 checkpoint with Python fractions."""
    fp32, _ = load_model(load_checkpoint(tiny_fp32, kinds=("fp32",)))
    assert lowered.meta["baseline"] == {
        "weight_bits": 8,
        "source": {"path": str(tiny_fp32), "sha256": file_sha256(tiny_fp32)},
    }
    assert len(lowered.weight_layers()) == 4
    for layer in lowered.weight_layers():
        module = fp32.get_submodule(layer.name)
        assert isinstance(module, torch.nn.Conv2d | torch.nn.Linear) and module.bias is not None
        w = [Fraction(v) for v in module.weight.detach().double().flatten().tolist()]
        k = ref_exponent(max(abs(v) for v in w))
        q = [max(-127, min(127, ref_round_half_up(v / Fraction(2) ** k))) for v in w]
        frac_in, frac_out = _inputs_of(lowered, layer).frac, layer.out.frac
        bias = [
            ref_round_half_up(Fraction(b) * Fraction(2) ** (frac_in - k))
            for b in module.bias.detach().double().tolist()
        ]
        assert layer.baseline_exp == k
        assert layer.baseline_weights is not None and layer.baseline_bias is not None
        assert layer.baseline_weights.ravel().tolist() == q
        assert layer.baseline_bias.tolist() == bias
        assert layer.baseline_shift == frac_in - k - frac_out


def test_dtypes_ranges_and_shapes(lowered: IntModel) -> None:
    for layer in lowered.weight_layers():
        weights, bias = layer.baseline_weights, layer.baseline_bias
        assert weights is not None and bias is not None
        assert weights.dtype == np.int8 and weights.shape == layer.codes.shape
        assert bias.dtype == np.int64 and bias.shape == layer.bias.shape
        assert int(weights.min()) >= -127 and int(weights.max()) <= 127
        assert 64 <= int(np.abs(weights.astype(np.int64)).max()) <= 127  # all 8 bits used
        assert layer.baseline_weights_int().dtype == np.int64
        np.testing.assert_array_equal(layer.baseline_weights_int(), weights)


def test_weights_are_not_powers_of_two(lowered: IntModel) -> None:
    """A multiplier baseline, not shifts in disguise: most weights are neither 0 nor ±2**k."""
    for layer in lowered.weight_layers():
        assert layer.baseline_weights is not None
        plain = (~_is_po2(layer.baseline_weights) & (layer.baseline_weights != 0)).mean()
        print(f"\n{layer.name}: {plain:.0%} of baseline weights are not 0 or ±2**k")
        assert plain > 0.5
        # and the po2 twin of the same layer is all shifts
        assert (_is_po2(layer.weights_int()) | (layer.weights_int() == 0)).all()


@pytest.mark.parametrize(
    "max_abs, k",
    [(127.0, 0), (127.5, 1), (254.0, 1), (254.5, 2), (63.5, -1), (63.75, 0), (1.0, -6)],
)
def test_exponent_at_the_boundaries(max_abs: float, k: int) -> None:
    assert baseline_exponent(max_abs) == k == ref_exponent(Fraction(max_abs))


def test_rounding_is_half_up_and_exact() -> None:
    w = np.array([[127.0, 0.5, -0.5, 1.5, -1.5, 2.5 - 2**-40, -(2**-30)]])
    got = baseline_fields(
        w, np.array([-0.25]), frac_in=1, frac_out=0, input_max_abs=255, zero_exp=0
    )
    assert got["baseline_exp"] == 0
    assert got["baseline_weights"].tolist() == [[127, 1, 0, 2, -1, 2, 0]]
    assert got["baseline_bias"].tolist() == [0]  # -0.25·2 = -0.5 rounds up to 0
    assert got["baseline_shift"] == 1
    zero = baseline_fields(
        np.zeros((2, 3)), None, frac_in=4, frac_out=2, input_max_abs=127, zero_exp=-5
    )
    assert zero["baseline_exp"] == -5 and not zero["baseline_weights"].any()
    with pytest.raises(ConfigError, match="NaN or Inf"):
        nan = np.array([[np.nan]])
        baseline_fields(nan, None, frac_in=0, frac_out=0, input_max_abs=1, zero_exp=0)


# --- the executor runs the twin -----------------------------------------------------------


def test_baseline_accuracy_is_near_the_fp32_model(lowered: IntModel, tiny_fp32: Path) -> None:
    fp32, data = load_model(load_checkpoint(tiny_fp32, kinds=("fp32",)))
    x = quantize_input(data.test.x.numpy(), lowered.input.out)
    labels = data.test.y.numpy()
    logits = run(lowered, x, weights="baseline")
    assert isinstance(logits, np.ndarray)
    twin = logits.argmax(axis=1)
    with torch.no_grad():
        floating = fp32.eval()(data.test.x).argmax(dim=1).numpy()
    fp32_accuracy = evaluate(fp32, data.test)
    twin_accuracy = float((twin == labels).mean())
    po2_accuracy = float((predict(lowered, x) == labels).mean())
    agreement = float((twin == floating).mean())
    print(
        f"\ntiny digits-cnn, {len(labels)} test images: FP32 float {fp32_accuracy:.4f}, "
        f"8-bit baseline integer {twin_accuracy:.4f} (agreement {agreement:.4f}), "
        f"4-bit po2 integer {po2_accuracy:.4f}"
    )
    assert fp32_accuracy > 0.9  # a trained model, else closeness means little
    assert abs(twin_accuracy - fp32_accuracy) <= 0.015  # ~5 of 359 images
    assert agreement >= 0.97
    po2_logits = run(lowered, x)
    assert isinstance(po2_logits, np.ndarray)
    assert not np.array_equal(logits, po2_logits)  # really other weights


def _isolated(model: IntModel, layer: WeightLayer) -> tuple[IntModel, WeightLayer]:
    """``layer`` alone, its input one window, its output the raw baseline accumulator.

    The output format gets ``frac = frac_in - baseline_exp`` (so ``baseline_shift = 0``)
    and 32 bits, so the executor returns the accumulator itself.
    """
    fmt = _inputs_of(model, layer)
    assert layer.baseline_exp is not None and layer.baseline_acc_bits is not None
    assert layer.baseline_acc_bits <= 32
    out = ActFormat(32, True, fmt.frac - layer.baseline_exp)
    if isinstance(layer, Conv2dLayer):
        cin, k = layer.codes.shape[1], layer.codes.shape[2]
        source = InputLayer("x", (), (cin, k, k), fmt)  # padding keeps the centre whole
        size = (k + 2 * layer.padding - k) // layer.stride + 1
        shape: tuple[int, ...] = (layer.codes.shape[0], size, size)
    else:
        source = InputLayer("x", (), (layer.codes.shape[1],), fmt)
        shape = (layer.codes.shape[0],)
    alone = dataclasses.replace(
        layer,
        inputs=("x",),
        shape=shape,
        out=out,
        relu=False,
        shift=fmt.frac - layer.n2 - out.frac,
        baseline_shift=0,
    )
    return IntModel((source, alone), output=alone.name), alone


@pytest.mark.parametrize("index", range(4))
def test_extreme_inputs_fit_the_baseline_accumulator(lowered: IntModel, index: int) -> None:
    """Per output, the inputs that maximise and minimise its accumulator: the executor's
    value equals the Python-int sum and lies inside ``baseline_acc_bits`` bits."""
    model, layer = _isolated(lowered, lowered.weight_layers()[index])
    fmt = model.input.out
    assert layer.baseline_weights is not None and layer.baseline_bias is not None
    weights = layer.baseline_weights.astype(np.int64).reshape(layer.codes.shape[0], -1)
    samples = []
    for row in weights:
        samples.append(np.where(row > 0, fmt.hi, fmt.lo))  # maximises output o
        samples.append(np.where(row > 0, fmt.lo, fmt.hi))  # minimises it
    x = np.array(samples).reshape(len(samples), *model.input.shape)
    got = run(model, x, weights="baseline")
    assert isinstance(got, np.ndarray)
    if got.ndim == 4:  # the conv output whose window is the whole input
        got = got[:, :, got.shape[2] // 2, got.shape[3] // 2]
    acc_bits = layer.baseline_acc_bits
    assert acc_bits is not None
    limit = 2 ** (acc_bits - 1)
    for o, row in enumerate(weights):
        bias = int(layer.baseline_bias[o])
        for sample in (2 * o, 2 * o + 1):
            flat = x[sample].ravel().tolist()
            acc = bias + sum(int(w) * int(v) for w, v in zip(row, flat, strict=True))
            assert int(got[sample, o]) == acc
            assert -limit <= acc < limit
    # The check can fail: one bit fewer than the worst case is refused.
    narrow = dataclasses.replace(layer, baseline_acc_bits=acc_bits - 1)
    with pytest.raises(PackageError, match="baseline_acc_bits is"):
        run(IntModel((model.input, narrow), output=narrow.name), x, weights="baseline")


def test_baseline_needs_a_model_with_baselines(lowered: IntModel) -> None:
    layers = tuple(
        dataclasses.replace(
            layer,
            baseline_weights=None,
            baseline_bias=None,
            baseline_exp=None,
            baseline_shift=None,
            baseline_acc_bits=None,
        )
        if isinstance(layer, WeightLayer)
        else layer
        for layer in lowered.layers
    )
    bare = IntModel(layers, lowered.output, lowered.meta)
    x = np.zeros((1, *bare.input.shape), dtype=np.int64)
    with pytest.raises(ConfigError, match="no 8-bit baseline"):
        run(bare, x, weights="baseline")
    with pytest.raises(ConfigError, match="Weights must be one of"):
        run(lowered, x, weights="mult8")
    assert not bare.weight_layers()[0].has_baseline
    with pytest.raises(ConfigError, match="carries no uniform baseline"):
        bare.weight_layers()[0].baseline_weights_int()


# --- the package --------------------------------------------------------------------------


def test_package_round_trip(lowered: IntModel, package: Path) -> None:
    loaded = load_package(package)
    for ours, theirs in zip(lowered.weight_layers(), loaded.weight_layers(), strict=True):
        assert theirs.params() == ours.params()
        assert "baseline_exp" in theirs.params()
        assert set(theirs.arrays()) == {"codes", "bias", "baseline_weights", "baseline_bias"}
        for key, array in ours.arrays().items():
            assert theirs.arrays()[key].dtype == array.dtype
            np.testing.assert_array_equal(theirs.arrays()[key], array)
    x = np.random.default_rng(0).integers(0, 256, (32, *lowered.input.shape))
    for weights in ("po2", "baseline"):
        np.testing.assert_array_equal(
            run(loaded, x, weights=weights), run(lowered, x, weights=weights)
        )
    with np.load(package / "tensors.npz") as npz:
        assert npz["001.baseline_weights"].dtype == np.int8
        assert npz["001.baseline_bias"].dtype == np.int64


def _strip_baselines(document: dict[str, Any]) -> None:
    for entry in document["layers"]:
        for key in ("baseline_exp", "baseline_shift", "baseline_acc_bits"):
            entry.pop(key, None)
        if "arrays" in entry:
            entry["arrays"] = {k: v for k, v in entry["arrays"].items() if "baseline" not in k}


def _drop_baseline_arrays(arrays: dict[str, np.ndarray]) -> None:
    for key in [key for key in arrays if "baseline" in key]:
        del arrays[key]


def test_package_without_baselines_loads(package: Path) -> None:
    """A package of the old layout (no baseline keys anywhere) loads; None is omitted."""
    edit_json(package, _strip_baselines)
    rewrite_tensors(package, _drop_baseline_arrays)
    model = load_package(package)
    assert not any(layer.has_baseline for layer in model.weight_layers())
    save_package(model, package)
    assert "baseline_" not in json.dumps(json.loads((package / "model.json").read_text())["layers"])
    with np.load(package / "tensors.npz") as npz:
        assert not [key for key in npz.files if "baseline" in key]


LAYER = "features.conv2"
INDEX = "002"  # its position in the package (input, conv1, conv2, ...)


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda document: layer_entry(document, LAYER).__setitem__(field, value)


def _bump(field: str, by: int) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        layer_entry(document, LAYER)[field] += by

    return edit


JSON_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "shift": (_bump("baseline_shift", 1), ("baseline_shift is", "frac_in - baseline_exp")),
    "exp": (_bump("baseline_exp", -1), ("baseline_shift is",)),
    "acc-bits-small": (_bump("baseline_acc_bits", -1), ("baseline_acc_bits is",)),
    "acc-bits-huge": (_set("baseline_acc_bits", 63), ("baseline_acc_bits is 63",)),
    "exp-bool": (_set("baseline_exp", True), ("baseline_exp must be an integer, not true",)),
    "exp-null": (_set("baseline_exp", None), ("baseline_exp must be an integer, not null",)),
    "missing-scalar": (
        lambda d: layer_entry(d, LAYER).pop("baseline_shift"),
        ("all present or all None", "baseline_shift"),
    ),
    "missing-array-ref": (
        lambda d: layer_entry(d, LAYER)["arrays"].pop("baseline_bias"),
        ("all present or all None", "baseline_bias"),
    ),
    "unknown-array-ref": (
        lambda d: layer_entry(d, LAYER)["arrays"].update(baseline_scale="002.codes"),
        ("unexpected field(s) ['baseline_scale']",),
    ),
}


@pytest.mark.parametrize("case", JSON_EDITS)
def test_edited_baseline_fields_are_refused(package: Path, case: str) -> None:
    edit, fragments = JSON_EDITS[case]
    edit_json(package, edit)
    assert_refused(package, f"'{LAYER}'", *fragments)


def _edit_array(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    key = f"{INDEX}.{name}"
    return lambda arrays: arrays.__setitem__(key, make(arrays[key]))


def _first(value: int) -> Callable[[np.ndarray], np.ndarray]:
    def make(weights: np.ndarray) -> np.ndarray:
        edited = weights.copy()
        edited.flat[0] = value
        return edited

    return make


NPZ_EDITS: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "weights-int16": (
        _edit_array("baseline_weights", lambda w: w.astype(np.int16)),
        ("(baseline_weights) must be int8, not int16",),
    ),
    "weights-uint8": (
        _edit_array("baseline_weights", lambda w: w.astype(np.uint8)),
        ("must be int8, not uint8",),
    ),
    "bias-int32": (
        _edit_array("baseline_bias", lambda b: b.astype(np.int32)),
        ("(baseline_bias) must be int64, not int32",),
    ),
    "weight-minus-128": (_edit_array("baseline_weights", _first(-128)), ("[64, 127]", "128")),
    "weights-halved": (
        _edit_array("baseline_weights", lambda w: (w // 2).astype(np.int8)),
        ("[64, 127]",),
    ),
    "weights-shape": (
        _edit_array("baseline_weights", lambda w: w[:, :2]),
        ("baseline_weights shape", "does not match"),
    ),
    "bias-shape": (
        _edit_array("baseline_bias", lambda b: b[:3]),
        ("baseline_bias shape (3,)",),
    ),
    "weights-missing": (
        lambda arrays: arrays.pop(f"{INDEX}.baseline_weights"),
        ("'002.baseline_weights'", "not in tensors.npz"),
    ),
    "weight-grown": (
        _edit_array("baseline_weights", lambda w: np.where(w > 0, 127, w).astype(np.int8)),
        ("baseline_acc_bits is",),
    ),
}


@pytest.mark.parametrize("case", NPZ_EDITS)
def test_edited_baseline_tensors_are_refused(package: Path, case: str) -> None:
    edit, fragments = NPZ_EDITS[case]
    rewrite_tensors(package, edit)
    assert_refused(package, f"'{LAYER}'", *fragments)


def test_consistent_edits_load(package: Path) -> None:
    """The checks are not blanket refusals: a wider accumulator or other weights load."""
    edit_json(package, _bump("baseline_acc_bits", 1))
    rewrite_tensors(package, _edit_array("baseline_weights", lambda w: -w))
    layer = load_package(package).layer(LAYER)
    assert isinstance(layer, WeightLayer) and layer.baseline_acc_bits is not None


def test_layer_refuses_partial_or_mistyped_baselines(lowered: IntModel) -> None:
    layer = lowered.weight_layers()[-1]
    assert isinstance(layer, LinearLayer) and layer.baseline_weights is not None
    wide = layer.baseline_weights.astype(np.int64)
    with pytest.raises(ConfigError, match="all present or all None"):
        dataclasses.replace(layer, baseline_bias=None)
    with pytest.raises(ConfigError, match="int8"):
        dataclasses.replace(layer, baseline_weights=wide)
    with pytest.raises(ConfigError, match="baseline_exp must be an integer"):
        dataclasses.replace(layer, baseline_exp=1.0)  # type: ignore[arg-type]


# --- lowering without the FP32 source -----------------------------------------------------


def _inq_pointing_at(tiny_inq: Path, source: Path, out: Path) -> Path:
    """A copy of the INQ checkpoint whose ``source`` path is ``source`` (hash kept)."""
    payload = load_checkpoint(tiny_inq, kinds=("inq",))
    payload["source"] = {**payload["source"], "path": str(source)}
    return save_checkpoint(payload, out)


def test_lowering_without_the_source_checkpoint(
    tiny_inq: Path, tiny_fp32: Path, tmp_path: Path, lowered: IntModel
) -> None:
    copy = tmp_path / "fp32.pt"
    shutil.copyfile(tiny_fp32, copy)
    inq = _inq_pointing_at(tiny_inq, copy, tmp_path / "inq.pt")
    with_source = lower_checkpoint(inq)
    assert with_source.meta["baseline"]["source"]["path"] == str(copy)
    copy.unlink()
    without = lower_checkpoint(inq)
    assert without.meta["baseline"] is None
    assert "not found" in without.meta["baseline_reason"]
    assert not any(layer.has_baseline for layer in without.weight_layers())
    # the po2 model is unchanged, and the package round trip works without baselines
    x = np.random.default_rng(1).integers(0, 256, (16, *lowered.input.shape))
    np.testing.assert_array_equal(run(without, x), run(lowered, x))
    loaded = load_package(save_package(without, tmp_path / "pkg"))
    assert loaded.meta["baseline"] is None
    assert "baseline_" not in json.dumps(
        json.loads((tmp_path / "pkg" / "model.json").read_text())["layers"]
    )


def test_changed_or_relative_source(tiny_inq: Path, tiny_fp32: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed.pt"
    changed.write_bytes(tiny_fp32.read_bytes() + b"\0")
    meta = lower_checkpoint(_inq_pointing_at(tiny_inq, changed, tmp_path / "a.pt")).meta
    assert meta["baseline"] is None and "has changed" in meta["baseline_reason"]
    # A relative path that does not resolve from here is looked for beside the INQ file.
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copyfile(tiny_fp32, beside / "fp32-source.pt")
    inq = _inq_pointing_at(tiny_inq, Path("elsewhere/fp32-source.pt"), beside / "inq.pt")
    meta = lower_checkpoint(inq).meta
    assert meta["baseline"]["source"]["path"] == str(beside / "fp32-source.pt")


def test_lower_model_refuses_a_mismatched_baseline_model(tiny_inq: Path) -> None:
    payload = load_checkpoint(tiny_inq, kinds=("inq",))
    model, data = load_model(payload)
    bits = int(payload["inq"]["config"]["bits"])
    n1 = {name: int(layer["n1"]) for name, layer in payload["inq"]["layers"].items()}
    calibration = data.train.x[:64]
    with pytest.raises(ModelError, match=r"has no module 'features\.conv1'"):
        lower_model(model, calibration, bits=bits, n1=n1, baseline_model=torch.nn.Sequential())
    other = torch.nn.ModuleDict({"features": torch.nn.ModuleDict({"conv1": torch.nn.Linear(3, 4)})})
    with pytest.raises(ModelError, match="does not match"):
        lower_model(model, calibration, bits=bits, n1=n1, baseline_model=other)
    with pytest.raises(TypeError, match="baseline_model"):
        path: Any = "fp32.pt"
        lower_model(model, calibration, bits=bits, n1=n1, baseline_model=path)
