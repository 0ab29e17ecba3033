"""KINN cells and cascades (issue #11): exact update, transient solvers, gradients.

The closed forms: one stage from ``v0`` with a held drive ``I`` is
``v(t) = v0·e^{−λt} + (I/G)(1 − e^{−λt})``, ``λ = G/C``. A cascade of ``n`` equal stages
(``C``, ``G`` and inter-stage transconductance ``K`` the same everywhere) from an impulse
``v_0(0) = v0`` has ``v_j(t) = v0·(Kt/C)^j/j!·e^{−λt}``, and its step response to ``I``
held on stage 0 is ``v_j(t) = (I/G)(K/G)^j·P(j+1, λt)`` with ``P`` the regularised lower
incomplete gamma function (the Erlang distribution's CDF).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from scipy import special

from kirchhoff_sim import kinn
from kirchhoff_sim.errors import (InputError, NonFiniteStateError, ParameterError, ResourceLimitError,
                                  StiffnessError, TrainingDivergedError)
from kirchhoff_sim.sensitivity import replay_solver
from kirchhoff_sim.solvers import BDF2, RK4, Dopri5, Euler

EXACT_RTOL = 1e-13          # the matrix exponential against a closed form
SOLVER_ATOL = 1e-9          # Dopri5 at rtol 1e-12 against the same closed form
GRADIENT_RTOL = 1e-6        # the package's acceptance criterion for adjoints


def tight():
    return Dopri5(rtol=1e-12, atol=1e-14)


def cascade(stages, width=1, c=1.0, g=1.0, k=1.0, drive=0.0, duration=1.0):
    """A net whose drive is the constant φ(b) = tanh(b): W = 0, so every window holds it."""
    net = kinn.KinnNet(width, stages, width, width, durations=(duration,))
    net.W[:] = 0.0
    net.b[:] = np.arctanh(drive)
    net.log_c[:] = np.log(c)
    net.log_g[:] = np.log(g)
    net.k[:] = k
    return net


def rich_net(seed=1, width=6, stages=3, inputs=4, outputs=2, durations=(1.0, 0.7)):
    """Every parameter away from its initial value, so no gradient term vanishes."""
    net = kinn.KinnNet(width, stages, inputs, outputs, durations=durations, seed=seed)
    rng = np.random.default_rng(seed)
    net.b[:] = rng.normal(size=net.b.shape)
    net.k[:] = rng.uniform(0.5, 1.2, net.k.shape)
    net.log_c[:] = rng.normal(0, 0.3, net.log_c.shape)
    net.log_g[:] = rng.normal(0, 0.3, net.log_g.shape)
    net.alpha[:] = rng.normal(size=net.alpha.shape)
    return net


def stages_at(net, final_state, stage):
    return net.stage_voltages(final_state)[stage]


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("c, g, v0, drive, t", [(1.0, 1.0, 0.0, 0.5, 1.0), (0.3, 2.5, 0.8, -0.4, 0.9),
                                                (2.0, 0.1, -1.2, 0.9, 3.0)])
def test_one_stage_step_and_impulse_response(c, g, v0, drive, t):
    net = cascade(1, c=c, g=g, drive=drive, duration=t)
    lam = g / c
    closed = v0 * math.exp(-lam * t) + drive / g * (1 - math.exp(-lam * t))
    # the KINN update v⁺ = a·v + (1 − a)·I/G, a = e^{−GΔ/C}
    a = math.exp(-g * t / c)
    assert a * v0 + (1 - a) * drive / g == pytest.approx(closed, rel=EXACT_RTOL)
    v = kinn.exact_update(net, np.full((1, 1, 1), v0), np.full((1, 1), drive), t)
    assert v[0, 0, 0] == pytest.approx(closed, rel=EXACT_RTOL, abs=1e-16)
    assert kinn.exponential_euler(net, [[v0]])[0, 0] == pytest.approx(closed, rel=EXACT_RTOL, abs=1e-16)
    solved = kinn.simulate(net, [[v0]], solver=tight()).final_state[0, 0]
    assert abs(solved - closed) <= SOLVER_ATOL


@pytest.mark.parametrize("stages", [2, 3, 5])
def test_equal_stage_cascade_impulse_response_is_erlang(stages):
    c, g, k, t, v0 = 0.5, 1.5, 2.0, 1.3, 0.7
    net = cascade(stages, c=c, g=g, k=k, duration=t)
    lam = g / c
    closed = np.array([v0 * (k * t / c) ** j / math.factorial(j) * math.exp(-lam * t) for j in range(stages)])
    exact = kinn.exponential_euler(net, [[v0]])[0]
    np.testing.assert_allclose(exact, closed, rtol=EXACT_RTOL, atol=1e-16)
    solved = kinn.simulate(net, [[v0]], solver=tight()).final_state[0]
    np.testing.assert_allclose(solved, closed, rtol=0, atol=SOLVER_ATOL)


@pytest.mark.parametrize("stages", [1, 2, 4])
def test_equal_stage_cascade_step_response_is_the_incomplete_gamma(stages):
    c, g, k, t, drive = 1.0, 0.8, 1.1, 2.0, 0.6
    net = cascade(stages, c=c, g=g, k=k, drive=drive, duration=t)
    lam = g / c
    closed = np.array([drive / g * (k / g) ** j * special.gammainc(j + 1, lam * t) for j in range(stages)])
    exact = kinn.exponential_euler(net, [[0.0]])[0]
    np.testing.assert_allclose(exact, closed, rtol=EXACT_RTOL, atol=1e-16)
    solved = kinn.simulate(net, [[0.0]], solver=tight()).final_state[0]
    np.testing.assert_allclose(solved, closed, rtol=0, atol=SOLVER_ATOL)


def test_distinct_stages_exact_update_equals_the_transient_solver():
    net = rich_net()
    net.W[:] = 0.0                                  # held drive φ(b): the update is exact
    x = np.random.default_rng(2).normal(size=(7, 4))
    exact = kinn.exponential_euler(net, x)
    solved = kinn.simulate(net, x, solver=tight()).final_state
    np.testing.assert_allclose(exact, solved, rtol=0, atol=SOLVER_ATOL)
    # and k steps of Δ/k are one step of Δ (a semigroup), to round-off
    np.testing.assert_allclose(kinn.exponential_euler(net, x, steps=16), exact, rtol=0, atol=1e-13)


def test_the_exact_update_is_stable_for_any_step():
    net = rich_net()
    net.log_g[:] = 3.0                               # fast cells: G/C ≈ 20 and more
    v = np.random.default_rng(3).normal(size=(net.stages, net.width, 2))
    drive = np.ones((net.width, 2))
    huge = kinn.exact_update(net, v, drive, 1e6)
    # every state forgets its start and settles at the cascade's steady state
    rhs = np.zeros((net.width, net.stages, 1))
    rhs[:, 0, 0] = -1.0 / net.capacitance[0]                         # A v = −e0·I/C0 per channel
    steady = np.linalg.solve(kinn.cascade_matrices(net), rhs)[:, :, 0]
    np.testing.assert_allclose(huge[:, :, 0], steady.T, rtol=1e-12)
    assert np.all(np.isfinite(huge))


def test_with_feedback_the_update_is_exponential_euler_of_order_one():
    net = rich_net()
    x = np.random.default_rng(4).normal(size=(5, 4))
    reference = kinn.simulate(net, x, solver=tight()).final_state
    errors = [np.abs(kinn.exponential_euler(net, x, steps=s) - reference).max() for s in (20, 40, 80)]
    assert errors[0] > 1e-4                          # the drive is not held: not exact
    for coarse, fine in zip(errors, errors[1:]):
        assert coarse / fine == pytest.approx(2.0, rel=0.05)


def test_positivity_of_c_and_g_is_by_construction():
    net = rich_net()
    net.set_flat_params(np.random.default_rng(5).normal(0, 4, net.num_params))
    assert np.all(net.capacitance > 0) and np.all(net.conductance > 0)
    assert np.all(np.linalg.eigvals(kinn.cascade_matrices(net)).real < 0)


# ------------------------------------------------------------------ gradients
def squared_error(readout):
    d = readout - 0.3
    return 0.5 * float((d * d).sum()), d


@pytest.mark.parametrize("solver", [lambda: RK4(0.05), lambda: Dopri5(rtol=1e-6, atol=1e-8), lambda: Euler(0.02)],
                         ids=["rk4", "dopri5", "euler"])
def test_gradients_match_finite_differences_for_every_parameter(solver):
    net = rich_net()
    x = np.random.default_rng(6).normal(size=(5, 4))
    grad = kinn.gradient(net, x, squared_error, solver=solver())
    replay = replay_solver(grad.solution)
    flat = net.get_flat_params()

    def loss_at(params, xx=x):
        net.set_flat_params(params)
        try:
            return squared_error(kinn.outputs(net, xx, solver=replay))[0]
        finally:
            net.set_flat_params(flat)

    rng = np.random.default_rng(7)
    offset, eps = 0, 1e-6
    names = [f"{n}{l}" for l in range(net.num_windows) for n in ("W", "b")] + list(kinn.network.CELL_PARAMETERS)
    for name, p in zip(names, net.parameters):
        direction = np.zeros_like(flat)
        direction[offset:offset + p.size] = rng.normal(size=p.size)
        fd = (loss_at(flat + eps * direction) - loss_at(flat - eps * direction)) / (2 * eps)
        assert grad.flat @ direction == pytest.approx(fd, rel=GRADIENT_RTOL), name
        offset += p.size
    dx = rng.normal(size=x.shape)
    fd = (loss_at(flat, x + eps * dx) - loss_at(flat, x - eps * dx)) / (2 * eps)
    assert float((grad.inputs * dx).sum()) == pytest.approx(fd, rel=GRADIENT_RTOL)
    assert grad.stats.n_vjps > 0


def test_vjp_and_jvp_are_transposes():
    net = rich_net()
    assembly = net.assemblies()[1]
    rng = np.random.default_rng(8)
    V = net.initial_state(rng.normal(size=(3, 4)))
    V[1:] += rng.normal(size=V[1:].shape)
    nu, v_dot = rng.normal(size=V.shape), rng.normal(size=V.shape)
    nu[0] = v_dot[0] = 0.0
    pieces = net.window_gradient_views(net.parameters, 1)
    theta_dot = [rng.normal(size=p.shape) for p in pieces]
    theta_bar = [np.zeros_like(p) for p in pieces]
    left = float((nu * assembly.jvp(V, v_dot, theta_dot)).sum())
    right = float((assembly.vjp(V, nu, theta_bar) * v_dot).sum()) + sum(float((a * b).sum())
                                                                       for a, b in zip(theta_bar, theta_dot))
    assert left == pytest.approx(right, rel=1e-12)


# ------------------------------------------------------------------ refusals
def test_an_implicit_solver_is_refused_with_the_reason():
    with pytest.raises(InputError, match="explicit solvers"):
        kinn.simulate(rich_net(), np.zeros((1, 4)), solver=BDF2(dt=0.1))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"width": 3, "stages": 2, "inputs": 4, "outputs": 1}, "cannot take 4 inputs"),
    ({"width": 3, "stages": 0, "inputs": 2, "outputs": 1}, "stages"),
    ({"width": 3, "stages": 2, "inputs": 2, "outputs": 1, "durations": (1.0, -1.0)}, "durations"),
    ({"width": 3, "stages": 2, "inputs": 2, "outputs": 1, "durations": ()}, "durations"),
    ({"width": 3, "stages": 2, "inputs": 2, "outputs": 1, "activation": "softplus"}, "φ\\(0\\) = 0"),
])
def test_bad_shapes_and_options_are_refused(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        kinn.KinnNet(**kwargs)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"width": 10 ** 5}, "width"),
    ({"durations": "ab"}, "durations"),
    ({"durations": [1 + 1j]}, "durations"),
    ({"durations": [1e308, 1e308]}, "finite sum"),
    ({"durations": [np.nan]}, "durations"),
    ({"seed": "x"}, "seed"),
    ({"width": 4000, "durations": [1.0] * 10}, "parameters"),
])
def test_sizes_durations_and_seeds_of_the_wrong_kind_are_refused(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        kinn.KinnNet(**{"width": 3, "stages": 2, "inputs": 2, "outputs": 1, **kwargs})


def test_a_batch_as_large_as_the_state_is_not_mistaken_for_it():
    # N + 1 = 4 nodes incl. ground and a batch of 4: the read-out must still be (4, 2)
    net = kinn.KinnNet(3, 1, 3, 2, durations=(1.0,))
    X = np.random.default_rng(17).normal(size=(4, 3))
    solution = kinn.simulate(net, X)
    assert net.outputs(solution.final_state).shape == (4, 2)
    assert np.array_equal(solution.readout(net), net.outputs(solution.final_state))
    from kirchhoff_sim.kinn.fit import predict

    assert predict(net, np.vstack([X, X]), batch_size=4).shape == (8, 2)
    with pytest.raises(InputError, match="KINN node voltages are"):
        net.outputs(np.zeros((4, 4)))


def test_training_refuses_targets_that_do_not_fit_before_it_changes_the_net():
    from kirchhoff_sim.kinn.fit import fit, predict

    net = rich_net()
    before = net.get_flat_params()
    X = np.zeros((10, 4))
    for Y, loss, fragment in ((np.array(["a"] * 10), "cross_entropy", "integer class indices"),
                              (np.r_[np.zeros(9, int), 7], "cross_entropy", "labels must lie in 0..1"),
                              (np.zeros((10, 3)), "mse", "must be \\(10, 2\\)"),
                              (np.zeros(9, int), "cross_entropy", "10 samples but Y has 9")):
        with pytest.raises(InputError, match=fragment):
            fit(net, X, Y, loss=loss, batch_size=2)
    assert np.array_equal(net.get_flat_params(), before)
    with pytest.raises(InputError):
        fit(net, np.zeros((0, 4)), np.zeros(0, int))
    with pytest.raises(InputError):
        predict(net, np.zeros((0, 4)))
    with pytest.raises(InputError, match="input has 3 features"):
        predict(net, np.zeros((2, 3)))


def test_bad_inputs_and_parameters_are_refused():
    net = rich_net()
    with pytest.raises(InputError, match="input has 3 features but the KINN takes 4"):
        kinn.simulate(net, np.zeros((2, 3)))
    with pytest.raises(InputError, match="input sample 1, feature 2 is nan"):
        kinn.exponential_euler(net, [[0, 0, 0, 0], [0, 0, np.nan, 0]])
    with pytest.raises(ParameterError, match="expected"):
        net.set_flat_params(np.zeros(3))
    bad = net.get_flat_params()
    bad[5] = np.inf
    before = net.get_flat_params()
    with pytest.raises(ParameterError, match="parameter 5 is not finite"):
        net.set_flat_params(bad)
    assert np.array_equal(net.get_flat_params(), before)
    with pytest.raises(ParameterError, match="KINN parameters"):
        net.set_flat_params(["a"] * net.num_params)
    for dt in (-1.0, None, np.ones(2), np.inf):
        with pytest.raises(InputError, match="dt"):
            kinn.zoh_matrices(net, dt)


def test_stiff_cells_on_a_too_long_fixed_step_raise_stiffness_error():
    net = rich_net()
    net.log_g[:] = np.log(400.0)                     # λ = G/C ≈ 400: RK4 needs h < 2.8/400
    with pytest.raises(StiffnessError, match="stiff") as caught:
        kinn.simulate(net, np.ones((1, 4)), solver=RK4(0.05))
    assert "exponential_euler" in str(caught.value) and "BDF2" not in str(caught.value)


# ------------------------------------------------------------------ SPICE, in the real ngspice
@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
def test_ngspice_agrees_with_the_solver_within_1e_4_of_the_swing(activation):
    from kirchhoff_sim.kinn.netlist import SPICE_SWING_RTOL, validate

    net = rich_net()
    net.activation = kinn.network.get_activation(activation)
    X = np.random.default_rng(9).normal(size=(2, 4))
    report = validate(net, X)
    assert report.agrees, report.max_waveform_error
    assert np.all(report.max_waveform_error <= SPICE_SWING_RTOL)
    assert np.all(report.swing > 0.5)                 # a real transient, not a flat line
    netlist = report.netlists[0]
    assert netlist.counts["B"] == net.width * net.num_windows      # the drive only is behavioural
    assert netlist.counts["C"] == net.num_nodes


def test_an_identity_kinn_of_one_window_is_primitive_elements_only():
    from kirchhoff_sim.kinn.netlist import validate

    net = rich_net(durations=(1.5,))
    net.activation = kinn.network.get_activation("identity")
    report = validate(net, np.random.default_rng(10).normal(size=(1, 4)), primitive=True)
    text = report.netlists[0].text
    assert report.netlists[0].behavioural == 0
    assert not [line for line in text.splitlines() if line[:1] in "BbEeFfHhAaXx"]
    assert report.agrees, report.max_waveform_error


def test_ngspice_reproduces_the_erlang_impulse_response():
    from kirchhoff_sim.kinn.netlist import validate

    net = cascade(4, c=0.5, g=1.5, k=2.0, duration=1.3)
    report = validate(net, [[0.7]], n_points=2)
    assert report.agrees
    spice_final = report.max_readout_error[0]
    assert spice_final <= 1e-4


def test_the_netlist_title_cannot_inject_lines():
    from kirchhoff_sim.kinn.netlist import to_netlist

    lines = to_netlist(rich_net(), np.zeros(4), title="x\n.control\nshell rm -rf /\n.endc").text.splitlines()
    assert lines[0] == "x .control shell rm -rf / .endc"     # one title line: ngspice reads it as a comment
    assert not any(line.strip().lower().startswith((".control", "shell", ".endc")) for line in lines)
    with pytest.raises(InputError, match="ONE sample"):
        to_netlist(rich_net(), np.zeros((2, 4)))


# ------------------------------------------------------------------ training and the chip report
def test_fit_lowers_the_loss_and_predicts_in_batches():
    from kirchhoff_sim.kinn.fit import fit, predict

    rng = np.random.default_rng(11)
    X = rng.normal(size=(64, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = kinn.KinnNet(4, 2, 4, 2, durations=(1.0, 1.0))
    solver = RK4(0.1)
    history = fit(net, X, y, epochs=25, batch_size=16, lr=5e-2, solver=solver)
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    assert np.array_equal(predict(net, X, solver=solver, batch_size=7), kinn.outputs(net, X, solver=solver))
    with pytest.raises(InputError, match="unknown loss 'hinge'"):
        fit(net, X, y, loss="hinge")
    with pytest.raises(InputError, match="64 samples but Y has 3"):
        fit(net, X, y[:3])


def test_the_chip_reports_energy_is_the_closed_form_of_one_discharging_cell():
    from kirchhoff_sim.kinn.report import chip_report
    from kirchhoff_sim.technology import default_profile

    c, g, alpha, T, v0 = 0.8, 1.3, 0.7, 2.0, 0.5
    net = cascade(1, c=c, g=g, duration=T)            # W = 0, b = 0, φ(0) = 0: a free decay
    net.alpha[:] = alpha
    profile = default_profile()
    scale = profile.scale
    report = chip_report(net, [[v0]], profile=profile, solver=tight(), n_points=4001)
    lam = g / c
    t_unit, i0 = scale.time_unit, scale.current_unit
    # the output transconductance α·v into its summing node draws V_supply·∫|α v| dt
    supply = profile.supply_voltage_v * i0 * t_unit * alpha * v0 * (1 - np.exp(-lam * T)) / lam
    # the leak's G·v² and the output summing node's (α v)²·G0
    dissipation = scale.V0 * i0 * t_unit * (g + alpha ** 2) * v0 ** 2 * (1 - np.exp(-2 * lam * T)) / (2 * lam)
    assert report.energy["supply_j"] == pytest.approx(supply, rel=1e-5)
    assert report.energy["resistor_dissipation_j"] == pytest.approx(dissipation, rel=1e-5)
    assert report.energy["input_charging_j"] == pytest.approx(0.5 * scale.C0 * c * (scale.V0 * v0) ** 2, rel=1e-12)
    assert report.latency_s == pytest.approx(T * t_unit)
    assert report.inventory == {"capacitors": 1, "leak resistors": 1, "summing resistors": 2, "transconductors": 2}


def test_the_chip_report_of_a_net_with_no_transconductance_and_one_bit_weights():
    from kirchhoff_sim.kinn.report import chip_report
    from kirchhoff_sim.technology import default_profile

    net = cascade(1)
    net.alpha[:] = 0.0                                # nothing is read: no transconductor is on
    report = chip_report(net, [[0.5]], [0], profile=default_profile().replace(precision_bits=1), trials=1)
    assert any("no transconductance is on" in f for f in report.findings)
    assert report.robustness["1-bit weights"] == report.robustness["nominal"]


def test_the_chip_report_counts_the_active_elements_and_measures_robustness():
    from kirchhoff_sim.kinn.report import chip_report

    net = rich_net()
    X = np.random.default_rng(12).normal(size=(6, 4))
    y = np.argmax(kinn.outputs(net, X), axis=1)
    report = chip_report(net, X, y, trials=2, solver=RK4(0.05))
    assert report.active["window weights W"] == np.count_nonzero(net.W)
    assert report.active["nonlinear drives phi"] == net.width * net.num_windows
    assert report.robustness["nominal"] == 1.0      # the labels are the net's own decisions
    assert 0.0 <= report.robustness["mismatch sigma 0.05 (worst of 2)"] <= 1.0
    text = str(report)
    assert "latency" in text and "rails" in text and report.to_dict()["energy"]["supply_j"] > 0


# ------------------------------------------------------------------ the drive as sky130 transistor cells
#: the drive cell's fit is within 1 % of its saturation current (test_cells.py checks 2 %);
#: through the cascade and the feedback that is a few per cent of the swing at most
TRANSISTOR_SWING_TOLERANCE = 0.03


def test_the_drive_as_sky130_cells_agrees_with_the_cell_model_in_ngspice(sky130, characterised):
    from kirchhoff_sim.kinn.transistor import to_transistor_netlist, validate_transistor
    from kirchhoff_sim.technology import builtin_profile

    profile = builtin_profile("sky130")
    net = rich_net(width=4, stages=2, inputs=3, outputs=2, durations=(1.0, 1.0))
    net.b *= 0.5
    X = np.random.default_rng(13).uniform(-2, 2, size=(2, 3))
    check = validate_transistor(net, X, profile, characterised, sky130)
    assert np.all(check.max_waveform_error <= TRANSISTOR_SWING_TOLERANCE), check.max_waveform_error
    assert np.all(check.max_waveform_error > 1e-4)       # real transistors: not the ideal circuit
    assert check.decisions_agree.all()
    assert check.mapping.reference_a * characterised.efficiency(profile.scale.G0 * profile.scale.V0) == \
        pytest.approx(profile.scale.G0 * profile.scale.V0, rel=1e-12)
    text = to_transistor_netlist(net, X[0], profile, characterised, sky130)[0]
    assert text.count("ks_tanh_n\n") + text.count(" ks_tanh_n") >= net.width * net.num_windows
    assert not [line for line in text.splitlines() if line[:1] in "Bb"]       # no behavioural source


def test_the_drive_mapping_refuses_what_the_cell_cannot_be(characterised):
    from kirchhoff_sim.errors import CellMappingError
    from kirchhoff_sim.kinn.transistor import map_drive
    from kirchhoff_sim.units import PhysicalScale

    net = rich_net()
    with pytest.raises(CellMappingError, match="outside the tanh cell's bias window"):
        map_drive(net, characterised, PhysicalScale(V0=0.05, C0=2e-11, G0=1e-4))
    net.activation = kinn.network.get_activation("relu")
    with pytest.raises(CellMappingError, match="tanh transconductor"):
        map_drive(net, characterised, PhysicalScale(V0=0.05, C0=2e-11, G0=1e-6))


def test_the_rail_cost_gradient_matches_finite_differences():
    net = rich_net()
    net.W *= 3.0                                      # summing nodes well beyond a rail of 0.5
    x = np.random.default_rng(14).normal(size=(4, 4))
    solver = RK4(0.05)
    grad = kinn.gradient(net, x, squared_error, solver=solver, rail=0.5, rail_weight=2.0)
    plain = kinn.gradient(net, x, squared_error, solver=solver)
    assert grad.value > plain.value + 1e-3            # the cost is active
    flat = net.get_flat_params()
    rng = np.random.default_rng(15)
    eps = 1e-6

    def value_at(params):
        net.set_flat_params(params)
        try:
            return kinn.gradient(net, x, squared_error, solver=solver, rail=0.5, rail_weight=2.0).value
        finally:
            net.set_flat_params(flat)

    for _ in range(3):
        direction = rng.normal(size=flat.size)
        fd = (value_at(flat + eps * direction) - value_at(flat - eps * direction)) / (2 * eps)
        assert grad.flat @ direction == pytest.approx(fd, rel=GRADIENT_RTOL)


def test_training_against_a_profile_keeps_the_rails_and_the_conductance_window():
    from kirchhoff_sim.kinn.fit import fit, profile_limits
    from kirchhoff_sim.kinn.report import chip_report
    from kirchhoff_sim.technology import default_profile

    rng = np.random.default_rng(16)
    X = np.clip(rng.normal(0, 1, size=(64, 4)), -2.5, 2.5)   # the inputs themselves inside ±3
    y = (X[:, 0] > 0).astype(int)
    profile = default_profile().replace(rail_low_v=-0.3, rail_high_v=0.3)   # 3 V0: tight
    solver = RK4(0.1)

    def widest(net):
        report = chip_report(net, X, profile=profile, solver=solver)
        return report, max(abs(v) for v in report.node_range_v)

    free = kinn.KinnNet(4, 2, 4, 2, durations=(1.0, 1.0), seed=3)
    free.W *= 2.0
    held = copy.deepcopy(free)
    fit(free, X, y, epochs=20, batch_size=16, lr=3e-2, solver=solver)
    fit(held, X, y, epochs=20, batch_size=16, lr=3e-2, solver=solver, profile=profile, rail_weight=10.0)
    rail, window = profile_limits(held, profile)
    assert rail == pytest.approx(3.0)
    assert widest(free)[1] > 0.3                      # unconstrained: beyond the ±0.3 V rails
    assert widest(held)[1] <= 0.3                     # trained against them: inside
    assert np.all((held.log_g >= window[0] - 1e-12) & (held.log_g <= window[1] + 1e-12))


# ------------------------------------------------------------------ robustness: refusals and extremes
def small_net(seed=1):
    return kinn.KinnNet(4, 2, 2, 2, durations=(1.0,), seed=seed)


def test_a_bad_sample_is_named_by_its_row_of_the_whole_input_before_any_step():
    from kirchhoff_sim.kinn.fit import fit, predict

    net = small_net()
    X = np.random.default_rng(20).normal(size=(40, 2))
    bad = X.copy()
    bad[7, 1] = np.inf
    with pytest.raises(InputError, match="input sample 7, feature 1 is inf"):
        predict(net, bad, batch_size=4)
    bad = X.copy()
    bad[37, 0] = np.nan
    before = net.get_flat_params()
    with pytest.raises(InputError, match="input sample 37, feature 0 is nan"):
        fit(net, bad, (X[:, 0] > 0).astype(int), batch_size=4, solver=RK4(0.1))
    targets = np.zeros((40, 2))
    targets[21, 1] = np.nan
    with pytest.raises(InputError, match=r"targets Y must be finite; entry \(21, 1\)"):
        fit(net, X, targets, loss="mse", batch_size=4, solver=RK4(0.1))
    assert np.array_equal(net.get_flat_params(), before)


@pytest.mark.parametrize("X, fragment", [
    (np.zeros((0, 2)), r"got \(0, 2\)"),
    ("ab", "got str"),
    (np.ones((2, 2)) + 1j, "complex"),
    (np.ones((2, 2), bool), "dtype bool"),
    (None, "dtype object"),
    (np.ones((2, 3)), "input has 3 features but the KINN takes 2"),
    ([[0.0, 1.0], [np.nan, 0.0]], "input sample 1, feature 0 is nan"),
])
def test_the_chip_report_checks_its_inputs_as_simulate_does(X, fragment):
    from kirchhoff_sim.kinn.report import chip_report

    with pytest.raises(InputError, match=fragment):
        chip_report(small_net(), X, trials=1)


def labelled_three():
    """Three inputs and labels of which exactly two are the net's own decisions."""
    net = small_net()
    X = np.random.default_rng(21).normal(size=(3, 2))
    y = np.argmax(kinn.outputs(net, X), axis=1)
    y[2] = 1 - y[2]
    return net, X, y


