"""SPICE back end: write netlists, run them in ngspice, read the results back as arrays.

* :func:`to_netlist` compiles a net and one input sample to netlist text
  (:mod:`~kirchhoff_sim.spice.netlist`), in the units of a :class:`PhysicalScale`;
* :func:`run_netlist` runs it in ngspice (:mod:`~kirchhoff_sim.spice.runner`);
* :func:`simulate_in_ngspice` is the round trip compile → run → read back in normalised
  units (:mod:`~kirchhoff_sim.spice.roundtrip`);
* :func:`validate` compares ngspice with our solver, sample by sample
  (:mod:`~kirchhoff_sim.spice.validate`).
"""

from .netlist import Netlist, SpiceOptions, UnsupportedEdges, to_netlist, to_netlists
from .runner import SpiceResult, check_netlist_safe, ngspice_available, run_netlist
from .roundtrip import NgspiceRun, simulate_batch_in_ngspice, simulate_in_ngspice
from .scale import PhysicalScale
from .validate import SampleAgreement, ValidationReport, validate

__all__ = [
    "PhysicalScale",
    "SpiceOptions", "Netlist", "UnsupportedEdges", "to_netlist", "to_netlists",
    "SpiceResult", "run_netlist", "check_netlist_safe", "ngspice_available",
    "NgspiceRun", "simulate_in_ngspice", "simulate_batch_in_ngspice",
    "ValidationReport", "SampleAgreement", "validate",
]
