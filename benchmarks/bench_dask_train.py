"""Data-parallel training: seconds per epoch here against a two-worker Dask cluster.

Two nets, each trained from the same initialisation with the same shards (2) here
(:class:`~kirchhoff_sim.executors.SerialRunner`: the two shards one after the other) and
on a ``LocalCluster`` of 2 worker processes × 1 thread
(:class:`~kirchhoff_sim.hardware.distributed.DaskRunner`, the shards side by side):

1. the digits task's preset net (8×8 image, 3×3 windows, 20 hidden + 10 read-out nodes,
   2 ShiftedReLU layers: 94 nodes, 13,240 edges) on the digits training split, one full
   epoch at the task's batch size and solver (dopri5, rtol 1e-4, atol 1e-6), validation
   included;
2. the MNIST-sized topology of the paper (834 nodes, 2 × 230,068 ShiftedReLU edges,
   ``common.mnist_sized_net``) for a fraction of an epoch: ``--mnist-steps`` steps of
   batch 64 at the reference's MNIST tolerance (1e-3), on random 784-pixel inputs in
   [0, 1] with random labels (the solver's work depends on the inputs through its step
   sizes; real digits would change the figure somewhat). The full epoch (60,000 images:
   938 steps) is extrapolated from it.

Runs alternate here / Dask for ``--rounds`` rounds so that a change in the machine's
load hits both alike; the minimum of each is reported, with the 1-minute load average
before every run. Each run's result must equal the other's bit for bit (checked). Where
a distributed step's time goes: ``compute`` is the slowest shard's job (what the step
waits for), ``reduce`` the driver's reduction, and the rest of the step's wall time is
transfer and scheduling (parameters out, gradients back, task overhead). The cluster's
start-up is timed separately. Run:

    .venv/bin/python benchmarks/bench_dask_train.py [--rounds 2] [--mnist-steps 4] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kirchhoff_sim as ks  # noqa: E402
from common import machine_load, mnist_sized_net, write_results  # noqa: E402

from kirchhoff_sim.executors import SerialRunner  # noqa: E402
from kirchhoff_sim.hardware.distributed import DaskRunner  # noqa: E402
from kirchhoff_sim.training import datasets  # noqa: E402
from kirchhoff_sim.training.models import build_net  # noqa: E402
from kirchhoff_sim.training.tasks import task  # noqa: E402
from kirchhoff_sim.training.trainer import TrainConfig, train  # noqa: E402

WORKERS = 2
SHARDS = 2
MNIST_BATCH = 64
MNIST_EPOCH = 60_000


def run_once(make_net, data, config, executor) -> dict:
    """One training run from a fresh net: its seconds, timing breakdown and parameters."""
    net = make_net()
    load = machine_load()["load_1min"]
    start = time.perf_counter()
    result = train(net, data, config, progress=False, log=None, executor=executor)
    seconds = time.perf_counter() - start
    timing = result.timing
    transfer = timing["wall"] - timing["compute"] - timing["reduce"]
    return {"seconds": seconds, "load_before": load, "steps": timing["steps"],
            "step_wall_s": timing["wall"], "compute_s": timing["compute"],
            "compute_all_shards_s": timing["compute_total"], "reduce_s": timing["reduce"],
            "transfer_and_scheduling_s": transfer, "params": net.get_flat_params()}


def compare(label, make_net, data, config, runner, rounds) -> dict:
    print(f"\n{label}")
    runs = {"here": [], "dask": []}
    for r in range(rounds):
        for name, executor in (("here", SerialRunner()), ("dask", runner)):
            out = run_once(make_net, data, config, executor)
            runs[name].append(out)
            print(f"  round {r + 1} {name:>4}: {out['seconds']:8.2f} s  (load {out['load_before']:.2f}; steps "
                  f"{out['steps']}: compute {out['compute_s']:.2f} s, all shards {out['compute_all_shards_s']:.2f} s, "
                  f"reduce {out['reduce_s']:.3f} s, transfer+scheduling {out['transfer_and_scheduling_s']:.2f} s)")
    reference = runs["here"][0]["params"]
    identical = all(np.array_equal(out["params"], reference) for outs in runs.values() for out in outs)
    best = {name: min(outs, key=lambda o: o["seconds"]) for name, outs in runs.items()}
    speedup = best["here"]["seconds"] / best["dask"]["seconds"]
    print(f"  best: here {best['here']['seconds']:.2f} s, dask {best['dask']['seconds']:.2f} s: "
          f"speed-up {speedup:.2f}x; results identical: {identical}")
    if not identical:
        raise SystemExit("the distributed run differs from the serial run")
    strip = lambda o: {k: v for k, v in o.items() if k != "params"}      # noqa: E731
    return {"label": label, "rounds": {name: [strip(o) for o in outs] for name, outs in runs.items()},
            "best_here_s": best["here"]["seconds"], "best_dask_s": best["dask"]["seconds"],
            "speedup": speedup, "identical": identical, "steps": best["here"]["steps"]}


def main():
    ks.tune_allocator()   # the benchmark owns its process (kirchhoff_sim.allocator)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mnist-steps", type=int, default=4, help="steps of the MNIST-sized net (0: skip it)")
    parser.add_argument("--quick", action="store_true", help="1 round, 40 digits steps' worth of samples, "
                                                             "1 MNIST step")
    args = parser.parse_args()
    rounds, mnist_steps = (1, 1) if args.quick else (args.rounds, args.mnist_steps)

    preset = task("digits")
    digits = datasets.load_dataset("digits", seed=0, **preset.dataset)
    if args.quick:
        digits = datasets.Dataset(digits.name, digits.X_train[:320], digits.y_train[:320], digits.X_test,
                                  digits.y_test, digits.n_classes)
    digits_config = TrainConfig(**{**preset.train, "epochs": 1, "shards": SHARDS, "seed": 0})
    make_digits = lambda: build_net(digits.n_features, digits.n_classes, seed=0, **preset.net)   # noqa: E731

    rng = np.random.default_rng(0)
    n_mnist = MNIST_BATCH * max(mnist_steps, 1)
    mnist = datasets.Dataset("mnist-sized random", rng.uniform(0, 1, (n_mnist, 784)),
                             rng.integers(0, 10, n_mnist), np.zeros((0, 784)), np.zeros(0, dtype=int), 10)
    # lr 1e-4: at the tasks' 1e-2 the random-input net diverges after its first step (a timing run)
    mnist_config = TrainConfig(epochs=1, batch_size=MNIST_BATCH, shards=SHARDS, validation_fraction=0.0, seed=0,
                               lr=1e-4, solver={"method": "dopri5", "rtol": 1e-3, "atol": 1e-3})

    start = time.perf_counter()
    with DaskRunner(n_workers=WORKERS, threads_per_worker=1) as runner:
        startup = time.perf_counter() - start
        print(f"local cluster of {WORKERS} workers started in {startup:.2f} s; load {machine_load()}")
        net = make_digits()
        print(f"digits: {net!r}, {len(digits.X_train)} training images, batch {digits_config.batch_size}, "
              f"{SHARDS} shards")
        results = {"cluster_startup_s": startup, "workers": WORKERS, "shards": SHARDS,
                   "digits": compare(f"digits preset, one epoch ({net.num_edges} edges)", make_digits, digits,
                                     digits_config, runner, rounds)}
        if mnist_steps > 0:
            big = mnist_sized_net()
            print(f"\nMNIST-sized: {big!r}; {mnist_steps} step(s) of batch {MNIST_BATCH}")
            mnist_result = compare(f"MNIST-sized net, {mnist_steps} step(s) of batch {MNIST_BATCH}",
                                   mnist_sized_net, mnist, mnist_config, runner, rounds)
            per_step = {name: mnist_result[f"best_{name}_s"] / mnist_steps for name in ("here", "dask")}
            epoch_steps = -(-MNIST_EPOCH // MNIST_BATCH)
            mnist_result["seconds_per_step"] = per_step
            mnist_result["epoch_hours_extrapolated"] = {name: s * epoch_steps / 3600 for name, s in per_step.items()}
            print(f"  per step: here {per_step['here']:.2f} s, dask {per_step['dask']:.2f} s; an epoch "
                  f"({epoch_steps} steps) ≈ {per_step['here'] * epoch_steps / 3600:.2f} h here, "
                  f"{per_step['dask'] * epoch_steps / 3600:.2f} h on the cluster")
            results["mnist_sized"] = mnist_result
    write_results("dask_train" + ("_quick" if args.quick else ""), results)


if __name__ == "__main__":
    main()
