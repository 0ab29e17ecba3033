"""Hardware: what a trained KirchhoffNet becomes on a chip.

The chip report (technology profile, timing, energy and power, feasibility checks) maps
a normalised net onto silicon with the physical scale of DESIGN.md §5. Robustness
(:mod:`.robustness`) measures the accuracy that survives parameter quantisation, device
and capacitor mismatch, kT/C noise and read-out noise; its Monte Carlo runs and sweeps
run serially or on a Dask cluster (:mod:`.distributed`, imported on first use of
:class:`DaskRunner` because Dask takes a while to import).
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

__all__ = [
    "PARAMETER_ROLES", "MonteCarloResult", "MonteCarloSpec", "SerialRunner", "DaskRunner",
    "ktc_noise_sigma", "mismatch_sweep", "monte_carlo", "perturb", "quantisation_sweep",
    "quantise", "run_trial",
]


def __getattr__(name):
    if name == "DaskRunner":
        from .distributed import DaskRunner

        return DaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
