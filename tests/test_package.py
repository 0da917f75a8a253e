"""The integer model package: round trip, determinism, and every way a package can be wrong."""

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from inq_hw.errors import PackageError
from inq_hw.intmodel import (
    ActFormat,
    AddLayer,
    AvgPoolLayer,
    Conv2dLayer,
    FlattenLayer,
    InputLayer,
    IntModel,
    Layer,
    LinearLayer,
    MaxPoolLayer,
    ReLULayer,
    WeightLayer,
    accumulator_bits,
    run,
)
from inq_hw.intmodel.arith import signed_bits
from inq_hw.intmodel.package import (
    _document_sha256,
    load_package,
    package_hash,
    save_package,
    validate_model,
)
from inq_hw.quant import decode_codes, pack_codes, po2_codes

S8 = ActFormat(8, True, 6)
U8 = ActFormat(8, False, 4)


def weight_layer(
    cls: type[WeightLayer],
    name: str,
    source: Layer,
    weight_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    out: ActFormat,
    rng: np.random.Generator,
    *,
    bits: int = 5,
    relu: bool = False,
    **geometry: Any,
) -> WeightLayer:
    """A weight layer of random po2 weights with the shift and accumulator worked out here."""
    codes = po2_codes(torch.from_numpy(rng.normal(0.0, 0.3, weight_shape)), bits)
    w_int = np.rint(decode_codes(codes, torch.float64).numpy() * 2.0**-codes.n2)
    abs_sums = np.abs(w_int).reshape(weight_shape[0], -1).sum(axis=1).astype(np.int64)
    bias = rng.integers(-300, 300, weight_shape[0]).astype(np.int64)
    return cls(
        name=name,
        inputs=(source.name,),
        shape=out_shape,
        out=out,
        bits=bits,
        n1=codes.n1,
        n2=codes.n2,
        codes=pack_codes(codes).numpy(),
        bias=bias,
        shift=source.out.frac - codes.n2 - out.frac,
        relu=relu,
        acc_bits=accumulator_bits(abs_sums, bias, source.out.max_abs),
        **geometry,
    )


def chain_model(seed: int = 0) -> IntModel:
    """input → conv (ReLU) → maxpool → flatten → linear."""
    rng = np.random.default_rng(seed)
    x = InputLayer("x", (), (2, 8, 8), S8)
    conv = weight_layer(
        Conv2dLayer, "conv", x, (4, 2, 3, 3), (4, 8, 8), U8, rng, relu=True, stride=1, padding=1
    )
    pool = MaxPoolLayer("pool", ("conv",), (4, 4, 4), U8, kernel=2, stride=2)
    flat = FlattenLayer("flat", ("pool",), (64,), U8)
    fc = weight_layer(LinearLayer, "fc", flat, (10, 64), (10,), ActFormat(8, True, 2), rng)
    meta = {"source": "unit test", "bits": 5, "accuracy": 0.5, "tags": ["a", "b"]}
    return IntModel((x, conv, pool, flat, fc), output="fc", meta=meta)


def residual_model(seed: int = 1) -> IntModel:
    """input → conv a → conv b; add(a, b) → relu → avgpool → flatten → linear."""
    rng = np.random.default_rng(seed)
    x = InputLayer("x", (), (2, 6, 6), S8)
    a = weight_layer(
        Conv2dLayer, "a", x, (4, 2, 3, 3), (4, 6, 6), U8, rng, relu=True, stride=1, padding=1
    )
    b_out = ActFormat(8, False, 3)
    b = weight_layer(
        Conv2dLayer, "b", a, (4, 4, 3, 3), (4, 6, 6), b_out, rng, relu=True, stride=1, padding=1
    )
    align = (0, 1)  # frac 4 and 3 → common scale 2**-4
    add_out = ActFormat(8, True, 3)
    add = AddLayer(
        "add", ("a", "b"), (4, 6, 6), add_out, align=align, shift=4 - 3, relu=False,
        acc_bits=signed_bits(a.out.max_abs + (b.out.max_abs << 1)),
    )  # fmt: skip
    relu = ReLULayer("relu", ("add",), (4, 6, 6), ActFormat(8, False, 3))
    avg = AvgPoolLayer("avg", ("relu",), (4, 3, 3), relu.out, kernel=2, stride=2, shift=2)
    flat = FlattenLayer("flat", ("avg",), (36,), relu.out)
    fc = weight_layer(LinearLayer, "fc", flat, (5, 36), (5,), ActFormat(8, True, 1), rng)
    return IntModel((x, a, b, add, relu, avg, flat, fc), output="fc")


