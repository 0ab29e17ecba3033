"""Training against a technology profile (issue #10): the bounded reparametrisation, the
realisable projection, mismatch and kT/C injection, the V0 choice, resume, and the CLI.

Gradients of every smooth piece are checked against central finite differences of the
same discretisation (a fixed-step solver, so the step grid cannot move); the rounding onto
realisable values is straight-through by design and tested for what it must guarantee.
"""

import json
from dataclasses import replace

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim.cli import main
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.technology import TechnologyProfile, default_profile
from kirchhoff_sim.training.constraints import (RECOMMENDED, HardwareConstraints, choose_voltage_unit, log_window,
                                                log_window_inverse, rail_running_cost)
from kirchhoff_sim.training.datasets import Dataset
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig, _ConstrainedStep, train

SOLVER = {"method": "rk4", "dt": 0.01}


def small_net(device="ShiftedReLU", duration=0.05, seed=0):
    return build_net(2, 2, hidden=2, layers=2, duration=duration, device=device, seed=seed)


def points(n=32, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return Dataset("points", X, y, X[:8], y[:8], n_classes=2)


# ---------------------------------------------------------------- reparametrisation
def test_parameters_stay_bounded_whatever_the_latent():
    hw = HardwareConstraints()
    net = small_net()
    latents = [np.random.default_rng(1).normal(scale=50.0, size=p.shape) for p in net.parameters]
    theta, _ = hw.params_from_latent(net, latents)
    for group, p in zip(net.groups, theta):
        assert np.abs(p[0]).max() <= hw.offset_bound          # shift: a voltage within the rails
        assert np.abs(p[1]).max() <= hw.conductance_bound     # gain: at most g_max
    assert hw.conductance_bound == pytest.approx(100.0) and hw.offset_bound == pytest.approx(9.0)


def test_reparametrisation_slope_matches_finite_differences():
    hw = HardwareConstraints()
    net = small_net()
    u = [np.random.default_rng(2).normal(size=p.shape) for p in net.parameters]
    _, slopes = hw.params_from_latent(net, u)
    h = 1e-6
    for k in range(len(u)):
        up = [x.copy() for x in u]
        down = [x.copy() for x in u]
        up[k] += h
        down[k] -= h
        fd = (hw.params_from_latent(net, up)[0][k] - hw.params_from_latent(net, down)[0][k]) / (2 * h)
        np.testing.assert_allclose(slopes[k], fd, rtol=1e-7, atol=1e-9)


def test_latents_reproduce_the_parameters_they_came_from():
    hw = HardwareConstraints()
    net = small_net()
    theta, _ = hw.params_from_latent(net, hw.latent_from_params(net))
    for p, q in zip(net.parameters, theta):
        np.testing.assert_allclose(q, p, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- a cell model's physical window
#: a diode cell model (kirchhoff_sim.cells.diode_device): i_s within the cell's widths, r_s none
CELL_DIODE = ks.devices.Diode(thermal_voltage=0.584, default_i_s=1e-5, i_s_min=1.3e-6, i_s_max=8.9e-5)


@pytest.mark.parametrize("reparametrisation", ["tanh", "log_window"])
def test_a_cell_diodes_saturation_current_stays_in_its_window_and_its_slope_is_exact(reparametrisation):
    hw = HardwareConstraints(reparametrisation=reparametrisation)
    net = small_net(device=CELL_DIODE)
    rng = np.random.default_rng(3)
    far = [rng.normal(scale=30.0, size=p.shape) for p in net.parameters]      # whatever the optimiser does
    for p in hw.params_from_latent(net, far)[0]:
        # the closed window (tanh reaches ±1 in floating point far out), which the mapping accepts
        assert (p[0] >= CELL_DIODE.i_s_min * (1 - 1e-12)).all() and (p[0] <= CELL_DIODE.i_s_max * (1 + 1e-12)).all()
        assert (p[1] == 0).all()                                               # no series resistance
    u = [rng.normal(size=p.shape) for p in net.parameters]
    theta, slopes = hw.params_from_latent(net, u)
    h = 1e-6
    for k in range(len(u)):
        up, down = [x.copy() for x in u], [x.copy() for x in u]
        up[k] += h
        down[k] -= h
        fd = (hw.params_from_latent(net, up)[0][k] - hw.params_from_latent(net, down)[0][k]) / (2 * h)
        np.testing.assert_allclose(slopes[k], fd, rtol=1e-6, atol=1e-18)
        assert (slopes[k][1] == 0).all()
        # a step is relative: ln i_s moves by at most ln(i_s_max/i_s_min)/2 per unit of latent
        assert (slopes[k][0] / theta[k][0] <= 0.5 * np.log(CELL_DIODE.i_s_max / CELL_DIODE.i_s_min) + 1e-12).all()
    back, _ = hw.params_from_latent(net, hw.latent_from_params(net))
    for p, q in zip(net.parameters, back):
        np.testing.assert_allclose(q, p, rtol=1e-12)
    assert ks.devices.from_spec(CELL_DIODE.spec()) == CELL_DIODE
    assert "i_s_min" not in ks.devices.Diode().spec()                          # older model files unchanged


# ---------------------------------------------------------------- the log-window reparametrisation
LOG_WINDOW = {"reparametrisation": "log_window"}


def on_latents(net, hw, seed=0):
    """Latents of ``net``'s shape well away from the off zone's edges (|u| ≥ d + 0.1)."""
    rng = np.random.default_rng(seed)
    return [np.where(rng.random(p.shape) < 0.5, -1.0, 1.0) * (hw.dead_zone + rng.uniform(0.1, 6.0, p.shape))
            for p in net.parameters]


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "positive"])
def test_log_window_is_off_in_its_dead_zone_and_inside_the_window_elsewhere(signed):
    floor, ceiling, d = 1.0, 100.0, 0.5
    u = np.linspace(-30.0, 30.0, 601)
    theta, slope = log_window(u, floor, ceiling, d, signed=signed)
    on = (np.abs(u) if signed else u) >= d
    assert (theta[~on] == 0).all() and (slope[~on] == floor / d).all()     # off: straight-through secant
    assert (np.abs(theta[on]) >= floor).all() and (np.abs(theta[on]) < ceiling).all()
    assert (np.sign(theta[on]) == (np.sign(u[on]) if signed else 1)).all()
    np.testing.assert_allclose(log_window_inverse(theta[on], floor, ceiling, d, signed=signed), u[on], rtol=1e-10)
    # below the floor a value is off, on the straight-through line; with signed=False so is a negative one
    below = np.array([0.0, 0.3, -0.3, 0.99])
    back = log_window_inverse(below, floor, ceiling, d, signed=signed)
    assert (log_window(back, floor, ceiling, d, signed=signed)[0] == 0).all()
    np.testing.assert_allclose(back, d * below / floor)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "positive"])
