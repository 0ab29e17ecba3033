"""kirchhoff_sim: simulate, train and compile KirchhoffNet analog neural networks.

The pipeline: a graph and a device library (:mod:`~kirchhoff_sim.topology`,
:mod:`~kirchhoff_sim.devices`) make layers of a :class:`KirchhoffNet`; the transient
solvers (:func:`simulate`) run it on a batch.
"""

from . import _allocator, devices, errors, topology
from .devices import AffineActivation, AffineTanh, Conductance, Diode, ShiftedReLU
from .network import EdgeGroup, KirchhoffNet, Layer
from .solvers import BDF2, RK4, BackwardEuler, Dopri5, Euler, Heun, Solution, Trapezoidal, simulate

__version__ = "0.1.0"

_allocator.tune()

__all__ = [
    "devices", "errors", "topology",
    "KirchhoffNet", "Layer", "EdgeGroup",
    "AffineActivation", "AffineTanh", "Conductance", "Diode", "ShiftedReLU",
    "simulate", "Solution", "Euler", "Heun", "RK4", "Dopri5", "BackwardEuler", "Trapezoidal", "BDF2",
]