@pytest.mark.parametrize("labels, fragment", [
    (lambda y: y[:2], "X has 3 samples but y has 2"),
    (lambda y: y[:1], "X has 3 samples but y has 1"),
    (lambda y: [0, 5, 1], "labels must lie in 0..1 .*row 1 of y is 5"),
    (lambda y: ["a", "b", "c"], "integer class indices, got dtype <U1"),
    (lambda y: [0.0, np.nan, 1.0], "row 1 is nan"),
    (lambda y: [0, 1.5, 1], "row 1 is 1.5"),
    (lambda y: np.ones((3, 2), int), r"got shape \(3, 2\)"),
])
def test_the_chip_report_checks_its_labels_as_fit_does(labels, fragment):
    from kirchhoff_sim.kinn.report import chip_report

    net, X, y = labelled_three()
    with pytest.raises(InputError, match=fragment):
        chip_report(net, X, labels(y), trials=1)


def test_a_column_of_labels_is_one_label_per_sample():
    from kirchhoff_sim.kinn.report import chip_report

    net, X, y = labelled_three()
    assert chip_report(net, X, y[:, None], trials=1).robustness["nominal"] == pytest.approx(2 / 3)
    assert chip_report(net, X, y, trials=1).robustness["nominal"] == pytest.approx(2 / 3)


