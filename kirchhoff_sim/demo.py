"""The main job, end to end: what ``make demo`` (``kirchhoff-sim demo``) runs.

1. train a small two-moons classifier by the discrete adjoint;
2. check the gradient it trained with against finite differences;
3. compare the explicit and the SPICE-style implicit solvers on the trained net;
4. save the model file and reload it;
5. export the net to a SPICE netlist and check it in ngspice;
6. print the chip report.


"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .hardware import chip_report
from .modelfile import load_net, save_net
from .sensitivity import check_gradient
from .solvers import BDF2, Dopri5, default_solver_spec, make_solver, simulate
from .spice import to_netlist, validate
from .training.datasets import load_dataset
from .training.losses import bind, cross_entropy
from .training.models import build_net
from .training.trainer import TrainConfig, evaluate, train


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def run_demo(quick: bool = False, out_dir=None) -> dict:
    """Run the demo and return its figures (also printed)."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="kirchhoff_demo_"))
    figures = {}

    data = load_dataset("moons", n_samples=400 if quick else 800)
    net = build_net(2, 2, hidden=6, layers=2, duration=1.0, device="ShiftedReLU")
    config = TrainConfig(epochs=4 if quick else 10, batch_size=32, lr=3e-2, validation_fraction=0.0,
                         solver=default_solver_spec())
    t = time.perf_counter()
    train(net, data, config, progress=False, log=None)
    solver = make_solver(**config.solver)
    test = evaluate(net, data.X_test, data.y_test, solver=solver)
    figures["train_seconds"] = time.perf_counter() - t
    figures["test_accuracy"] = test["accuracy"]
    _say("train", f"{net!r} on two moons: test accuracy {test['accuracy']:.3f} "
                  f"after {config.epochs} epochs in {figures['train_seconds']:.1f} s")

    check = check_gradient(net, data.X_test[:8], bind(cross_entropy, data.y_test[:8]), solver=solver)
    figures["gradient_error"] = check.max_relative_error
    _say("gradient", f"adjoint vs central finite differences of the same discretisation: {check}")

    x = data.X_test[:64]
    explicit = simulate(net, x, solver=Dopri5(rtol=1e-9, atol=1e-11))
    implicit = simulate(net, x, solver=BDF2(rtol=1e-7, atol=1e-9))
    gap = float(np.abs(explicit.final_state - implicit.final_state).max())
    figures["solver_gap"] = gap
    _say("simulate", f"64 samples: Dopri5 {explicit.stats.n_steps} steps, BDF2 {implicit.stats.n_steps} "
                     f"steps ({implicit.stats.n_newton} Newton iterations); max |Δv| between them {gap:.1e}")

    path = save_net(net, out_dir / "moons.npz")
    same = np.array_equal(load_net(path).forward(x[:8], solver=solver), net.forward(x[:8], solver=solver))
    figures["model_file"], figures["round_trip"] = str(path), same
    _say("model file", f"wrote {path}; reloaded net gives identical outputs: {same}")

    netlist = to_netlist(net, data.X_test[0], title="kirchhoff_sim demo: two-moons classifier")
    netlist_path = netlist.save(out_dir / "moons.cir")
    _say("export", f"wrote {netlist_path}: {netlist.element_counts} in physical units "
                   f"(V0 = {netlist.scale.V0:g} V, C0 = {netlist.scale.C0:g} F, G0 = {netlist.scale.G0:g} S); "
                   f"T = {netlist.tstop:.3g} s on chip")
    report = validate(net, data.X_test[:2 if quick else 4], workers=2)
    figures["ngspice_max_relative_error"] = report.max_rel_error
    figures["ngspice_class_agreement"] = report.class_agreement
    _say("ngspice", f"{report.num_samples} samples: worst waveform error {report.max_rel_error:.1e} of the swing, "
                    f"classes agree on {report.class_agreement:.0%}")

    chip = chip_report(net, data.X_test, data.y_test, samples=50 if quick else 100,
                       mc_trials=5 if quick else 20)
    figures["chip_report"] = chip.to_dict()
    _say("chip report", "\n" + str(chip))
    return figures