def test_log_window_slope_matches_finite_differences(signed):
    u = np.concatenate([np.linspace(0.6, 12.0, 40), -np.linspace(0.6, 12.0, 40) if signed else []])
    _, slope = log_window(u, 1.0, 100.0, 0.5, signed=signed)
    h = 1e-6
    fd = (log_window(u + h, 1.0, 100.0, 0.5, signed=signed)[0] - log_window(u - h, 1.0, 100.0, 0.5, signed=signed)[0]) / (2 * h)
    np.testing.assert_allclose(slope, fd, rtol=1e-6)
    # a latent step moves the log-magnitude by at most the step (a relative, not absolute, change)
    theta = log_window(u, 1.0, 100.0, 0.5, signed=signed)[0]
    assert (slope / np.abs(theta) <= 1.0 + 1e-12).all()


def test_log_window_reparametrisation_slope_matches_finite_differences():
    hw = HardwareConstraints(**LOG_WINDOW)
    net = small_net()
    u = on_latents(net, hw)
    _, slopes = hw.params_from_latent(net, u)
    h = 1e-6
    for k in range(len(u)):
        up, down = [x.copy() for x in u], [x.copy() for x in u]
        up[k] += h
        down[k] -= h
        fd = (hw.params_from_latent(net, up)[0][k] - hw.params_from_latent(net, down)[0][k]) / (2 * h)
        np.testing.assert_allclose(slopes[k], fd, rtol=1e-6)
    theta, _ = hw.params_from_latent(net, u)
    for p in theta:                                     # offsets within the rails, gains in the window
        assert np.abs(p[0]).max() < hw.offset_bound
        assert (np.abs(p[1]) >= hw.conductance_floor).all() and (np.abs(p[1]) < hw.conductance_bound).all()
    for p, q in zip(hw.params_from_latent(net, hw.latent_from_params(net.with_parameters(theta)))[0], theta):
        np.testing.assert_allclose(p, q, rtol=1e-10)