def test_the_chip_report_checks_its_seed_and_profile():
    from kirchhoff_sim.kinn.report import chip_report
    from kirchhoff_sim.technology import default_profile

    net, X, y = labelled_three()
    for seed in (-1, "s"):
        with pytest.raises(InputError, match="seed"):
            chip_report(net, X, y, trials=1, seed=seed)
    by_name = chip_report(net, X, profile="default")
    assert by_name.energy == chip_report(net, X, profile=default_profile()).energy
    with pytest.raises(InputError, match="profile must be"):
        chip_report(net, X, profile=3)
    with pytest.raises(InputError, match="takes a KinnNet"):
        chip_report(linear_kirchhoff_net(), X)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"rail": -1.0}, "rail must be finite and > 0, got -1.0"),
    ({"rail": 0.0}, "rail must be finite and > 0"),
    ({"rail": np.nan}, "rail must be finite and > 0, got nan"),
    ({"rail": np.inf}, "rail must be finite and > 0"),
    ({"rail": True}, "rail must be a number, got True"),
    ({"rail": "1"}, "rail must be a number, got '1'"),
    ({"rail": 0.5, "rail_weight": -5}, "rail_weight must be finite and >= 0, got -5"),
    ({"rail": 0.5, "rail_weight": np.nan}, "rail_weight must be finite"),
])
def test_the_rail_and_its_weight_are_checked(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        kinn.gradient(small_net(), np.zeros((2, 2)), squared_error, **kwargs)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"profile": "default", "rail_margin": -2}, r"rail_margin must be finite and in \(0, 1\], got -2"),
    ({"profile": "default", "rail_margin": 1.5}, "rail_margin"),
    ({"rail_weight": -5}, "rail_weight must be finite and >= 0"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
    ({"seed": "a"}, "seed must be an integer >= 0, got 'a'"),
    ({"Y": 1}, r"labels Y must be \(8,\) integer class indices, got shape \(\)"),
    ({"Y": None}, r"labels Y must be \(8,\)"),
    ({"Y": None, "loss": "mse"}, "targets Y must be an array of real numbers"),
    ({"loss": ["mse"]}, r"unknown loss \['mse'\]"),
    ({"profile": 3}, "profile must be"),
    ({"lr": -1.0}, "lr"),
    ({"solver": BDF2(dt=0.1)}, "explicit solvers"),
])
def test_fit_refuses_bad_arguments_before_it_changes_the_net(kwargs, fragment):
    from kirchhoff_sim.kinn.fit import fit

    net = small_net()
    net.log_g[:] = 30.0                  # outside every profile's window: a projection would show
    before = net.get_flat_params()
    X = np.random.default_rng(22).normal(size=(8, 2))
    arguments = {"Y": (X[:, 0] > 0).astype(int), "batch_size": 4, "solver": RK4(0.1), **kwargs}
    with pytest.raises(InputError, match=fragment):
        fit(net, X, arguments.pop("Y"), **arguments)
    assert np.array_equal(net.get_flat_params(), before)


