"""The contract, rtl_gen, sim's engines, the cost model and the CLI import without torch."""

import subprocess
import sys

from benches.bench_imports import TORCH_FREE_MODULES

_CHECK = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(len(loaded))
"""

_HELP = """
import sys
from inq_hw.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print(int("torch" in sys.modules))
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_contract_imports_without_torch() -> None:
    assert _run(_CHECK, *TORCH_FREE_MODULES) == "0"


def test_help_does_not_import_torch() -> None:
    assert _run(_HELP) == "0"


def test_the_check_notices_torch() -> None:
    """The torch side does load torch: the check above can fail."""
    assert _run(_CHECK, "inq_hw.quant") != "0"
