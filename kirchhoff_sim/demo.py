"""The main job, end to end: what ``make demo`` (``kirchhoff-sim demo``) runs.

Today it builds the reference two-moons net (2 layers × 300 AffineTanh devices),
simulates a batch with the explicit and the implicit solver families and compares them,
and round-trips the model file. Training, the ngspice check and the chip report join it
as they land.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from . import topology
from .devices import AffineTanh
from .modelfile import load_net
from .network import KirchhoffNet, Layer
from .solvers import BDF2, Dopri5, simulate


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def run_demo(quick: bool = False, out_dir=None) -> dict:
    """Run the demo and return its figures (also printed)."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="kirchhoff_demo_"))
    batch = 64 if quick else 512
    net = KirchhoffNet(
        [Layer(topology.fully_connected(3, repeat=(25, 25)), AffineTanh(), duration=0.5) for _ in range(2)],
        seed=0,
    )
    _say("build", f"{net!r} (the reference two-moons topology)")
    x = np.random.default_rng(0).normal(size=(batch, 2))

    t = time.perf_counter()
    explicit = simulate(net, x, solver=Dopri5(rtol=1e-8, atol=1e-10))
    t_explicit = time.perf_counter() - t
    t = time.perf_counter()
    implicit = simulate(net, x, solver=BDF2(rtol=1e-6, atol=1e-8))
    t_implicit = time.perf_counter() - t
    gap = float(np.abs(explicit.final_state - implicit.final_state).max())
    _say("simulate", f"batch {batch}: Dopri5 {explicit.stats.n_steps} steps in {t_explicit * 1e3:.0f} ms, "
                     f"BDF2 {implicit.stats.n_steps} steps ({implicit.stats.n_newton} Newton iterations) "
                     f"in {t_implicit * 1e3:.0f} ms; max |Δv| between them {gap:.2e}")

    path = net.save(out_dir / "two_moons_untrained.npz")
    again = load_net(path)
    same = np.array_equal(again.forward(x[:8]), net.forward(x[:8]))
    _say("model file", f"wrote {path}; reloaded net gives identical outputs: {same}")
    return {"batch": batch, "dopri5_seconds": t_explicit, "bdf2_seconds": t_implicit,
            "max_gap": gap, "round_trip": same, "model": str(path)}
