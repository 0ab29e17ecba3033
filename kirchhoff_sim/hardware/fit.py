"""A trained net on its technology profile: the voltage unit it fits at, and its findings.

Two steps close a constrained training run (issue #10, DESIGN.md §8):

* :func:`fit_voltage_unit` — for a net whose every device is positively homogeneous, the
  largest ``V0`` (no larger than the profile's) that keeps every node within the rails and
  every device under the current limit on the given inputs
  (:func:`~kirchhoff_sim.training.constraints.choose_voltage_unit`); other nets keep the
  profile's ``V0`` (their rails are held in training by the running cost);
* :func:`feasibility_summary` — the chip report's feasibility findings on the profile
  (no ngspice, no Monte Carlo), counted by severity and listed by check.
"""

from __future__ import annotations

import numpy as np

from ..network import as_batch
from ..technology import TechnologyProfile
from ..training.constraints import choose_voltage_unit
from ..units import PhysicalScale
from .energy import edge_table, energy_report, sweep_edges
from .feasibility import SEVERITIES, check_feasibility
from .timing import dense_waveforms

__all__ = ["fit_voltage_unit", "feasibility_summary", "DEFAULT_FIT_SAMPLES"]

DEFAULT_FIT_SAMPLES = 200          # inputs the V0 choice looks at (the whole trajectory of each)
DEFAULT_FIT_POINTS = 200           # save points of the dense waveform


def _waveform_extremes(net, X):
    waveforms = dense_waveforms(net, X, n_points=DEFAULT_FIT_POINTS)
    sweep = sweep_edges(net, waveforms, edge_table(net))
    return waveforms, float(np.abs(waveforms.node_voltages).max()), float(sweep.max_abs_current.max(initial=0.0))


def fit_voltage_unit(net, X, profile: TechnologyProfile, margin: float = 0.9,
                     samples: int = DEFAULT_FIT_SAMPLES) -> tuple[TechnologyProfile, str]:
    """The profile with the ``V0`` the net fits at, and a sentence saying how it was chosen.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d)
        Inputs whose trajectories must fit (normalised volts); the first ``samples`` rows.
    profile : TechnologyProfile
    margin : float
        Fraction of the rails and of the current limit to use.

    Returns
    -------
    (TechnologyProfile, str)
        ``profile`` itself when the net is not positively homogeneous or already fits.
    """
    if not all(g.device.positively_homogeneous for g in net.groups):
        return profile, (f"V0 = {profile.scale.V0:g} V as profiled: the net's devices are not all positively "
                         f"homogeneous, so its rails are held in training (running cost), not by V0")
    X = as_batch(X)[:samples]
    _, v_max, i_max = _waveform_extremes(net, X)
    v0, note = choose_voltage_unit(net, v_max, i_max, profile, margin)
    if v0 == profile.scale.V0:
        return profile, note
    scale = PhysicalScale(v0, profile.scale.C0, profile.scale.G0)
    return profile.replace(scale=scale, name=f"{profile.name} (V0 fitted)"), note


def feasibility_summary(net, X, profile: TechnologyProfile, samples: int = 100) -> dict:
    """The feasibility findings of ``net`` on ``profile`` over the first ``samples`` inputs.

    Returns
    -------
    dict
        ``{"profile": name, "counts": {severity: n}, "findings": [{"check", "severity",
        "message"}, ...]}``, most severe first.
    """
    X = as_batch(X)[:samples]
    waveforms = dense_waveforms(net, X, n_points=DEFAULT_FIT_POINTS)
    table = edge_table(net)
    sweep = sweep_edges(net, waveforms, table)
    energy = energy_report(net, profile, waveforms, sweep, table)     # for the power budget
    findings = check_feasibility(net, profile, waveforms, sweep, table, energy)
    counts = {severity: sum(f.severity == severity for f in findings) for severity in SEVERITIES}
    return {"profile": profile.name, "V0": profile.scale.V0, "counts": counts,
            "findings": [{"check": f.check, "severity": f.severity, "message": f.message} for f in findings]}
