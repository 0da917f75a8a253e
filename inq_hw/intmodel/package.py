"""The integer model package on disk: ``model.json`` and ``tensors.npz``, validated on load.

A package is a directory. ``model.json`` (sorted keys, indent 2, so it diffs well) holds the
schema name and version, the output layer, provenance ``meta`` and one object per layer:
``kind``, the dataclass fields as JSON values and ``arrays``, the names of the layer's
integer arrays in ``tensors.npz`` (``"003.codes"``: layer index and field). Optional fields
(a weight layer's 8-bit baseline, :mod:`~inq_hw.intmodel.layers`) that are ``None`` are left
out of both files, so a package lowered without its FP32 source, or written before
baselines existed, has none and still loads; present, they are checked like every other
field (all or none, dtypes, shapes, shift, accumulator width). It also holds the
SHA-256 of ``tensors.npz``, so the two files are tied together. ``tensors.npz`` is built by
hand (fixed timestamps, sorted members, stored) so the same model gives the same bytes, and
:func:`package_hash` can key caches of builds by design.

Reading never runs code from the files: ``json.loads`` and ``np.load(allow_pickle=False)``.
Layers are constructed generically from their dataclass fields (:data:`LAYER_KINDS`), with
JSON types checked exactly (``true`` is not an integer), and the model is then checked as a
graph by :func:`validate_model`: shapes along the edges, requantisation shifts and
accumulator widths. Every problem is a :class:`~inq_hw.errors.PackageError` of one line.

Writing. :func:`save_package` first encodes the model to the bytes of both files and decodes
them through the very path :func:`load_package` takes, so it never writes what would not load.
It then writes each file to a temporary file beside its target and fsyncs both, and only then
renames them into place, ``tensors.npz`` first and ``model.json`` (which holds the checksum)
last, fsyncing the directory after each rename. Every failure while writing (an exception, a
full disk) happens before the first rename and leaves the previous package untouched. Only a
crash between the two renames leaves new tensors beside the old ``model.json``;
:func:`load_package` then refuses the package by its checksum (never a silently mismatched
model), and saving again repairs it. A reader racing a writer may likewise get a
``PackageError``, never a wrong model.

We do not swap in a whole temporary directory: the package directory also holds files of
later stages (``vectors.npz``, ``rtl/``) that a swap would have to move across, perhaps while
another process writes them, and POSIX cannot exchange two directories atomically, so a swap
has its own window in which the package does not exist at all.
"""

import contextlib
import hashlib
import io
import json
import os
import tempfile
import typing
import zipfile
import zlib
from collections import Counter
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inq_hw.errors import PackageError
from inq_hw.intmodel.layers import (
    LAYER_KINDS,
    IntModel,
    Layer,
)
from inq_hw.intmodel.validate import validate_model

__all__ = [
    "MODEL_FILE",
    "PACKAGE_SCHEMA",
    "PACKAGE_VERSION",
    "TENSORS_FILE",
    "load_package",
    "package_hash",
    "save_package",
    "validate_model",
]

PACKAGE_SCHEMA = "inq-hw-intmodel"
PACKAGE_VERSION = 2
MODEL_FILE = "model.json"
TENSORS_FILE = "tensors.npz"

_TOP_KEYS = {"schema", "version", "output", "meta", "layers", "tensors", "sha256"}
_ARRAY_DTYPES = {
    "codes": np.dtype(np.uint8),
    "bias": np.dtype(np.int64),
    "baseline_weights": np.dtype(np.int8),
    "baseline_bias": np.dtype(np.int64),
}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_JSON_SCALARS: dict[Any, tuple[type, str]] = {
    int: (int, "an integer"),
    bool: (bool, "true or false"),
    str: (str, "a string"),
}
# ConfigError is a ValueError; the rest is what a constructor fed odd values may raise.
_CONSTRUCTION_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


# --- public API ---------------------------------------------------------------------------