@pytest.mark.parametrize("gain_sign", ["any", "positive"])
@pytest.mark.parametrize("init_gain", [None, 5.0], ids=["floor", "at-5"])
def test_on_initialisation_switches_every_device_on(gain_sign, init_gain):
    hw = HardwareConstraints(**LOG_WINDOW, init="on", gain_sign=gain_sign, init_gain=init_gain)
    net = small_net()
    theta, _ = hw.params_from_latent(net, hw.initial_latents(net))
    start = hw.conductance_floor if init_gain is None else init_gain
    for p, p0 in zip(theta, net.parameters):
        gain = p[1]
        assert (np.abs(gain) >= start * (1 - 1e-12)).all() and (np.abs(gain) < 3 * start).all()
        assert len(np.unique(gain)) > 1                # the devices start unequal
        if gain_sign == "any":
            np.testing.assert_array_equal(np.sign(gain), np.where(p0[1] < 0, -1.0, 1.0))
        else:
            assert (gain > 0).all()
        np.testing.assert_allclose(p[0], p0[0], rtol=1e-10)   # offsets start where the net has them


def test_realisable_values_are_zero_or_on_the_grid_inside_the_window():
    hw = HardwareConstraints()
    net = small_net()
    rng = np.random.default_rng(3)
    params = [rng.uniform(-120, 120, size=p.shape) * rng.choice([1e-3, 1e-2, 1, 10], size=p.shape)
              for p in net.parameters]
    projected = hw.realisable(net, params)
    for p in projected:
        gain = np.abs(p[1])
        on = gain > 0
        assert (gain[on] >= hw.conductance_floor).all() and (gain <= hw.conductance_bound).all()
        np.testing.assert_allclose(gain / hw.conductance_step, np.rint(gain / hw.conductance_step), atol=1e-9)
        assert (np.abs(p[0]) <= hw.offset_bound + 1e-12).all()
    # a projection: applying it twice changes nothing; signs never flip
    again = hw.realisable(net, projected)
    for p, q, r in zip(projected, again, params):
        np.testing.assert_array_equal(p, q)
        assert (np.sign(p[1]) * np.sign(r[1]) >= 0).all()
    # the dead zone: below g_min/2 the device is off, between g_min/2 and g_min it is g_min-ish
    probe = [np.array([[0.0, 0.0, 0.0], [0.4, 0.6, -0.6]]) for _ in net.parameters]
    probe_net = ks.KirchhoffNet([ks.Layer([(1, 2), (2, 3), (3, 0)], device=ks.ShiftedReLU(),
                                          params=probe[0])])
    out = hw.realisable(probe_net, probe[:1])[0][1]
    assert out[0] == 0 and out[1] >= hw.conductance_floor and out[2] <= -hw.conductance_floor


def test_without_quantisation_the_projection_is_the_identity():
    hw = HardwareConstraints(quantise=False)
    net = small_net()
    for p, q in zip(net.parameters, hw.realisable(net, net.parameters)):
        np.testing.assert_array_equal(p, q)


# ---------------------------------------------------------------- the gradient of a constrained step
def _step_loss(stepper, x, y, epoch, batch):
    loss, grads, _ = stepper.gradient(x, y, epoch, batch)
    return loss, grads


