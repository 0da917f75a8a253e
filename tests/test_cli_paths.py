"""Output paths are checked when the command line is parsed, before any work starts."""

from pathlib import Path

import pytest

from inq_hw.cli import main

# Each command with an output option; the input need not exist: the path check comes first.
COMMANDS = [
    ["train", "--out", "{bad}/fp32.pt"],
    ["quantize", "missing.pt", "--bits", "4", "--out", "{bad}/inq.pt"],
    ["export", "missing.pt", "--out", "{bad}/pkg"],
    ["vectors", "missing-pkg", "--out", "{bad}/v.npz"],
    ["cost", "missing-pkg", "--out", "{bad}/cost.json"],
    ["explore", "missing-pkg", "--out", "{bad}/explore"],
    ["generate", "missing-pkg", "--out", "{bad}/rtl"],
    ["simulate", "missing-pkg", "--out", "{bad}/sim.json"],
    ["ip", "missing-pkg", "--out", "{bad}/ip"],
    ["implement", "missing-pkg", "--device", "ice40-up5k", "--out", "{bad}/impl"],
    ["flow", "--out", "{bad}/flow"],
    ["flow", "--report", "{bad}/report"],
    ["report", "missing.json", "--out", "{bad}/report"],
]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: f"{argv[0]}-{argv[-2]}")
def test_output_under_a_regular_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    blocker = tmp_path / "plain.txt"
    blocker.write_text("a file, not a directory\n")
    code, err = _run(capsys, [part.format(bad=blocker) for part in argv])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert f"{blocker} is a file, not a directory" in lines[0] and "Traceback" not in err


def test_output_file_that_is_a_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = _run(capsys, ["train", "--out", str(tmp_path)])
    assert code == 2 and "cannot write the file" in err and "it is a directory" in err


def test_output_directory_that_is_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain = tmp_path / "pkg"
    plain.write_text("x")
    code, err = _run(capsys, ["export", "missing.pt", "--out", str(plain)])
    assert code == 2 and "cannot write the directory" in err and "it is a file" in err


# --- inputs of the wrong kind are named as what they are --------------------------------


def test_package_command_given_a_checkpoint(
    capsys: pytest.CaptureFixture[str], tiny_fp32: Path
) -> None:
    code, err = _run(capsys, ["eval", str(tiny_fp32)])
    assert code == 2 and "is a file, not an integer model package" in err
    assert f"inq-hw export {tiny_fp32} --out DIR" in err


def test_checkpoint_command_given_a_package(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "model.json").write_text("{}")
    code, err = _run(capsys, ["export", str(package), "--out", str(tmp_path / "out")])
    assert code == 2 and "is an integer model package, not a checkpoint" in err
    code, err = _run(capsys, ["export", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 2 and "is a directory, not a checkpoint file" in err


@pytest.mark.parametrize(("content", "kind"), [(b"hello\n", "a text file"), (b"", "empty")])
def test_checkpoint_that_is_not_a_torch_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, kind: str
) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    code, err = _run(capsys, ["quantize", str(path), "--bits", "4", "--out", str(tmp_path / "o")])
    assert code == 2 and f"Not an inq-hw checkpoint: {path} is {kind}" in err
    assert "Traceback" not in err


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    from inq_hw.files import atomic_write

    def write(tmp: Path) -> None:
        tmp.write_text("{}")

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "out.json", write)
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        path = atomic_write(tmp_path / "private.json", write)
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
