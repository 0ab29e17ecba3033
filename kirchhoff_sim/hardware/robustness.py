"""Old home of the robustness API, kept for one release: import from the new modules.

The module was split (issue #9): quantisation, mismatch and noise are in
:mod:`.perturbation`; the spec and the trial jobs in :mod:`.trials`; runs, results and
sweeps in :mod:`.montecarlo`; :class:`Runner` and :class:`SerialRunner` in
:mod:`.executors`. Parameter roles are declared by the device classes
(:func:`kirchhoff_sim.devices.parameter_roles`), kT/C noise is
:func:`kirchhoff_sim.units.ktc_noise_sigma`, a net's bytes are
:func:`kirchhoff_sim.modelfile.net_to_bytes` / ``net_from_bytes`` and the default solver
is :data:`kirchhoff_sim.solvers.DEFAULT_SOLVER`. Every name below is the new object
itself, so ``isinstance`` and identity checks keep working.
"""

from __future__ import annotations

from types import MappingProxyType

from ..devices import BIAS, CONDUCTANCE, FAMILIES, PHYSICAL, from_spec, parameter_roles, rows_with_role
from ..modelfile import net_from_bytes, net_to_bytes
from ..solvers import DEFAULT_SOLVER
from ..units import BOLTZMANN, ktc_noise_sigma
from .executors import CHUNKS_PER_SLOT, Runner, SerialRunner
from .montecarlo import (
    DEFAULT_MISMATCH_SIGMAS,
    DEFAULT_QUANTISATION_BITS,
    DEFAULT_SWEEP_TRIALS,
    SUMMARY_PERCENTILES,
    MonteCarloResult,
    mismatch_sweep,
    monte_carlo,
    quantisation_sweep,
)
from .perturbation import MAX_BITS, QUANTISATION_MODES, perturb, quantise
from .trials import BACKENDS, DEFAULT_BATCH_SIZE, DEFAULT_TRIALS, MonteCarloSpec, run_trial, run_trials

__all__ = [
    "BIAS", "CONDUCTANCE", "PHYSICAL", "PARAMETER_ROLES", "BACKENDS", "QUANTISATION_MODES",
    "MonteCarloResult", "MonteCarloSpec", "Runner", "SerialRunner",
    "conductance_rows", "ktc_noise_sigma", "mismatch_sweep", "monte_carlo", "parameter_roles",
    "perturb", "quantisation_sweep", "quantise", "run_trial", "run_trials",
    "net_to_bytes", "net_from_bytes", "DEFAULT_SOLVER", "BOLTZMANN", "MAX_BITS", "CHUNKS_PER_SLOT",
    "DEFAULT_BATCH_SIZE", "DEFAULT_TRIALS", "DEFAULT_SWEEP_TRIALS", "DEFAULT_QUANTISATION_BITS",
    "DEFAULT_MISMATCH_SIGMAS", "SUMMARY_PERCENTILES",
]


def conductance_rows(device) -> list:
    """Rows of ``device``'s parameter array whose role is conductance
    (``rows_with_role(device, CONDUCTANCE)``)."""
    return rows_with_role(device, CONDUCTANCE)


def __getattr__(name):
    if name == "PARAMETER_ROLES":
        # what the table of earlier releases held, read from the device classes themselves
        return MappingProxyType({family: MappingProxyType(parameter_roles(from_spec({"family": family})))
                                 for family in FAMILIES})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
