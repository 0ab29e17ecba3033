"""Forward throughput of kirchhoff_sim against the reference stack (PyTorch + torchdiffeq).

Three measurements, each with its baseline measured in the same run:

1. the reference two-moons-sized comparison the issue names: a 32-node fully connected
   AffineTanh net (33·32 = 1,056 edges a layer, 2 layers of 0.5), batch 256, dopri5 at
   rtol = atol = 1e-6, float64 — samples per second, ours vs torch (float64, and the
   reference's float32 for context);
2. the MNIST-sized topology (834 nodes, 2 × 230,068 ShiftedReLU edges), batch 256,
   dopri5 at the reference's MNIST tolerance 1e-3;
3. scaling: time per RK4 step and per edge·sample from 10³ to 10⁶ edges (cost must grow
   linearly in E·B), ours and torch side by side.

Run:  .venv/bin/python benchmarks/bench_forward.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kirchhoff_sim as ks  # noqa: E402
from common import (full_input, fully_connected_tanh, mnist_sized_net, timed,  # noqa: E402
                    torch_layers, write_results)
from torch_reference import TorchKirchhoffNet  # noqa: E402


def compare(net, x, rtol, atol, repeat, label):
    """Ours vs torch (float64 and float32) on one net with dopri5 at (rtol, atol)."""
    ours_s, sol = timed(lambda: ks.simulate(net, x, solver=ks.Dopri5(rtol=rtol, atol=atol)), repeat)
    # accuracy at this tolerance, against a much tighter run of our own solver (the two
    # stacks agree to ~1e-10 when both are run tight)
    reference = ks.simulate(net, x, solver=ks.Dopri5(rtol=rtol * 1e-4, atol=atol * 1e-4)).final_state
    row = {"label": label, "edges_per_layer": net.layers[0].num_edges, "batch": len(x),
           "rtol": rtol, "atol": atol, "ours_seconds": ours_s, "ours_fevals": sol.stats.n_fevals,
           "ours_samples_per_s": len(x) / ours_s,
           "ours_max_error": float(np.abs(sol.final_state - reference).max())}
    x0 = full_input(net, x)
    for dtype in (torch.float64, torch.float32):
        tnet = TorchKirchhoffNet(torch_layers(net), net.num_nodes, dtype=dtype)
        xt = torch.as_tensor(x0, dtype=dtype)

        def run():
            tnet.reset_nfe()
            with torch.no_grad():
                return tnet(xt, method="dopri5", rtol=rtol, atol=atol)
        t_s, out = timed(run, repeat)
        key = "torch64" if dtype == torch.float64 else "torch32"
        row[f"{key}_seconds"] = t_s
        row[f"{key}_fevals"] = tnet.nfe
        row[f"{key}_samples_per_s"] = len(x) / t_s
        row[f"{key}_max_error"] = float(np.abs(out.double().numpy() - reference).max())
        row[f"speedup_vs_{key}"] = t_s / ours_s
    print(f"{label}: ours {row['ours_samples_per_s']:.0f} samples/s ({row['ours_fevals']} f-evals) | "
          f"torch f64 {row['torch64_samples_per_s']:.0f} samples/s ({row['torch64_fevals']} f-evals) "
          f"→ {row['speedup_vs_torch64']:.2f}× | torch f32 {row['torch32_samples_per_s']:.0f} samples/s "
          f"→ {row['speedup_vs_torch32']:.2f}× | max error vs a tight reference: ours "
          f"{row['ours_max_error']:.1e}, torch f64 {row['torch64_max_error']:.1e}, "
          f"torch f32 {row['torch32_max_error']:.1e}",
          flush=True)
    return row


def scaling(edge_targets, batch, repeat, with_torch_up_to):
    """Time per RK4 step vs E for fully connected AffineTanh nets."""
    rows = []
    for target in edge_targets:
        n = int(round((1 + np.sqrt(1 + 4 * target)) / 2))     # n(n−1) ≈ target, ground included
        edges = ks.topology.fully_connected(n, repeat=(1, 0))
        net = ks.KirchhoffNet([ks.Layer(edges, ks.AffineTanh(), 1.0)], seed=0)
        x = np.random.default_rng(1).normal(size=(batch, n - 1))
        steps = 4
        ours_s, _ = timed(lambda: ks.simulate(net, x, solver=ks.RK4(dt=1.0 / steps)), repeat)
        row = {"edges": len(edges), "nodes": n - 1, "batch": batch,
               "ours_seconds_per_step": ours_s / steps,
               "ours_ns_per_edge_sample_feval": ours_s / (steps * 4) / (len(edges) * batch) * 1e9}
        if len(edges) <= with_torch_up_to:
            tnet = TorchKirchhoffNet(torch_layers(net), net.num_nodes, dtype=torch.float64)
            xt = torch.as_tensor(full_input(net, x))

            def run():
                with torch.no_grad():
                    return tnet(xt, method="rk4", step_size=1.0 / steps)
            t_s, _ = timed(run, repeat)
            row["torch64_seconds_per_step"] = t_s / steps
            row["speedup_vs_torch64"] = t_s / ours_s
        print(f"E={row['edges']:>8}: ours {row['ours_seconds_per_step'] * 1e3:9.2f} ms/step, "
              f"{row['ours_ns_per_edge_sample_feval']:.2f} ns per edge·sample·f-eval"
              + (f" | torch f64 {row['torch64_seconds_per_step'] * 1e3:9.2f} ms/step "
                 f"→ {row['speedup_vs_torch64']:.2f}×" if "torch64_seconds_per_step" in row else ""),
              flush=True)
        rows.append(row)
    ns = [r["ours_ns_per_edge_sample_feval"] for r in rows]
    print(f"cost per edge·sample·f-eval across E: min {min(ns):.2f} ns, max {max(ns):.2f} ns "
          f"(linear in E·B when this ratio stays flat)")
    return rows


def main():
    ks.tune_allocator()   # the benchmark owns its process (kirchhoff_sim.allocator)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch and fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(2)
    repeat = 1 if args.quick else 3
    batch = 64 if args.quick else 256
    rng = np.random.default_rng(0)
    results = {"torch_threads": torch.get_num_threads()}

    fc = fully_connected_tanh(rng)
    results["fully_connected_32"] = compare(fc, rng.normal(size=(batch, 32)), 1e-6, 1e-6, repeat,
                                            "32-node fully connected, AffineTanh")

    mnist = mnist_sized_net()
    results["mnist_topology"] = compare(mnist, rng.uniform(size=(batch if not args.quick else 16, 784)),
                                        1e-3, 1e-3, 1, "MNIST-sized topology, ShiftedReLU")

    targets = [1e3, 1e4, 1e5, 1e6] if not args.quick else [1e3, 1e4, 1e5]
    results["scaling"] = scaling(targets, 64, 1, with_torch_up_to=2e5)
    write_results("bench_forward", results)


if __name__ == "__main__":
    main()
