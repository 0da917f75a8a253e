"""The import-linter contract of `make lint` holds, and a broken layering is caught."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

_BROKEN = """
[importlinter]
root_packages =
    inq_hw
    rtl_gen

[importlinter:contract:upside-down]
name = rtl_gen below the integer model (false: rtl_gen reads it)
type = layers
layers =
    inq_hw.intmodel
    rtl_gen
"""


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layers_hold() -> None:
    done = _lint(ROOT / ".importlinter")
    assert done.returncode == 0, done.stdout[-2000:]


def test_a_broken_layering_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "broken.ini"
    config.write_text(_BROKEN)
    done = _lint(config)
    assert done.returncode != 0 and "BROKEN" in done.stdout
