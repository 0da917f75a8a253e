"""``inq-hw sweep`` (issue 19): the sweep file's points and errors (fast); a 4-point sweep of
the tiny flow (tests/test_flow.py's setting: a narrow digits-cnn, a few epochs, three images
on Icarus, the analytic cost) killed by SIGKILL after its first point and run again on the
process pool, and the same sweep on a 2-CPU local Ray cluster: no finished stage is
recomputed, and both give the same results and the same stage files, byte for byte."""

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from inq_hw.errors import ConfigError
from inq_hw.flow import FlowConfig
from inq_hw.report.sweep import METRICS, pareto_designs, summarize
from inq_hw.sweep import SweepConfig
from inq_hw.sweep.stages import next_stage
from tests.conftest import CLI, Cli, cli_env

TINY = """
name = "tiny"
seeds = [0, 1]
[base]
model_args = { channels = [4, 8, 8] }
fp32_epochs = 4
inq_epochs = 1
samples = 3
skip_synthesis = true
skip_implementation = true
simulator = "icarus"
targets = ["analytic"]
[grid]
bits = [2, 3]
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the sweep file (fast) -------------------------------------------------------------------


def test_grid_is_a_product_crossed_with_the_default_seeds(tmp_path: Path) -> None:
    sweep = SweepConfig.from_toml(
        _write(tmp_path, '[grid]\nbits = [2, 3]\npartition = ["random", "magnitude"]\n')
    )
    points = sweep.points()
    assert len(points) == 2 * 2 * 3  # seeds 0, 1, 2 by default
    assert points[0].name == "bits-2_partition-random_seed-0"
    assert points[0].group == "bits-2_partition-random"
    assert points[0].config == FlowConfig(
        bits=(2,), partition="random", seed=0, name=points[0].name
    )
    assert {p.config.seed for p in points} == {0, 1, 2}
    assert len({p.name for p in points}) == len(points)


def test_explicit_points_and_their_own_seeds(tmp_path: Path) -> None:
    text = (
        'seeds = [5]\n[base]\ntargets = ["analytic"]\n'
        "[[points]]\nbits = 4\nfolding = { all = 8 }\n"
        "[[points]]\nbits = [2, 3]\nseed = 1\na_bits = 6\n"
    )
    points = SweepConfig.from_toml(_write(tmp_path, text)).points()
    assert [p.name for p in points] == ["bits-4_folding-all.8_seed-5", "bits-2+3_seed-1_a_bits-6"]
    assert points[0].config.folding == {"all": 8} and points[0].config.seed == 5
    assert points[1].config.bits == (2, 3) and points[1].config.a_bits == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n[grid]\nbits = [2]\n", "Unknown keys in sweep file"),
        ("[grid]\nwidth = [2]\n", "'width' is not a sweep axis"),
        ("[grid]\nbits = []\n", "Grid axis bits must be a non-empty list"),
        ("[grid]\n", "The sweep is empty"),
        ("[grid]\nbits = [2, 9]\n", "Sweep point bits-9_seed-0: Bit-width must be"),
        ("[grid]\ntargets = [['vivado']]\n", "Targets must be among"),
        ("[base]\nseed = 3\n[grid]\nbits = [2]\n", "give seeds as"),
        ("[base]\nwidth = 3\n[grid]\nbits = [2]\n", "Unknown flow-config keys in [base]"),
        ("seeds = []\n[grid]\nbits = [2]\n", "seeds must be a non-empty list"),
        ("[grid\nbits = [2]\n", "Cannot read sweep file"),
    ],
)
def test_bad_sweep_file_is_one_line_error(
    tmp_path: Path, cli: Cli, text: str, message: str
) -> None:
    code, out, err = cli("sweep", str(_write(tmp_path, text)), "--out", str(tmp_path / "out"))
    assert code == 2 and out == ""
    assert err.startswith("inq-hw sweep: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "out").exists()  # nothing written
    with pytest.raises(ConfigError):
        SweepConfig.from_toml(tmp_path / "sweep.toml")


def test_bad_executor_options_are_one_line_errors(tmp_path: Path, cli: Cli) -> None:
    path, out = _write(tmp_path, "[grid]\nbits = [2]\n"), str(tmp_path / "out")
    code, _, err = cli("sweep", str(path), "--out", out, "--executor", "pool", "--jobs", "0")
    assert code == 2 and "--jobs must be a positive integer" in err
    address = ("--address", "10.0.0.1:6379")
    code, _, err = cli("sweep", str(path), "--out", out, "--executor", "pool", *address)
    assert code == 2 and "needs the Ray executor" in err
    assert not (tmp_path / "out").exists()


def test_an_address_nothing_listens_at_is_refused_at_once(tmp_path: Path, cli: Cli) -> None:
    """Ray would retry such an address for minutes; the sweep says so in one line first."""
    pytest.importorskip("ray")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    path, out = _write(tmp_path, "[grid]\nbits = [2]\n"), str(tmp_path / "out")
    for address, message in [
        (f"127.0.0.1:{port}", f"Cannot join the Ray cluster at 127.0.0.1:{port}: "),
        ("nohost", "--address must be host:port, ray://host:port or auto, not 'nohost'"),
    ]:
        code, _, err = cli(
            "sweep", str(path), "--out", out, "--executor", "ray", "--address", address
        )
        assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_a_failed_stage_fails_its_points_in_one_line(tmp_path: Path, cli: Cli) -> None:
    """A stage that fails in a worker (here FP32 training, its data set missing) fails the
    points that need it; sweep.json records why, and the exit code is 2."""
    text = (
        f'seeds = [0]\n[base]\ndataset = "mnist"\ndata_dir = "{tmp_path / "none"}"\n'
        "[grid]\nbits = [2, 3]\n"
    )
    out = tmp_path / "out"
    code, _, err = cli(
        "sweep", str(_write(tmp_path, text)), "--out", str(out), "--executor", "pool", "--jobs", "1"
    )
    assert code == 2 and err.count("\n") == 1
    assert "2 of 2 points failed" in err and "Stage train FP32 failed" in err
    sweep = json.loads((out / "sweep.json").read_text())
    assert [p["status"] for p in sweep["points"]] == ["failed", "failed"]
    assert "Stage train FP32 failed" in sweep["points"][0]["error"]
    assert not [p for p in (out / "stages").iterdir()]  # nothing half-written
    assert "Failed points" in (out / "sweep.md").read_text()


def _point(name: str, group: str, seed: int, accuracy: float, energy_pj: float) -> dict[str, Any]:
    entry = {
        "bits": 2,
        "accuracy": {"integer": accuracy},
        "cost": {"analytic": {"energy_pj": {"shift_add": energy_pj}}},
    }
    return {
        "name": name,
        "group": group,
        "axes": {"bits": 2, "seed": seed},
        "results": {"fp32": {"accuracy": 0.9}, "bits": [entry]},
    }  # fmt: skip


def test_designs_are_means_over_seeds_and_the_front_is_on_them() -> None:
    points = [
        _point("a0", "a", 0, 0.90, 1000.0),
        _point("a1", "a", 1, 0.80, 1200.0),
        _point("b0", "b", 0, 0.84, 3000.0),  # dearer and less accurate than a's mean
        _point("c0", "c", 0, 0.95, 5000.0),
    ]
    designs = {d["design"]: d for d in summarize(points)}
    assert designs["a"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert designs["a"]["accuracy"]["min"] == 0.80 and designs["a"]["accuracy"]["n"] == 2
    assert designs["a"]["figures"]["energy_nj"]["mean"] == pytest.approx(1.1)
    assert designs["a"]["figures"]["lut"] is None  # absent, not zero
    energy = next(m for m in METRICS if m.key == "energy_nj")
    front = [d["design"] for d in pareto_designs(list(designs.values()), energy)]
    assert front == ["a", "c"]


def _fake_stage(out: Path, directory: str, result: dict[str, Any]) -> None:
    (out / "stages" / directory).mkdir(parents=True)
    (out / "stages" / directory / "result.json").write_text(json.dumps(result))


def test_next_stage_is_the_flows_and_earlier_keys_stay_valid(tmp_path: Path) -> None:
    """The probe walks the flow's own stages; the keys are those of the flow before sweeps
    (the package's computed by the earlier code), and ``a_bits`` other than 8 changes only
    the package's."""
    config = FlowConfig(bits=(3,))
    stage, _ = next_stage(config, tmp_path)
    assert stage is not None and stage.directory == "fp32-fa669f192f8d4dc7" and not stage.before
    _fake_stage(tmp_path, stage.directory, {"accuracy": 0.9, "test_samples": 359})
    stage, _ = next_stage(config, tmp_path)
    assert stage is not None and stage.directory == "inq-ddfaf847b66363d8"
    assert stage.before == (("fp32-fa669f192f8d4dc7", True),)
    _fake_stage(tmp_path, stage.directory, {"accuracy": 0.9, "one_shot": 0.5, "fp32": 0.9})
    stage, _ = next_stage(config, tmp_path)
    assert stage is not None and stage.directory == "package-2c629bb825f3504e"
    assert stage.label == "lower + evaluate 3-bit"
    other, _ = next_stage(config.replace(a_bits=6), tmp_path)
    assert other is not None and other.name == "package" and other.key != stage.key


# --- a real sweep, killed and continued, against Ray -------------------------------------------


def _sweep(tmp_path: Path, out: str, *extra: str) -> list[str]:
    return [*CLI, "sweep", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / out), *extra]


