"""Monte Carlo throughput: trials per second serially against a two-worker Dask cluster.

The model is the trained digits classifier committed in ``netlists/models/digits.npz``
(``kirchhoff-sim train --task digits``: 8×8 image, 3×3 neighbour windows, 20 hidden + 10
read-out projection nodes, 2 ShiftedReLU layers: 94 nodes, 13,240 edges, 98.0 % test
accuracy) on its 450 test images and their labels. A trial is 5 % log-normal mismatch on
every gain, then the trainer's dopri5 (rtol 1e-4, atol 1e-6) on all 450 samples.

Both are measured in this script on the same trials (seed 0), alternating for a few
rounds so that a change in the machine's load hits both alike; medians are reported:

* baseline — :class:`~kirchhoff_sim.executors.SerialRunner` in this process;
* Dask — :class:`~kirchhoff_sim.hardware.distributed.DaskRunner`, a ``LocalCluster`` of 2
  worker processes × 1 thread. Its start-up and a warm-up map (the workers import the
  package) are timed separately and not counted in the throughput.

The two must give identical accuracies and losses (checked). The 1-minute load average
and the CPU seconds per trial (this process, or all workers) are recorded with the
figures: they tell Dask's overhead apart from waiting for a CPU, and on a shared 2-CPU
machine a speed-up near 2× needs both CPUs free. Run:

    .venv/bin/python benchmarks/bench_montecarlo.py [--trials 8] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kirchhoff_sim as ks  # noqa: E402
from common import timed, write_results  # noqa: E402

from kirchhoff_sim.training.datasets import dataset_of_model  # noqa: E402
from kirchhoff_sim.hardware import MonteCarloSpec, SerialRunner  # noqa: E402
from kirchhoff_sim.hardware.distributed import DaskRunner  # noqa: E402
from kirchhoff_sim.hardware.executors import map_trials  # noqa: E402
from kirchhoff_sim.modelfile import read_model_file  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "netlists" / "models" / "digits.npz"

SIGMA = 0.05
WORKERS = 2
DEFAULT_TRIALS = 8          # per round
DEFAULT_ROUNDS = 3
QUICK_TRIALS = 2


def _worker_cpu(runner) -> float:
    """CPU seconds used so far by all the cluster's worker processes."""
    return sum(runner.client.run(time.process_time).values())


def main():
    ks.tune_allocator()   # the benchmark owns its process (kirchhoff_sim.allocator)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="alternating serial / Dask measurements; medians are reported")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRIALS} trials, 1 round")
    args = parser.parse_args()
    trials, rounds = (QUICK_TRIALS, 1) if args.quick else (args.trials, args.rounds)

    net, meta, _ = read_model_file(MODEL)
    data = dataset_of_model(meta)
    X, y = data.X_test, data.y_test
    spec = MonteCarloSpec(sigma_g=SIGMA, trials=trials, seed=0)
    print(f"{net!r} ({MODEL.name}); {len(X)} digits test images; {trials} trials at σ_g = {SIGMA}")

    serial = SerialRunner()
    map_trials(serial, net, X, y, spec, trial_indices=[trials])          # warm caches
    start = time.perf_counter()
    with DaskRunner(n_workers=WORKERS, threads_per_worker=1) as runner:
        startup_s = time.perf_counter() - start
        warm = time.perf_counter()
        map_trials(runner, net, X, y, spec, trial_indices=[trials, trials + 1])   # workers import
        warmup_s = time.perf_counter() - warm
        description = runner.description
        # alternate the two so that a change in the machine's load hits both alike
        serial_times, dask_times, load = [], [], [os.getloadavg()[0]]
        serial_cpu, dask_cpu = [], []     # CPU seconds per trial: overhead vs. waiting for a CPU
        for r in range(rounds):
            cpu = time.process_time()
            serial_s, serial_trials = timed(lambda: map_trials(serial, net, X, y, spec), repeat=1, warmup=0)
            serial_cpu.append((time.process_time() - cpu) / trials)
            cpu = _worker_cpu(runner)
            dask_s, dask_trials = timed(lambda: map_trials(runner, net, X, y, spec), repeat=1, warmup=0)
            dask_cpu.append((_worker_cpu(runner) - cpu) / trials)
            serial_times.append(serial_s)
            dask_times.append(dask_s)
            load.append(os.getloadavg()[0])
            print(f"round {r + 1}: serial {trials / serial_s:.3f} trials/s ({serial_s:.1f} s, "
                  f"{serial_cpu[-1]:.2f} CPU s/trial), dask {trials / dask_s:.3f} trials/s ({dask_s:.1f} s, "
                  f"{dask_cpu[-1]:.2f} CPU s/trial), load average {load[-1]:.1f}")
    serial_s, dask_s = statistics.median(serial_times), statistics.median(dask_times)
    print(f"dask ({description}) start-up {startup_s:.1f} s, warm-up map {warmup_s:.1f} s")

    accuracies = np.array([t["accuracy"] for t in serial_trials])
    identical = accuracies.tolist() == [t["accuracy"] for t in dask_trials] and \
        [t["loss"] for t in serial_trials] == [t["loss"] for t in dask_trials]
    ratio = serial_s / dask_s
    print(f"median speed-up of {WORKERS} workers over serial: {ratio:.2f}×; identical results: {identical}; "
          f"accuracy {accuracies.mean():.4f} ± {accuracies.std(ddof=1) if trials > 1 else 0.0:.4f}")
    if not identical:
        raise SystemExit("the Dask run differs from the serial run")
    write_results("bench_montecarlo", {
        "model": {"description": repr(net), "nodes": net.num_nodes, "edges": net.num_edges,
                  "parameters": f"trained: {MODEL.relative_to(MODEL.parents[2])}",
                  "samples_per_trial": len(X)},
        "spec": spec.to_dict(), "trials_per_round": trials, "rounds": rounds,
        "load_average_1min": load,
        "serial": {"seconds": serial_s, "trials_per_s": trials / serial_s, "round_seconds": serial_times,
                   "cpu_seconds_per_trial": serial_cpu},
        "dask": {"workers": WORKERS, "threads_per_worker": 1, "description": description,
                 "seconds": dask_s, "trials_per_s": trials / dask_s, "round_seconds": dask_times,
                 "cpu_seconds_per_trial": dask_cpu,
                 "startup_seconds": startup_s, "warmup_map_seconds": warmup_s},
        "speedup": ratio, "identical": identical,
        "accuracy": {"mean": float(accuracies.mean()), "min": float(accuracies.min()),
                     "max": float(accuracies.max())},
    })


if __name__ == "__main__":   # Dask's worker processes are spawned and re-import this module
    main()
