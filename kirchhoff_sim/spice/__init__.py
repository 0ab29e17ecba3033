"""SPICE back end: write netlists, run them in ngspice, read the results back as arrays.

* :func:`to_netlist` compiles a net and one input sample to netlist text
  (:mod:`~kirchhoff_sim.spice.netlist`, options in :mod:`~kirchhoff_sim.spice.options`),
  in the units of a :class:`PhysicalScale`;
* :func:`run_netlist` runs it in ngspice (:mod:`~kirchhoff_sim.spice.runner`; the shared
  library back end in :mod:`~kirchhoff_sim.spice.shared`, the raw-file parser in
  :mod:`~kirchhoff_sim.spice.rawfile`), after :func:`check_netlist_safe`
  (:mod:`~kirchhoff_sim.spice.safety`) has refused anything that could run commands;
* :func:`simulate_in_ngspice` is the round trip compile → run → read back in normalised
  units (:mod:`~kirchhoff_sim.spice.roundtrip`);
* :func:`validate` compares ngspice with our solver, sample by sample
  (:mod:`~kirchhoff_sim.spice.validate`).
"""

from ..units import PhysicalScale
from .netlist import Netlist, UnsupportedEdges, to_netlist, to_netlists
from .options import SpiceOptions
from .roundtrip import NgspiceRun, simulate_batch_in_ngspice, simulate_in_ngspice
from .runner import SpiceResult, ngspice_available, run_netlist
from .safety import check_netlist_safe
from .validate import SampleAgreement, ValidationReport, validate

__all__ = [
    "PhysicalScale",
    "SpiceOptions", "Netlist", "UnsupportedEdges", "to_netlist", "to_netlists",
    "SpiceResult", "run_netlist", "check_netlist_safe", "ngspice_available",
    "NgspiceRun", "simulate_in_ngspice", "simulate_batch_in_ngspice",
    "ValidationReport", "SampleAgreement", "validate",
]
