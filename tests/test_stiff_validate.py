"""The stiff diode of issue #13 A checked in ngspice by ``validate``: our reference falls
back to the implicit solver, ngspice's D element (primitive mode) agrees, and a behavioural
B source (no junction limiting) fails with the diagnosis and the way out."""

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim.errors import SpiceConvergenceError
from kirchhoff_sim.spice import PhysicalScale, validate


def stiff_diode():
    groups = [ks.EdgeGroup([(1, 2)], ks.Diode(), np.array([[1e-9], [0.0]])),
              ks.EdgeGroup([(2, 0)], ks.Conductance(), np.array([[1.0]]))]
    return ks.KirchhoffNet([ks.Layer.from_groups(groups, duration=1.0)], num_nodes=2, input_nodes=[1])


@pytest.mark.parametrize("volts", [5.0, 12.0])
def test_validate_runs_the_stiff_diode_against_ngspice_d_element(volts):
    report = validate(stiff_diode(), np.array([[volts]]), scale=PhysicalScale.normalised(),
                      mode="primitive", n_points=51)
    sample = report.samples[0]
    assert report.solver["method"] == "bdf2"          # Dopri5 found it stiff and gave way
    assert sample.max_rel_error < 1e-4
    assert sample.class_agrees


def test_a_behavioural_diode_that_ngspice_cannot_start_names_the_way_out():
    with pytest.raises(SpiceConvergenceError, match="mode='primitive'"):
        validate(stiff_diode(), np.array([[5.0]]), scale=PhysicalScale.normalised(), n_points=51)
