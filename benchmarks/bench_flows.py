"""Flows (issue #15): the cost of the exact Jacobian trace, and a two-moons flow trained
from scratch with the README's preset.

1. **The trace on the reference's MNIST generator** (784 nodes, the 28×28 neighbour
   window of its ``genmnist`` config, two layers, ``DifferenceActivation`` tanh = its
   ``ShiftTanh1``): per sample and evaluation, the right-hand side alone, with the O(E)
   trace (``FlowField.rhs``), and the exact trace the way automatic differentiation gets
   it — N vector–Jacobian products, one per dimension (what the reference's
   ``trace_jac`` does with autograd) — measured here with our own VJP, interleaved;
   then a whole log-likelihood (reverse pass, Dopri5 at 1e-3 as the reference's config)
   per sample.
2. **Two moons from scratch** (``train --flow --task twomoon``'s preset: 30 epochs, batch
   256, lr 5e-3, Dopri5 1e-4): test negative log-likelihood and seconds per epoch
   (``--epochs`` shortens it).

    python benchmarks/bench_flows.py [--epochs N] [--batch B]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import kirchhoff_sim as ks
from kirchhoff_sim import devices, flows, topology
from kirchhoff_sim.training.datasets import load_density
from kirchhoff_sim.training.models import build_flow_net
from kirchhoff_sim.training.tasks import FLOW_TASK
from kirchhoff_sim.training.trainer import TrainConfig, evaluate, train

from common import machine_load, write_results


def genmnist_sized_net(seed=0):
    edges = topology.neighbour_window(28, 28, window=3, extra_nodes=0, repeat=(1, 1))
    return ks.KirchhoffNet([ks.Layer(edges, devices.DifferenceActivation("tanh"), 1.0) for _ in range(2)],
                           num_nodes=784, seed=seed, init="kaiming")


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def trace_costs(batch, repeat):
    net = genmnist_sized_net()
    assembly = net.assemblies()[0]
    field = flows.FlowField(assembly)
    rng = np.random.default_rng(0)
    Y = np.zeros((net.num_nodes + 2, batch))
    Y[1:-1] = rng.uniform(0, 1, (net.num_nodes, batch))
    V = Y[:-1]

    def by_vjps():          # tr J = Σ_n e_nᵀ J e_n, one VJP a dimension
        total = np.zeros(batch)
        nu = np.zeros_like(V)
        for n in range(1, net.num_nodes + 1):
            nu[n] = assembly.inv_capacitance[n, 0]
            total += assembly.vjp(V, nu)[n]
            nu[n] = 0.0
        return total

    np.testing.assert_allclose(by_vjps(), assembly.jacobian_trace(V), rtol=1e-10)
    rows = {"rhs": [], "rhs_and_trace": [], "trace_by_vjps": []}
    for _ in range(repeat):          # interleaved A B C A B C
        rows["rhs"].append(best(lambda: assembly.rhs(V), 1))
        rows["rhs_and_trace"].append(best(lambda: field.rhs(Y), 1))
        rows["trace_by_vjps"].append(best(by_vjps, 1))
    seconds = {k: min(v) for k, v in rows.items()}
    x = rng.uniform(0, 1, (batch, net.num_nodes))
    start = time.perf_counter()
    run = flows.flow(net, x, reverse=True, solver=ks.Dopri5(rtol=1e-3, atol=1e-3))
    loglik_seconds = time.perf_counter() - start
    return {"nodes": net.num_nodes, "edges_per_layer": assembly.num_edges, "batch": batch,
            "seconds_per_sample": {k: v / batch for k, v in seconds.items()},
            "trace_overhead_vs_rhs": seconds["rhs_and_trace"] / seconds["rhs"],
            "speedup_vs_n_vjps": seconds["trace_by_vjps"] / (seconds["rhs_and_trace"] - seconds["rhs"]),
            "log_likelihood_seconds_per_sample": loglik_seconds / batch,
            "log_likelihood_fevals": run.stats.n_fevals, "log_likelihood_steps": run.stats.n_steps}


def two_moons(epochs, seed=0):
    data = load_density("twomoon", seed=seed, **FLOW_TASK.dataset)
    net = build_flow_net(2, seed=seed, **FLOW_TASK.net)
    config = TrainConfig(seed=seed, loss="nll", validation_fraction=0.0, **{**FLOW_TASK.train, "epochs": epochs})
    solver = ks.Dopri5(**{k: v for k, v in config.solver.items() if k != "method"})
    before = evaluate(net, data.X_test, data.y_test, "nll", solver)["loss"]
    start = time.perf_counter()
    result = train(net, data, config, progress=False, log=None)
    seconds = time.perf_counter() - start
    after = evaluate(net, data.X_test, data.y_test, "nll", solver)["loss"]
    return {"epochs": epochs, "train_points": len(data.X_train), "test_points": len(data.X_test),
            "test_nll_untrained": before, "test_nll": after, "seconds": seconds,
            "seconds_per_epoch": seconds / epochs, "history": result.history}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=FLOW_TASK.train["epochs"])
    parser.add_argument("--batch", type=int, default=16, help="samples of the 784-node trace measurement")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ks.tune_allocator()
    load_before = machine_load()
    trace = trace_costs(args.batch, args.repeat)
    per = trace["seconds_per_sample"]
    print(f"784-node generator ({trace['edges_per_layer']:,} edges a layer), per sample and evaluation: "
          f"rhs {per['rhs'] * 1e3:.3f} ms, rhs + O(E) trace {per['rhs_and_trace'] * 1e3:.3f} ms "
          f"({trace['trace_overhead_vs_rhs']:.2f}× the rhs), exact trace by 784 VJPs "
          f"{per['trace_by_vjps'] * 1e3:.1f} ms ({trace['speedup_vs_n_vjps']:.0f}× the O(E) trace's cost)")
    print(f"log-likelihood (reverse pass, Dopri5 1e-3): {trace['log_likelihood_seconds_per_sample'] * 1e3:.1f} ms "
          f"per sample ({trace['log_likelihood_steps']} steps, {trace['log_likelihood_fevals']} evaluations)")
    moons = two_moons(args.epochs)
    print(f"two moons from scratch, {args.epochs} epochs: test NLL {moons['test_nll_untrained']:.3f} → "
          f"{moons['test_nll']:.3f} nats per point in {moons['seconds']:.0f} s "
          f"({moons['seconds_per_epoch']:.1f} s per epoch)")
    write_results("bench_flows", {"load_before": load_before, "trace": trace, "two_moons": moons})


if __name__ == "__main__":
    main()
