"""``inq-hw flow`` options (issue 20, "Consistency of the CLI"): ``--samples all``, the
partition, schedule, learning rate and seed flags with the defaults of ``quantize``, shown in
``--help``. Parsing only: nothing is trained."""

import argparse
from pathlib import Path

import pytest

from inq_hw import defaults
from inq_hw.commands.flow import config_from_args
from inq_hw.commands.registry import COMMANDS
from inq_hw.errors import ConfigError
from inq_hw.flow import FlowConfig


def _parser(name: str) -> argparse.ArgumentParser:
    import inq_hw.cli  # noqa: F401  (registers every command)

    parser = argparse.ArgumentParser(prog=f"inq-hw {name}")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    COMMANDS[name][1](parser)
    return parser


def test_flow_flags_reach_the_config() -> None:
    args = _parser("flow").parse_args(
        ["--partition", "magnitude", "--schedule", "paper3", "--lr", "0.01", "--seed", "7"]
    )
    config = config_from_args(args)
    assert (config.partition, config.schedule, config.lr, config.seed) == (
        "magnitude",
        "paper3",
        0.01,
        7,
    )


def test_flow_and_quantize_share_defaults() -> None:
    flow = config_from_args(_parser("flow").parse_args([]))
    quantize = _parser("quantize").parse_args(["fp32.pt", "--out", "inq.pt"])
    assert flow.partition == quantize.partition == defaults.PARTITION
    assert flow.schedule == quantize.schedule == defaults.SCHEDULE
    assert flow.lr == quantize.lr == defaults.LR
    assert flow.seed == quantize.seed == defaults.SEED
    assert flow.inq_epochs == quantize.epochs == defaults.INQ_EPOCHS


def test_flow_help_shows_the_defaults() -> None:
    text = " ".join(_parser("flow").format_help().split())
    for flag, value in (
        ("--partition", defaults.PARTITION),
        ("--schedule", defaults.SCHEDULE),
        ("--lr", defaults.LR),
        ("--seed", defaults.SEED),
        ("--samples", "8"),
    ):
        assert flag in text and f"(default {value}" in text


def test_samples_all(tmp_path: Path) -> None:
    config = config_from_args(_parser("flow").parse_args(["--samples", "all"]))
    assert config.samples == "all"
    path = tmp_path / "flow.toml"
    path.write_text(config.to_toml())
    assert FlowConfig.from_toml(path).samples == "all"


@pytest.mark.parametrize("text", ["0", "some", "-3"])
def test_bad_samples_is_one_line(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser("flow").parse_args(["--samples", text])
    assert exit_info.value.code == 2
    assert "'all'" in capsys.readouterr().err


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="samples"):
        FlowConfig(samples="most")
    with pytest.raises(ConfigError, match="lr"):
        FlowConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="seed"):
        FlowConfig(seed=1.5)  # type: ignore[arg-type]


def test_activation_width_reaches_the_config() -> None:
    assert config_from_args(_parser("flow").parse_args(["--a-bits", "6"])).a_bits == 6
    assert config_from_args(_parser("flow").parse_args([])).a_bits == 8
    with pytest.raises(ConfigError, match="Activation width"):
        config_from_args(_parser("flow").parse_args(["--a-bits", "3"]))
