"""Hardware: what a trained KirchhoffNet becomes on a chip.

The chip report (:func:`chip_report`, :mod:`.report`) maps a normalised net onto silicon
with the physical scale of DESIGN.md §5, held by a technology profile
(:mod:`.profile`, defaults in ``default_profile.json``): timing and settling
(:mod:`.timing`), energy and power per inference checked against ngspice
(:mod:`.energy`), feasibility findings (:mod:`.feasibility`) and figures
(:mod:`.plots`, numbers written by :mod:`.formatting`).

Robustness is the accuracy that survives building the circuit: parameter quantisation,
device and capacitor mismatch, kT/C noise and read-out noise (:mod:`.perturbation`),
measured over seeded Monte Carlo trials (:mod:`.trials`: the spec and the jobs) in runs
and sweeps (:mod:`.montecarlo`) that go through an executor (:mod:`.executors`: serial,
or a Dask cluster with :mod:`.distributed`, imported on first use of
:class:`DaskRunner` because Dask takes a while to import). :mod:`.robustness` is the old
home of these names, kept for one release.
"""

from ..units import ktc_noise_sigma
from .perturbation import perturb, quantise
from .trials import MonteCarloSpec, run_trial
from .executors import SerialRunner
from .montecarlo import MonteCarloResult, mismatch_sweep, monte_carlo, quantisation_sweep
from ..technology import TechnologyProfile, default_profile, load_profile
from .timing import Settling, TimingReport, Waveforms, dense_waveforms, settling
from .energy import EdgeTable, EnergyReport, edge_table, energy_report, spice_device_energy, sweep_edges
from .feasibility import Finding, check_feasibility
from .report import ChipReport, SpiceCheck, chip_report

__all__ = [
    "MonteCarloResult", "MonteCarloSpec", "SerialRunner", "DaskRunner",
    "ktc_noise_sigma", "mismatch_sweep", "monte_carlo", "perturb", "quantisation_sweep",
    "quantise", "run_trial",
    "TechnologyProfile", "default_profile", "load_profile",
    "Settling", "TimingReport", "Waveforms", "dense_waveforms", "settling",
    "EdgeTable", "EnergyReport", "edge_table", "energy_report", "spice_device_energy", "sweep_edges",
    "Finding", "check_feasibility", "ChipReport", "SpiceCheck", "chip_report",
]


def __getattr__(name):
    if name == "DaskRunner":
        from .distributed import DaskRunner

        return DaskRunner
    if name == "PARAMETER_ROLES":      # deprecated: the roles are declared by the device classes
        from .robustness import PARAMETER_ROLES

        return PARAMETER_ROLES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
