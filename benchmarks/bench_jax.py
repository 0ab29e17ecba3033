"""kirchhoff_sim against JAX + diffrax on CPU (issue #14), forward and training step.

Same nets, inputs, method (Dopri5), tolerances, error norm and step controller on both
sides (Hairer's PI controller, ours and diffrax's ``PIDController(pcoeff=0.2,
icoeff=0.65)``; see ``jax_reference.py``), run with both error norms: ours (RMS per
sample, maximised over the batch) and diffrax's default (RMS over the whole batch, our
``norm="batch"``). Ours on the NumPy reference path and on the fused numba kernels
(2 threads), in float64 and (``dtype="float32"``, numba) float32; JAX in float64 and
float32, its compile time reported separately. Every float32 run is checked to stay
float32. Runs are interleaved A B C … A B C …, the minimum of each kept;
steps are printed for both stacks, and the machine's load with every row.

* forward: the 32-node fully connected AffineTanh net (2 × 1,056 edges), batch 256,
  rtol = atol = 1e-6; the MNIST-sized ShiftedReLU net (834 nodes, 2 × 230,068 edges),
  batch 256, tol 1e-3;
* training step (loss + gradient; diffrax's RecursiveCheckpointAdjoint against our
  discrete adjoint): the trained digits ShiftedReLU net (``netlists/models/digits.npz``),
  batch 64, rtol 1e-4 / atol 1e-6, and the
  32-node AffineTanh net, batch 256, tol 1e-6.

    python benchmarks/bench_jax.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import kirchhoff_sim as ks
from kirchhoff_sim import kernels
from kirchhoff_sim.sensitivity import gradient
from kirchhoff_sim.training.datasets import load_dataset
from kirchhoff_sim.training.losses import bind, cross_entropy
from kirchhoff_sim.modelfile import load_net

from common import fully_connected_tanh, machine_load, mnist_sized_net, write_results
import jax_reference as jr  # noqa: E402  (enables float64 in JAX)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

NORMS = {"sample": jr.sample_norm, "batch": jr.rms_norm}


def digits_net():
    """The trained digits classifier of the README (94 nodes, 2 × 6,620 ShiftedReLU edges)."""
    return load_net(Path(__file__).resolve().parents[1] / "netlists" / "models" / "digits.npz")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def contenders(net, family, x, y, rtol, atol, train):
    """name -> (callable returning (seconds, value, steps)) for one comparison."""
    runs = {}
    for backend, dtype in (("numpy", "float64"), ("numba", "float64"), ("numba", "float32")):
        for norm in ("sample", "batch"):
            solver = ks.Dopri5(rtol=rtol, atol=atol, norm=norm)

            def ours(backend=backend, solver=solver, dtype=dtype):
                kernels.use(backend)
                if train:
                    s, g = timed(lambda: gradient(net, x, bind(cross_entropy, y), solver=solver, dtype=dtype))
                    assert g.solution.final_state.dtype == dtype
                    return s, g.flat, g.solution.stats.n_steps
                s, sol = timed(lambda: ks.simulate(net, x, solver=solver, dtype=dtype))
                assert sol.final_state.dtype == dtype           # no silent promotion
                return s, sol.final_state, sol.stats.n_steps
            runs[f"ours_{backend}_{norm}" if dtype == "float64" else f"ours_{backend}_{dtype}_{norm}"] = ours
    for dtype in (jnp.float64, jnp.float32):
        jnet = jr.JaxNet(net, family, dtype)
        y0 = jnet.initial_state(net, x)
        labels = jnp.asarray(y)
        for norm in ("sample", "batch"):
            forward, loss_and_grad = jr.make_functions(jnet, rtol, atol, NORMS[norm])

            def theirs(forward=forward, loss_and_grad=loss_and_grad, y0=y0, jnet=jnet, labels=labels):
                if train:
                    s, (value, grads) = timed(lambda: jax.block_until_ready(loss_and_grad(jnet.params, y0, labels)))
                    assert all(g.dtype == jnet.dtype for g in grads)
                    flat = np.concatenate([np.asarray(g, float).ravel() for g in grads])
                    return s, flat, None
                s, (state, steps, _) = timed(lambda: jax.block_until_ready(forward(jnet.params, y0)))
                assert state.dtype == jnet.dtype, (state.dtype, jnet.dtype)   # no silent promotion
                return s, np.asarray(state, float).T, int(steps)
            runs[f"jax_{np.dtype(dtype).name}_{norm}"] = theirs
    return runs


def compare(label, net, family, x, y, rtol, atol, train, rounds):
    runs = contenders(net, family, x, y, rtol, atol, train)
    compile_s, best, values, steps = {}, {name: np.inf for name in runs}, {}, {}
    for name, run in runs.items():                 # first call: compile (JAX), caches (ours)
        compile_s[name] = run()[0]
    for _ in range(rounds):
        for name, run in runs.items():
            seconds, value, n = run()
            best[name] = min(best[name], seconds)
            values[name], steps[name] = value, n
    kernels.use("numpy")
    reference = values["ours_numpy_sample"]
    row = {"label": label, "batch": len(x), "rtol": rtol, "atol": atol, "train": train, "load": machine_load()}
    print(f"\n{label} ({'loss + gradient' if train else 'forward'}, batch {len(x)}, rtol {rtol:g} / atol {atol:g}; "
          f"load {os.getloadavg()[0]:.2f})")
    for name in runs:
        difference = float(np.abs(values[name] - reference).max() / max(np.abs(reference).max(), 1e-300))
        entry = {"seconds": best[name], "first_call_seconds": compile_s[name], "steps": steps[name],
                 "max_relative_difference_vs_ours_numpy": difference}
        if not train:
            entry["samples_per_s"] = len(x) / best[name]
        row[name] = entry
        print(f"  {name:26s} {best[name]:8.3f} s" + (f"  {len(x) / best[name]:9.0f} samples/s" if not train else "")
              + f"  first call {compile_s[name]:7.2f} s  steps {steps[name]}  rel. diff {difference:.1e}", flush=True)
    for norm in ("sample", "batch"):
        for dtype in ("float64", "float32"):
            row[f"ratio_ours_numba_vs_jax_{dtype}_{norm}"] = best[f"jax_{dtype}_{norm}"] / best[f"ours_numba_{norm}"]
        row[f"ratio_ours_numba_float32_vs_jax_float32_{norm}"] = (best[f"jax_float32_{norm}"]
                                                                 / best[f"ours_numba_float32_{norm}"])
        print(f"  {norm} norm: ours (numba) f64 is {row[f'ratio_ours_numba_vs_jax_float64_{norm}']:.2f}x JAX f64's "
              f"speed; ours f32 is {row[f'ratio_ours_numba_float32_vs_jax_float32_{norm}']:.2f}x JAX f32's "
              f"(>1: ours faster)")
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one round, no MNIST-sized net")
    args = parser.parse_args()
    ks.tune_allocator()
    rounds = 1 if args.quick else 3
    rng = np.random.default_rng(0)
    fc = fully_connected_tanh(rng)
    x_fc = np.random.default_rng(1).normal(0.0, 1.0, (256, 2))
    y_fc = np.random.default_rng(2).integers(0, 2, 256)
    fc.readout = np.array([1, 2])
    data = load_dataset("digits")
    rows = [compare("32-node AffineTanh", fc, "affine_tanh", x_fc, y_fc, 1e-6, 1e-6, False, rounds),
            compare("32-node AffineTanh", fc, "affine_tanh", x_fc, y_fc, 1e-6, 1e-6, True, rounds),
            compare("digits ShiftedReLU", digits_net(), "shifted_relu", data.X_train[:64], data.y_train[:64],
                    1e-4, 1e-6, True, rounds)]
    if not args.quick:
        mnist = mnist_sized_net()
        x = np.random.default_rng(3).uniform(0, 1, (256, 784))
        rows.append(compare("MNIST-sized ShiftedReLU", mnist, "shifted_relu", x, np.zeros(256, int), 1e-3, 1e-3,
                            False, 2))
    write_results("bench_jax", {"jax": jax.__version__, "rows": rows})


if __name__ == "__main__":
    main()