def test_fit_takes_a_profile_by_name_and_a_column_of_labels():
    from kirchhoff_sim.kinn.fit import fit
    from kirchhoff_sim.technology import default_profile

    X = np.random.default_rng(23).normal(size=(8, 2))
    y = (X[:, 0] > 0).astype(int)
    by_name, by_object = small_net(), small_net()
    fit(by_name, X, y[:, None], epochs=1, batch_size=4, solver=RK4(0.1), profile="default")
    fit(by_object, X, y, epochs=1, batch_size=4, solver=RK4(0.1), profile=default_profile())
    assert np.array_equal(by_name.get_flat_params(), by_object.get_flat_params())


def test_a_loss_that_returns_no_number_or_a_non_finite_gradient_is_refused():
    net = small_net()
    x = np.zeros((3, 2))
    with pytest.raises(InputError, match="the loss value must be an array of real numbers, got str"):
        kinn.gradient(net, x, lambda r: ("a", r))
    with pytest.raises(InputError, match="the loss gradient must be an array of real numbers"):
        kinn.gradient(net, x, lambda r: (1.0, np.full(r.shape, "a")))
    with pytest.raises(InputError, match="the loss value must be one number"):
        kinn.gradient(net, x, lambda r: (np.ones(2), r))

    def nan_at(r):
        g = np.zeros_like(r)
        g[2, 1] = np.nan
        return 1.0, g
    with pytest.raises(TrainingDivergedError, match="non-finite gradient: sample 2, output 1 is nan"):
        kinn.gradient(net, x, nan_at)
    with pytest.raises(TrainingDivergedError, match="non-finite value nan"):
        kinn.gradient(net, x, lambda r: (np.nan, r))
    assert kinn.gradient(net, x, lambda r: (np.float64(0.5), np.zeros_like(r))).value == 0.5


