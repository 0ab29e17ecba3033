"""Write ``notebooks/flows_toy_densities.ipynb`` (issue #15) and execute it in place.

The paper's toy-density figure on our stack: for each of the six 2-D densities, samples
and density of the flow retrained from scratch here (``netlists/models/flows/``, each
written by ``kirchhoff-sim train --flow --task NAME``) and of the published checkpoint
imported from the reference's results folder. The reference's checkpoints are not ours
to commit (its repository has no licence): set ``KIRCHHOFF_SIM_REFERENCE_RESULTS`` to a
copy of its ``src/results`` (e.g. from a clone of zhengqigao/kirchhoffnet) to draw them;
without it the notebook says so and draws the retrained flows only.

Run:  KIRCHHOFF_SIM_REFERENCE_RESULTS=/path/to/kirchhoffnet/src/results \\
          .venv/bin/python scripts/make_flows_notebook.py      (needs nbclient, ipykernel, torch)
"""

from __future__ import annotations

import sys

from notebook_writer import ROOT, write_notebook

OUT = ROOT / "notebooks" / "flows_toy_densities.ipynb"

CELLS = [
    ("markdown", """# The paper's toy densities, retrained and imported

A KirchhoffNet with one node per coordinate is a continuous normalising flow: base points
drawn from N(0, I) are the initial node voltages, samples are the voltages at T, and the
log-density rides along as an augmented state, `d log p/dt = −tr ∂f/∂v`, with the Jacobian's
exact O(E) diagonal (`kirchhoff_sim.flows`). Each flow here is the reference's: two layers of
0.5, `AffineTanh` devices, 25 + 25 per ordered node pair (ground included), 1,800 parameters.

For each density: the flow retrained from scratch by `kirchhoff-sim train --flow --task NAME`
(30 epochs, minutes on 2 cores), and the published checkpoint (trained for thousands of epochs)
imported with `kirchhoff-sim import-reference`. The table compares their test negative
log-likelihoods on the same test points."""),
    ("code", """import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from kirchhoff_sim import Dopri5, flows
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.training.datasets import DENSITY_NAMES, load_density

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
MODELS = ROOT / "netlists" / "models" / "flows"
REFERENCE = Path(os.environ.get("KIRCHHOFF_SIM_REFERENCE_RESULTS", "/nonexistent"))
REFERENCE_NAME = {"circles": "circle"}          # the reference's folder names
SOLVER = Dopri5(rtol=1e-4, atol=1e-6)          # the training tolerance
GRID, SAMPLES = 60, 1000

retrained = {name: read_model_file(MODELS / f"{name}.npz")[0] for name in DENSITY_NAMES}
imported = {}
if REFERENCE.is_dir():
    from kirchhoff_sim.reference import import_reference
    for name in DENSITY_NAMES:
        imported[name] = import_reference(REFERENCE / REFERENCE_NAME.get(name, name))[0]
    print(f"imported {len(imported)} published checkpoints from {REFERENCE}")
else:
    print("KIRCHHOFF_SIM_REFERENCE_RESULTS is not set to the reference's results folder: "
          "drawing the retrained flows only")"""),
    ("code", """columns = [("retrained", retrained)] + ([("published", imported)] if imported else [])
fig, axes = plt.subplots(len(DENSITY_NAMES), 1 + 2 * len(columns),
                         figsize=(2.2 * (1 + 2 * len(columns)), 2.2 * len(DENSITY_NAMES)))
nll = {}
for row, name in enumerate(DENSITY_NAMES):
    data = load_density(name, seed=0)
    low, high = data.X_test.min(axis=0) - 0.5, data.X_test.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    axes[row, 0].scatter(data.X_test[:, 0], data.X_test[:, 1], s=1)
    axes[row, 0].set_ylabel(name)
    for k, (label, nets) in enumerate(columns):
        net = nets[name]
        points, _ = flows.sample(net, SAMPLES, rng=0, solver=SOLVER)
        density = np.exp(flows.log_likelihood(net, grid, solver=SOLVER)).reshape(gx.shape)
        nll.setdefault(name, {})[label] = -flows.log_likelihood(net, data.X_test, solver=SOLVER).mean()
        axes[row, 1 + 2 * k].scatter(points[:, 0], points[:, 1], s=1, color="tab:orange")
        axes[row, 2 + 2 * k].pcolormesh(gx, gy, density, shading="auto", cmap="viridis")
        if row == 0:
            axes[row, 1 + 2 * k].set_title(f"{label}: samples")
            axes[row, 2 + 2 * k].set_title(f"{label}: density")
axes[0, 0].set_title("test points")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()"""),
    ("code", """print(f"{'density':<12} " + " ".join(f"{label + ' NLL':>15}" for label, _ in columns))
for name in DENSITY_NAMES:
    print(f"{name:<12} " + " ".join(f"{nll[name][label]:>15.3f}" for label, _ in columns))"""),
]


def main() -> int:
    write_notebook(CELLS, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