@pytest.mark.parametrize("options", [{}, {"mismatch_sigma": 0.1}, {"sparsity": 1e-3},
                                     {"mismatch_sigma": 0.05, "ktc": True},
                                     {**LOG_WINDOW, "mismatch_sigma": 0.1, "sparsity": 1e-3},
                                     {**LOG_WINDOW, "gain_sign": "positive", "mismatch_sigma": 0.1},
                                     {"rail_weight": 10.0, "mismatch_sigma": 0.1, "narrow_rails": True}],
                         ids=["bounded", "mismatch", "sparsity", "mismatch+ktc", "log-window",
                              "log-window-positive", "rail-running-cost"])
def test_constrained_gradient_matches_finite_differences(options):
    # quantise=False: the projection is straight-through by design; everything else is exact
    options = dict(options)
    if options.pop("narrow_rails", False):
        # rails at ±0.05 V = ±0.5 V0: the trajectory crosses them, so the running cost is active
        options["profile"] = default_profile().replace(rail_low_v=-0.05, rail_high_v=0.05)
    hw = HardwareConstraints(quantise=False, **options)
    net = small_net()
    config = TrainConfig(solver=SOLVER, constraints=hw, epochs=1)
    stepper = _ConstrainedStep(net, config, None, hw)
    if hw.reparametrisation == "log_window":
        # devices on (the off zone's slope is straight-through by design); gains ~1-3 at
        # duration 0.05, so that the loss is a smooth, not saturated, function of them
        rng = np.random.default_rng(7)
        for u in stepper.variables:
            u[1] = hw.dead_zone + rng.uniform(0.2, 1.0, u[1].shape)
            if hw.signed:
                u[1] *= np.where(rng.random(u[1].shape) < 0.5, -1.0, 1.0)
    data = points(8)
    x, y = data.X_train, data.y_train
    _, grads = _step_loss(stepper, x, y, 0, 0)
    if hw.rail_weight:
        without = _ConstrainedStep(net, TrainConfig(solver=SOLVER, constraints=replace(hw, rail_weight=0.0), epochs=1),
                                   None, replace(hw, rail_weight=0.0))
        without.variables = [u.copy() for u in stepper.variables]
        assert _step_loss(stepper, x, y, 0, 0)[0] > _step_loss(without, x, y, 0, 0)[0]   # the cost is on
    rng = np.random.default_rng(4)
    h = 1e-6
    for _ in range(6):
        k = rng.integers(len(grads))
        index = tuple(rng.integers(n) for n in grads[k].shape)
        saved = stepper.variables[k][index]
        stepper.variables[k][index] = saved + h
        up, _ = _step_loss(stepper, x, y, 0, 0)
        stepper.variables[k][index] = saved - h
        down, _ = _step_loss(stepper, x, y, 0, 0)
        stepper.variables[k][index] = saved
        fd = (up - down) / (2 * h)
        assert grads[k][index] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_noise_is_seeded_per_step_and_per_source():
    hw = HardwareConstraints(mismatch_sigma=0.1, ktc=True)
    net = small_net()
    a = hw.mismatch_factors(net, hw.step_generator(0, 2, 3, "mismatch"))
    b = hw.mismatch_factors(net, hw.step_generator(0, 2, 3, "mismatch"))
    c = hw.mismatch_factors(net, hw.step_generator(0, 2, 4, "mismatch"))
    for p, q, r in zip(a, b, c):
        np.testing.assert_array_equal(p, q)
        assert not np.array_equal(p, r)
        np.testing.assert_array_equal(p[0], 1.0)       # the shift is an offset: no mismatch
    noise = hw.initial_noise(net, hw.step_generator(0, 2, 3, "ktc"), 5)
    assert noise.shape == (5, net.num_nodes)
    assert 0 < noise.std() < 0.01                      # ~2e-3 normalised at 100 fF, V0 = 0.1 V


# ---------------------------------------------------------------- training runs
@pytest.mark.parametrize("options", [{"mismatch_sigma": 0.1, "ktc": True, "sparsity": 1e-4},
                                     {**RECOMMENDED, "ktc": True, "sparsity": 1e-4}],
                         ids=["tanh", "recommended"])
