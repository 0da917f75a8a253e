"""`make demo` writes under RUNS only, so a demo never dirties the checkout."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_demo_writes_only_under_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    done = subprocess.run(
        ["make", "-n", "demo", f"RUNS={runs}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    commands = [shlex.split(line) for line in done.stdout.splitlines() if "inq-hw" in line]
    flows = [argv for argv in commands if "flow" in argv]
    assert flows, done.stdout
    for argv in flows:
        for option in ("--out", "--report"):
            assert option in argv, argv
            assert Path(argv[argv.index(option) + 1]).is_relative_to(runs), argv
