"""KINN on two tasks that fit this machine, each against a same-size baseline (issue #11).

1. **digits** — scikit-learn's 1,797 8×8 images (the package's stratified 75/25 split):
   a KINN of width 64 (the 64 pixels are the initial voltages of stage 0 of the 64
   channels, the first 10 channels' outputs are the logits), against an MLP
   (scikit-learn ``MLPClassifier``, tanh, Adam) whose hidden width gives it the same
   number of parameters. Test accuracy.
2. **Burgers** — the 1-D viscous Burgers equation ``u_t + u·u_x = ν·u_xx`` on the
   periodic unit interval, ``ν = 0.02``, 32 grid points: the operator from ``u(·, 0)``
   to ``u(·, t1)``, ``t1 = 0.2``. Initial conditions are random sums of the first four
   Fourier modes (amplitudes N(0, 1/k), scaled to a peak of 1); the data are made here
   with SciPy (``solve_ivp``, method of lines with central differences, rtol 1e-9).
   A KINN of width 32 (input and output the 32 grid values), against an MLP regressor
   of the same parameter count, and for context the identity ``u(t1) ≈ u(0)`` and the
   best linear map (least squares). Relative L2 error ``mean ‖û − u‖ / ‖u‖`` on the test set.

A third digits KINN is trained within the default technology profile (rails and leak
conductance window, :func:`kirchhoff_sim.kinn.fit.fit` with ``profile=``), and both chip
reports are printed. The digits KINN is then checked in ngspice (:func:`kirchhoff_sim.kinn.netlist.validate`,
ten test images: every waveform against our solver, relative to the swing), and its chip report (:func:`kirchhoff_sim.kinn.report.chip_report`, default
technology profile, on the test images) is printed and stored with the figures.

Last, a small KINN trained on two moons runs with its drives as sky130 transistor cells
in ngspice, against the cell model in our solver.

Both tasks also train the first-order KINN (one stage, ``n = 1``) of the same width, so
the figure shows what the cascade's higher order buys. The machine's load is printed
before each run; the figures go to ``benchmarks/results/kinn.json`` and the README.

    python benchmarks/bench_kinn.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from scipy.integrate import solve_ivp

from kirchhoff_sim import kinn
from kirchhoff_sim.kinn.fit import fit, predict
from kirchhoff_sim.solvers import Dopri5
from kirchhoff_sim.technology import default_profile
from kirchhoff_sim.training import datasets

from common import write_results

NU, T1, GRID = 0.02, 0.2, 32


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def burgers_data(n_samples: int, seed: int):
    """``(u0, u1)``, each ``(n_samples, GRID)``: random initial conditions and the
    solution at ``T1`` (module docstring)."""
    rng = np.random.default_rng(seed)
    x = np.arange(GRID) / GRID
    k = np.arange(1, 5)
    a = rng.normal(0, 1 / k, (n_samples, 4))
    b = rng.normal(0, 1 / k, (n_samples, 4))
    u0 = (a[:, :, None] * np.sin(2 * np.pi * k[None, :, None] * x) +
          b[:, :, None] * np.cos(2 * np.pi * k[None, :, None] * x)).sum(axis=1)
    u0 /= np.abs(u0).max(axis=1, keepdims=True)
    dx = 1.0 / GRID

    def rhs(_, flat):
        u = flat.reshape(n_samples, GRID)
        up, um = np.roll(u, -1, axis=1), np.roll(u, 1, axis=1)
        # conservative central flux for u·u_x = (u²/2)_x, central second difference
        return (-(up ** 2 - um ** 2) / (4 * dx) + NU * (up - 2 * u + um) / dx ** 2).ravel()

    sol = solve_ivp(rhs, (0.0, T1), u0.ravel(), method="RK45", rtol=1e-9, atol=1e-11, t_eval=[T1])
    return u0, sol.y[:, -1].reshape(n_samples, GRID)


def relative_l2(prediction, target) -> float:
    return float(np.mean(np.linalg.norm(prediction - target, axis=1) / np.linalg.norm(target, axis=1)))


def mlp_hidden(n_in: int, n_out: int, params: int) -> int:
    """The hidden width of a one-hidden-layer MLP with about ``params`` parameters."""
    return max(1, round((params - n_out) / (n_in + n_out + 1)))


def train_kinn(X, Y, width, stages, inputs, outputs, loss, epochs, lr, solver, profile=None):
    net = kinn.KinnNet(width, stages, inputs, outputs, durations=(1.0, 1.0), activation="tanh", seed=0)
    start = time.perf_counter()
    history = fit(net, X, Y, loss=loss, epochs=epochs, batch_size=64, lr=lr, solver=solver, profile=profile)
    return net, time.perf_counter() - start, history


def digits(epochs: int, solver) -> dict:
    from sklearn.neural_network import MLPClassifier

    data = datasets.load_dataset("digits")
    out = {}
    for stages in (2, 1):
        print(f"digits: KINN 64 channels x {stages} stage(s), {epochs} epochs ({load()})", flush=True)
        net, seconds, history = train_kinn(data.X_train, data.y_train, 64, stages, 64, 10, "cross_entropy",
                                           epochs, 1e-2, solver)
        accuracy = float((predict(net, data.X_test, solver=solver).argmax(axis=1) == data.y_test).mean())
        out[f"kinn_{stages}_stage"] = {"params": net.num_params, "test_accuracy": accuracy,
                                       "train_seconds": seconds, "final_loss": history[-1]["loss"]}
        print(f"  {net.num_params} parameters: test accuracy {accuracy:.4f}, {seconds:.1f} s", flush=True)
        if stages == 2:
            model = net
    print(f"digits: KINN 64 channels x 2 stages trained within the default profile's rails and "
          f"conductance window, {epochs} epochs ({load()})", flush=True)
    held, seconds, history = train_kinn(data.X_train, data.y_train, 64, 2, 64, 10, "cross_entropy", epochs, 1e-2,
                                        solver, profile=default_profile())
    accuracy = float((predict(held, data.X_test, solver=solver).argmax(axis=1) == data.y_test).mean())
    out["kinn_2_stage_in_profile"] = {"params": held.num_params, "test_accuracy": accuracy,
                                      "train_seconds": seconds, "final_loss": history[-1]["loss"]}
    print(f"  {held.num_params} parameters: test accuracy {accuracy:.4f}, {seconds:.1f} s", flush=True)
    hidden = mlp_hidden(64, 10, out["kinn_2_stage"]["params"])
    print(f"digits: MLP 64-{hidden}-10 ({load()})", flush=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # max_iter reached: the same epochs as the KINN
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), activation="tanh", batch_size=64, max_iter=epochs,
                            learning_rate_init=1e-2, random_state=0).fit(data.X_train, data.y_train)
    seconds = time.perf_counter() - start
    params = sum(w.size for w in mlp.coefs_) + sum(b.size for b in mlp.intercepts_)
    out["mlp"] = {"hidden": hidden, "params": params, "test_accuracy": float(mlp.score(data.X_test, data.y_test)),
                  "train_seconds": seconds}
    print(f"  {params} parameters: test accuracy {out['mlp']['test_accuracy']:.4f}, {seconds:.1f} s", flush=True)
    return out, model, held


def burgers(n_train: int, epochs: int, solver) -> dict:
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor

    U0, U1 = burgers_data(n_train + 200, seed=0)
    X_train, Y_train, X_test, Y_test = U0[:n_train], U1[:n_train], U0[n_train:], U1[n_train:]
    out = {"identity": relative_l2(X_test, Y_test),
           "linear_least_squares": relative_l2(LinearRegression().fit(X_train, Y_train).predict(X_test), Y_test)}
    print(f"burgers: identity {out['identity']:.4f}, best linear map {out['linear_least_squares']:.4f}")
    for stages in (2, 1):
        print(f"burgers: KINN 32 channels x {stages} stage(s), {epochs} epochs ({load()})", flush=True)
        net, seconds, history = train_kinn(X_train, Y_train, GRID, stages, GRID, GRID, "mse", epochs, 1e-2, solver)
        error = relative_l2(predict(net, X_test, solver=solver), Y_test)
        out[f"kinn_{stages}_stage"] = {"params": net.num_params, "relative_l2": error, "train_seconds": seconds}
        print(f"  {net.num_params} parameters: relative L2 {error:.4f}, {seconds:.1f} s", flush=True)
    hidden = mlp_hidden(GRID, GRID, out["kinn_2_stage"]["params"])
    print(f"burgers: MLP 32-{hidden}-32 ({load()})", flush=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPRegressor(hidden_layer_sizes=(hidden,), activation="tanh", batch_size=64, max_iter=epochs, learning_rate_init=1e-2,
                           random_state=0).fit(X_train, Y_train)
    seconds = time.perf_counter() - start
    params = sum(w.size for w in mlp.coefs_) + sum(b.size for b in mlp.intercepts_)
    out["mlp"] = {"hidden": hidden, "params": params, "relative_l2": relative_l2(mlp.predict(X_test), Y_test),
                  "train_seconds": seconds}
    print(f"  {params} parameters: relative L2 {out['mlp']['relative_l2']:.4f}, {seconds:.1f} s", flush=True)
    return out


def transistor_drive(epochs: int, solver) -> dict:
    """A small KINN trained on two moons, its drives as sky130 tanh cells in ngspice
    against the cell model in our solver (:mod:`kirchhoff_sim.kinn.transistor`)."""
    from kirchhoff_sim.cells import characterisation_of
    from kirchhoff_sim.cells.pdk import locate_pdk
    from kirchhoff_sim.kinn.transistor import validate_transistor
    from kirchhoff_sim.technology import builtin_profile

    profile = builtin_profile("sky130")
    data = datasets.load_dataset("moons", n_samples=400)
    print(f"moons: KINN 8 channels x 2 stages, {epochs} epochs ({load()})", flush=True)
    net = kinn.KinnNet(8, 2, 2, 2, durations=(1.0, 1.0), activation="tanh", seed=0)
    fit(net, data.X_train, data.y_train, epochs=epochs, batch_size=32, lr=2e-2, solver=solver)
    accuracy = float((predict(net, data.X_test, solver=solver).argmax(axis=1) == data.y_test).mean())
    characterisation = characterisation_of(profile)
    X = data.X_test[:10]
    print(f"  test accuracy {accuracy:.4f}; 10 test points at transistor level ({load()})", flush=True)
    check = validate_transistor(net, X, profile, characterisation, locate_pdk())
    out = {"test_accuracy": accuracy, "samples": len(X),
           "max_waveform_error_of_swing": float(check.max_waveform_error.max()),
           "median_waveform_error_of_swing": float(np.median(check.max_waveform_error)),
           "max_readout_error_of_swing": float(check.max_readout_error.max()),
           "decisions_agree": int(check.decisions_agree.sum()), "cell_fit_error": check.cell_fit_error,
           "drive_transistors": check.transistors, "ngspice_seconds": check.spice_seconds,
           "gate_excursion_v": check.gate_excursion_v, "node_excursion_v": check.node_excursion_v}
    print(f"  waveforms within {out['max_waveform_error_of_swing']:.2%} of the swing (median "
          f"{out['median_waveform_error_of_swing']:.2%}), read-out within {out['max_readout_error_of_swing']:.2%}, "
          f"{out['decisions_agree']}/{len(X)} decisions agree; cell fit error {check.cell_fit_error:.2%}; "
          f"{check.transistors} transistors; ngspice {check.spice_seconds:.1f} s; drive gates up to "
          f"{check.gate_excursion_v:.3f} V and nodes up to {check.node_excursion_v:.3f} V from vcm "
          f"(the cell's operating range ±0.15 V)", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few epochs (a smoke run, not the README's figures)")
    args = parser.parse_args()
    epochs = 2 if args.quick else 30
    solver = Dopri5(rtol=1e-4, atol=1e-6)
    results = {"solver": repr(solver), "epochs": epochs, "cpus": os.cpu_count()}
    results["digits"], model, held = digits(epochs, solver)
    results["burgers"] = burgers(200 if args.quick else 1000, epochs, solver)
    results["kinn_digits_model"] = repr(model)
    from kirchhoff_sim.kinn.report import chip_report

    data = datasets.load_dataset("digits")
    print(f"chip report of the digits KINN on the {len(data.X_test)} test images ({load()})", flush=True)
    report = chip_report(model, data.X_test, data.y_test, solver=solver, trials=3 if args.quick else 8)
    print(report)
    results["digits_chip_report"] = report.to_dict()
    print(f"chip report of the digits KINN trained within the profile ({load()})", flush=True)
    report = chip_report(held, data.X_test, data.y_test, solver=solver, trials=3 if args.quick else 8)
    print(report)
    results["digits_in_profile_chip_report"] = report.to_dict()
    from kirchhoff_sim.kinn.netlist import validate

    n_spice = 3 if args.quick else 10
    print(f"the digits KINN in ngspice: {n_spice} test images ({load()})", flush=True)
    check = validate(model, data.X_test[:n_spice])
    results["digits_ngspice"] = {"samples": n_spice, "max_waveform_error_of_swing": check.worst,
                                 "max_readout_error_of_swing": float(check.max_readout_error.max()),
                                 "ngspice_seconds": check.spice_seconds, "elements": check.netlists[0].counts}
    print(f"  every stage and output waveform within {check.worst:.2e} of the swing "
          f"(read-out at T within {check.max_readout_error.max():.2e}); elements {check.netlists[0].counts}; "
          f"ngspice {check.spice_seconds:.1f} s", flush=True)
    results["transistor_drive"] = transistor_drive(epochs, solver)
    write_results("kinn" + ("_quick" if args.quick else ""), results)


if __name__ == "__main__":
    main()
