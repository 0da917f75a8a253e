"""`inq-hw --help`: subcommands in workflow order, defaults shown, a hint on Ctrl-C."""

import argparse
from typing import Any

import pytest

from inq_hw.cli import WORKFLOW, main
from inq_hw.commands.registry import COMMANDS


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_subcommands_listed_in_workflow_order(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    listed = text.split("{", 1)[1].split("}", 1)[0].split(",")
    assert set(listed) == set(COMMANDS)
    known = [name for name in listed if name in WORKFLOW]
    assert known == sorted(known, key=WORKFLOW.index)
    assert listed[:3] == ["train", "quantize", "export"]


def _option_entries(text: str) -> dict[str, str]:
    """Each option's entry in the help's option list: first flag -> its whole text."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif flag is not None:
            entries[flag] += " " + line.strip()
    return entries


@pytest.mark.parametrize("name", sorted(COMMANDS) or ["train"])
def test_every_option_with_a_default_shows_it(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    entries = _option_entries(_help(capsys, name))
    parser = argparse.ArgumentParser()
    COMMANDS[name][1](parser)
    for action in parser._actions:
        if not action.option_strings or action.option_strings[0] == "-h":
            continue
        if action.default in (None, argparse.SUPPRESS) or action.default is False:
            continue
        assert "default" in entries[action.option_strings[0]], (name, action.option_strings)


@pytest.mark.parametrize(
    ("name", "hint"), [("quantize", "--resume"), ("flow", "finished stages are cached")]
)
def test_interrupt_names_how_to_continue(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str, hint: str
) -> None:
    def interrupted(args: argparse.Namespace) -> dict[str, Any]:
        raise KeyboardInterrupt

    help_text, configure, _ = COMMANDS[name]
    monkeypatch.setitem(COMMANDS, name, (help_text, configure, interrupted))
    argv = [name, "x.pt", "--out", "o.pt"] if name == "quantize" else [name]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and hint in err


def test_model_help_lists_every_zoo_name() -> None:
    from inq_hw.commands.training import ZOO_HELP
    from inq_hw.models import model_names

    assert set(ZOO_HELP.split(", ")) == set(model_names())
