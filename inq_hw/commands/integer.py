"""Subcommands on the integer model: ``export``, ``eval`` and ``vectors``."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw.commands.common import format_table, output_dir, output_file, percent
from inq_hw.commands.registry import command

__all__ = ["evaluate", "export", "vectors"]


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="INQ checkpoint written by 'inq-hw quantize'")
    parser.add_argument("--out", type=output_dir, required=True, help="package directory to write")
    parser.add_argument(
        "--twin",
        type=Path,
        metavar="CHECKPOINT",
        help="uniform INQ checkpoint ('quantize --weight-format uniform', same FP32 source) "
        "whose weights become the multiplier twin's, at its bit-width (default: the 8-bit "
        "twin rounded from the FP32 source)",
    )
    parser.add_argument("--a-bits", type=int, default=8, help="activation width, 4..16 (default 8)")
    parser.add_argument(
        "--logit-bits", type=int, default=16, help="width of the output logits, 4..32 (default 16)"
    )
    parser.add_argument(
        "--calibration",
        choices=("maxabs", "percentile"),
        default="maxabs",
        help="how activation ranges are chosen (default maxabs)",
    )
    parser.add_argument(
        "--percentile", type=float, default=99.99, help="for --calibration percentile"
    )
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=512,
        help="training samples used for calibration (default 512)",
    )


@command("export", "Lower an INQ checkpoint to the integer model package.", _configure_export)
def export(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.intmodel.package import package_hash, save_package
    from inq_hw.lower import CalibrationConfig, lower_checkpoint

    config = CalibrationConfig(
        samples=args.calibration_samples,
        method=args.calibration,
        percentile=args.percentile,
        a_bits=args.a_bits,
        logit_bits=args.logit_bits,
    )
    model = lower_checkpoint(args.checkpoint, config, twin=args.twin)
    save_package(model, args.out)
    rows = [_layer_row(layer) for layer in model.layers]
    summary: dict[str, Any] = {
        "out": str(args.out),
        "package_hash": package_hash(args.out),
        "layers": [dict(zip(_LAYER_HEADERS, row, strict=True)) for row in rows],
    }
    summary["_text"] = f"{format_table(_LAYER_HEADERS, rows)}\n-> {args.out}"
    return summary


_LAYER_HEADERS = ["layer", "kind", "shape", "out format", "n1..n2", "shift", "acc bits"]


def _layer_row(layer: Any) -> list[Any]:
    fmt = layer.out
    out = f"{'s' if fmt.signed else 'u'}{fmt.bits} f={fmt.frac}"
    exps = f"{layer.n1}..{layer.n2}" if hasattr(layer, "n1") else ""
    return [
        layer.name,
        layer.kind,
        "x".join(map(str, layer.shape)),
        out,
        exps,
        getattr(layer, "shift", ""),
        getattr(layer, "acc_bits", ""),
    ]


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")


@command("eval", "Run the golden integer executor on the test split.", _configure_eval)
def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.evaluate import evaluate_package

    summary = evaluate_package(args.package)
    rows = [
        ["float INQ model", percent(summary["float_accuracy"])],
        ["integer model (golden executor)", percent(summary["integer_accuracy"])],
        [
            "agreement of predictions",
            f"{percent(summary['agreement'])} ({summary['disagreements']} differ)",
        ],
    ]
    if (twin := summary.get("twin")) is not None:
        label = f"multiplier twin, {twin['weight_bits']}-bit uniform (integer)"
        rows.append([label, percent(twin["integer_accuracy"])])
    summary["_text"] = (
        f"{format_table(['test split, ' + str(summary['samples']) + ' images', ''], rows)}"
    )
    return summary


def _configure_vectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument(
        "--samples", type=int, default=64, help="test images to include (default 64)"
    )
    parser.add_argument(
        "--out", type=output_file, default=None, help="default: PACKAGE/vectors.npz"
    )


@command(
    "vectors",
    "Write test vectors (inputs, expected outputs per layer) for RTL.",
    _configure_vectors,
)
def vectors(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.intmodel.package import load_package
    from sim.vectors import golden_vectors, write_vectors

    model = load_package(args.package)
    arrays = golden_vectors(model, args.samples)
    count = len(arrays["input"])
    trace = [key for key in arrays if key.startswith("layer/")]
    out = args.out or args.package / "vectors.npz"
    write_vectors(arrays, args.package, out)
    return {
        "out": str(out),
        "samples": count,
        "layers": len(trace),
        "_text": f"{count} samples, expected outputs of {len(trace)} layers -> {out}",
    }