def test_constrained_training_keeps_the_net_realisable_and_resumes_bit_for_bit(options, tmp_path, monkeypatch):
    hw = HardwareConstraints(**options)
    data = points(48)
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-3, solver=SOLVER, constraints=hw,
                         validation_fraction=0.0)
    whole = small_net()
    train(whole, data, config, checkpoint=tmp_path / "whole.npz", progress=False, log=None)
    for p, q in zip(whole.parameters, hw.realisable(whole, whole.parameters)):
        np.testing.assert_array_equal(p, q)            # the trained net is exactly realisable

    # the same run killed after its first checkpoint (epoch 1), then resumed to the end
    import kirchhoff_sim.training.trainer as trainer

    class Stop(Exception):
        pass

    real = trainer.save_checkpoint

    def stop_after_first(*args, **kwargs):
        real(*args, **kwargs)
        raise Stop

    partial = tmp_path / "partial.npz"
    monkeypatch.setattr(trainer, "save_checkpoint", stop_after_first)
    with pytest.raises(Stop):
        train(small_net(), data, config, checkpoint=partial, progress=False, log=None)
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    assert read_model_file(partial)[1]["training"]["epochs_done"] == 1
    resumed = small_net()
    train(resumed, data, config, checkpoint=partial, resume=True, progress=False, log=None)
    np.testing.assert_array_equal(resumed.get_flat_params(), whole.get_flat_params())
    a, b = read_model_file(partial)[2], read_model_file(tmp_path / "whole.npz")[2]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_a_family_the_profile_cannot_build_is_named():
    passive = default_profile().replace(device_families="passive")
    hw = HardwareConstraints(profile=passive)
    with pytest.raises(InputError, match=r"cannot build the device families \['ShiftedReLU'\].*layer 0 group 0"):
        train(small_net(), points(), TrainConfig(epochs=1, constraints=hw), progress=False, log=None)


def test_a_passive_net_trains_against_the_passive_profile():
    passive = default_profile().replace(device_families="passive")
    hw = HardwareConstraints(profile=passive)
    net = small_net(device="Conductance")
    train(net, points(), TrainConfig(epochs=1, solver=SOLVER, constraints=hw, lr=1e-2), progress=False, log=None)
    g = np.concatenate([p.ravel() for p in net.parameters])
    assert ((g == 0) | (np.abs(g) >= hw.conductance_floor)).all()


@pytest.mark.parametrize("change, match", [
    ({"conductance_min_s": 2e-4}, "conductance_min_s"),
    ({"conductance_min_s": 1e-4}, "conductance_min_s"),
    ({"rail_low_v": 0.5}, "rail_low_v"),
    ({"rail_high_v": -0.5}, "rail_high_v"),
    ({"precision_bits": 0}, "precision_bits"),
    ({"device_families": []}, "device_families"),
    ({"device_families": ["Transistor"]}, "device_families"),
], ids=["window-inverted", "window-empty", "rail-low-positive", "rail-high-negative", "bits-zero",
        "no-families", "unknown-family"])
def test_a_self_contradictory_profile_is_refused_with_the_field_named(change, match):
    with pytest.raises(InputError, match=match):
        default_profile().replace(**change)


def test_constraints_refuse_bad_options():
    for kwargs, match in [({"mismatch_sigma": -0.1}, "mismatch_sigma"), ({"rail_margin": 0}, "rail_margin"),
                          ({"quantise": "yes"}, "quantise"), ({"profile": "default"}, "profile"),
                          ({"reparametrisation": "sigmoid"}, "reparametrisation"),
                          ({**LOG_WINDOW, "dead_zone": 0}, "dead_zone"),
                          ({**LOG_WINDOW, "gain_sign": "negative"}, "gain_sign"),
                          ({**LOG_WINDOW, "init": "random"}, "init"),
                          ({"init": "on"}, "log_window"), ({**LOG_WINDOW, "init_gain": 0.5}, "init_gain"),
                          ({**LOG_WINDOW, "init_gain": 100.0}, "init_gain"),
                          ({**LOG_WINDOW, "init_gain": 2.0}, "init_gain")]:
        with pytest.raises(InputError, match=match):
            HardwareConstraints(**kwargs)


