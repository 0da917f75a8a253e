"""INQ under DistributedDataParallel: two gloo processes on the CPU agree on everything."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inq_hw.checkpoint import load_checkpoint
from tests.conftest import cli_env

WORKER = Path(__file__).with_name("dist_worker.py")


@pytest.mark.dist
@pytest.mark.parametrize("partition", ["magnitude", "random"])
def test_two_ranks_identical_partitions_and_values(
    partition: str, tiny_fp32: Path, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(WORKER),
        str(tiny_fp32),
        str(tmp_path),
        partition,
    ]
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    # The fingerprint covers every weight, bias and INQ mask of each rank's own model.
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    assert ranks[0]["history"] == ranks[1]["history"]
    payload = load_checkpoint(tmp_path / "inq.pt", kinds=("inq",))  # written once, by rank 0
    assert all(bool(layer["mask"].all()) for layer in payload["inq"]["layers"].values())
