"""One digits sample at transistor level in sky130 (issue #16): time and transistor count.

Takes ``netlists/models/digits_sky130.npz`` (``kirchhoff-sim train --task digits
--profile sky130 --device TanhCell --sparsity 2e-3 --epochs 12``, 78.4 % test accuracy: the digits net on the
tanh cells' models, the L1 term switching devices off, which then build no cell), writes
the first ``--samples`` test digits as transistor-level netlists and runs them in ngspice,
one process each, against our solver on the cell models. The **baseline**, run right
after each sample in the same run: the same sample as the behavioural netlist (one B
source per edge) in ngspice, and our solver's time for it, with the machine's load.

It prints and writes (``benchmarks/results/bench_transistor_digits.json``) the cells and
transistors, ngspice's time per sample (parse included), the class agreement and the
read-out error at T, the energy per inference and the peak memory of ngspice.

    .venv/bin/python benchmarks/bench_transistor_digits.py            # one sample, ~15-60 min
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path


from common import machine_load, write_results
from kirchhoff_sim import cells, modelfile, spice, technology
from kirchhoff_sim.cells import transistor
from kirchhoff_sim.solvers import Dopri5, simulate
from kirchhoff_sim.training import datasets

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "netlists/models/digits_sky130.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per ngspice run")
    args = parser.parse_args()
    net = modelfile.load_net(args.model)
    profile = technology.as_profile("sky130")
    characterisation, pdk = cells.prepare(net, profile)
    data = datasets.load_dataset("digits", seed=0)
    X, y = data.X_test[: args.samples], data.y_test[: args.samples]
    rows = []
    for i in range(len(X)):
        load = os.getloadavg()[0]
        report = transistor.validate_transistor(net, X[i:i + 1], profile, characterisation, pdk, workers=1,
                                                timeout=args.timeout)
        sample = report.samples[0]
        memory_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        behavioural = spice.validate(net, X[i:i + 1], scale=profile.scale, workers=1)
        started = time.perf_counter()
        simulate(net, X[i:i + 1], solver=Dopri5(rtol=1e-6, atol=1e-8))
        solver_seconds = time.perf_counter() - started
        rows.append({"sample": i, "label": int(y[i]), "cells": report.cells, "transistors": report.transistors,
                     "spice_seconds": sample.spice_seconds, "spice_points": sample.spice_points,
                     "spice_peak_memory_mb": memory_mb, "class_agrees": sample.class_agrees,
                     "spice_class": sample.spice_class, "solver_class": sample.solver_class,
                     "final_error_of_swing": sample.final_abs_error / sample.swing,
                     "waveform_error_of_swing": sample.max_rel_error, "energy_j": sample.energy_j,
                     "bias_energy_j": sample.bias_energy_j, "t_stop_s": report.t_stop,
                     "behavioural_spice_seconds": behavioural.samples[0].spice_seconds,
                     "solver_seconds": solver_seconds, "load": load})
        r = rows[-1]
        print(f"digit {i} (label {r['label']}): {r['cells']} cells, {r['transistors']} transistors; ngspice "
              f"{r['spice_seconds']:.0f} s ({r['spice_points']} points, peak {memory_mb:.0f} MB) against "
              f"{r['behavioural_spice_seconds']:.1f} s behavioural and {solver_seconds:.2f} s for our solver; class "
              f"{r['spice_class']} (solver {r['solver_class']}); read-out at T within {r['final_error_of_swing']:.2%} "
              f"of the swing (waveform {r['waveform_error_of_swing']:.2%}); energy {r['energy_j']:.3g} J "
              f"(bias {r['bias_energy_j']:.3g} J); load {load:.2f}", flush=True)
    write_results("bench_transistor_digits", {"model": os.path.relpath(args.model, ROOT),
                                              "samples": rows,
                                              "load_end": machine_load()})


if __name__ == "__main__":
    main()
