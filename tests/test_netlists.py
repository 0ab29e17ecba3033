"""The example netlists in netlists/: current with the compiler, and what ngspice makes of
them — including the digits classifier's predictions on 50 test images."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from kirchhoff_sim import Dopri5, cli, simulate
from kirchhoff_sim.training.datasets import dataset_of_model
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.spice import PhysicalScale, SpiceOptions, run_netlist, validate
from kirchhoff_sim.technology import profile_of_model

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("regenerate_netlists", ROOT / "scripts" / "regenerate_netlists.py")
regenerate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = regenerate          # dataclasses look their module up there
_spec.loader.exec_module(regenerate)
EXAMPLES = {example.name: example for example in regenerate.EXAMPLES}

TIGHT_RTOL = 1e-4        # the acceptance bound at the tight default options (moons)
# the digits netlist and the 50-image check run at reltol 1e-3 with steps up to a tenth of
# a layer (7 s per image instead of ~3 min); ngspice then agrees to 5e-3..7e-3 of the swing
LOOSE_RTOL = 2e-2
LOOSE_OPTIONS = SpiceOptions(reltol=1e-3, max_step_fraction=0.1)
DIGITS_IMAGES = 50
REFERENCE = Dopri5(rtol=1e-9, atol=1e-11)


def test_the_examples_are_moons_and_digits_classifiers_with_committed_models():
    # unconstrained, and trained against the default technology profile (issue #10)
    assert set(EXAMPLES) == {"moons", "digits", "moons_constrained", "digits_constrained", "digits_passive"}
    for example in EXAMPLES.values():
        assert example.model.is_file() and example.netlist.is_file()
    for name in ("digits", "digits_constrained", "digits_passive"):
        digits = EXAMPLES[name].export_args()
        assert float(digits[digits.index("--reltol") + 1]) == LOOSE_OPTIONS.reltol
        assert float(digits[digits.index("--max-step-fraction") + 1]) == LOOSE_OPTIONS.max_step_fraction


@pytest.mark.parametrize("name", ["moons_constrained", "digits_constrained"])
def test_a_constrained_example_is_exported_at_its_fitted_voltage_unit_within_the_rails(name):
    example = EXAMPLES[name]
    net, meta, _ = read_model_file(example.model)
    profile = profile_of_model(meta)
    assert profile.scale.V0 < PhysicalScale.default().V0           # fitted, not the default
    assert f"V0 = {profile.scale.V0!r} V" in example.netlist.read_text()
    data = dataset_of_model(meta)
    along = simulate(net, data.X_test[:100], solver=Dopri5(rtol=1e-6, atol=1e-8),
                     save_at=np.linspace(0.0, net.T, 101)).node_voltages
    peak = profile.scale.V0 * np.abs(along).max()       # the whole trajectory, the report's 100 samples
    assert peak <= min(abs(profile.rail_low_v), profile.rail_high_v)


@pytest.mark.parametrize("task", sorted(EXAMPLES))
def test_committed_netlist_is_what_the_compiler_writes_today(task, tmp_path):
    example = EXAMPLES[task]
    fresh = tmp_path / example.netlist.name
    assert cli.main(example.export_args(fresh)) == 0
    assert fresh.read_bytes() == example.netlist.read_bytes(), (
        f"netlists/{example.netlist.name} is stale: run '.venv/bin/python scripts/regenerate_netlists.py' "
        f"(or 'make netlists') and review the change")


@pytest.mark.parametrize("task", sorted(EXAMPLES))
def test_committed_netlist_runs_in_ngspice_and_computes_what_the_solver_says(task):
    example = EXAMPLES[task]
    net, meta, _ = read_model_file(example.model)
    data = dataset_of_model(meta)
    x = data.X_test[example.sample]
    scale = profile_of_model(meta).scale
    t_grid = np.linspace(0.0, net.T, 201)
    ours = scale.V0 * simulate(net, x[None], solver=REFERENCE, save_at=t_grid).node_voltages[:, 0, :]
    swing = ours.max() - ours.min()

    result = run_netlist(example.netlist.read_text(), backend="subprocess")
    assert result.time[-1] == pytest.approx(net.T * scale.time_unit, rel=1e-9)
    spice_final = np.array([result.voltage(f"n{node}")[-1] for node in net.readout])
    ours_final = ours[-1, net.readout - 1]
    bound = TIGHT_RTOL if example.export_options == () else LOOSE_RTOL
    assert np.abs(spice_final - ours_final).max() <= bound * swing
    assert np.argmax(spice_final) == np.argmax(ours_final)
    if example.name != "digits_passive":          # the 64 % passive net gets sample 0 wrong
        assert np.argmax(ours_final) == data.y_test[example.sample]


@pytest.mark.slow
def test_digits_classifier_predicts_the_same_classes_in_ngspice_on_50_test_images():
    example = EXAMPLES["digits"]
    net, meta, _ = read_model_file(example.model)
    data = dataset_of_model(meta)
    X, y = data.X_test[:DIGITS_IMAGES], data.y_test[:DIGITS_IMAGES]
    report = validate(net, X, options=LOOSE_OPTIONS, workers=2)
    assert report.num_samples == DIGITS_IMAGES
    assert report.all_classes_agree, [s.index for s in report.samples if not s.class_agrees]
    assert report.max_final_rel_error <= LOOSE_RTOL, str(report)
    # a real classifier, not a constant answer: ngspice's classes are mostly the labels
    spice_classes = np.array([s.spice_class for s in report.samples])
    assert (spice_classes == y).mean() >= 0.9
    assert len(np.unique(spice_classes)) == 10


def test_export_writes_the_requested_ngspice_options_and_refuses_bad_ones(tmp_path, capsys):
    text = EXAMPLES["digits"].netlist.read_text()
    options = next(line for line in text.splitlines() if line.startswith(".options"))
    assert " reltol=0.001 " in options
    tran = next(line for line in text.splitlines() if line.startswith(".tran")).split()
    assert float(tran[4]) == pytest.approx(0.1 * 1.0 * PhysicalScale.default().time_unit)   # a tenth of a layer
    out = tmp_path / "bad.cir"
    assert cli.main(["export", str(EXAMPLES["moons"].model), "-o", str(out), "--reltol", "2"]) == 2
    assert "reltol" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("name", ["moons_constrained", "digits_constrained", "digits_passive"])
def test_a_committed_constrained_model_records_the_options_todays_command_trains_with(name):
    # a stale model would refuse --resume ("training config differs") and not be reproducible
    from kirchhoff_sim.training.constraints import RECOMMENDED, HardwareConstraints

    net, meta, _ = read_model_file(EXAMPLES[name].model)
    recorded = dict(meta["training"]["config"]["constraints"])
    today = HardwareConstraints.from_dict(recorded).to_dict()       # the profile it names, today's defaults
    fresh = HardwareConstraints(profile=HardwareConstraints.from_dict(recorded).profile, **RECOMMENDED).to_dict()
    assert recorded == today == fresh
