"""Transistor level in sky130 (issue #16): the moons net on the tanh cells in ngspice.

Trains nothing: it takes ``netlists/models/moons_sky130.npz`` (``kirchhoff-sim train
--task moons --profile sky130``), characterises the cell at tt (cached), and runs the
first ``--samples`` test points (default 100) at transistor level, ``--workers``
ngspice processes at a time. Interleaved with them, chunk by chunk, the **baseline**: the
same samples as the behavioural netlist (one B source per edge, the cell models on the
trained capacitances) in ngspice, with the machine's load at every chunk.

It prints and writes (``benchmarks/results/bench_transistor.json``):

- class agreement of the transistor-level circuit with our solver running the cell
  models on the realised capacitances (the acceptance asks ≥ 98 of 100), the accuracy of
  both against the labels, the waveform and read-out errors as fractions of the swing;
- energy per inference from the supplies' currents and the bias references, the read-out
  settling time and T, the transistor count;
- ngspice time per sample at transistor level and behavioural (baseline);
- ``--corner-samples`` of the same points at the ss and ff corners (the mapping stays that
  of tt, as on a chip): agreement with the tt solver and accuracy.

    .venv/bin/python benchmarks/bench_transistor.py              # ~25-35 min on 2 idle cores
    .venv/bin/python benchmarks/bench_transistor.py --samples 4 --corner-samples 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from common import machine_load, write_results
from kirchhoff_sim import cells, modelfile, spice, technology
from kirchhoff_sim.cells import pdk as pdk_module, transistor
from kirchhoff_sim.training import datasets

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "netlists/models/moons_sky130.npz"


def _corner_run(net, X, y, profile, characterisation, pdk, corner, workers):
    report = transistor.validate_transistor(net, X, profile, characterisation, pdk, corner=corner, workers=workers)
    spice_class = np.array([s.spice_class for s in report.samples])
    return report, {"corner": corner, "samples": len(X), "class_agreement": report.class_agreement,
                    "spice_accuracy": float(np.mean(spice_class == y)),
                    "max_final_error": max(s.final_abs_error / s.swing for s in report.samples),
                    "energy_j": float(np.mean([s.energy_j for s in report.samples])),
                    "spice_seconds_per_sample": float(np.mean([s.spice_seconds for s in report.samples]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--corner-samples", type=int, default=20, help="samples at each of ss and ff (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    net = modelfile.load_net(MODEL)
    profile = technology.as_profile("sky130")
    pdk = pdk_module.locate_pdk()
    started = time.perf_counter()
    characterisation = cells.characterisation_of(profile)
    characterised = time.perf_counter() - started
    data = datasets.load_dataset("moons", seed=0, n_samples=2000)
    X, y = data.X_test[: args.samples], data.y_test[: args.samples]

    samples, baseline, loads = [], [], []
    started = time.perf_counter()
    for first in range(0, len(X), args.workers):
        chunk = slice(first, first + args.workers)
        loads.append(os.getloadavg()[0])
        report = transistor.validate_transistor(net, X[chunk], profile, characterisation, pdk,
                                                workers=args.workers)
        samples += report.samples
        behavioural = spice.validate(net, X[chunk], scale=profile.scale, workers=args.workers)
        baseline += behavioural.samples
        done = len(samples)
        print(f"{done}/{len(X)}: agree {sum(s.class_agrees for s in samples)}/{done}, transistor "
              f"{np.mean([s.spice_seconds for s in report.samples]):.1f} s/sample, behavioural "
              f"{np.mean([s.spice_seconds for s in behavioural.samples]):.2f} s/sample, load {loads[-1]:.2f}",
              flush=True)
    wall = time.perf_counter() - started

    solver_class = np.array([s.solver_class for s in samples])
    spice_class = np.array([s.spice_class for s in samples])
    final = [s.final_abs_error / s.swing for s in samples]
    tt = {"corner": "tt", "samples": len(X), "class_agreement": int(sum(s.class_agrees for s in samples)),
          "solver_accuracy": float(np.mean(solver_class == y)), "spice_accuracy": float(np.mean(spice_class == y)),
          "behavioural_model_accuracy": float(np.mean(np.array([s.solver_class for s in baseline]) == y)),
          "max_waveform_error": max(s.max_rel_error for s in samples), "max_final_error": max(final),
          "median_final_error": float(np.median(final)),
          "energy_j": float(np.mean([s.energy_j for s in samples])),
          "bias_energy_j": float(np.mean([s.bias_energy_j for s in samples])),
          "settling_s": max(s.settling_s for s in samples), "t_stop_s": report.t_stop,
          "cells": report.cells, "transistors": report.transistors,
          "spice_seconds_per_sample": float(np.mean([s.spice_seconds for s in samples])),
          "behavioural_spice_seconds_per_sample": float(np.mean([s.spice_seconds for s in baseline])),
          "behavioural_max_rel_error": max(s.max_rel_error for s in baseline),
          "wall_seconds": wall, "load_per_chunk": loads}
    print(f"tt: {report.cells} cells, {report.transistors} transistors; classes agree on "
          f"{tt['class_agreement']}/{len(X)}; accuracy solver {tt['solver_accuracy']:.1%}, ngspice "
          f"{tt['spice_accuracy']:.1%}; read-out error at T max {tt['max_final_error']:.2%} (median "
          f"{tt['median_final_error']:.2%}) of the swing, waveform max {tt['max_waveform_error']:.2%}")
    print(f"energy {tt['energy_j']:.3g} J per inference (bias references {tt['bias_energy_j']:.3g} J of it), "
          f"settled by {tt['settling_s']:.3g} s of T = {tt['t_stop_s']:.3g} s")
    print(f"ngspice per sample: transistor level {tt['spice_seconds_per_sample']:.1f} s, behavioural baseline "
          f"{tt['behavioural_spice_seconds_per_sample']:.2f} s; {len(X)} samples in {wall:.0f} s wall on "
          f"{args.workers} processes; characterisation {characterised:.0f} s (0 if cached); load "
          f"{min(loads):.2f}-{max(loads):.2f}")
    corners = [tt]
    for corner in ("ss", "ff") if args.corner_samples > 0 else ():
        n = min(args.corner_samples, len(X))
        _, result = _corner_run(net, X[:n], y[:n], profile, characterisation, pdk, corner, args.workers)
        result["tt_spice_accuracy_same_samples"] = float(np.mean(spice_class[:n] == y[:n]))
        corners.append(result)
        print(f"{corner}: classes agree with the tt solver on {result['class_agreement']}/{n}; accuracy "
              f"{result['spice_accuracy']:.1%} (tt on the same points {result['tt_spice_accuracy_same_samples']:.1%}); "
              f"read-out error at T max {result['max_final_error']:.2%}; energy {result['energy_j']:.3g} J", flush=True)
    write_results("bench_transistor", {"model": str(MODEL.relative_to(ROOT)), "fit_error": characterisation.max_error,
                                       "corners": corners, "load_end": machine_load()})


if __name__ == "__main__":
    main()