def test_arrays_of_the_wrong_kind_or_shape_are_refused_with_typed_errors():
    net = small_net()
    with pytest.raises(InputError, match=r"drive must be \(width, B\) = \(4, 3\).*got \(4, 2\)"):
        kinn.exact_update(net, np.zeros((2, 4, 3)), np.zeros((4, 2)), 0.1)
    with pytest.raises(InputError, match=r"stage voltages v must be \(stages, width, B\)"):
        kinn.exact_update(net, np.zeros((3, 4, 1)), np.zeros((4, 1)), 0.1)
    with pytest.raises(InputError, match=r"a KINN state is \(9, B\), got \(1, 1\)"):
        net.stage_voltages([[0]])
    with pytest.raises(InputError, match="KINN node voltages must be real"):
        net.stages_of(np.zeros((1, 8)) + 1j)
    with pytest.raises(InputError, match="unknown KINN activation .*φ\\(0\\) = 0"):
        kinn.KinnNet(2, 2, 1, 1, activation=np.array(["tanh", "relu"]))


def linear_kirchhoff_net():
    from kirchhoff_sim import Conductance, KirchhoffNet, Layer

    return KirchhoffNet([Layer([(1, 2)], Conductance())], input_nodes=[1, 2], readout=[1, 2])


def test_the_kinn_entry_points_refuse_a_kirchhoffnet_and_say_what_takes_it():
    from kirchhoff_sim.kinn.fit import fit, predict

    net = linear_kirchhoff_net()
    with pytest.raises(InputError, match="kinn.fit.predict takes a KinnNet, got KirchhoffNet; .*inference.readouts"):
        predict(net, np.zeros((2, 2)))
    with pytest.raises(InputError, match="takes a KinnNet.*training.train"):
        fit(net, np.zeros((2, 2)), [0, 1])
    with pytest.raises(InputError, match="takes a KinnNet.*sensitivity.gradient"):
        kinn.gradient(net, np.zeros((2, 2)), squared_error)
    with pytest.raises(InputError, match="takes a KinnNet"):
        kinn.exponential_euler(net, np.zeros((2, 2)))


