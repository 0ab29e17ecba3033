"""kirchhoff_sim: simulate, train and compile KirchhoffNet analog neural networks.

The pipeline: a graph and a device library (:mod:`~kirchhoff_sim.topology`,
:mod:`~kirchhoff_sim.devices`) make layers of a :class:`KirchhoffNet`; the transient
solvers (:func:`simulate`) run it on a batch; :mod:`~kirchhoff_sim.sensitivity` gives its
gradients; :mod:`~kirchhoff_sim.training` trains it; :mod:`~kirchhoff_sim.spice` compiles
it to a netlist and checks it in ngspice; :mod:`~kirchhoff_sim.hardware` reports on the
chip it would be.

Importing the package has no side effects on the host process; :func:`tune_allocator`
is an opt-in speed-up (see :mod:`~kirchhoff_sim.allocator`).
"""

from . import devices, errors, topology
from .allocator import tune_allocator
from .devices import AffineActivation, AffineTanh, Conductance, Diode, ShiftedReLU
from .modelfile import load_net, save_net
from .network import EdgeGroup, KirchhoffNet, Layer
from .solvers import BDF2, RK4, BackwardEuler, Dopri5, Euler, Heun, Solution, Trapezoidal, simulate
from .units import PhysicalScale

__version__ = "0.1.0"

__all__ = [
    "devices", "errors", "topology",
    "KirchhoffNet", "Layer", "EdgeGroup", "save_net", "load_net", "PhysicalScale",
    "AffineActivation", "AffineTanh", "Conductance", "Diode", "ShiftedReLU",
    "simulate", "Solution", "Euler", "Heun", "RK4", "Dopri5", "BackwardEuler", "Trapezoidal", "BDF2",
    "tune_allocator",
]
