"""What the opt-in malloc tuning (:func:`kirchhoff_sim.tune_allocator`) buys.

The same RK4 run — a 32-node fully connected AffineTanh net (1,056 edges a layer, 2
layers), batch 512, 200 fixed steps — in fresh Python processes, alternately with and
without ``tune_allocator()`` (A B A B …, the minimum of each kept), so both see the same
machine load. Each process times only the simulation, after one warm-up run.

Run:  .venv/bin/python benchmarks/bench_allocator.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_load, write_results  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {here!r})
import kirchhoff_sim as ks
from common import fully_connected_tanh
tuned = ks.tune_allocator() if {tune} else False
net = fully_connected_tanh(np.random.default_rng(0))
x = np.random.default_rng(1).normal(size=(512, 32))
solver = ks.RK4(0.005)
ks.simulate(net, x, solver=solver)               # warm-up: imports, caches, first pages
t = time.perf_counter()
steps = ks.simulate(net, x, solver=solver).stats.n_steps
print(json.dumps({{"tuned": tuned, "seconds": time.perf_counter() - t, "steps": steps}}))
"""


def run(tune: bool) -> dict:
    code = CHILD.format(here=str(Path(__file__).resolve().parent), tune=tune)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rows = {"default": [], "tuned": []}
    for r in range(args.rounds):
        for label, tune in (("default", False), ("tuned", True)):
            result = run(tune)
            rows[label].append(result["seconds"])
            print(f"round {r}: {label:8s} {result['seconds']:.3f} s ({result['steps']} RK4 steps; "
                  f"tuning applied: {result['tuned']}) load {machine_load()['load_1min']:.2f}")
    best = {k: min(v) for k, v in rows.items()}
    ratio = best["default"] / best["tuned"]
    print(f"glibc defaults {best['default']:.3f} s, tune_allocator() {best['tuned']:.3f} s: "
          f"{ratio:.2f}x faster with the tuning (minimum of {args.rounds} alternating runs each)")
    write_results("bench_allocator", {"seconds": rows, "best": best, "speedup": ratio,
                                      "net": "fully connected AffineTanh, 32 nodes, 2 layers, batch 512, RK4 dt 0.005"})


if __name__ == "__main__":
    main()
