"""What every testbench shares with :mod:`sim.runner`: its configuration and its result.

The runner writes the configuration as JSON and names it in :data:`CONFIG_ENV`; the
testbench reads it with :func:`read_config` and writes its result with
:func:`write_result`, atomically, to the path the configuration names.
"""

import json
import os
from typing import Any

__all__ = ["CONFIG_ENV", "read_config", "write_result"]

CONFIG_ENV = "INQ_HW_TB_CONFIG"


def read_config() -> dict[str, Any]:
    with open(os.environ[CONFIG_ENV]) as handle:
        config: dict[str, Any] = json.load(handle)
    return config


def write_result(config: dict[str, Any], result: dict[str, Any]) -> None:
    partial = config["result"] + ".part"
    with open(partial, "w") as handle:
        json.dump(result, handle)
    os.replace(partial, config["result"])