def test_constraints_round_trip_through_the_training_config():
    hw = HardwareConstraints(mismatch_sigma=0.07, ktc=True)
    config = TrainConfig(constraints=hw)
    assert json.loads(json.dumps(config.constraints)) == config.constraints
    assert config.hardware() == hw


# ---------------------------------------------------------------- the voltage unit
def test_a_homogeneous_net_gets_the_largest_v0_that_fits():
    profile = default_profile()
    net = small_net()
    v0, note = choose_voltage_unit(net, trajectory_max_voltage=30.0, max_current=1.0, profile=profile)
    assert v0 == pytest.approx(0.9 * 0.9 / 30.0)            # the rails bind
    assert "rails" in note
    v0, note = choose_voltage_unit(net, trajectory_max_voltage=1.0, max_current=500.0, profile=profile)
    assert v0 == pytest.approx(0.9 * 1e-5 / (1e-6 * 500.0))   # the current limit binds
    v0, _ = choose_voltage_unit(net, 1.0, 1.0, profile)
    assert v0 == profile.scale.V0                           # already fits: never raised


def test_the_v0_choice_refuses_a_net_that_is_not_homogeneous():
    with pytest.raises(InputError, match="not positively homogeneous"):
        choose_voltage_unit(small_net(device="AffineActivation"), 1.0, 1.0, default_profile())


def test_a_homogeneous_net_scales_exactly_with_its_inputs_and_offsets():
    # the property the V0 choice rests on: v(αx; αb) = α v(x; b)
    net = small_net()
    x = points(4).X_train
    alpha = 0.3
    scaled = net.with_parameters([np.vstack([alpha * p[0], p[1]]) for p in net.parameters])
    solver = ks.solvers.make_solver(**SOLVER)
    np.testing.assert_allclose(ks.simulate(scaled, alpha * x, solver=solver).final_state,
                               alpha * ks.simulate(net, x, solver=solver).final_state, rtol=1e-12, atol=1e-14)


def test_rail_running_cost_value_and_gradient():
    cost = rail_running_cost(-1.0, 1.0, 0.5)
    V = np.array([[0.0, 0.0], [1.5, -0.2], [-3.0, 0.9]])
    value, grad = cost(V)
    assert value == pytest.approx(0.5 * (0.25 + 4.0))
    np.testing.assert_allclose(grad, [[0, 0], [0.5, 0], [-2.0, 0]])


