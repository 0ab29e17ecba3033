"""Write ``notebooks/constrained_digits.ipynb`` (issue #10) and execute it in place.

The notebook's cells live here as plain text so that a change to them is a reviewable
diff; ``tests/test_notebooks.py`` runs the committed notebook's code cells as written.

Run:  .venv/bin/python scripts/make_constrained_notebook.py   (needs nbclient, ipykernel)
"""

from __future__ import annotations

import sys
from pathlib import Path

from notebook_writer import ROOT, write_notebook

OUT = ROOT / "notebooks" / "constrained_digits.ipynb"

CELLS = [
    ("markdown", """# A digits classifier that can be built

The README's digits classifier (`kirchhoff-sim train --task digits`) learns 98 % test accuracy,
but its chip report says it cannot be built on the default technology profile: node voltages
swing far past the ±0.9 V rails and every gain lies below the conductance window.
Trained against the profile (`kirchhoff-sim train --task digits --profile default`), every
conductance is either off or inside the window on the 8-bit programming grid, the training saw
10 % log-normal mismatch at every step, and the voltage unit V0 is fitted at the end so that
the trajectory stays within the rails.

This notebook puts the two committed models (`netlists/models/`) side by side: their
feasibility findings, their node voltages against the rails, and their accuracy under
mismatch."""),
    ("code", """from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from kirchhoff_sim import Dopri5, simulate
from kirchhoff_sim.hardware import mismatch_sweep
from kirchhoff_sim.hardware.fit import feasibility_summary
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.technology import profile_of_model
from kirchhoff_sim.training.datasets import dataset_of_model
from kirchhoff_sim.training.trainer import evaluate, training_settings
from kirchhoff_sim.solvers import make_solver

MODELS = Path.cwd().parent / "netlists" / "models" if Path.cwd().name == "notebooks" else Path("netlists/models")
SAMPLES = 100       # test samples of the mismatch sweep
FINDING_SAMPLES = 30   # test samples of the findings (a dense, tight-tolerance waveform each)

nets = {}
for label, name in [("unconstrained", "digits.npz"), ("constrained", "digits_constrained.npz")]:
    net, meta, _ = read_model_file(MODELS / name)
    data = dataset_of_model(meta)
    solver_spec, loss = training_settings(meta)
    accuracy = evaluate(net, data.X_test, data.y_test, loss, make_solver(**solver_spec))["accuracy"]
    nets[label] = {"net": net, "profile": profile_of_model(meta), "data": data, "accuracy": accuracy}
    print(f"{label:>13}: {net!r}, test accuracy {accuracy:.3f} on {len(data.X_test)} images, "
          f"V0 = {nets[label]['profile'].scale.V0 * 1e3:.3g} mV")"""),
    ("markdown", """## Feasibility findings

The chip report's feasibility checks on the first 30 test images, each net on its own profile
(the default one; the constrained net with its fitted V0). The acceptance of a buildable net is
no error and none of `voltage_rails`, `conductance_range`, `precision_floor`."""),
    ("code", """RULED_OUT = {"voltage_rails", "conductance_range", "precision_floor"}
for label, entry in nets.items():
    summary = feasibility_summary(entry["net"], entry["data"].X_test, entry["profile"], samples=FINDING_SAMPLES)
    entry["findings"] = summary
    counts = summary["counts"]
    print(f"{label}: {counts['error']} error, {counts['warning']} warning, {counts['info']} info")
    for finding in summary["findings"]:
        flag = "  <- rules the net out" if finding["severity"] == "error" or finding["check"] in RULED_OUT else ""
        print(f"    {finding['severity']:8} {finding['check']}{flag}")
    print()"""),
    ("markdown", """## Node voltages against the rails

Every node of both nets over the read-out time T for five test images, in volts (normalised
voltage × V0). The unconstrained net's nodes leave the rails (dashed) several times over;
the constrained one's stay inside them, and its time axis is 20× shorter (layers of duration
0.05 instead of 1, because its conductances are at least g_min)."""),
    ("code", """fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for ax, (label, entry) in zip(axes, nets.items()):
    net, profile = entry["net"], entry["profile"]
    grid = np.linspace(0.0, net.T, 201)
    volts = profile.scale.V0 * simulate(net, entry["data"].X_test[:5], solver=Dopri5(rtol=1e-6, atol=1e-8),
                                        save_at=grid).node_voltages
    time_ns = grid * profile.scale.time_unit * 1e9
    ax.plot(time_ns, volts.reshape(len(grid), -1), lw=0.4, color="tab:blue", alpha=0.4)
    for rail in (profile.rail_low_v, profile.rail_high_v):
        ax.axhline(rail, color="k", ls="--", lw=1)
    ax.set_title(f"{label}: peak |v| = {np.abs(volts).max():.2f} V, rails ±{profile.rail_high_v:g} V")
    ax.set_xlabel("time (ns)")
    ax.set_ylabel("node voltage (V)")"""),
    ("markdown", """## Accuracy under mismatch

Seeded log-normal mismatch on every conductance-like parameter (5 trials per σ on the first 100
test images, common random numbers across σ). The constrained net was trained with 10 %
mismatch injected at each step."""),
    ("code", """SIGMAS = (0.0, 0.05, 0.1, 0.2)
fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
for label, entry in nets.items():
    data = entry["data"]
    rows = mismatch_sweep(entry["net"], data.X_test[:SAMPLES], data.y_test[:SAMPLES], sigmas=SIGMAS, trials=5)
    entry["sweep"] = rows
    means = [row["mean"] for row in rows]
    ax.errorbar([100 * s for s in SIGMAS], means, yerr=[row["std"] for row in rows], marker="o", capsize=3,
                label=label)
    print(label, ", ".join(f"σ={row['sigma']:g}: {row['mean']:.3f} ± {row['std']:.3f}" for row in rows))
ax.set_xlabel("mismatch σ (%)")
ax.set_ylabel(f"accuracy ({SAMPLES} test images)")
legend = ax.legend()"""),
]


def main() -> int:
    write_notebook(CELLS, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
