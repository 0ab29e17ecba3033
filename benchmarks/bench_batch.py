"""Cost against batch size (issue #14): one step grid for the whole batch against pieces
of at most ``MAX_BATCH`` samples, each on its own grid (``simulate(max_batch=…)``).

One grid lets the batch's hardest sample set every step, so its cost grows faster than
the batch. The net is the 32-node fully connected AffineTanh comparison net (two layers,
Dopri5 at rtol = atol = 1e-6, inputs N(0, 1)); batches from 1e2 to 1e5 samples, each
size timed split and whole, interleaved (whole only up to ``--whole-max``: beyond it a
single grid takes tens of minutes), with steps and f-evaluations. The figure of merit is
seconds per 1,000 samples, which must stay flat for the split runs.

    python benchmarks/bench_batch.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import kirchhoff_sim as ks
from kirchhoff_sim.solvers.simulate import MAX_BATCH

from common import fully_connected_tanh, machine_load, write_results


def run(net, x, max_batch):
    start = time.perf_counter()
    solution = ks.simulate(net, x, solver=ks.Dopri5(rtol=1e-6, atol=1e-6), max_batch=max_batch)
    seconds = time.perf_counter() - start
    return seconds, solution


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="sizes up to 1e4")
    parser.add_argument("--whole-max", type=int, default=10_000, help="largest batch run on one grid")
    args = parser.parse_args()
    ks.tune_allocator()     # as the CLI does: solver temporaries stay on the heap
    sizes = [100, 1_000, 10_000] if args.quick else [100, 1_000, 10_000, 100_000]
    net = fully_connected_tanh(np.random.default_rng(0))
    x_all = np.random.default_rng(1).normal(0.0, 1.0, (max(sizes), 2))
    run(net, x_all[:64], None)                      # warm-up (imports, caches)
    rows = []
    print(f"max_batch = {MAX_BATCH}; {machine_load()}")
    print(f"{'batch':>8} {'how':>6} {'s':>9} {'s/1k':>7} {'steps':>8} {'fevals':>8}  max |split - whole|")
    for size in sizes:
        x = x_all[:size]
        split_s, split = run(net, x, MAX_BATCH)
        row = {"batch": size, "split_seconds": split_s, "split_steps": split.stats.n_steps,
               "split_fevals": split.stats.n_fevals, "pieces": len(split.parts())}
        print(f"{size:8d} {'split':>6} {split_s:9.2f} {1e3 * split_s / size:7.3f} {split.stats.n_steps:8d} "
              f"{split.stats.n_fevals:8d}", flush=True)
        if size <= args.whole_max:
            whole_s, whole = run(net, x, None)
            split_again_s, _ = run(net, x, MAX_BATCH)     # interleaved: split, whole, split
            row.update(whole_seconds=whole_s, whole_steps=whole.stats.n_steps, whole_fevals=whole.stats.n_fevals,
                       split_seconds=min(split_s, split_again_s),
                       max_difference=float(np.abs(split.final_state - whole.final_state).max()))
            print(f"{size:8d} {'whole':>6} {whole_s:9.2f} {1e3 * whole_s / size:7.3f} {whole.stats.n_steps:8d} "
                  f"{whole.stats.n_fevals:8d}  {row['max_difference']:.1e}", flush=True)
        row["load"] = machine_load()
        rows.append(row)
    base = rows[0]["split_seconds"] / rows[0]["batch"]
    for row in rows:
        row["split_cost_per_sample_vs_smallest"] = row["split_seconds"] / row["batch"] / base
    print("split cost per sample relative to the smallest batch:",
          ", ".join(f"{r['batch']}: {r['split_cost_per_sample_vs_smallest']:.2f}" for r in rows))
    write_results("bench_batch", {"max_batch": MAX_BATCH, "rtol": 1e-6, "atol": 1e-6, "rows": rows})


if __name__ == "__main__":
    main()