# ---------------------------------------------------------------- the command line
def test_cli_train_against_the_default_profile_reports_feasibility(tmp_path, capsys):
    data = tmp_path / "points.npz"
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 2))
    np.savez(data, X=X, y=(X[:, 0] > 0).astype(int))
    out = tmp_path / "m.npz"
    code = main(["train", "--data", str(data), "--epochs", "2", "--hidden", "2", "--batch-size", "16",
                 "--no-progress", "--profile", "default", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "feasibility on" in stdout and "V0" in stdout
    _, meta, extras = read_model_file(out)
    assert meta["feasibility"]["counts"].keys() == {"info", "warning", "error"}
    assert "profile" in meta["technology"] and any(k.startswith("latent/") for k in extras)
    assert meta["training"]["config"]["constraints"]["mismatch_sigma"] == 0.1
    checks = {f["check"] for f in meta["feasibility"]["findings"]}
    assert not checks & {"conductance_range", "precision_floor"}
    code = main(["evaluate", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and "feasibility" in result
    assert result["feasibility"]["V0"] == meta["technology"]["profile"]["parameters"]["voltage_unit_v"]["value"]


# ---------------------------------------------------------------- the estimators
def test_a_classifier_trains_against_a_profile_and_reports_its_fitted_voltage_unit():
    from sklearn.base import clone
    from sklearn.datasets import make_moons

    from kirchhoff_sim.devices import CONDUCTANCE, rows_with_role
    from kirchhoff_sim.training.estimators import KirchhoffClassifier

    X, y = make_moons(200, noise=0.1, random_state=0)
    clf = KirchhoffClassifier(hidden=4, layers=2, duration=0.05, epochs=6, batch_size=16, lr=3e-2,
                              method="rk4", dt=0.005, profile="default", constraints={"mismatch_sigma": 0.05})
    assert clone(clf).get_params()["constraints"] == {"mismatch_sigma": 0.05}
    clf.fit(X, y)
    assert clf.score(X, y) > 0.8
    hw = HardwareConstraints()
    for group in clf.net_.groups:
        g = np.abs(group.params[rows_with_role(group.device, CONDUCTANCE)])
        assert ((g == 0) | ((g >= hw.conductance_floor) & (g <= hw.conductance_bound))).all()
    assert clf.profile_.scale.V0 <= default_profile().scale.V0 and "V0" in clf.voltage_unit_note_
    unconstrained = KirchhoffClassifier(hidden=4, layers=2, epochs=1, method="rk4", dt=0.05).fit(X, y)
    assert not hasattr(unconstrained, "profile_")
    clf.set_params(profile=None, constraints=None, epochs=1).fit(X, y)   # a refit without a profile has none
    assert not hasattr(clf, "profile_") and not hasattr(clf, "voltage_unit_note_")


@pytest.mark.parametrize("floor, ceiling, dead_zone, match", [
    (0.0, 100.0, 0.5, "floor"), (10.0, 1.0, 0.5, "below its ceiling"), (1.0, 100.0, 0.0, "dead_zone"),
    (1.0, float("nan"), 0.5, "ceiling")])
def test_log_window_refuses_a_bad_window_by_name(floor, ceiling, dead_zone, match):
    for function in (log_window, log_window_inverse):
        with pytest.raises(InputError, match=match):
            function(np.ones(3), floor, ceiling, dead_zone)


@pytest.mark.parametrize("kwargs, match", [
    ({"constraints": {"mismatch_sigma": 0.1}}, "need a profile"),
    ({"profile": 3}, "profile must be"),
    ({"profile": "no/such/profile.json"}, "does not exist"),
    ({"profile": "default", "constraints": {"mismatch_sigma": 2.0}}, "mismatch_sigma"),
    ({"profile": "default", "constraints": {"no_such_option": 1}}, "no_such_option"),
    ({"profile": "default", "constraints": [("mismatch_sigma", 0.1)]}, "constraints must be a dict"),
    ({"profile": b"default"}, "profile must be"),
    ({"profile": "default", "constraints": {1: 2, "dead_zone": 0.5}}, "unknown option"),
    ({"profile": "default", "constraints": {"profile": "default"}}, "profile="),
])
def test_a_classifier_refuses_bad_profile_options_at_fit_by_name(kwargs, match):
    from kirchhoff_sim.training.estimators import KirchhoffClassifier

    X, y = points().X_train, points().y_train
    with pytest.raises(InputError, match=match):
        KirchhoffClassifier(epochs=1, **kwargs).fit(X, y)


@pytest.mark.parametrize("options", [{"reparametrisation": "tanh"}, {**LOG_WINDOW, "init": "on"}],
                         ids=["tanh", "log_window"])
def test_on_a_passive_profile_every_conductance_trains_non_negative_by_default(options):
    # a passive technology cannot realise a negative conductance (an active cell's slope)
    profile = default_profile().replace(device_families="passive")
    hw = HardwareConstraints(profile=profile, **options)
    assert hw.gain_sign == "auto" and not hw.signed
    assert HardwareConstraints().signed                       # the default profile builds active cells
    net = small_net(device="Conductance")
    config = TrainConfig(epochs=3, batch_size=8, lr=0.05, solver=SOLVER, validation_fraction=0.0,
                         constraints=hw)
    train(net, points(), config, progress=False, log=None)
    gains = np.concatenate([group.params.ravel() for group in net.groups])
    assert (gains >= 0).all() and (gains > 0).any()