def test_a_bad_duration_is_named_by_its_entry_in_a_short_message():
    with pytest.raises(InputError, match="entry 10 is -1.0") as caught:
        kinn.KinnNet(2, 2, 1, 1, durations=[1.0] * 10 + [-1.0])
    assert len(str(caught.value)) < 200
    with pytest.raises(InputError, match="entry 3 is nan") as caught:
        kinn.KinnNet(2, 2, 1, 1, durations=[1.0] * 3 + [np.nan] * 1000)
    assert len(str(caught.value)) < 200
    with pytest.raises(InputError, match="1 to 4096") as caught:
        kinn.KinnNet(2, 2, 1, 1, durations=[1.0] * 100_000)
    assert len(str(caught.value)) < 200


def steady_state(net, drive=1.0):
    """The cascade's steady state under a held drive: ``A v = −e0·I/C0`` per channel."""
    rhs = np.zeros((net.width, net.stages, 1))
    rhs[:, 0, 0] = -drive / net.capacitance[0]
    return np.linalg.solve(kinn.cascade_matrices(net), rhs)[:, :, 0]


@pytest.mark.parametrize("duration", [1e38, 1e40, 1e100, 1e300])
def test_a_window_far_beyond_the_time_constants_is_the_steady_state(duration):
    net = kinn.KinnNet(width=2, stages=2, inputs=1, outputs=1, durations=(duration,))
    assert np.array_equal(kinn.exponential_euler(net, [[0.5]]), np.zeros((1, 4)))   # φ(0) = 0: all decays
    Phi, Gamma = kinn.zoh_matrices(net, duration)
    assert np.array_equal(Phi, np.zeros_like(Phi))
    np.testing.assert_allclose(Gamma, steady_state(net), rtol=1e-12)
    driven = cascade(3, width=2, c=0.5, g=2.0, k=1.5, drive=0.4, duration=duration)
    final = driven.stages_of(kinn.exponential_euler(driven, [[3.0, -1.0]]))[:, :, 0]
    np.testing.assert_allclose(final, steady_state(driven, 0.4).T, rtol=1e-12)


