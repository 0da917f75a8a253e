"""Subcommands ``train`` and ``quantize`` of the ``inq-hw`` command line."""

import argparse
import json
from pathlib import Path
from typing import Any

from inq_hw import defaults
from inq_hw.commands.common import format_table, output_file, percent, progress
from inq_hw.commands.registry import command
from inq_hw.errors import ConfigError

__all__ = ["quantize", "train"]


def _model_arg(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"Model argument must look like KEY=VALUE, not {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(
            f"Model argument value must be JSON (e.g. channels=[16,32,32]), not {raw!r}"
        ) from None


def _add_optimizer_args(
    parser: argparse.ArgumentParser, *, lr: float, epochs_flag: str, epochs: int
) -> None:
    parser.add_argument(
        epochs_flag, dest="epochs", type=int, default=epochs, help=f"epochs (default {epochs})"
    )
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr})")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initialisation, shuffles, random partition"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run killed while writing --out"
    )


def _train_config(args: argparse.Namespace) -> Any:
    from inq_hw.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        seed=args.seed,
    )


#: The zoo's names as ``--model`` lists them (``inq_hw.models`` imports torch, which the
#: parser must not; tests/test_cli_help.py checks it against ``model_names()``).
ZOO_HELP = (
    "digits-cnn, lenet5, resnet, resnet8, tiny_resnet, resnet18, resnet34, resnet50, "
    "mobilenet_v2, vgg11, vgg16, squeezenet1_0, alexnet"
)


def _input_shape(text: str) -> tuple[int, int, int]:
    """``"1,8,8"`` or ``"1x8x8"`` → ``(1, 8, 8)``."""
    parts = text.replace("x", ",").split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"must be C,H,W (three positive integers), not {text!r}")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="digits",
        help="digits (embedded), digits28, mnist, cifar10, imagefolder",
    )
    parser.add_argument("--data-dir", default=None, help="directory of a local data set")
    parser.add_argument(
        "--split-seed", type=int, default=0, help="seed of the train/test split (digits)"
    )
    parser.add_argument(
        "--model",
        default="digits-cnn",
        help=f"a zoo name ({ZOO_HELP}), package.module:factory, or a torch.export program FILE.pt2",
    )
    parser.add_argument(
        "--input-shape",
        type=_input_shape,
        default=None,
        metavar="C,H,W",
        help="the images the model takes (a .pt2 program's example input); checked against "
        "the data set's, which fixes the shape (default: the data set's)",
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="constructor argument, e.g. channels=[16,32,32] (repeatable)",
    )
    parser.add_argument(
        "--out", type=output_file, default="runs/fp32.pt", help="checkpoint to write"
    )
    _add_optimizer_args(parser, lr=0.05, epochs_flag="--epochs", epochs=defaults.FP32_EPOCHS)


@command("train", "Train the full-precision reference model.", _configure_train)
def train(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.driver import ModelContext, train_fp32

    context = ModelContext(
        args.model,
        dict(_model_arg(a) for a in args.model_arg),
        args.dataset,
        args.data_dir,
        args.split_seed,
    )
    config = _train_config(args)
    with progress(args) as bar:
        summary = train_fp32(
            context,
            config,
            args.out,
            resume=args.resume,
            progress=bar,
            input_shape=args.input_shape,
        )
    summary["_text"] = (
        f"{args.model} on {args.dataset}: FP32 test accuracy {percent(summary['accuracy'])}"
        f" -> {summary['out']}"
    )
    return summary


def _configure_quantize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="FP32 checkpoint written by 'inq-hw train'")
    parser.add_argument(
        "--bits", type=int, default=5, help="weight bit-width, 2 (ternary) to 7 (default 5)"
    )
    parser.add_argument(
        "--schedule",
        default=defaults.SCHEDULE,
        help="accumulated portions (0.5,0.75,0.875,1) or a name: default, auto, paper2..paper5"
        f" (default {defaults.SCHEDULE})",
    )
    parser.add_argument(
        "--partition",
        choices=("magnitude", "random"),
        default=defaults.PARTITION,
        help=f"which weights freeze first (default {defaults.PARTITION})",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="module-name pattern kept in full precision (repeatable)",
    )
    parser.add_argument(
        "--weight-format",
        choices=("po2", "uniform"),
        default="po2",
        help="po2: 0 and +-2^e (INQ, default); uniform: the uniform --bits twin trained the "
        "same way, for 'inq-hw export --twin'",
    )
    parser.add_argument("--out", type=output_file, required=True, help="INQ checkpoint to write")
    _add_optimizer_args(
        parser, lr=defaults.LR, epochs_flag="--epochs-per-step", epochs=defaults.INQ_EPOCHS
    )


@command(
    "quantize", "Run Incremental Network Quantization on an FP32 checkpoint.", _configure_quantize
)
def quantize(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.driver import run_inq
    from inq_hw.inq import INQConfig, parse_schedule
    from inq_hw.intmodel.codes import check_model_bits

    bits = check_model_bits(args.bits)
    config = INQConfig(
        bits=bits,
        schedule=parse_schedule(args.schedule, bits=bits),
        partition=args.partition,
        seed=args.seed,
        skip=tuple(args.skip),
        weight_format=args.weight_format,
    )
    train_config = _train_config(args)
    with progress(args) as bar:
        summary = run_inq(
            args.checkpoint, config, train_config, args.out, resume=args.resume, progress=bar
        )
    summary["_text"] = _quantize_text(summary)
    return summary


def _quantize_text(summary: dict[str, Any]) -> str:
    from inq_hw.intmodel.arith import uniform_max

    rows = [
        [
            row["step"],
            f"{row['portion']:g}",
            percent(row["accuracy_quantized"]),
            percent(row["accuracy"]),
        ]
        for row in summary["history"]
    ]
    table = format_table(
        ["step", "portion", "acc. after quantizing", "acc. after re-training"], rows
    )
    bits, uniform = summary["bits"], summary.get("weight_format") == "uniform"
    kind = f"uniform {bits}-bit" if uniform else f"{bits}-bit"
    final = format_table(
        ["model", "test accuracy"],
        [
            ["FP32", percent(summary["fp32_accuracy"])],
            [f"one-shot {kind} (no re-training)", percent(summary["one_shot_accuracy"])],
            [f"INQ {kind} ({summary['partition']})", percent(summary["accuracy"])],
        ],
    )
    grid = (
        f"all m·2^e with |m| <= {uniform_max(bits)}"
        if uniform
        else "all 0 or ±2^e within [2^n2, 2^n1]"
    )
    checked = f"{summary['verified_weights']:,} weights read back: {grid}"
    return f"{table}\n\n{final}\n{checked}\n-> {summary['out']}"
