"""KINN — Kirchhoff neural cells and cascades as a circuit (issue #11).

* :mod:`.network` — :class:`KinnNet`, its cells and the per-window assemblies the
  solvers integrate;
* :mod:`.update` — the exact zero-order-hold update (``expm`` of the cascade);
* :mod:`.transient` — transient analysis and exact discrete-adjoint gradients by our
  explicit solvers;
* :mod:`.netlist` — the SPICE netlist (C, R, G, and φ) and its check in ngspice.
"""

from .network import KinnAssembly, KinnNet
from .transient import KinnGradient, gradient, outputs, simulate
from .update import cascade_matrices, exact_update, exponential_euler, zoh_matrices

__all__ = ["KinnNet", "KinnAssembly", "KinnGradient", "simulate", "outputs", "gradient",
           "cascade_matrices", "zoh_matrices", "exact_update", "exponential_euler"]