def test_extreme_but_finite_rates_give_the_exact_update_or_a_typed_error():
    fast = kinn.KinnNet(2, 2, 1, 1)
    fast.log_g[:] = 700.0                             # G/C = e^700: a step of 1 is the steady state
    Phi, Gamma = kinn.zoh_matrices(fast, 1.0)
    assert np.array_equal(Phi, np.zeros_like(Phi))
    with np.errstate(under="ignore"):                 # Γ = 1/G ≈ 1e-304: rtol·|Γ| underflows
        np.testing.assert_allclose(Gamma, steady_state(fast), rtol=1e-12)
    both = kinn.KinnNet(2, 2, 1, 1)
    both.log_g[:] = both.log_c[:] = 800.0             # G and C beyond floats, G/C = 1 is not
    Phi, _ = kinn.zoh_matrices(both, 1.0)
    np.testing.assert_allclose(np.diagonal(Phi, axis1=1, axis2=2), np.exp(-1.0), rtol=1e-14)
    strong = kinn.KinnNet(1, 2, 1, 1)
    strong.k[:] = 1e300                               # a huge K must not swamp the stages' decay
    Phi, Gamma = kinn.zoh_matrices(strong, 1.0)
    np.testing.assert_allclose(Phi[0], [[np.exp(-1), 0.0], [1e300 * np.exp(-1), np.exp(-1)]], rtol=1e-12)
    np.testing.assert_allclose(Gamma[0], [1 - np.exp(-1), 1e300 * (1 - 2 * np.exp(-1))], rtol=1e-12)
    for name, value in (("log_c", -800.0), ("log_g", 800.0)):
        net = kinn.KinnNet(2, 2, 1, 1)
        getattr(net, name)[1, 0] = value
        with pytest.raises(ParameterError, match="stage 1 of channel 0: its rate G/C is beyond the float range"):
            kinn.exponential_euler(net, [[0.5]])
        with pytest.raises(ParameterError, match="G/C"):
            kinn.zoh_matrices(net, 0.1)
    huge = kinn.KinnNet(1, 3, 1, 1)
    huge.k[:] = 1e300                                 # stage 2 would be K² ≈ 1e600 volts per ampere
    with pytest.raises(NonFiniteStateError, match="beyond the float range for channel 0.*layer 0"):
        kinn.exponential_euler(huge, [[0.5]])