def _stage_stamps(out: Path) -> dict[str, tuple[int, int]]:
    stages = out / "stages"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in stages.iterdir()}


@pytest.fixture(scope="module")
def killed_then_continued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny sweep on the pool with one job, SIGKILLed (driver and workers) once its
    first point has finished, then run again to the end."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    _write(tmp_path, TINY)
    child = subprocess.Popen(
        _sweep(tmp_path, "pool", "--executor", "pool", "--jobs", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
        start_new_session=True,  # its own process group: the pool's workers die with it
    )
    assert child.stdout is not None
    first = None
    for line in child.stdout:
        if line.startswith("[point 1/4] "):
            first = line.split()[2].rstrip(":")
            break
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    assert first is not None and child.returncode == -signal.SIGKILL
    out = tmp_path / "pool"
    assert not (out / "sweep.json").exists()
    before = _stage_stamps(out)
    done = subprocess.run(
        _sweep(tmp_path, "pool", "--executor", "pool", "--jobs", "2"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "first": first, "before": before, "stdout": done.stdout}


@pytest.mark.hw
def test_killed_sweep_recomputes_no_finished_stage(killed_then_continued: dict[str, Any]) -> None:
    out, first = killed_then_continued["out"], killed_then_continued["first"]
    sweep = json.loads((out / "sweep.json").read_text())
    points = {p["name"]: p for p in sweep["points"]}
    assert len(points) == 4 and all(p["status"] == "done" for p in points.values())
    assert points[first]["stages_computed"] == []
    assert f"{first}: done (all read back)" in killed_then_continued["stdout"]
    after = _stage_stamps(out)
    before = killed_then_continued["before"]
    assert {name: after[name] for name in before} == before  # untouched, not rewritten
    assert not [name for name in after if ".tmp-" in name]
    assert (out / "points" / first / "report.md").is_file()
    for name in ("sweep.md", "sweep.html", "sweep_energy_nj.png"):
        assert (out / name).is_file()
    markdown = (out / "sweep.md").read_text()
    assert f"(points/{first}/report.md)" in markdown
    assert "Accuracy against LUTs" in markdown and "Absent: no point has this figure" in markdown
    assert sweep["machine"]["torch"] and sweep["machine"]["cpu"]


def _deterministic(sweep: dict[str, Any]) -> dict[str, Any]:
    """Every point's configuration and results without the times (every stage's seconds,
    the simulator's images per wall-clock second)."""

    def timeless(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: timeless(v) for k, v in value.items() if not k.endswith("seconds")}
        return [timeless(v) for v in value] if isinstance(value, list) else value

    points = {}
    for point in sweep["points"]:
        for entry in point["results"]["bits"]:
            entry["rtl"].pop("images_per_second")
        points[point["name"]] = {"config": point["config"], "results": timeless(point["results"])}
    return {"points": points, "designs": sorted(sweep["groups"], key=lambda d: d["design"])}


@pytest.mark.hw
@pytest.mark.dist
def test_ray_and_pool_give_the_same_sweep(
    killed_then_continued: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("ray")
    tmp_path = tmp_path_factory.mktemp("ray")
    _write(tmp_path, TINY)
    env = {k: v for k, v in cli_env().items() if k != "RAY_ADDRESS"}  # a local cluster
    done = subprocess.run(
        _sweep(tmp_path, "ray", "--executor", "ray", "--jobs", "2"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("[point ") == 4 and "[stage 1]" in done.stdout
    # one task per stage the points share: an FP32 model per seed, not per point
    assert done.stdout.count("train FP32") == 2 and done.stdout.count("[stage ") == 22
    ray_sweep = json.loads((tmp_path / "ray" / "sweep.json").read_text())
    pool = killed_then_continued["out"]
    pool_sweep = json.loads((pool / "sweep.json").read_text())
    assert ray_sweep["executor"] == {"kind": "ray", "jobs": 2, "address": "local"}
    assert _deterministic(ray_sweep) == _deterministic(pool_sweep)
    assert _stage_files(tmp_path / "ray") == _stage_files(pool)


def _stage_files(out: Path) -> dict[str, bytes]:
    """Every file of every stage but result.json (which holds the stage's time)."""
    files = sorted(p for p in (out / "stages").rglob("*") if p.is_file())
    return {str(p.relative_to(out)): p.read_bytes() for p in files if p.name != "result.json"}


@pytest.mark.hw
@pytest.mark.dist
def test_a_sweep_joins_a_running_cluster_by_address(
    killed_then_continued: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``ray start --head`` is a cluster of its own (GCS, raylet, workers not forked by the
    driver) that asks for a token; ``--address`` without ``RAY_AUTH_MODE=token`` is refused
    in one line, with it the sweep joins, ships the driver's code and gives the pool's."""
    pytest.importorskip("ray")
    import secrets
    import socket
    import sys

    ray_cli = Path(sys.executable).with_name("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tmp_path = tmp_path_factory.mktemp("cluster")
    _write(tmp_path, TINY)
    env = {k: v for k, v in cli_env().items() if not k.startswith("RAY_")}
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # not the machine's ~/.ray/auth_token
    head = [str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "2"]
    head += ["--include-dashboard", "false", "--disable-usage-stats"]
    started = subprocess.run(head, capture_output=True, text=True, env=env, timeout=120)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        address = f"127.0.0.1:{port}"
        command = _sweep(tmp_path, "joined", "--executor", "ray", "--address", address)
        refused = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert refused.returncode == 2, refused.stderr[-2000:]
        (line,) = [x for x in refused.stderr.splitlines() if x.startswith("inq-hw sweep: error")]
        assert f"Cannot join the Ray cluster at {address}" in line
        assert "RAY_AUTH_MODE=token" in line and "Traceback" not in refused.stderr
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**env, "RAY_AUTH_MODE": "token"},
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, env=env, timeout=120)
    joined = json.loads((tmp_path / "joined" / "sweep.json").read_text())
    assert joined["executor"]["address"] == address
    pool = killed_then_continued["out"]
    pool_sweep = json.loads((pool / "sweep.json").read_text())
    assert _deterministic(joined) == _deterministic(pool_sweep)
    assert _stage_files(tmp_path / "joined") == _stage_files(pool)
