"""Run INQ under torch.distributed and write what this rank ended with.

Started by tests/test_distributed.py as
``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py ...``.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from inq_hw.driver import run_inq
from inq_hw.inq import INQConfig
from inq_hw.train import TrainConfig


def main() -> None:
    fp32, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    partition = sys.argv[3]
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()
    config = INQConfig(bits=3, schedule=(0.5, 0.75, 1.0), partition=partition, seed=3)
    summary = run_inq(
        fp32, config, TrainConfig(epochs=1, lr=0.05, batch_size=64), outdir / "inq.pt"
    )
    summary["world_size"] = dist.get_world_size()
    (outdir / f"rank{rank}.json").write_text(json.dumps(summary))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
