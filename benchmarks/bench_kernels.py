"""The fused numba kernels against the NumPy reference (issue #14).

One vector-field evaluation (``LayerAssembly.rhs``), one vector–Jacobian product
(``LayerAssembly.vjp``, with the parameter sums) and one Jacobian–vector product
(``LayerAssembly.jvp``, with a parameter direction) of the nets of the issue and of a
softplus net, batch 64, NumPy and numba runs interleaved A B A B (``ROUNDS`` rounds), the
minimum of each, in edge-evaluations per second (edges × batch / seconds), and numba on
one and on two threads; the kernel's compile (or cache load) is excluded and reported.
The right-hand side in float32 too (NumPy and numba on the float32 assembly). Then the
kernels' activations (exp, tanh, softplus, sigmoid, and tanh's float32 form against
``tanhf``) against the C library's in nanoseconds per element of a one-thread loop, the
baseline measured in the same run.
Every figure is printed with the machine's load.

    python benchmarks/bench_kernels.py
"""

from __future__ import annotations

import math
import os
import time

import numba
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


def affine_softplus_100k():
    """The same 100,172 edges with AffineActivation("softplus") devices."""
    return ks.KirchhoffNet([ks.Layer(ks.topology.fully_connected(317, repeat=(1, 0)),
                                     ks.AffineActivation("softplus"), 1.0)], seed=0, init="normal")


def time_rhs(assembly, V, calls=CALLS) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        assembly.rhs(V)
    return (time.perf_counter() - start) / calls


def numpy_against_numba(call) -> dict:
    """Seconds a ``call()`` on each backend (numba on 2 threads), interleaved, best of
    ``ROUNDS`` rounds of ``CALLS`` calls after one warm-up call."""
    best = {"numpy": np.inf, "numba": np.inf}
    for _ in range(ROUNDS):
        for backend in best:
            kernels.use(backend)
            call()
            start = time.perf_counter()
            for _ in range(CALLS):
                call()
            best[backend] = min(best[backend], (time.perf_counter() - start) / CALLS)
    return best


def main():
    ks.tune_allocator()        # as the CLI does (kirchhoff_sim.allocator)
    results = {"batch": BATCH, "rounds": ROUNDS}
    for name, net in (("affine_tanh_100k", affine_tanh_100k()), ("mnist_sized_shifted_relu", mnist_sized_net()),
                      ("affine_softplus_100k", affine_softplus_100k())):
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
        # the same evaluation in float32 (the float32 assembly; numba on 2 threads)
        assembly32, V32 = net.assemblies("float32")[0], V.astype(np.float32)
        kernels.use("numba")
        assembly32.rhs(V32)                               # compile the float32 kernel
        single = {"numpy_float32": np.inf, "numba_float32_2_threads": np.inf}
        for _ in range(ROUNDS):
            for label, backend in (("numpy_float32", "numpy"), ("numba_float32_2_threads", "numba")):
                kernels.use(backend)
                single[label] = min(single[label], time_rhs(assembly32, V32))
        best.update(single)
        # the adjoint's vector–Jacobian product with the parameter sums, the forward
        # sensitivities' Jacobian–vector product with a parameter direction and the Newton
        # stamps, interleaved the same way
        nu = np.random.default_rng(1).normal(size=V.shape)
        theta_bar = [np.zeros_like(g.params) for g in assembly.groups]
        v_dot = np.random.default_rng(2).normal(size=V.shape)
        v_dot[0] = 0.0
        theta_dot = [np.random.default_rng(3).normal(size=g.params.shape) for g in assembly.groups]
        vjp = numpy_against_numba(lambda: assembly.vjp(V, nu, theta_bar))
        jvp = numpy_against_numba(lambda: assembly.jvp(V, v_dot, theta_dot))
        stamps = numpy_against_numba(lambda: assembly.stamps(V))
        evaluations = assembly.num_edges * BATCH
        row = {"edges": assembly.num_edges, "first_call_seconds": first, "load": machine_load(),
               **{f"{k}_seconds": v for k, v in best.items()},
               **{f"{k}_edge_evaluations_per_s": evaluations / v for k, v in best.items()},
               "vjp_numpy_seconds": vjp["numpy"], "vjp_numba_seconds": vjp["numba"],
               "jvp_numpy_seconds": jvp["numpy"], "jvp_numba_seconds": jvp["numba"],
               "stamps_numpy_seconds": stamps["numpy"], "stamps_numba_seconds": stamps["numba"]}
        results[name] = row
        print(f"{name}: {assembly.num_edges:,} edges, batch {BATCH} (load {os.getloadavg()[0]:.2f}): "
              f"numpy {best['numpy'] * 1e3:.1f} ms ({evaluations / best['numpy']:.2e}/s), "
              f"numba 2 threads {best['numba_2_threads'] * 1e3:.1f} ms ({evaluations / best['numba_2_threads']:.2e}/s, "
              f"{best['numpy'] / best['numba_2_threads']:.2f}x), 1 thread {best['numba_1_thread'] * 1e3:.1f} ms "
              f"({evaluations / best['numba_1_thread']:.2e}/s); first call (compile or cache load) {first:.2f} s",
              flush=True)
        print(f"    float32: numpy {best['numpy_float32'] * 1e3:.1f} ms ({evaluations / best['numpy_float32']:.2e}/s), "
              f"numba 2 threads {best['numba_float32_2_threads'] * 1e3:.1f} ms "
              f"({evaluations / best['numba_float32_2_threads']:.2e}/s)", flush=True)
        print(f"    vector–Jacobian product with parameter sums: numpy {vjp['numpy'] * 1e3:.1f} ms, numba "
              f"{vjp['numba'] * 1e3:.1f} ms ({vjp['numpy'] / vjp['numba']:.2f}x)", flush=True)
        print(f"    Jacobian–vector product with a parameter direction: numpy {jvp['numpy'] * 1e3:.1f} ms, numba "
              f"{jvp['numba'] * 1e3:.1f} ms ({jvp['numpy'] / jvp['numba']:.2f}x)", flush=True)
        print(f"    Newton stamps (currents and conductances): numpy {stamps['numpy'] * 1e3:.1f} ms, numba "
              f"{stamps['numba'] * 1e3:.1f} ms ({stamps['numpy'] / stamps['numba']:.2f}x)", flush=True)
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
    results["activations"] = activations()
    kernels.use("numpy")
    write_results("kernels", results)


