"""Transistor level in sky130 (issue #16): the moons net on the tanh cells in ngspice.

Trains nothing: it takes ``netlists/models/moons_sky130.npz`` (``kirchhoff-sim train
--task moons --profile sky130``), characterises the cell at tt (cached), runs the first
``--samples`` test points at transistor level in parallel ngspice processes and prints
the agreement with the cell-model solver, the energy per inference, the read-out time,
the transistor count and the ngspice time per sample, with the machine's load.

    .venv/bin/python benchmarks/bench_transistor.py --samples 4
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from kirchhoff_sim import cells, modelfile, technology
from kirchhoff_sim.cells import pdk as pdk_module, transistor
from kirchhoff_sim.fileio import atomic_write_text
from kirchhoff_sim.training import datasets

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--corner", default=None, help="corner the netlists load (default the profile's, tt)")
    args = parser.parse_args()
    net = modelfile.load_net(ROOT / "netlists/models/moons_sky130.npz")
    profile = technology.as_profile("sky130")
    load_before = os.getloadavg()
    started = time.perf_counter()
    characterisation = cells.characterisation_of(profile)
    characterised = time.perf_counter() - started
    data = datasets.load_dataset("moons", seed=0, n_samples=2000)
    X = data.X_test[: args.samples]
    started = time.perf_counter()
    report = transistor.validate_transistor(net, X, profile, characterisation, pdk_module.locate_pdk(),
                                            corner=args.corner, workers=args.workers)
    wall = time.perf_counter() - started
    print(report.summary())
    final = [s.final_abs_error / s.swing for s in report.samples]
    print(f"read-out error at T: max {max(final):.3%} of the swing; waveform error max {report.max_rel_error:.3%}")
    print(f"characterisation {characterised:.0f} s (0 if cached); {len(X)} samples in {wall:.0f} s wall on "
          f"{args.workers} processes; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    result = {"samples": len(X), "corner": report.corner, "cells": report.cells, "transistors": report.transistors,
              "class_agreement": report.class_agreement, "max_waveform_error": report.max_rel_error,
              "max_final_error": max(final), "energy_j": float(np.mean([s.energy_j for s in report.samples])),
              "bias_energy_j": float(np.mean([s.bias_energy_j for s in report.samples])),
              "t_stop_s": report.t_stop, "spice_seconds_per_sample": float(np.mean([s.spice_seconds for s in report.samples])),
              "wall_seconds": wall, "load_before": load_before[0], "fit_error": characterisation.max_error}
    atomic_write_text(ROOT / "benchmarks/results/bench_transistor.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