MODELS = {"chain": chain_model, "residual": residual_model}


def random_inputs(model: IntModel, n: int = 16) -> np.ndarray:
    fmt = model.input.out
    rng = np.random.default_rng(7)
    return rng.integers(fmt.lo, fmt.hi + 1, (n, *model.input.shape))


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return save_package(chain_model(), tmp_path / "pkg")


def read_json(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "model.json").read_text())


def write_json(directory: Path, document: Any) -> None:
    (directory / "model.json").write_text(json.dumps(document, sort_keys=True, indent=2))


def edit_json(
    directory: Path, edit: Callable[[dict[str, Any]], None], *, restamp: bool = False
) -> None:
    """Edit model.json; ``restamp`` also rewrites its own checksum (a consistent rewrite
    by a tool, which the semantic checks below must judge on their own)."""
    document = read_json(directory)
    edit(document)
    if restamp:
        document["sha256"] = _document_sha256(document)
    write_json(directory, document)


def layer_entry(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(entry for entry in document["layers"] if entry["name"] == name)


def rewrite_tensors(directory: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Replace tensors.npz by np.savez of edited arrays and record its real checksum."""
    with np.load(directory / "tensors.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    edit(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    (directory / "tensors.npz").write_bytes(data)
    edit_json(
        directory,
        lambda d: d["tensors"].update(sha256=hashlib.sha256(data).hexdigest()),
        restamp=True,
    )


def assert_refused(directory: Path, *fragments: str) -> None:
    with pytest.raises(PackageError) as info:
        load_package(directory)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# --- round trip and determinism -----------------------------------------------------------


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_round_trip(tmp_path: Path, build: Callable[[], IntModel]) -> None:
    model = build()
    loaded = load_package(save_package(model, tmp_path / "pkg"))
    assert loaded.output == model.output and loaded.meta == model.meta
    assert len(loaded.layers) == len(model.layers)
    for ours, theirs in zip(model.layers, loaded.layers, strict=True):
        assert type(theirs) is type(ours)
        assert (theirs.name, theirs.inputs, theirs.shape, theirs.out) == (
            ours.name,
            ours.inputs,
            ours.shape,
            ours.out,
        )
        assert theirs.params() == ours.params()
        assert ours.arrays().keys() == theirs.arrays().keys()
        for key, array in ours.arrays().items():
            assert theirs.arrays()[key].dtype == array.dtype
            np.testing.assert_array_equal(theirs.arrays()[key], array)
    x = random_inputs(model)
    expected, actual = run(model, x, trace=True), run(loaded, x, trace=True)
    assert isinstance(expected, dict) and isinstance(actual, dict)
    for name, values in expected.items():
        np.testing.assert_array_equal(actual[name], values)


def test_model_json_is_sorted_and_indented(package: Path) -> None:
    text = (package / "model.json").read_text()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, indent=2) + "\n"
    assert document["schema"] == "inq-hw-intmodel" and document["version"] == 2
    conv = layer_entry(document, "conv")
    assert conv["arrays"] == {"bias": "001.bias", "codes": "001.codes"}
    assert conv["out"] == {"bits": 8, "frac": 4, "signed": False}
    assert "arrays" not in layer_entry(document, "pool")


def test_save_is_deterministic(tmp_path: Path) -> None:
    first = save_package(chain_model(), tmp_path / "one")
    second = save_package(chain_model(), tmp_path / "two")
    for name in ("model.json", "tensors.npz"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert package_hash(first) == package_hash(second)
    before = package_hash(first)
    save_package(chain_model(), first)
    assert package_hash(first) == before
    assert package_hash(save_package(chain_model(seed=3), tmp_path / "three")) != before


def test_hash_covers_both_files(package: Path, tmp_path: Path) -> None:
    model = chain_model()
    other = save_package(replace(model, meta={**model.meta, "note": "x"}), tmp_path / "other")
    assert package_hash(other) != package_hash(package)
    expected = hashlib.sha256(
        (package / "model.json").read_bytes() + (package / "tensors.npz").read_bytes()
    ).hexdigest()
    assert package_hash(package) == expected


def test_tensors_npz_is_a_plain_npz(package: Path) -> None:
    with zipfile.ZipFile(package / "tensors.npz") as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(package / "tensors.npz", allow_pickle=False) as npz:
        assert npz["001.codes"].dtype == np.uint8 and npz["004.bias"].dtype == np.int64


def test_numpy_scalars_in_fields_and_meta_are_saved_as_json(tmp_path: Path) -> None:
    model = chain_model()
    pool = model.layers[2]
    assert isinstance(pool, MaxPoolLayer)
    pool = replace(pool, stride=np.int64(2))  # type: ignore[arg-type]  # a numpy scalar on purpose
    meta = {"accuracy": np.float64(0.25), "epochs": np.int32(3)}
    model = replace(model, layers=(*model.layers[:2], pool, *model.layers[3:]), meta=meta)
    loaded = load_package(save_package(model, tmp_path / "pkg"))
    assert loaded.meta == {"accuracy": 0.25, "epochs": 3}
    assert type(loaded.layer("pool").params()["stride"]) is int


# --- damaged files ------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 5, 40, 80, 0.3, 0.5, 0.9, -3])
def test_flipped_byte_is_detected(package: Path, where: float) -> None:
    path = package / "tensors.npz"
    data = bytearray(path.read_bytes())
    position = int(where * len(data)) if isinstance(where, float) else where
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    assert_refused(package, "tensors.npz does not match its checksum in model.json")


def test_truncated_npz_is_detected(package: Path) -> None:
    path = package / "tensors.npz"
    path.write_bytes(path.read_bytes()[:-100])
    assert_refused(package, "does not match its checksum")


def test_truncated_npz_with_recomputed_checksum_is_refused(package: Path) -> None:
    path = package / "tensors.npz"
    data = path.read_bytes()[:-100]
    path.write_bytes(data)
    edit_json(package, lambda d: d["tensors"].update(sha256=hashlib.sha256(data).hexdigest()))
    assert_refused(package, "tensors.npz is not a valid zip archive")


def test_missing_directory_and_files(tmp_path: Path, package: Path) -> None:
    with pytest.raises(PackageError, match="directory not found"):
        load_package(tmp_path / "nowhere")
    (package / "tensors.npz").unlink()
    assert_refused(package, "lacks tensors.npz")
    with pytest.raises(PackageError, match=r"lacks tensors\.npz"):
        package_hash(package)
    (package / "model.json").unlink()
    assert_refused(package, "lacks model.json")


@pytest.mark.parametrize(
    "text, fragment",
    [
        (b"{not json", "model.json is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"schema": "inq-hw-intmodel", "version": NaN}', "NaN"),
        (b'{"schema": "inq-hw-intmodel", "schema": "x"}', "repeats the key(s) ['schema']"),
        (b"[1, 2]", "not an inq-hw integer model"),
        (b'{"schema": "inq-hw-checkpoint", "version": 1}', "not an inq-hw integer model"),
    ],
)
def test_unreadable_model_json(package: Path, text: bytes, fragment: str) -> None:
    (package / "model.json").write_bytes(text)
    assert_refused(package, fragment)


# --- hand-edited model.json ---------------------------------------------------------------


def _set(name: str, field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda document: layer_entry(document, name).__setitem__(field, value)


def _bump(name: str, field: str, by: int) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        layer_entry(document, name)[field] += by

    return edit


def _drop(name: str, field: str) -> Callable[[dict[str, Any]], None]:
    return lambda document: layer_entry(document, name).pop(field)


JSON_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "version": (lambda d: d.update(version=3), ("version 3", "reads version 2")),
    "version-float": (lambda d: d.update(version=1.0), ("version 1.0",)),
    "version-bool": (lambda d: d.update(version=True), ("version true",)),
    "top-extra": (lambda d: d.update(extra=1), ("unexpected field(s) ['extra']",)),
    "top-missing": (lambda d: d.pop("meta"), ("lacks field(s) ['meta']",)),
    "meta-type": (lambda d: d.update(meta=[1]), ("meta must be an object",)),
    "tensors-file": (lambda d: d["tensors"].update(file="../x.npz"), ("tensors.file",)),
    "checksum": (lambda d: d["tensors"].update(sha256="00" * 32), ("checksum",)),
    "output": (lambda d: d.update(output="nope"), ("'nope' is not in the model",)),
    "unknown-kind": (_set("pool", "kind", "upsample"), ("'pool'", "unknown layer kind")),
    "missing-field": (_drop("conv", "stride"), ("'conv'", "lacks field(s) ['stride']")),
    "extra-field": (_set("pool", "groups", 1), ("'pool'", "unexpected field(s) ['groups']")),
    "bool-for-int": (
        _set("conv", "stride", True),
        ("'conv': stride must be an integer, not true",),
    ),
    "int-for-bool": (_set("conv", "relu", 1), ("'conv': relu must be true or false, not 1",)),
    "float-for-int": (_set("pool", "kernel", 2.0), ("'pool': kernel must be an integer, not 2.0",)),
    "str-inputs": (_set("pool", "inputs", "conv"), ("'pool': inputs must be a list",)),
    "out-bits-bool": (
        lambda d: layer_entry(d, "fc")["out"].update(bits=True),
        ("'fc': out.bits must be an integer, not true",),
    ),
    "out-extra": (
        lambda d: layer_entry(d, "fc")["out"].update(scale=1),
        ("unexpected field(s) ['scale']",),
    ),
    "out-bits-range": (
        lambda d: layer_entry(d, "fc")["out"].update(bits=40),
        ("'fc'", "Activation width"),
    ),
    "layer-not-object": (lambda d: d["layers"].append(3), ("layers[5] must be an object",)),
    "read-later": (_set("conv", "inputs", ["fc"]), ("no earlier layer",)),
    "duplicate-name": (_set("flat", "name", "pool"), ("'pool' is used twice",)),
    "second-input": (_set("pool", "kind", "input"), ("'pool'",)),
    "shift": (
        _bump("conv", "shift", 1),
        ("'conv' (conv2d)", "shift is", "frac_in - n2 - frac_out"),
    ),
    "shift-fc": (_bump("fc", "shift", -1), ("'fc' (linear)", "shift is")),
    "n2": (_bump("fc", "n2", 1), ("layer 'fc'", "n2 must be")),
    "acc-bits-small": (_bump("conv", "acc_bits", -1), ("'conv' (conv2d)", "acc_bits is")),
    "acc-bits-huge": (_set("conv", "acc_bits", 63), ("acc_bits is 63",)),
    "conv-shape": (_set("conv", "shape", [4, 7, 7]), ("'conv'", "shape is (4, 7, 7)")),
    "conv-stride": (_set("conv", "stride", 2), ("'conv'", "give (4, 4, 4)")),
    "conv-padding": (_set("conv", "padding", -1), ("'conv'", "padding -1")),
    "pool-stride": (_set("pool", "stride", 1), ("'pool' (maxpool)", "give (4, 7, 7)")),
    "pool-kernel": (_set("pool", "kernel", 0), ("'pool' (maxpool)", "must be positive")),
    "pool-format": (
        lambda d: layer_entry(d, "pool")["out"].update(frac=5),
        ("'pool' (maxpool)", "output format"),
    ),
    "flatten-shape": (_set("flat", "shape", [60]), ("'flat' (flatten)", "give (64,)")),
    "linear-input": (_set("fc", "inputs", ["pool"]), ("'fc' (linear)", "flat vector")),
    "conv-input": (_set("pool", "inputs", ["x"]), ("'pool' (maxpool)", "give (2, 4, 4)")),
    "missing-array-ref": (
        _set("fc", "arrays", {"codes": "004.codes"}),
        ("lacks field(s) ['bias']",),
    ),
    "array-not-in-npz": (
        _set("fc", "arrays", {"codes": "004.codes", "bias": "009.bias"}),
        ("'fc'", "array 'bias' ('009.bias') is not in tensors.npz"),
    ),
    "array-used-twice": (
        _set("fc", "arrays", {"codes": "004.codes", "bias": "001.bias"}),
        ("used twice",),
    ),
    "array-ref-type": (
        _set("fc", "arrays", {"codes": "004.codes", "bias": 4}),
        ("arrays.bias must be a string, not 4",),
    ),
    "arrays-on-pool": (_set("pool", "arrays", {}), ("unexpected field(s) ['arrays']",)),
}


SILENT_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "relu": lambda d: layer_entry(d, "conv").update(relu=not layer_entry(d, "conv")["relu"]),
    "meta": lambda d: d["meta"].update(note="edited"),
    "output": lambda d: d.update(output=d["output"]),  # unchanged: must still load
}


@pytest.mark.parametrize("case", SILENT_EDITS)
def test_valid_looking_edit_of_model_json_is_refused(package: Path, case: str) -> None:
    edit_json(package, SILENT_EDITS[case])
    if case == "output":
        load_package(package)
        return
    assert_refused(package, "model.json does not match its own checksum")


@pytest.mark.parametrize("case", JSON_EDITS)
def test_edited_model_json_is_refused(package: Path, case: str) -> None:
    edit, fragments = JSON_EDITS[case]
    edit_json(package, edit)
    assert_refused(package, *fragments)


RESIDUAL_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "avg-shift": (_set("avg", "shift", 3), ("'avg' (avgpool)", "2**shift = 2**3")),
    "align": (_set("add", "align", [0, 0]), ("'add' (add)", "one scale")),
    "align-length": (_set("add", "align", [0]), ("'add'", "one non-negative alignment")),
    "add-shift": (_bump("add", "shift", 1), ("'add' (add)", "shift is 2")),
    "add-acc": (_bump("add", "acc_bits", -1), ("'add' (add)", "acc_bits is")),
    "add-operand": (_set("add", "inputs", ["a", "x"]), ("'add' (add)", "operand 'x'")),
    "add-single": (
        lambda d: layer_entry(d, "add").update(inputs=["a"], align=[0]),
        ("'add' (add)", "at least 2"),
    ),
    "relu-frac": (
        lambda d: layer_entry(d, "relu")["out"].update(frac=2),
        ("'relu' (relu)", "frac is 2"),
    ),
}


@pytest.mark.parametrize("case", RESIDUAL_EDITS)
def test_edited_residual_package_is_refused(tmp_path: Path, case: str) -> None:
    directory = save_package(residual_model(), tmp_path / "pkg")
    edit, fragments = RESIDUAL_EDITS[case]
    edit_json(directory, edit)
    assert_refused(directory, *fragments)


def test_edits_that_stay_consistent_load(package: Path) -> None:
    """The semantic checks are not blanket refusals: a consistent edit, checksum restamped,
    loads (without the restamp the checksum refuses it: test above)."""
    edit_json(package, lambda d: d["meta"].update(note="edited"), restamp=True)
    assert load_package(package).meta["note"] == "edited"
    edit_json(package, _bump("conv", "acc_bits", 1), restamp=True)
    assert load_package(package).layer("conv").params()["acc_bits"] > 0


# --- hand-edited tensors.npz --------------------------------------------------------------


def _set_array(key: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    return lambda arrays: arrays.__setitem__(key, make(arrays[key]))


def _first_code(value: int) -> Callable[[np.ndarray], np.ndarray]:
    def make(codes: np.ndarray) -> np.ndarray:
        edited = codes.copy()
        edited.flat[0] = value
        return edited

    return make


NPZ_EDITS: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "codes-int64": (
        _set_array("001.codes", lambda c: c.astype(np.int64)),
        ("'conv'", "'001.codes' (codes) must be uint8, not int64"),
    ),
    "bias-int32": (
        _set_array("004.bias", lambda b: b.astype(np.int32)),
        ("'fc'", "must be int64, not int32"),
    ),
    "bias-big-endian": (_set_array("004.bias", lambda b: b.astype(">i8")), ("must be int64",)),
    "code-out-of-range": (_set_array("001.codes", _first_code(40)), ("'conv'", "[0, 32)")),
    "zero-code-with-sign": (
        _set_array("001.codes", _first_code(0b11000)),
        ("'conv'", "zero code must have its sign and index bits clear"),
    ),
    "codes-cin": (
        _set_array("001.codes", lambda c: np.concatenate([c, c], axis=1)),
        ("'conv' (conv2d)", "expect 4 input channels, but 'x' has 2"),
    ),
    "codes-rank": (
        _set_array("001.codes", lambda c: c.reshape(4, -1)),
        ("'conv' (conv2d)", "(Cout, Cin/groups, kh, kw)"),
    ),
    "fc-fan-in": (
        _set_array("004.codes", lambda c: c[:, :32]),
        ("'fc' (linear)", "weights must have shape (out, 64)"),
    ),
    "bias-shape": (_set_array("004.bias", lambda b: b[:5]), ("'fc'", "bias shape (5,)")),
    "missing-array": (lambda a: a.pop("004.bias"), ("'fc'", "'004.bias'", "not in tensors.npz")),
    "extra-array": (
        lambda a: a.__setitem__("999.extra", np.zeros(3)),
        ("arrays that no layer names: ['999.extra']",),
    ),
}


@pytest.mark.parametrize("case", NPZ_EDITS)
def test_edited_tensors_are_refused(package: Path, case: str) -> None:
    edit, fragments = NPZ_EDITS[case]
    rewrite_tensors(package, edit)
    assert_refused(package, *fragments)


def test_rewritten_tensors_with_same_arrays_load(package: Path) -> None:
    """The npz checks refuse edits, not a valid npz written another way."""
    rewrite_tensors(package, lambda arrays: None)
    load_package(package)


UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class _Trap:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _record_unpickling, ("unpickled",)


def test_loading_never_unpickles(package: Path) -> None:
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    rewrite_tensors(package, lambda arrays: arrays.__setitem__("001.codes", trap))
    UNPICKLED.clear()
    assert_refused(package, "tensors.npz is not an archive of plain arrays")
    assert UNPICKLED == []
    np.load(package / "tensors.npz", allow_pickle=True)["001.codes"]  # the trap is armed
    assert UNPICKLED == ["unpickled"]


def test_single_npy_instead_of_npz_is_refused(package: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    data = buffer.getvalue()
    (package / "tensors.npz").write_bytes(data)
    edit_json(package, lambda d: d["tensors"].update(sha256=hashlib.sha256(data).hexdigest()))
    assert_refused(package, "not an archive of plain arrays")


# --- saving -------------------------------------------------------------------------------


def _listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_failed_save_leaves_previous_package(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = package_hash(package)
    write_array = np.lib.format.write_array
    calls = []

    def fail_after_first(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full")
        write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", fail_after_first)
    with pytest.raises(OSError, match="disk full"):
        save_package(chain_model(seed=5), package)
    monkeypatch.undo()
    assert len(calls) == 2
    assert package_hash(package) == before
    load_package(package)
    assert _listing(package) == ["model.json", "tensors.npz"]
    assert _listing(tmp_path) == ["pkg"]


def test_failure_writing_model_json_leaves_previous_package(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second file fails after the first is fully written: still nothing replaced."""
    before = package_hash(package)
    fsync = os.fsync
    calls = []

    def fail_second(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("I/O error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_second)
    with pytest.raises(OSError, match="I/O error"):
        save_package(chain_model(seed=5), package)
    monkeypatch.undo()
    assert package_hash(package) == before
    assert _listing(package) == ["model.json", "tensors.npz"]


def test_resave_keeps_other_files(package: Path) -> None:
    (package / "vectors.npz").write_bytes(b"vectors")
    (package / "rtl").mkdir()
    (package / "rtl" / "top.v").write_text("module top; endmodule\n")
    save_package(chain_model(seed=4), package)
    assert _listing(package) == ["model.json", "rtl", "tensors.npz", "vectors.npz"]
    assert (package / "vectors.npz").read_bytes() == b"vectors"
    assert (package / "rtl" / "top.v").exists()
    assert load_package(package).meta == chain_model(seed=4).meta


def test_inconsistent_model_is_not_saved(tmp_path: Path, package: Path) -> None:
    model = chain_model()
    conv = model.layer("conv")
    assert isinstance(conv, Conv2dLayer)
    bad = replace(model, layers=(model.layers[0], replace(conv, shift=0), *model.layers[2:]))
    with pytest.raises(PackageError, match=r"Refusing to save.*'conv' \(conv2d\): shift is 0"):
        save_package(bad, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    before = package_hash(package)
    with pytest.raises(PackageError, match="Refusing"):
        save_package(bad, package)
    assert package_hash(package) == before


def test_validate_model_accepts_good_and_names_bad(tmp_path: Path) -> None:
    for build in MODELS.values():
        validate_model(build())
    model = residual_model()
    avg = model.layer("avg")
    assert isinstance(avg, AvgPoolLayer)
    layers = tuple(replace(avg, shift=1) if layer is avg else layer for layer in model.layers)
    with pytest.raises(PackageError, match=r"'avg' \(avgpool\): averages 2x2 = 4 elements"):
        validate_model(replace(model, layers=layers))


def test_meta_that_is_not_json_is_refused(tmp_path: Path) -> None:
    model = replace(chain_model(), meta={"path": Path("x")})
    with pytest.raises(PackageError, match="not plain JSON values"):
        save_package(model, tmp_path / "pkg")
    model = replace(chain_model(), meta={"loss": float("nan")})
    with pytest.raises(PackageError, match="not plain JSON values"):
        save_package(model, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_save_into_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(PackageError, match="not a directory"):
        save_package(chain_model(), tmp_path / "file")
