"""The hardware package's layout after issue #9: one scale, old import paths, one-line module summaries.

``kirchhoff_sim.hardware.robustness`` was split into perturbation, trials, montecarlo and
executors; it stays for one release as a re-export of the very same objects. The
technology profile and the Monte Carlo spec hold a :class:`~kirchhoff_sim.units.PhysicalScale`;
the spellings of earlier releases still work, with a DeprecationWarning.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from kirchhoff_sim import devices, modelfile, solvers, units
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.hardware import (
    MonteCarloSpec, default_profile, distributed, executors, montecarlo, perturbation, robustness, trials,
)
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.units import PhysicalScale

HARDWARE = Path(__file__).resolve().parents[1] / "kirchhoff_sim" / "hardware"

#: old name in kirchhoff_sim.hardware.robustness → the module that owns it now
MOVED = {
    "MonteCarloSpec": trials, "run_trial": trials, "run_trials": trials, "BACKENDS": trials,
    "DEFAULT_TRIALS": trials, "DEFAULT_BATCH_SIZE": trials,
    "MonteCarloResult": montecarlo, "monte_carlo": montecarlo, "mismatch_sweep": montecarlo,
    "quantisation_sweep": montecarlo, "DEFAULT_SWEEP_TRIALS": montecarlo,
    "DEFAULT_QUANTISATION_BITS": montecarlo, "DEFAULT_MISMATCH_SIGMAS": montecarlo,
    "SUMMARY_PERCENTILES": montecarlo,
    "quantise": perturbation, "perturb": perturbation, "MAX_BITS": perturbation,
    "QUANTISATION_MODES": perturbation,
    "Runner": executors, "SerialRunner": executors, "CHUNKS_PER_SLOT": executors,
    "ktc_noise_sigma": units, "BOLTZMANN": units,
    "net_to_bytes": modelfile, "net_from_bytes": modelfile,
    "parameter_roles": devices, "CONDUCTANCE": devices, "BIAS": devices, "PHYSICAL": devices,
    "DEFAULT_SOLVER": solvers,
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_old_robustness_names_are_the_new_objects(name):
    assert getattr(robustness, name) is getattr(MOVED[name], name)


def test_old_parameter_role_helpers_read_the_device_classes():
    for family in devices.FAMILIES:
        device = devices.from_spec({"family": family})
        assert dict(robustness.PARAMETER_ROLES[family]) == devices.parameter_roles(device)
        assert robustness.conductance_rows(device) == devices.rows_with_role(device, devices.CONDUCTANCE)
    from kirchhoff_sim.hardware import PARAMETER_ROLES

    assert PARAMETER_ROLES == robustness.PARAMETER_ROLES


def test_dask_runner_is_a_runner():
    assert issubclass(distributed.DaskRunner, executors.Runner)


def test_every_hardware_module_opens_with_one_line_on_what_it_owns():
    for path in sorted(HARDWARE.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{path.name} has no docstring"
        summary = doc.split("\n\n")[0]
        assert "\n" not in summary and summary.endswith("."), f"{path.name}: {summary!r} is not one line"


# ------------------------------------------------------------------ one scale
def test_the_profile_holds_the_scale_and_the_file_keeps_its_keys(tmp_path):
    profile = default_profile()
    assert profile.scale == PhysicalScale.default()
    parameters = profile.to_dict()["parameters"]
    assert parameters["voltage_unit_v"]["value"] == profile.scale.V0
    assert parameters["capacitance_unit_f"]["value"] == profile.scale.C0
    assert parameters["conductance_unit_s"]["value"] == profile.scale.G0
    scaled = profile.replace(scale=PhysicalScale(V0=0.2, C0=50e-15, G0=2e-6))
    assert scaled.scale.time_unit == pytest.approx(25e-9)
    assert scaled.sources["voltage_unit_v"] == "set in code"
    path = scaled.save(tmp_path / "profile.json")
    assert json.loads(path.read_text())["parameters"]["capacitance_unit_f"]["value"] == 50e-15
    with pytest.raises(InputError, match="beside scale"):
        profile.replace(scale=PhysicalScale.default(), voltage_unit_v=0.2)


def test_old_profile_attributes_read_the_scale_with_a_warning():
    profile = default_profile()
    old = {"voltage_unit_v": "V0", "capacitance_unit_f": "C0", "conductance_unit_s": "G0",
           "time_unit_s": "time_unit", "current_unit_a": "current_unit", "energy_unit_j": "energy_unit"}
    for name, unit in old.items():
        with pytest.warns(DeprecationWarning, match=f"profile.scale.{unit}"):
            assert getattr(profile, name) == getattr(profile.scale, unit)
    with pytest.raises(AttributeError):
        profile.colour


def test_the_spec_holds_the_scale_and_serialises_it_as_a_dict():
    scale = PhysicalScale(V0=0.2, C0=50e-15, G0=2e-6)
    spec = MonteCarloSpec(ktc=True, scale=scale)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["scale"] == {"V0": 0.2, "C0": 50e-15, "G0": 2e-6}
    assert MonteCarloSpec.from_dict(data) == spec == MonteCarloSpec(**data)
    assert MonteCarloSpec().scale == PhysicalScale.default()
    assert "C0 = 5e-14 F, V0 = 0.2 V" in spec.describe()
    assert spec.solver == solvers.DEFAULT_SOLVER and spec.solver is not solvers.DEFAULT_SOLVER


def test_old_spec_unit_keywords_fold_into_the_scale_with_a_warning():
    with pytest.warns(DeprecationWarning, match="scale=PhysicalScale"):
        spec = MonteCarloSpec(capacitance_unit=50e-15, voltage_unit=0.2)
    assert spec.scale == PhysicalScale(V0=0.2, C0=50e-15, G0=PhysicalScale.default().G0)
    with pytest.warns(DeprecationWarning):
        old = MonteCarloSpec.from_dict({"conductance_unit": 2e-6, "trials": 3})
    assert old.scale.G0 == 2e-6 and old.trials == 3
    with pytest.warns(DeprecationWarning), pytest.raises(InputError, match="V0"):
        MonteCarloSpec(voltage_unit=0.0)


def test_ktc_noise_of_a_trial_uses_the_spec_scale():
    """Four times C0 halves the kT/C noise σ that perturbation draws from the same stream."""
    net = build_net(2, 2, hidden=2, layers=1, seed=0)
    X = np.zeros((3, 2))
    base = PhysicalScale.default()
    draws = []
    for C0 in (base.C0, 4 * base.C0):
        rng = np.random.default_rng(0)
        _, noisy = perturbation.with_ktc_noise(net, X, rng, scale=PhysicalScale(base.V0, C0, base.G0))
        draws.append(noisy)
    np.testing.assert_allclose(draws[1], draws[0] / 2, rtol=1e-12)
