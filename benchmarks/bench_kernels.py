"""The fused numba kernels against the NumPy reference (issue #14).

One vector-field evaluation (``LayerAssembly.rhs``) and one vector–Jacobian product
(``LayerAssembly.vjp``, with the parameter sums) of the nets of the issue, batch 64,
NumPy and numba runs interleaved A B A B (``ROUNDS`` rounds), the minimum of each, in
edge-evaluations per second (edges × batch / seconds), and numba on one and on two
threads; the kernel's compile (or cache load) is excluded and reported. Every figure is
printed with the machine's load.

    python benchmarks/bench_kernels.py
"""

from __future__ import annotations

import os
import time

import numpy as np

import kirchhoff_sim as ks
from kirchhoff_sim import kernels

from common import machine_load, mnist_sized_net, write_results

BATCH, ROUNDS, CALLS = 64, 5, 5


def affine_tanh_100k():
    """317 nodes fully connected (316·317 = 100,172 AffineTanh edges), the issue's net."""
    net = ks.KirchhoffNet([ks.Layer(ks.topology.fully_connected(317, repeat=(1, 0)), ks.AffineTanh(), 1.0)],
                          seed=0, init="normal")
    return net


def time_rhs(assembly, V, calls=CALLS) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        assembly.rhs(V)
    return (time.perf_counter() - start) / calls


def main():
    ks.tune_allocator()        # as the CLI does (kirchhoff_sim.allocator)
    results = {"batch": BATCH, "rounds": ROUNDS}
    for name, net in (("affine_tanh_100k", affine_tanh_100k()), ("mnist_sized_shifted_relu", mnist_sized_net())):
        assembly = net.assemblies()[0]
        V = np.random.default_rng(0).normal(0, 0.5, (net.num_nodes + 1, BATCH))
        V[0] = 0.0
        kernels.use("numba")
        start = time.perf_counter()
        assembly.rhs(V)
        first = time.perf_counter() - start
        best = {"numpy": np.inf, "numba_2_threads": np.inf, "numba_1_thread": np.inf}
        for _ in range(ROUNDS):
            for label, backend, threads in (("numpy", "numpy", None), ("numba_2_threads", "numba", 2),
                                            ("numba_1_thread", "numba", 1)):
                kernels.use(backend)
                if threads:
                    kernels.set_threads(threads)
                best[label] = min(best[label], time_rhs(assembly, V))
        kernels.set_threads(2)
        # the adjoint's vector–Jacobian product with the parameter sums, interleaved the same way
        nu = np.random.default_rng(1).normal(size=V.shape)
        theta_bar = [np.zeros_like(g.params) for g in assembly.groups]
        vjp = {"numpy": np.inf, "numba": np.inf}
        for _ in range(ROUNDS):
            for backend in vjp:
                kernels.use(backend)
                assembly.vjp(V, nu, theta_bar)
                start = time.perf_counter()
                for _ in range(CALLS):
                    assembly.vjp(V, nu, theta_bar)
                vjp[backend] = min(vjp[backend], (time.perf_counter() - start) / CALLS)
        evaluations = assembly.num_edges * BATCH
        row = {"edges": assembly.num_edges, "first_call_seconds": first, "load": machine_load(),
               **{f"{k}_seconds": v for k, v in best.items()},
               **{f"{k}_edge_evaluations_per_s": evaluations / v for k, v in best.items()},
               "vjp_numpy_seconds": vjp["numpy"], "vjp_numba_seconds": vjp["numba"]}
        results[name] = row
        print(f"{name}: {assembly.num_edges:,} edges, batch {BATCH} (load {os.getloadavg()[0]:.2f}): "
              f"numpy {best['numpy'] * 1e3:.1f} ms ({evaluations / best['numpy']:.2e}/s), "
              f"numba 2 threads {best['numba_2_threads'] * 1e3:.1f} ms ({evaluations / best['numba_2_threads']:.2e}/s, "
              f"{best['numpy'] / best['numba_2_threads']:.2f}x), 1 thread {best['numba_1_thread'] * 1e3:.1f} ms "
              f"({evaluations / best['numba_1_thread']:.2e}/s); first call (compile or cache load) {first:.2f} s",
              flush=True)
        print(f"    vector–Jacobian product with parameter sums: numpy {vjp['numpy'] * 1e3:.1f} ms, numba "
              f"{vjp['numba'] * 1e3:.1f} ms ({vjp['numpy'] / vjp['numba']:.2f}x)", flush=True)
    # a whole forward pass: the MNIST-sized net, batch 64, Dopri5 at tol 1e-3 (the issue's)
    net = mnist_sized_net()
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 784))
    solver = ks.Dopri5(rtol=1e-3, atol=1e-3)
    best, finals = {"numpy": np.inf, "numba": np.inf}, {}
    for _ in range(3):
        for backend in ("numpy", "numba"):
            kernels.use(backend)
            start = time.perf_counter()
            solution = ks.simulate(net, x, solver=solver)
            best[backend] = min(best[backend], time.perf_counter() - start)
            finals[backend] = solution
    difference = float(np.abs(finals["numba"].final_state - finals["numpy"].final_state).max())
    results["mnist_sized_forward"] = {"numpy_seconds": best["numpy"], "numba_seconds": best["numba"],
                                      "n_fevals": finals["numpy"].stats.n_fevals,
                                      "max_difference": difference, "load": machine_load()}
    print(f"MNIST-sized forward pass, batch {BATCH}, Dopri5 tol 1e-3 (load {os.getloadavg()[0]:.2f}): numpy "
          f"{best['numpy']:.2f} s, numba {best['numba']:.2f} s ({best['numpy'] / best['numba']:.2f}x; "
          f"{finals['numpy'].stats.n_fevals} f-evaluations each, results within {difference:.1e})", flush=True)
    kernels.use("numpy")
    write_results("kernels", results)


if __name__ == "__main__":
    main()