def test_an_unbounded_drive_that_overflows_names_the_window_and_step():
    net = kinn.KinnNet(1, 1, 1, 1, durations=(1.0, 1.0), activation="relu")
    net.W[1] = 1e4                                    # positive feedback of gain 1e4 per unit time
    with pytest.raises(NonFiniteStateError, match="layer 1.*step"):
        kinn.exponential_euler(net, [[1.0]], steps=200)


def test_exponential_euler_steps_are_bounded_like_fixed_step_simulate():
    from kirchhoff_sim.solvers.resources import ResourceLimits

    net = small_net()
    with pytest.raises(ResourceLimitError, match="1e\\+12 steps, more than the limit 1e\\+07"):
        kinn.exponential_euler(net, [[0.5, 0.5]], steps=10 ** 12)
    with pytest.raises(ResourceLimitError, match="max_fixed_steps"):
        kinn.exponential_euler(net, [[0.5, 0.5]], steps=11, limits=ResourceLimits(max_fixed_steps=10))


@pytest.mark.parametrize("name, index, value, fragment", [
    ("log_g", (0, 0), -800.0, r"element R0_0 would be inf Ω \(from log_g\[0, 0\] = -800\)"),
    ("log_g", (1, 1), 800.0, r"element R1_1 would be 0.0 Ω"),
    ("log_c", (0, 1), 800.0, r"element C0_1 would be inf F \(from log_c\[0, 1\] = 800\)"),
    ("log_c", (1, 0), -800.0, r"element C1_0 would be 0.0 F"),
])
def test_the_netlist_refuses_an_element_value_ngspice_cannot_take(name, index, value, fragment):
    from kirchhoff_sim.kinn.netlist import to_netlist

    net = kinn.KinnNet(2, 2, 1, 1)
    getattr(net, name)[index] = value
    with pytest.raises(ParameterError, match=fragment):
        to_netlist(net, [0.5])
