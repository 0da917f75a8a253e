"""Switching activity of a whole dataflow top (shift-add or its multiplier twin) on real
test images.

:func:`top_activity` streams the first ``images`` test images of the package through the
top on the fast engine's trace-enabled build (:func:`sim.simulate.simulate_package` with
``activity=``: an FST of the run, read by :func:`sim.activity.activity_from_waves`), with
no input gaps and no output stalls, so the run is the top at its steady rate, one image
per manifest interval. Every output is checked against the golden executor (the twin's
against its 8-bit baseline arithmetic): the toggles come from a bit-exact run or not at
all. ``cycles`` is the rising edges of ``clk`` over the whole run (reset, filling and
draining included). The counts are kept in ``cache_dir`` by the hash of the Verilog, the
package and the image count; the FST is deleted.

Example usage::

    activity = top_activity(Path("build/inq5"), Path("build/inq5/rtl-dataflow"),
                            images=4, cache_dir=Path("build/activity"))
"""

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path

from inq_hw.intmodel.package import package_hash
from rtl_gen.export import load_manifest
from sim.activity import Activity
from sim.simulate import simulate_package

__all__ = ["top_activity"]


def _key(package: Path, rtl_dir: Path, images: int) -> str:
    manifest = load_manifest(rtl_dir)
    digest = hashlib.sha256(f"top-activity\0{package_hash(package)}\0{images}".encode())
    for top in manifest.tops:
        digest.update((rtl_dir / top.file).read_bytes())
    return digest.hexdigest()[:24]


def top_activity(
    package: Path,
    rtl_dir: Path,
    *,
    images: int,
    cache_dir: Path,
    timeout_s: float = 3600,
    log: Callable[[str], None] | None = None,
) -> Activity:
    """Toggle counts of the dataflow top in ``rtl_dir`` on ``images`` test images
    (module docstring).

    Raises:
        SimulationError: No fast engine (Verilator), a timeout, or a mismatch with the
            golden executor (:class:`sim.simulate.SimulationMismatch`).
        ActivityError: The waveform cannot be read.
    """
    saved = cache_dir / f"activity-top-{_key(package, rtl_dir, images)}.json"
    if saved.is_file():
        return Activity.read(saved)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inq_hw_top_activity_") as tmp:
        summary = simulate_package(
            package,
            rtl_dir=rtl_dir,
            engine="fast",
            samples=images,
            idle=0.0,
            stall=0.0,
            activity=Path(tmp) / "activity.json",
            cache_dir=(cache_dir / "sim").resolve(),  # the harness build needs it absolute
            timeout_s=timeout_s,
            log=log,
        )
        activity = Activity.read(Path(tmp) / "activity.json")
    if summary.get("waves"):
        Path(summary["waves"]).unlink(missing_ok=True)  # the counts are kept
    activity.write(saved)
    return activity
