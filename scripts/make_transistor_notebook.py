"""Write ``notebooks/sky130_transistor_level.ipynb`` (issue #16) and execute it in place.

The cells live here as plain text so that a change to them is a reviewable diff;
``tests/test_notebooks.py`` runs the committed notebook's code cells as written (slow:
transistor-level ngspice runs).

Run:  .venv/bin/python scripts/make_transistor_notebook.py   (needs the sky130 PDK, nbclient, ipykernel)
"""

from __future__ import annotations

import sys

from notebook_writer import ROOT, write_notebook

OUT = ROOT / "notebooks" / "sky130_transistor_level.ipynb"

CELLS = [
    ("markdown", """# From a trained net to sky130 transistors

The committed model `netlists/models/moons_sky130.npz` was trained with
`kirchhoff-sim train --task moons --profile sky130`: every device is a `TanhCell`, the fitted
model of a subthreshold differential-pair transconductor built from SkyWater sky130 transistors
(`kirchhoff_sim.cells.library`), trained within the cell's bias window and operating range.
This notebook walks the rest of the way: the cell's characterisation in ngspice, the mapping of
every trained parameter to a cell's orientation, bias current and gate offset, the
transistor-level netlist, its ngspice transient against our solver running the cell models,
and the chip report with its transistor-level section at the tt, ss and ff corners."""),
    ("code", """from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from kirchhoff_sim import cells
from kirchhoff_sim.cells import pdk as pdk_module, transistor
from kirchhoff_sim.hardware.report import chip_report
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.technology import profile_of_model
from kirchhoff_sim.training.datasets import dataset_of_model

MODELS = Path.cwd().parent / "netlists" / "models" if Path.cwd().name == "notebooks" else Path("netlists/models")
net, meta, _ = read_model_file(MODELS / "moons_sky130.npz")
profile = profile_of_model(meta)
data = dataset_of_model(meta)
pdk = pdk_module.locate_pdk()
print(profile.name, "| PDK:", pdk.library)"""),
    ("markdown", """## The cell, characterised

DC sweeps of the cell in ngspice at five bias currents and both orientations, fitted by
`η·I_b·tanh(β(I)·(z − δ))` with `β` and `η` linear in `ln I`. The first call takes about a
minute and a half; the result is cached per PDK, corner, temperature and cell design."""),
    ("code", """characterisation = cells.characterisation_of(profile)
c = characterisation
print(f"fit error {c.max_error:.2%} of full scale, src/dst imbalance {c.imbalance:.2%}")
print(f"pin capacitance (cell off) src {c.pin_capacitance_f['src'] * 1e15:.1f} fF, dst {c.pin_capacitance_f['dst'] * 1e15:.1f} fF; "
      f"step delay {c.delay_s * 1e6:.2f} us at the smallest bias")
print("cell model in the net's units:", cells.cell_device(c, profile.scale))"""),
    ("markdown", """## Every trained device as a cell

An amplitude `A` becomes the orientation `sign(A)` and a reference current
`I_ref = |A|·G0·V0/η`; the offset a gate offset source. An off device (`A = 0`) is no cell at
all. Parameters the cells cannot realise are refused by edge (`CellMappingError`)."""),
    ("code", """mapped = transistor.map_cells(net, c, profile.scale)
print(f"{mapped.n_cells} cells of {len(mapped.on)} devices, {mapped.transistors()} transistors")
print(f"bias currents {mapped.bias_a[mapped.on].min() * 1e9:.1f}-{mapped.bias_a[mapped.on].max() * 1e9:.1f} nA, "
      f"{mapped.negative[mapped.on].sum()} cells of negative orientation")
netlist = transistor.to_transistor_netlist(net, data.X_test[0], profile, c, pdk)
kinds = {line[0].upper() for line in netlist.text.splitlines()[1:] if line and line[0].isalpha()}
print(netlist, "| element kinds:", sorted(kinds))
print("\\n".join(line for line in netlist.text.splitlines() if line.startswith(("X0 ", "Ib0 ", "XB0 ", "Vclk"))))"""),
    ("markdown", """## ngspice at transistor level against the cell models

Two test points, one ngspice process each (about half a minute each). Our reference is the solver
running the cell models on the realised node capacitances (MIM capacitor plus the cells' pins)."""),
    ("code", """report = transistor.validate_transistor(net, data.X_test[:2], profile, c, pdk, keep_waveforms=True)
print(report)
fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
t, v_spice, v_solver = report.waveforms[0]
for k in range(v_spice.shape[1]):
    ax.plot(t * 1e6, v_spice[:, k] * 1e3, lw=2, alpha=0.6, label=f"read-out {k}: ngspice (sky130)")
    ax.plot(t * 1e6, v_solver[:, k] * 1e3, "k--", lw=1, label=f"read-out {k}: cell models" if k == 0 else None)
ax.set_xlabel("time (us)")
ax.set_ylabel("read-out voltage from vcm (mV)")
legend = ax.legend(fontsize=7)"""),
    ("markdown", """## The chip report with its transistor-level section

Energy per inference from the supplies' currents (the bias references counted), latency read from
the ngspice waveforms, and the same points at the ss and ff corners with the cells still mapped
at tt, as they would be on a chip."""),
    ("code", """chip = chip_report(net, data.X_test, data.y_test, profile, samples=100, mc_trials=5,
                   transistor_samples=2, corners=("ss", "ff"))
print(chip)"""),
]


def main() -> int:
    write_notebook(CELLS, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