def save_package(model: IntModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` as a package into ``directory`` (created if missing).

    Other files in the directory are kept. See the module docstring for why a failure
    never leaves a half-written package.

    Example usage::

        save_package(model, "runs/digits/intmodel")
        assert package_hash("runs/digits/intmodel") == package_hash("runs/digits/intmodel")

    Raises
    ------
    PackageError
        The model is inconsistent (see :func:`validate_model`), its meta is not plain JSON,
        or ``directory`` exists and is not a directory.
    """
    try:
        validate_model(model)
        model_bytes, tensors_bytes = _encode(model)
        _decode(model_bytes, tensors_bytes)
    except PackageError as exc:
        raise PackageError(f"Refusing to save the model: {exc}") from None
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PackageError(f"Cannot save a package to {root}: not a directory") from None
    _write_files(root, {TENSORS_FILE: tensors_bytes, MODEL_FILE: model_bytes})
    return root


def load_package(directory: str | os.PathLike[str]) -> IntModel:
    """Read and validate the package in ``directory``.

    Example usage::

        model = load_package("runs/digits/intmodel")
        logits = run(model, quantize_input(images, model.input.out))

    Raises
    ------
    PackageError
        A file is missing, not ours, of another version, corrupted or hand-edited into an
        inconsistent model; the message names the file, layer and field.
    """
    root = Path(directory)
    model_bytes, tensors_bytes = _read_files(root)
    try:
        return _decode(model_bytes, tensors_bytes)
    except PackageError as exc:
        raise PackageError(f"Invalid package {root}: {exc}") from None


def package_hash(directory: str | os.PathLike[str]) -> str:
    """Hex SHA-256 over the bytes of ``model.json`` then ``tensors.npz``: the design's key.

    It does not validate the package; load it first where that matters.

    Raises
    ------
    PackageError
        The directory or one of the two files is missing.
    """
    model_bytes, tensors_bytes = _read_files(Path(directory))
    return hashlib.sha256(model_bytes + tensors_bytes).hexdigest()


# --- encoding -----------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    """A layer field as a JSON value: dataclasses as objects, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What ``np.savez`` writes, minus the timestamps: the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            member = io.BytesIO()
            array = np.ascontiguousarray(arrays[key])
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
            info.create_system = 3  # Unix, on every platform
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _omitted(layer: Layer, name: str) -> bool:
    """An optional field (default ``None``) that is ``None``: written nowhere."""
    return getattr(layer, name) is None and _optional_fields(type(layer)).get(name, False)


def _encode(model: IntModel) -> tuple[bytes, bytes]:
    """The bytes of ``model.json`` and ``tensors.npz``."""
    entries: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for index, layer in enumerate(model.layers):
        layer_arrays = layer.arrays()
        entry: dict[str, Any] = {"kind": layer.kind}
        entry.update(
            (f.name, _to_json(getattr(layer, f.name)))
            for f in fields(layer)
            if f.name not in layer_arrays and not _omitted(layer, f.name)
        )
        if layer_arrays:
            keys = {name: f"{index:03d}.{name}" for name in layer_arrays}
            arrays.update({keys[name]: array for name, array in layer_arrays.items()})
            entry["arrays"] = keys
        entries.append(entry)
    tensors = _npz_bytes(arrays)
    document = {
        "schema": PACKAGE_SCHEMA,
        "version": PACKAGE_VERSION,
        "output": model.output,
        "meta": model.meta,
        "layers": entries,
        "tensors": {"file": TENSORS_FILE, "sha256": hashlib.sha256(tensors).hexdigest()},
    }
    try:
        document["sha256"] = _document_sha256(document)
        text = json.dumps(
            document, sort_keys=True, indent=2, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise PackageError(f"the model's meta or fields are not plain JSON values: {exc}") from None
    return (text + "\n").encode("utf-8"), tensors


# --- decoding -----------------------------------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicates = sorted(key for key, count in counts.items() if count > 1)
        raise PackageError(f"model.json repeats the key(s) {duplicates} in one object")
    return result


def _reject_constant(name: str) -> Any:
    raise PackageError(f"model.json holds {name}, which is not a JSON number")


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_reject_constant
        )
    except UnicodeDecodeError:
        raise PackageError("model.json is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PackageError(
            f"model.json is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise PackageError("model.json is nested too deeply") from None


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _expect_keys(mapping: dict[str, Any], expected: set[str], where: str) -> None:
    missing, extra = sorted(expected - mapping.keys()), sorted(mapping.keys() - expected)
    if missing:
        raise PackageError(f"{where} lacks field(s) {missing}")
    if extra:
        raise PackageError(f"{where} has unexpected field(s) {extra}")


def _expect_type(value: Any, kind: type, what: str, where: str) -> None:
    # bool is an int in Python but not in a package: `true` is no integer, `1` no boolean.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise PackageError(f"{where} must be {what}, not {_show(value)}")


def _check_header(document: Any) -> dict[str, Any]:
    schema = document.get("schema") if isinstance(document, dict) else None
    if schema != PACKAGE_SCHEMA:
        raise PackageError(
            f"model.json is not an inq-hw integer model (schema {schema!r}, "
            f"expected {PACKAGE_SCHEMA!r})"
        )
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version != PACKAGE_VERSION:
        raise PackageError(
            f"model.json has version {_show(version)}; this inq-hw reads version {PACKAGE_VERSION}"
        )
    _expect_keys(document, _TOP_KEYS, "model.json")
    _expect_type(document["output"], str, "a string", "model.json: output")
    _expect_type(document["meta"], dict, "an object", "model.json: meta")
    _expect_type(document["layers"], list, "a list", "model.json: layers")
    tensors = document["tensors"]
    _expect_type(tensors, dict, "an object", "model.json: tensors")
    _expect_keys(tensors, {"file", "sha256"}, "model.json: tensors")
    if tensors["file"] != TENSORS_FILE:
        raise PackageError(f"model.json: tensors.file must be {TENSORS_FILE!r}")
    _expect_type(tensors["sha256"], str, "a string", "model.json: tensors.sha256")
    _expect_type(document["sha256"], str, "a string", "model.json: sha256")
    return document


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, KeyError, NotImplementedError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise PackageError(f"tensors.npz is not an archive of plain arrays ({reason})") from None
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise PackageError(f"tensors.npz is not a valid zip archive ({exc})") from None
    for key, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise PackageError(f"tensors.npz: member {key!r} is not a .npy array")
    return arrays


def _field_types(cls: type) -> dict[str, Any]:
    """Field name → type, ``X | None`` of an optional field unwrapped to ``X``."""
    hints, optional = typing.get_type_hints(cls), _optional_fields(cls)
    types = {}
    for f in fields(cls):
        hint = hints[f.name]
        if optional[f.name]:
            (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        types[f.name] = hint
    return types


def _optional_fields(cls: type) -> dict[str, bool]:
    """Field name → whether it is optional (defaults to ``None``) and may be absent."""
    return {f.name: f.default is None for f in fields(cls)}


def _from_json(value: Any, hint: Any, where: str) -> Any:
    """``value`` read from JSON as the field type ``hint``, its JSON type checked exactly."""
    if typing.get_origin(hint) is tuple:
        _expect_type(value, list, "a list", where)
        item = typing.get_args(hint)[0]
        return tuple(_from_json(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and is_dataclass(hint):
        types = _field_types(hint)
        _expect_type(value, dict, f"an object with fields {sorted(types)}", where)
        _expect_keys(value, set(types), where)
        return hint(
            **{name: _from_json(value[name], t, f"{where}.{name}") for name, t in types.items()}
        )
    if hint not in _JSON_SCALARS:
        raise TypeError(f"{where} has a type that a package cannot hold: {hint!r}")
    kind, what = _JSON_SCALARS[hint]
    _expect_type(value, kind, what, where)
    return value


def _expect_keys_between(
    mapping: dict[str, Any], required: set[str], optional: set[str], where: str
) -> None:
    """All of ``required`` and any of ``optional`` (the optional ones present checked later)."""
    _expect_keys(mapping, required | (mapping.keys() & optional), where)


def _take_arrays(
    refs: Any,
    names: list[str],
    optional: set[str],
    arrays: dict[str, np.ndarray],
    used: set[str],
    where: str,
) -> dict[str, np.ndarray]:
    """The layer's arrays named by its ``arrays`` object, with their dtypes checked."""
    _expect_type(refs, dict, "an object", f"{where}: arrays")
    _expect_keys_between(refs, set(names) - optional, optional, f"{where}: arrays")
    taken = {}
    for name in (name for name in names if name in refs):
        key = refs[name]
        _expect_type(key, str, "a string", f"{where}: arrays.{name}")
        if key not in arrays:
            raise PackageError(f"{where}: array {name!r} ({key!r}) is not in tensors.npz")
        if key in used:
            raise PackageError(f"{where}: array {name!r} ({key!r}) is used twice")
        used.add(key)
        expected = _ARRAY_DTYPES.get(name)
        if expected is not None and arrays[key].dtype != expected:
            raise PackageError(
                f"{where}: tensors.npz array {key!r} ({name}) must be {expected}, "
                f"not {arrays[key].dtype}"
            )
        taken[name] = arrays[key]
    return taken


def _build_layer(index: int, entry: Any, arrays: dict[str, np.ndarray], used: set[str]) -> Layer:
    if not isinstance(entry, dict):
        raise PackageError(f"model.json: layers[{index}] must be an object, not {_show(entry)}")
    name = entry.get("name")
    where = (
        f"model.json: layer {name!r}" if isinstance(name, str) else f"model.json: layers[{index}]"
    )
    kind = entry.get("kind")
    cls = LAYER_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise PackageError(
            f"{where}: unknown layer kind {_show(kind)} (known: {sorted(LAYER_KINDS)})"
        )
    types = _field_types(cls)
    optional = {f for f, is_optional in _optional_fields(cls).items() if is_optional}
    array_fields = [f for f, t in types.items() if t is np.ndarray]
    scalar_fields = [f for f in types if f not in array_fields and f not in optional]
    scalar_fields += [f for f in types if f not in array_fields and f in optional and f in entry]
    required = {"kind", *scalar_fields, *(["arrays"] if array_fields else [])}
    _expect_keys_between(entry, required, optional - set(array_fields), where)
    try:
        values = {f: _from_json(entry[f], types[f], f"{where}: {f}") for f in scalar_fields}
        if array_fields:
            values.update(
                _take_arrays(entry["arrays"], array_fields, optional, arrays, used, where)
            )
        return cls(**values)
    except _CONSTRUCTION_ERRORS as exc:
        raise PackageError(f"{where}: {exc}") from None


def _document_sha256(document: dict[str, Any]) -> str:
    """SHA-256 of everything in ``model.json`` but this checksum itself (which covers the
    tensors through their own checksum): a hand edit of any field is detected."""
    content = {key: value for key, value in document.items() if key != "sha256"}
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _decode(model_bytes: bytes, tensors_bytes: bytes) -> IntModel:
    """The model in the two files' bytes, fully validated."""
    document = _check_header(_parse_json(model_bytes))
    if hashlib.sha256(tensors_bytes).hexdigest() != document["tensors"]["sha256"]:
        raise PackageError(
            "tensors.npz does not match its checksum in model.json (corrupted or edited)"
        )
    arrays = _read_npz(tensors_bytes)
    used: set[str] = set()
    layers = [_build_layer(i, e, arrays, used) for i, e in enumerate(document["layers"])]
    if unused := sorted(arrays.keys() - used):
        raise PackageError(f"tensors.npz holds arrays that no layer names: {unused}")
    try:
        model = IntModel(layers=tuple(layers), output=document["output"], meta=document["meta"])
    except _CONSTRUCTION_ERRORS as exc:
        raise PackageError(f"model.json: {exc}") from None
    validate_model(model)
    # Last, so that an edit that breaks the format is named precisely above; one that
    # keeps it valid (relu true -> false) still changes the design and is refused here.
    if _document_sha256(document) != document["sha256"]:
        raise PackageError(
            "model.json does not match its own checksum (edited by hand?); export the "
            "package again with `inq-hw export`"
        )
    return model


# --- files --------------------------------------------------------------------------------


def _read_files(root: Path) -> tuple[bytes, bytes]:
    if root.is_file():
        raise PackageError(
            f"{root} is a file, not an integer model package (a directory); a checkpoint "
            f"becomes one with `inq-hw export {root} --out DIR`"
        )
    if not root.is_dir():
        raise PackageError(f"Package directory not found: {root}")
    contents = []
    for name in (MODEL_FILE, TENSORS_FILE):
        path = root / name
        if not path.is_file():
            raise PackageError(f"Package {root} lacks {name}")
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise PackageError(f"Cannot read {path}: {exc.strerror}") from None
    return contents[0], contents[1]


def _write_temp(root: Path, name: str, data: bytes) -> Path:
    """``data`` in a new, fsynced temporary file beside ``root / name``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=root)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_directory(root: Path) -> None:
    """Make renames in ``root`` durable (where the platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_files(root: Path, contents: dict[str, bytes]) -> None:
    """Write every file to a temporary first, then rename them in, in order."""
    temps: list[tuple[Path, Path]] = []
    try:
        for name, data in contents.items():
            temps.append((_write_temp(root, name, data), root / name))
        for tmp, target in temps:
            os.replace(tmp, target)
            _fsync_directory(root)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
