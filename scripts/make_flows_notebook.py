"""Write ``notebooks/flows_toy_densities.ipynb`` (issue #15) and execute it in place.

The paper's toy-density figure on our stack: for each of the six 2-D densities and the
two potentials, samples and density of the flow retrained from scratch here (``netlists/models/flows/``, each
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
from kirchhoff_sim.reference import import_reference
if REFERENCE.is_dir():
    for name in DENSITY_NAMES:
        imported[name] = import_reference(REFERENCE / REFERENCE_NAME.get(name, name))[0]
    print(f"imported {len(imported)} published checkpoints from {REFERENCE}")
else:
    print("KIRCHHOFF_SIM_REFERENCE_RESULTS is not set to the reference's results folder: "
          "drawing the retrained flows only")"""),
    ("code", """def draw_flows(axes, row, name, columns, gx, gy, score):
    \"\"\"Samples and density of each column's flow for ``name`` in ``axes[row]`` (from its
    second panel on); returns ``score(net)`` per column label.\"\"\"
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    scores = {}
    for k, (label, nets) in enumerate(columns):
        net = nets[name]
        points, _ = flows.sample(net, SAMPLES, rng=0, solver=SOLVER)
        density = np.exp(flows.log_likelihood(net, grid, solver=SOLVER)).reshape(gx.shape)
        scores[label] = score(net)
        axes[row, 1 + 2 * k].scatter(points[:, 0], points[:, 1], s=1, color="tab:orange")
        axes[row, 1 + 2 * k].set_xlim(gx.min(), gx.max())
        axes[row, 1 + 2 * k].set_ylim(gy.min(), gy.max())
        axes[row, 2 + 2 * k].pcolormesh(gx, gy, density, shading="auto", cmap="viridis")
        if row == 0:
            axes[row, 1 + 2 * k].set_title(f"{label}: samples")
            axes[row, 2 + 2 * k].set_title(f"{label}: density")
    axes[row, 0].set_ylabel(name)
    return scores


def figure(rows, columns):
    return plt.subplots(rows, 1 + 2 * len(columns), figsize=(2.2 * (1 + 2 * len(columns)), 2.2 * rows))


def finish(fig, axes):
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()


columns = [("retrained", retrained)] + ([("published", imported)] if imported else [])
fig, axes = figure(len(DENSITY_NAMES), columns)
nll = {}
for row, name in enumerate(DENSITY_NAMES):
    data = load_density(name, seed=0)
    low, high = data.X_test.min(axis=0) - 0.5, data.X_test.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID))
    axes[row, 0].scatter(data.X_test[:, 0], data.X_test[:, 1], s=1)
    nll[name] = draw_flows(axes, row, name, columns, gx, gy,
                           lambda net: -flows.log_likelihood(net, data.X_test, solver=SOLVER).mean())
axes[0, 0].set_title("test points")
finish(fig, axes)"""),
    ("code", """print(f"{'density':<12} " + " ".join(f"{label + ' NLL':>15}" for label, _ in columns))
for name in DENSITY_NAMES:
    print(f"{name:<12} " + " ".join(f"{nll[name][label]:>15.3f}" for label, _ in columns))"""),
    ("markdown", """## The two potentials, by reverse KL

The paper's other toy densities have no data: an unnormalised target `exp(−U)` (U₁ and U₂ of
Rezende & Mohamed, ICML 2015). The flow is fitted by reverse KL — its own samples scored
against U, the loss `mean(log q(x) + U(x))` = KL(q ‖ p) − log Z — by
`kirchhoff-sim train --flow --task potential1|potential2` (same preset, 30 epochs; the
published ones: 16 layers of 0.1, 20,000 iterations). The table gives that loss on the same
1,024 base draws for both (lower is better; U₂ is normalisable only on a bounded window, so
its loss has no floor)."""),
    ("code", """potentials = list(flows.POTENTIALS)
retrained_p = {name: read_model_file(MODELS / f"{name}.npz")[0] for name in potentials}
imported_p = ({name: import_reference(REFERENCE / name)[0] for name in potentials}
              if REFERENCE.is_dir() else {})
columns_p = [("retrained", retrained_p)] + ([("published", imported_p)] if imported_p else [])
gx, gy = np.meshgrid(np.linspace(-4, 4, GRID), np.linspace(-4, 4, GRID))
fig, axes = figure(len(potentials), columns_p)
kl = {}
for row, name in enumerate(potentials):
    z = load_density(name, seed=0).X_test
    target = np.exp(-flows.POTENTIALS[name](np.column_stack([gx.ravel(), gy.ravel()]))).reshape(gx.shape)
    axes[row, 0].pcolormesh(gx, gy, target, shading="auto", cmap="viridis")
    kl[name] = draw_flows(axes, row, name, columns_p, gx, gy,
                          lambda net: flows.reverse_kl(net, name, z, solver=SOLVER).mean())
axes[0, 0].set_title("target exp(-U)")
finish(fig, axes)
print(f"{'potential':<12} " + " ".join(f"{label + ' KL - log Z':>22}" for label, _ in columns_p))
for name in potentials:
    print(f"{name:<12} " + " ".join(f"{kl[name][label]:>22.3f}" for label, _ in columns_p))"""),
]


def main() -> int:
    write_notebook(CELLS, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
