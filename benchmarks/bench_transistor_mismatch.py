"""sky130's own mismatch at transistor level (issue #16): chips of the moons net on Dask.

Takes ``netlists/models/moons_sky130.npz`` (trained on the tanh cells' models), and runs
``--chips`` chips, each the netlist with the PDK's mismatch models on
(``tt_mm``, one ngspice seed per chip), on the first ``--samples`` test points; every
(chip, sample) is one ngspice process on a local Dask cluster of ``--workers``
single-threaded workers. Interleaved with the chips, one per chip, the **baseline**: our
behavioural Monte Carlo (the solver on the cell models with log-normal mismatch of the
trained amplitudes, ``--sigma``) on the same points, so the two ways of asking "what does
mismatch cost?" are measured side by side, with the machine's load at every chip.

It prints and writes (``benchmarks/results/bench_transistor_mismatch.json``): per chip
the class agreement with the nominal design (the cell-model solver), the accuracy, the
read-out shift at T as a fraction of the swing, the energy; the behavioural trials'
accuracy; times.

    .venv/bin/python benchmarks/bench_transistor_mismatch.py          # ~20-40 min on 2 cores
    .venv/bin/python benchmarks/bench_transistor_mismatch.py --chips 2 --samples 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from common import machine_load, write_results
from kirchhoff_sim import cells, modelfile, technology
from kirchhoff_sim.cells.mismatch import transistor_monte_carlo
from kirchhoff_sim.hardware.distributed import DaskRunner
from kirchhoff_sim.hardware.montecarlo import MonteCarloSpec, monte_carlo
from kirchhoff_sim.training import datasets

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "netlists/models/moons_sky130.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sigma", type=float, default=0.05, help="behavioural baseline's mismatch sigma")
    parser.add_argument("--trials", type=int, default=20, help="behavioural trials per chip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    net = modelfile.load_net(MODEL)
    profile = technology.as_profile("sky130")
    characterisation, pdk = cells.prepare(net, profile)
    data = datasets.load_dataset("moons", seed=0, n_samples=2000)
    X, y = data.X_test[: args.samples], data.y_test[: args.samples]

    chips, behavioural, loads = [], [], []
    started = time.perf_counter()
    with DaskRunner(n_workers=args.workers) as runner:
        for k in range(args.chips):
            loads.append(os.getloadavg()[0])
            chip = transistor_monte_carlo(net, X, y, profile, characterisation, pdk, instances=1, seed=args.seed,
                                          first_instance=k, executor=runner)
            chips.append(chip)
            t0 = time.perf_counter()
            spec = MonteCarloSpec(sigma_g=args.sigma, trials=args.trials, seed=args.seed * 1000 + k,
                                  scale=profile.scale)
            result = monte_carlo(net, X, y, spec)
            mc = {"mean_accuracy": float(result.mean), "min_accuracy": float(result.min),
                  "nominal_accuracy": float(result.nominal_accuracy), "seconds": time.perf_counter() - t0}
            behavioural.append(mc)
            print(f"chip {k + 1}/{args.chips} (seed {chip.seeds[0]}): agree {chip.agreement[0]:.0%}, accuracy "
                  f"{chip.accuracy[0]:.0%} (nominal {chip.nominal_accuracy:.0%}), read-out shift median "
                  f"{np.median(chip.readout_shift):.2%} max {chip.readout_shift.max():.2%}, "
                  f"{chip.wall_seconds:.0f} s; behavioural sigma {args.sigma:g}: accuracy "
                  f"{mc['mean_accuracy']:.0%} (min {mc['min_accuracy']:.0%}), {mc['seconds']:.1f} s; "
                  f"load {loads[-1]:.2f}", flush=True)
        where = runner.description
    wall = time.perf_counter() - started

    agreement = np.concatenate([c.agreement for c in chips])
    accuracy = np.concatenate([c.accuracy for c in chips])
    shift = np.concatenate([c.readout_shift.ravel() for c in chips])
    seconds = np.concatenate([c.spice_seconds.ravel() for c in chips])
    energy = np.concatenate([c.energy_j.ravel() for c in chips])
    behavioural_accuracy = np.array([b["mean_accuracy"] for b in behavioural])
    summary = {
        "chips": args.chips, "samples": len(X), "corner": "tt_mm", "runner": where,
        "nominal_accuracy": chips[0].nominal_accuracy,
        "agreement_mean": float(agreement.mean()), "agreement_min": float(agreement.min()),
        "accuracy_mean": float(accuracy.mean()), "accuracy_std": float(accuracy.std()),
        "accuracy_min": float(accuracy.min()),
        "readout_shift_median": float(np.median(shift)), "readout_shift_max": float(shift.max()),
        "energy_j_mean": float(energy.mean()), "energy_j_rel_std": float(energy.std() / energy.mean()),
        "spice_seconds_per_run": float(seconds.mean()), "wall_seconds": wall,
        "behavioural_sigma": args.sigma, "behavioural_trials_per_chip": args.trials,
        "behavioural_accuracy_mean": float(behavioural_accuracy.mean()),
        "behavioural_seconds_per_chip": float(np.mean([b["seconds"] for b in behavioural])),
        "load_per_chip": loads,
        "per_chip": [c.to_dict() for c in chips],
    }
    print(f"{args.chips} sky130 mismatch chips × {len(X)} points ({where}): classes agree with the nominal "
          f"design on {agreement.mean():.1%} (worst chip {agreement.min():.0%}); accuracy {accuracy.mean():.3f} ± "
          f"{accuracy.std():.3f} (worst {accuracy.min():.3f}) against the nominal {chips[0].nominal_accuracy:.3f}; "
          f"read-out shift at T median {np.median(shift):.2%}, max {shift.max():.2%} of the swing; energy "
          f"{energy.mean():.3g} J ± {energy.std() / energy.mean():.1%}")
    print(f"baseline, behavioural Monte Carlo at sigma {args.sigma:g}: accuracy {behavioural_accuracy.mean():.3f}; "
          f"{summary['behavioural_seconds_per_chip']:.1f} s per {args.trials} trials against "
          f"{seconds.mean():.1f} s per ngspice run; {wall:.0f} s wall; load {min(loads):.2f}-{max(loads):.2f}")
    write_results("bench_transistor_mismatch", {"model": str(MODEL.relative_to(ROOT)), **summary,
                                                "load_end": machine_load()})


if __name__ == "__main__":
    main()
