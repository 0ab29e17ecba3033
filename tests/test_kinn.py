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
from kirchhoff_sim.errors import InputError, ParameterError, StiffnessError
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
    with pytest.raises(InputError, match="loss must be one of"):
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