# --------------------------------------------------------------------------- activations
# The C library's forms, as the kernels computed them before they had their own (the
# baseline of the rows below): softplus as numpy.logaddexp(0, y), sigmoid as scipy's expit.
@numba.njit(inline="always", error_model="numpy")
def libm_softplus(y):
    if y == 0.0:
        return math.log(2.0)
    if y < 0.0:
        return math.log1p(math.exp(y))
    return y + math.log1p(math.exp(-y))


@numba.njit(inline="always", error_model="numpy")
def libm_sigmoid(y):
    if y >= 0.0:
        return 1.0 / (1.0 + math.exp(-y))
    e = math.exp(y)
    return e / (1.0 + e)


def _loop(fn):
    @numba.njit(error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])
    return apply


ACT_ELEMENTS, ACT_CALLS = 1 << 14, 200     # 2 × 128 KiB: the arrays stay in the L2 cache


def activations() -> dict:
    """ns/element of a one-thread loop ``out[i] = f(x[i])`` over ``ACT_ELEMENTS`` values
    drawn from N(0, 3²) (exp: U(−30, 30)), libm's and the kernels' interleaved, best of
    ``ROUNDS`` × ``ACT_CALLS`` calls."""
    from kirchhoff_sim import _kcl_kernels as kk

    rng = np.random.default_rng(4)
    inputs = {"exp": rng.uniform(-30, 30, ACT_ELEMENTS), "normal": rng.normal(0, 3, ACT_ELEMENTS)}
    inputs["normal_float32"] = inputs["normal"].astype(np.float32)
    cases = {"exp": ("exp", math.exp, kk.exp), "tanh": ("normal", math.tanh, kk.tanh),
             "softplus": ("normal", libm_softplus, kk.softplus), "sigmoid": ("normal", libm_sigmoid, kk.sigmoid),
             "tanh_float32": ("normal_float32", math.tanh, kk.tanh32)}     # libm: tanhf
    rows = {}
    for name, (which, libm, ours) in cases.items():
        x = inputs[which]
        out = np.empty_like(x)
        loops = {"libm": _loop(libm), "kernels": _loop(ours)}
        best = dict.fromkeys(loops, np.inf)
        for loop in loops.values():
            loop(x, out)                                    # compile
        for _ in range(ROUNDS):
            for label, loop in loops.items():
                start = time.perf_counter()
                for _ in range(ACT_CALLS):
                    loop(x, out)
                best[label] = min(best[label], (time.perf_counter() - start) / ACT_CALLS / x.size * 1e9)
        rows[name] = {**{f"{k}_ns_per_element": v for k, v in best.items()}, "load": machine_load()}
        print(f"{name}: libm {best['libm']:.2f} ns/element, kernels {best['kernels']:.2f} ns/element "
              f"({best['libm'] / best['kernels']:.1f}x; one thread, load {os.getloadavg()[0]:.2f})", flush=True)
    return rows


if __name__ == "__main__":
    main()
