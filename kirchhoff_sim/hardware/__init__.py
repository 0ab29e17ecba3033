"""Hardware: what a trained KirchhoffNet becomes on a chip.

The chip report (:func:`chip_report`, :mod:`.report`) maps a normalised net onto silicon
with the physical scale of DESIGN.md §5, taken from a technology profile
(:mod:`.profile`, defaults in ``default_profile.json``): timing and settling
(:mod:`.timing`), energy and power per inference checked against ngspice
(:mod:`.energy`), feasibility findings (:mod:`.feasibility`) and figures
(:mod:`.plots`). Robustness (:mod:`.robustness`) measures the accuracy that survives
parameter quantisation, device and capacitor mismatch, kT/C noise and read-out noise; its
Monte Carlo runs and sweeps run serially or on a Dask cluster (:mod:`.distributed`,
imported on first use of :class:`DaskRunner` because Dask takes a while to import).
"""

from .robustness import (
    PARAMETER_ROLES,
    MonteCarloResult,
    MonteCarloSpec,
    SerialRunner,
    ktc_noise_sigma,
    mismatch_sweep,
    monte_carlo,
    perturb,
    quantisation_sweep,
    quantise,
    run_trial,
)
from .profile import TechnologyProfile, default_profile, load_profile
from .timing import Settling, TimingReport, Waveforms, dense_waveforms, settling
from .energy import EdgeTable, EnergyReport, edge_table, energy_report, spice_device_energy, sweep_edges
from .feasibility import Finding, check_feasibility
from .report import ChipReport, SpiceCheck, chip_report

__all__ = [
    "PARAMETER_ROLES", "MonteCarloResult", "MonteCarloSpec", "SerialRunner", "DaskRunner",
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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
