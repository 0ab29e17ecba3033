"""Sensitivities: discrete adjoints, forward (direct) sensitivities and their checks.

The acceptance criterion (issue 3, DESIGN.md §4): for every solver and every device
family, the adjoint gradient agrees with central finite differences of the *same*
discretisation (the forward run's step grid replayed, :func:`check_gradient`) to a
relative error of at most 1e-6 in float64. The forward (direct) method must give the
same directional derivatives to round-off. Solvers and devices are parametrised, not
looped over, so a failure names its pair.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim import devices
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.sensitivity import (
    check_gradient,
    forward_sensitivity,
    gradient,
    replay_solver,
    ridders,
)
from kirchhoff_sim.solvers import RungeKutta, simulate
from kirchhoff_sim.solvers.explicit import CLASSIC_RK4, DOPRI5, EULER, HEUN
from kirchhoff_sim.training.losses import bind, cross_entropy

import problems as P

GRADIENT_RTOL = 1e-6     # the acceptance criterion
EPS = 1e-6               # central-difference step
FORWARD_VS_ADJOINT_RTOL = 1e-10

# --------------------------------------------------------------------------- solvers
# Every solver of the core issue, fixed-step and (where it has an error estimate)
# adaptive. Factories, so that no test can leak state into another through a solver.
SOLVERS = [
    pytest.param(lambda: ks.Euler(0.05), id="Euler"),
    pytest.param(lambda: ks.Heun(0.05), id="Heun"),
    pytest.param(lambda: ks.RK4(0.1), id="RK4"),
    pytest.param(lambda: ks.Dopri5(dt=0.1), id="Dopri5-fixed"),
    pytest.param(lambda: ks.Dopri5(rtol=1e-6), id="Dopri5-adaptive"),
    pytest.param(lambda: ks.BackwardEuler(dt=0.1), id="BackwardEuler-fixed"),
    pytest.param(lambda: ks.Trapezoidal(dt=0.1), id="Trapezoidal-fixed"),
    pytest.param(lambda: ks.BDF2(dt=0.1), id="BDF2-fixed"),
    # loose tolerances keep the order-1/2 methods' step counts (and the test time) small;
    # the grids are still variable (asserted below), which is what the adjoint must handle
    pytest.param(lambda: ks.BackwardEuler(rtol=1e-2, atol=1e-4), id="BackwardEuler-adaptive"),
    pytest.param(lambda: ks.Trapezoidal(rtol=1e-3, atol=1e-5), id="Trapezoidal-adaptive"),
    pytest.param(lambda: ks.BDF2(rtol=1e-3, atol=1e-5), id="BDF2-adaptive"),
]

# --------------------------------------------------------------------------- devices
DEVICES = [
    *P.paper_families(),
    # A diode with a larger thermal voltage and saturation current than silicon's: the
    # maths is the same, but the explicit solvers stay stable at these step sizes and
    # i_s is far above the finite-difference step.
    pytest.param(lambda: devices.Diode(thermal_voltage=0.1, default_i_s=1e-2, default_r_s=0.5),
                 id="Diode-series-resistance"),
]

# Two layers (time slices) over nodes 0..4, with parallel edges (1→3 twice in layer 0,
# 3→4 and 4→3 in layer 1) and edges to and from ground. Inputs sit on nodes 1, 2; the
# read-out is nodes 2..4 (three logits).
LAYER_EDGES = (
    [[1, 3], [1, 3], [2, 4], [3, 4], [2, 3], [4, 0], [0, 3], [1, 4]],
    [[3, 4], [4, 3], [1, 2], [2, 4], [1, 4], [3, 0], [0, 4], [2, 3]],
)
NUM_NODES = 4
BATCH = 2


def random_params(device, rng, n_edges):
    """Parameters of moderate size: the dynamics are clearly nonlinear (activations
    leave their linear range, rectifiers switch) without blowing up over T = 1."""
    if isinstance(device, devices.Conductance):
        return rng.uniform(0.5, 2.0, (1, n_edges))          # passive: g > 0
    if isinstance(device, (devices.ShiftedReLU, devices.ShiftedLeakyReLU)):
        return np.stack([rng.normal(0.0, 0.3, n_edges), rng.normal(0.0, 0.8, n_edges)])
    if isinstance(device, devices.DifferenceActivation):
        return np.stack([rng.normal(0.0, 0.5, n_edges), rng.normal(0.0, 0.8, n_edges)])
    if isinstance(device, devices.AffineActivation):
        return rng.normal(0.0, 1.0, (3, n_edges))
    raise TypeError(device)


def random_layer(device, rng, edges, duration=0.5):
    if isinstance(device, devices.Diode):
        # diodes on every other edge, a conductance group on the rest: a sensible
        # circuit in which every node has a resistive path
        resistors, diodes = edges[0::2], edges[1::2]
        diode_params = np.stack([device.default_i_s * rng.uniform(0.5, 2.0, len(diodes)),
                                 device.default_r_s * rng.uniform(0.5, 2.0, len(diodes))])
        return ks.Layer.from_groups(
            [(resistors, devices.Conductance(), rng.uniform(0.5, 2.0, (1, len(resistors)))),
             (diodes, device, diode_params)], duration)
    return ks.Layer(edges, device, duration, params=random_params(device, rng, len(edges)))


def random_problem(device, seed=0):
    """``(net, x, loss)``: a 2-layer net, a random batch and a cross-entropy loss on the
    three read-out nodes."""
    rng = np.random.default_rng(seed)
    layers = [random_layer(device, rng, edges) for edges in LAYER_EDGES]
    net = ks.KirchhoffNet(layers, num_nodes=NUM_NODES, readout=3)
    x = rng.normal(0.0, 0.8, (BATCH, 2))
    labels = rng.integers(0, 3, BATCH)
    return net, x, bind(cross_entropy, labels)


def total_steps(solution):
    return sum(len(tape.times) - 1 for tape in solution.tapes)


def is_adaptive(solver):
    return solver.step.adaptive


# ================================================================ adjoint vs finite differences
@pytest.mark.parametrize("make_device", DEVICES)
@pytest.mark.parametrize("make_solver", SOLVERS)
def test_adjoint_matches_finite_differences_of_the_same_scheme(make_solver, make_device):
    # ReLU / leaky-ReLU kinks: a device input that crosses a kink between θ−ε and θ+ε
    # breaks the central difference (not the adjoint), by ~1e-3 relative. With seed 0 no
    # pair is affected (the worst error over the whole matrix is ~2e-8). If a change of
    # these nets ever hits a kink, choose another seed — never loosen the tolerance.
    solver = make_solver()
    net, x, loss = random_problem(make_device(), seed=0)
    check = check_gradient(net, x, loss, solver, n_params=6, eps=EPS, seed=0)
    # 6 parameters and both input voltages of the first sample were compared
    assert len(check.adjoint) == 6 + x.shape[1]
    # the gradient is not trivially zero (a zero adjoint and a zero FD would "agree")
    assert np.abs(check.finite_difference).max() > 1e-3
    assert check.max_relative_error <= GRADIENT_RTOL, str(check)


@pytest.mark.parametrize("make_solver", SOLVERS)
def test_adaptive_runs_have_variable_grids(make_solver):
    """The adaptive cases above really exercise variable steps (BDF2's ω ≠ 1, Dopri5's
    held-fixed accepted steps), not a uniform grid in disguise."""
    solver = make_solver()
    net, x, _ = random_problem(devices.DifferenceActivation("tanh"))
    solution = simulate(net, x, solver=solver)
    steps = np.concatenate([np.diff(tape.times) for tape in solution.tapes])
    if is_adaptive(solver):
        assert steps.max() / steps.min() > 1.5
    else:
        np.testing.assert_allclose(steps, steps[0], rtol=1e-9)


def _loss_on_grid(net, x, loss, replay, flat):
    saved = net.get_flat_params()
    try:
        net.set_flat_params(flat)
        return loss(simulate(net, x, solver=replay).readout(net))[0]
    finally:
        net.set_flat_params(saved)


@pytest.mark.parametrize("make_solver", SOLVERS)
def test_adjoint_of_an_ideal_diode_matches_finite_differences(make_solver):
    """Diode with r_s = 0 (alongside conductances). r_s sits on its bound (r_s ≥ 0), so
    a central difference cannot step below it: r_s entries use the one-sided
    second-order difference (−3L(0) + 4L(ε) − L(2ε)) / 2ε, the others central ones, all
    on the forward run's replayed grid. (check_gradient itself cannot do this; see
    test_check_gradient_handles_the_default_diode.) The r_s gradients are ~100× smaller
    than the others, so each block is measured against its own largest entry."""
    solver = make_solver()
    # nVt = 0.25: without a series resistance a diode forward-biased by ~2 V at nVt = 0.1
    # carries 1e4× its saturation current, and the loss becomes so curved in i_s that
    # the central difference's own O(ε²) error exceeds 1e-6
    net, x, loss = random_problem(devices.Diode(thermal_voltage=0.25, default_i_s=5e-2,
                                                default_r_s=0.0))
    grad = gradient(net, x, loss, solver)
    replay = replay_solver(grad.solution)
    flat = net.get_flat_params()
    # per layer: 4 conductances, then the diode group's 4 i_s and 4 r_s (row-major)
    at_bound = np.concatenate([np.arange(8, 12), np.arange(20, 24)])
    assert np.all(flat[at_bound] == 0.0)
    interior = np.array([0, 5, 7, 13, 18])            # conductances and i_s of both layers
    on_bound = np.array([8, 11, 21, 22])

    def loss_at(i, delta):
        p = flat.copy()
        p[i] += delta
        return _loss_on_grid(net, x, loss, replay, p)

    base = _loss_on_grid(net, x, loss, replay, flat)
    assert base == grad.loss                            # the replay is the forward run
    for indices, fd in (
        (interior, [(loss_at(i, EPS) - loss_at(i, -EPS)) / (2 * EPS) for i in interior]),
        (on_bound, [(-3 * base + 4 * loss_at(i, EPS) - loss_at(i, 2 * EPS)) / (2 * EPS)
                    for i in on_bound]),
    ):
        fd, adjoint = np.array(fd), grad.flat[indices]
        scale = np.abs(fd).max()
        assert scale > 1e-4                              # this block does matter
        error = np.abs(adjoint - fd) / np.maximum(np.abs(fd), scale)
        assert error.max() <= GRADIENT_RTOL, (indices, adjoint, fd)


def test_check_gradient_handles_the_default_diode():
    """check_gradient is public: it must work on a net with the package's own default
    Diode (i_s = 1e-9, r_s = 0). Today it steps i_s − ε < 0 and r_s − ε < 0 and dies
    with a ParameterError. A step relative to |θ| (ε·|θ| for θ ≠ 0) and a one-sided
    second-order difference at a bound would do: done by hand with ε = 1e-5, that
    agrees with the adjoint to 7e-8 here (∂L/∂i_s ≈ 8e4)."""
    rng = np.random.default_rng(3)
    diode = devices.Diode()
    layer = ks.Layer.from_groups([([[1, 2], [2, 0], [1, 0]], devices.Conductance(),
                                   rng.uniform(0.5, 2.0, (1, 3))),
                                  ([[1, 2], [2, 0]], diode)], 1.0)
    net = ks.KirchhoffNet([layer], readout=2)
    x = rng.uniform(0.3, 0.6, (2, 2))
    loss = bind(cross_entropy, np.array([0, 1]))
    check = check_gradient(net, x, loss, ks.BDF2(rtol=1e-4, atol=1e-7), n_params=net.num_params,
                           eps=1e-5)
    assert np.isfinite(check.finite_difference).all()
    assert check.max_relative_error <= GRADIENT_RTOL, str(check)


def single_diode_net(i_s, nvt, r_s=0.0):
    """A capacitor discharging through a diode (node 1 → ground) and a conductance."""
    layer = ks.Layer.from_groups([([[1, 0]], devices.Diode(thermal_voltage=nvt), [[i_s], [r_s]]),
                                  ([[1, 0]], devices.Conductance(), [[1.0]])], 1.0)
    return ks.KirchhoffNet([layer])


def sum_of_squares(readout):
    return float(np.sum(readout ** 2)), 2.0 * readout


def test_check_gradient_at_a_series_resistance_bound():
    """r_s = 0 is the bound of its domain, so its derivative needs a one-sided difference.
    A diode forward-biased at 0.5 V with i_s = 1e-3 carries 2.5e5 units of current, and the
    loss curves in r_s on a scale far below ε: the fixed second-order stencil
    (−3L(0) + 4L(ε) − L(2ε))/2ε at ε = 1e-6 is off by 6 % (3e-3 of the largest entry).
    Ridders' extrapolation of one-sided differences from ε downwards agrees to 1e-7 of
    the entry itself."""
    net = single_diode_net(1e-3, P.THERMAL_VOLTAGE)
    x, solver = [[0.5]], ks.Dopri5(rtol=1e-9, atol=1e-12)
    check = check_gradient(net, x, sum_of_squares, solver, n_params=3, eps=EPS, include_inputs=False)
    assert list(check.indices) == [0, 1, 2] and net.get_flat_params()[1] == 0.0
    assert check.max_relative_error <= GRADIENT_RTOL, str(check)
    # the stencil it replaces, on the same replayed grid, is not accurate enough here
    grad = gradient(net, x, sum_of_squares, solver)
    replay, flat = replay_solver(grad.solution), net.get_flat_params()

    def at(delta):
        p = flat.copy()
        p[1] += delta
        return _loss_on_grid(net, x, sum_of_squares, replay, p)

    stencil = (-3 * grad.loss + 4 * at(EPS) - at(2 * EPS)) / (2 * EPS)
    scale = np.abs(check.finite_difference).max()
    assert abs(stencil - grad.flat[1]) / scale > 1e-3
    assert abs(check.finite_difference[1] - grad.flat[1]) <= GRADIENT_RTOL * abs(grad.flat[1])
    assert check.fd_error[1] < 1e-6 * abs(grad.flat[1])         # Ridders' own estimate


def test_check_gradient_survives_a_parameter_whose_step_is_below_round_off():
    """i_s = 1e-9 at nVt = 0.1: the relative step 1e-6·i_s changes the loss by a few
    hundred ulps, so the central difference is 8e-3 off — round-off, not the adjoint.
    check_gradient sees the difference is below its round-off guard and extrapolates
    central differences from 1e-2·i_s instead (Ridders)."""
    net = single_diode_net(1e-9, 0.1)
    x, solver = [[0.3]], ks.Dopri5(rtol=1e-9, atol=1e-12)
    check = check_gradient(net, x, sum_of_squares, solver, n_params=3, eps=EPS, include_inputs=False)
    assert check.max_relative_error <= GRADIENT_RTOL, str(check)
    assert np.isfinite(check.fd_error[0]) and np.isnan(check.fd_error[2])   # only i_s fell back
    grad = gradient(net, x, sum_of_squares, solver)
    replay, flat = replay_solver(grad.solution), net.get_flat_params()
    step = EPS * flat[0]

    def at(delta):
        p = flat.copy()
        p[0] += delta
        return _loss_on_grid(net, x, sum_of_squares, replay, p)

    central = (at(step) - at(-step)) / (2 * step)
    assert abs(central - grad.flat[0]) / abs(grad.flat[0]) > 1e-3


def test_ridders_extrapolation_is_exact_to_round_off_on_smooth_functions():
    one_sided, error = ridders(lambda h: (np.exp(h) - 1.0) / h, 0.1, 1, 10)
    assert abs(one_sided - 1.0) <= 1e-10 and error <= 1e-8
    central, error = ridders(lambda h: (np.sin(1 + h) - np.sin(1 - h)) / (2 * h), 0.1, 2, 8)
    assert abs(central - np.cos(1.0)) <= 1e-12 and error <= 1e-10


def test_check_gradient_detects_a_wrong_adjoint(monkeypatch):
    """The check has teeth: an adjoint off by 1e-4 relative fails the 1e-6 criterion."""
    net, x, loss = random_problem(devices.DifferenceActivation("tanh"))
    original = RungeKutta.adjoint_layer

    def slightly_wrong(self, *args, **kwargs):
        return original(self, *args, **kwargs) * (1 + 1e-4)

    monkeypatch.setattr(RungeKutta, "adjoint_layer", slightly_wrong)
    check = check_gradient(net, x, loss, ks.RK4(0.1), n_params=6)
    assert check.max_relative_error > 10 * GRADIENT_RTOL


def test_replayed_grid_is_what_makes_adaptive_finite_differences_agree():
    """replay_solver holds an adaptive run's accepted steps fixed: the replayed run
    reproduces the forward run bit for bit, on the same grid."""
    net, x, _ = random_problem(devices.ShiftedReLU())
    solution = simulate(net, x, solver=ks.Dopri5(rtol=1e-6))
    replayed = simulate(net, x, solver=replay_solver(solution))
    assert np.array_equal(replayed.final_state, solution.final_state)
    for a, b in zip(replayed.tapes, solution.tapes):
        assert np.array_equal(a.times, b.times)
    assert replayed.stats.n_rejected == 0


# ================================================================ forward vs adjoint
def mixed_problem(seed=0, capacitance=1.0):
    """A net whose layers hold several device families each."""
    rng = np.random.default_rng(seed)
    e0, e1 = LAYER_EDGES
    layer0 = ks.Layer.from_groups([
        (e0[:3], devices.Conductance(), rng.uniform(0.5, 2.0, (1, 3))),
        (e0[3:6], devices.DifferenceActivation("tanh"), random_params(devices.DifferenceActivation(), rng, 3)),
        (e0[6:], devices.ShiftedLeakyReLU(), random_params(devices.ShiftedLeakyReLU(), rng, 2)),
    ], 0.5)
    layer1 = ks.Layer.from_groups([
        (e1[:5], devices.AffineActivation("softplus"), random_params(devices.AffineActivation(), rng, 5)),
        (e1[5:], devices.Conductance(), rng.uniform(0.5, 2.0, (1, 3))),
    ], 0.5)
    net = ks.KirchhoffNet([layer0, layer1], num_nodes=NUM_NODES, readout=3,
                          capacitance=capacitance)
    x = rng.normal(0.0, 0.8, (3, 2))
    labels = rng.integers(0, 3, 3)
    return net, x, bind(cross_entropy, labels)


@pytest.mark.parametrize("make_solver", SOLVERS)
def test_forward_sensitivity_agrees_with_the_adjoint(make_solver):
    solver = make_solver()
    net, x, loss = mixed_problem(seed=2)
    rng = np.random.default_rng(5)
    grad = gradient(net, x, loss, solver)
    for _ in range(2):
        d = rng.normal(size=net.num_params)
        dx = rng.normal(size=x.shape)
        adjoint = grad.flat @ d + np.sum(grad.inputs * dx)
        final, tangent = forward_sensitivity(net, x, d, solver, input_direction=dx)
        assert np.array_equal(final, grad.solution.final_state)
        readout = net.readout - 1
        _, readout_bar = loss(final[:, readout])
        direct = np.sum(readout_bar * tangent[:, readout])
        assert abs(direct) > 1e-3
        assert abs(direct - adjoint) <= FORWARD_VS_ADJOINT_RTOL * max(abs(direct), abs(adjoint))


def test_forward_sensitivity_matches_finite_differences_of_the_final_state():
    """The direct method's tangent of every node (not only the read-out)."""
    net, x, _ = mixed_problem(seed=4)
    solver = ks.BDF2(dt=0.1)
    d = np.random.default_rng(0).normal(size=net.num_params)
    final, tangent = forward_sensitivity(net, x, d, solver)
    flat = net.get_flat_params()

    def state_at(delta):
        net.set_flat_params(flat + delta * d)
        try:
            return simulate(net, x, solver=solver).final_state
        finally:
            net.set_flat_params(flat)

    fd = (state_at(EPS) - state_at(-EPS)) / (2 * EPS)
    assert tangent.shape == final.shape == (x.shape[0], NUM_NODES)
    np.testing.assert_allclose(tangent, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


# ================================================================ structure of the net
@pytest.mark.parametrize("make_solver", [
    pytest.param(lambda: ks.Dopri5(rtol=1e-6), id="Dopri5-adaptive"),
    pytest.param(lambda: ks.BDF2(rtol=1e-3, atol=1e-5), id="BDF2-adaptive"),
])
def test_gradient_of_multi_group_net_with_input_nodes_readout_and_capacitance(make_solver):
    """Several device families per layer, input on nodes [3, 1] (not sorted, so a mix-up
    of the input columns shows), a read-out list [4, 2] and unequal capacitances."""
    rng = np.random.default_rng(7)
    net, _, _ = mixed_problem(seed=7)
    layers = net.layers
    net = ks.KirchhoffNet(layers, num_nodes=NUM_NODES, input_nodes=[3, 1], readout=[4, 2],
                          capacitance=[0.5, 2.0, 1.0, 1.5])
    x = rng.normal(0.0, 0.8, (3, 2))
    loss = bind(cross_entropy, np.array([0, 1, 1]))
    grad = gradient(net, x, loss, make_solver())
    assert [g.shape for g in grad.params] == [p.shape for p in net.parameters]
    assert grad.inputs.shape == x.shape
    check = check_gradient(net, x, loss, make_solver(), n_params=16, eps=EPS)
    assert np.abs(check.finite_difference).max() > 1e-3
    assert check.max_relative_error <= GRADIENT_RTOL, str(check)


def test_capacitance_changes_the_gradient():
    """C enters the adjoint (through C⁻¹ and the implicit matrices): doubling every
    capacitance halves the speed, so the gradient must change — and still check out."""
    net1, x, loss = mixed_problem(seed=3, capacitance=1.0)
    net2, _, _ = mixed_problem(seed=3, capacitance=2.0)
    g1 = gradient(net1, x, loss, ks.Trapezoidal(dt=0.1))
    g2 = gradient(net2, x, loss, ks.Trapezoidal(dt=0.1))
    assert not np.allclose(g1.flat, g2.flat, rtol=1e-3)
    check = check_gradient(net2, x, loss, ks.Trapezoidal(dt=0.1), n_params=8)
    assert check.max_relative_error <= GRADIENT_RTOL, str(check)


def test_gradient_loss_value_is_the_loss_of_the_forward_run():
    net, x, loss = mixed_problem(seed=1)
    grad = gradient(net, x, loss, ks.RK4(0.1))
    expected = loss(simulate(net, x, solver=ks.RK4(0.1)).readout(net))[0]
    assert grad.loss == expected


# ================================================================ bad input
def test_loss_with_wrong_shape_gradient_raises_input_error():
    net, x, _ = random_problem(devices.Conductance())
    with pytest.raises(InputError, match="shape"):
        gradient(net, x, lambda r: (0.0, np.zeros((r.shape[0], r.shape[1] + 1))), ks.RK4(0.25))
    with pytest.raises(InputError, match="shape"):
        gradient(net, x, lambda r: (0.0, np.zeros(r.shape[::-1])), ks.RK4(0.25))
    with pytest.raises(InputError, match="shape"):
        gradient(net, x, lambda r: (0.0, np.zeros(r.shape[0])), ks.RK4(0.25))


def test_forward_sensitivity_with_wrong_length_direction_raises_input_error():
    net, x, _ = random_problem(devices.Conductance())
    with pytest.raises(InputError, match="direction"):
        forward_sensitivity(net, x, np.ones(net.num_params + 1), ks.RK4(0.25))
    with pytest.raises(InputError, match="direction"):
        forward_sensitivity(net, x, np.ones(net.num_params - 1), ks.RK4(0.25))
    with pytest.raises(InputError, match="direction"):
        forward_sensitivity(net, x, [p.copy() for p in net.parameters][0], ks.RK4(0.25))


def test_forward_sensitivity_with_wrong_shape_input_direction_raises_input_error():
    """input_direction is documented as (B, d); another shape is a bad input and should
    say so (today numpy's own broadcasting ValueError escapes instead)."""
    net, x, _ = random_problem(devices.Conductance())
    d = np.zeros(net.num_params)
    with pytest.raises(InputError):
        forward_sensitivity(net, x, d, ks.RK4(0.25), input_direction=np.ones((x.shape[0], x.shape[1] + 1)))
    with pytest.raises(InputError):
        forward_sensitivity(net, x, d, ks.RK4(0.25), input_direction=np.ones((x.shape[0] + 1, x.shape[1])))


def test_gradient_rejects_a_bad_checkpoint_interval():
    net, x, loss = random_problem(devices.Conductance())
    with pytest.raises(InputError):
        gradient(net, x, loss, ks.RK4(0.25), checkpoint_every=0)


# ================================================================ work counters
RK_STAGES_REACHING_THE_RESULT = [
    pytest.param(lambda: ks.Euler(0.05), 1, id="Euler"),
    pytest.param(lambda: ks.Heun(0.05), 2, id="Heun"),
    pytest.param(lambda: ks.RK4(0.1), 4, id="RK4"),
    # Dopri5 has 7 stages, but the 7th (FSAL) has b₇ = 0 and feeds no later stage
    pytest.param(lambda: ks.Dopri5(dt=0.1), 6, id="Dopri5-fixed"),
    pytest.param(lambda: ks.Dopri5(rtol=1e-6), 6, id="Dopri5-adaptive"),
]


@pytest.mark.parametrize("make_solver, vjps_per_step", RK_STAGES_REACHING_THE_RESULT)
def test_explicit_backward_sweep_does_one_vjp_per_contributing_stage(make_solver, vjps_per_step):
    net, x, loss = random_problem(devices.ShiftedReLU())
    grad = gradient(net, x, loss, make_solver())
    steps = total_steps(grad.solution)
    assert steps == grad.solution.stats.n_steps > 0
    for tape in grad.solution.tapes:
        assert len(tape.states) == len(tape.times)
    assert grad.stats.n_vjps == vjps_per_step * steps
    assert grad.stats.n_lu == 0


@pytest.mark.parametrize("make_solver, tableau", [
    pytest.param(lambda: ks.RK4(0.1), CLASSIC_RK4, id="RK4"),
    pytest.param(lambda: ks.Dopri5(rtol=1e-6), DOPRI5, id="Dopri5-adaptive"),
    pytest.param(lambda: ks.Heun(0.05), HEUN, id="Heun"),
    pytest.param(lambda: ks.Euler(0.05), EULER, id="Euler"),
])
def test_explicit_backward_sweep_recomputes_only_the_stages_it_needs(make_solver, tableau):
    """The backward sweep rebuilds the stage inputs Y_j from the stored step start y. It
    needs Y_j only up to the last stage J whose weight b_J is non-zero (Dopri5's FSAL
    stage never reaches y⁺), and Y_J needs k_0..k_{J-1}: J f-evaluations per step —
    5 of Dopri5's 7 stages, none for Euler."""
    net, x, loss = random_problem(devices.ShiftedReLU())
    grad = gradient(net, x, loss, make_solver())
    steps = total_steps(grad.solution)
    last = max(j for j in range(tableau.stages) if tableau.b[j] != 0.0)
    assert grad.stats.n_fevals == last * steps


IMPLICIT_SOLVERS = [
    # (factory, VJPs per step as a function of (steps, layers))
    pytest.param(lambda: ks.BackwardEuler(dt=0.1), lambda n, layers: n, id="BackwardEuler-fixed"),
    pytest.param(lambda: ks.BackwardEuler(rtol=1e-2, atol=1e-4), lambda n, layers: n,
                 id="BackwardEuler-adaptive"),
    # the trapezoidal rule has β₁ ≠ 0: a second VJP at vₙ every step
    pytest.param(lambda: ks.Trapezoidal(dt=0.1), lambda n, layers: 2 * n, id="Trapezoidal-fixed"),
    # a fixed-grid BDF2 layer starts with one trapezoidal step (β₁ = ½)
    pytest.param(lambda: ks.BDF2(dt=0.1), lambda n, layers: n + layers, id="BDF2-fixed"),
    # an adaptive one starts with backward Euler (β₁ = 0)
    pytest.param(lambda: ks.BDF2(rtol=1e-3, atol=1e-5), lambda n, layers: n, id="BDF2-adaptive"),
]


@pytest.mark.parametrize("make_solver, expected_vjps", IMPLICIT_SOLVERS)
def test_implicit_backward_sweep_does_one_lu_per_step(make_solver, expected_vjps):
    net, x, loss = random_problem(devices.DifferenceActivation("tanh"))
    grad = gradient(net, x, loss, make_solver())
    steps = total_steps(grad.solution)
    assert steps == grad.solution.stats.n_steps > 0
    for tape in grad.solution.tapes:
        assert len(tape.states) == len(tape.times)
        assert len(tape.coefficients) == len(tape.times) - 1
    assert grad.stats.n_lu == steps
    assert grad.stats.n_jevals == steps
    assert grad.stats.n_newton == 0          # the backward sweep solves, never iterates
    assert grad.stats.n_vjps == expected_vjps(steps, len(net.layers))


# ================================================================ checkpointing
@pytest.mark.parametrize("make_solver", SOLVERS)
def test_checkpointed_gradient_is_bit_identical(make_solver):
    net, x, loss = mixed_problem(seed=6)
    full = gradient(net, x, loss, make_solver())
    checkpointed = gradient(net, x, loss, make_solver(), checkpoint_every=3)
    assert checkpointed.loss == full.loss
    assert np.array_equal(checkpointed.flat, full.flat)
    assert np.array_equal(checkpointed.inputs, full.inputs)
    # fewer states were kept by the forward run
    kept = sum(sum(s is not None for s in tape.states.stored) for tape in checkpointed.solution.tapes)
    assert kept < total_steps(full.solution) + len(net.layers)


def _peak_memory(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("make_solver", [
    pytest.param(lambda dt: ks.Euler(dt), id="Euler"),
    pytest.param(lambda dt: ks.BackwardEuler(dt=dt), id="BackwardEuler"),
])
def test_checkpointing_bounds_the_memory_of_long_runs(make_solver):
    """gradient(checkpoint_every=k) promises "less memory for long runs", and
    base.CheckpointedStates "memory drops from O(steps) to O(steps/k + k) states".
    Measured as the growth of the peak between a 100- and a 200-step run (constant
    temporaries cancel): with k = 10 it should be about 2/k = 0.2 states per extra step
    (a checkpoint and the state before it every k steps), not O(1). Explicit solvers
    do 0.2; Implicit.adjoint_layer allocates a zero cotangent for every step up front
    (``bars = [np.zeros_like(states[0]) for _ in states]``), O(steps) again: ~0.7."""
    net, _, _ = random_problem(devices.Conductance())
    rng = np.random.default_rng(0)
    batch = 1024
    x = rng.normal(size=(batch, 2))
    loss = bind(cross_entropy, rng.integers(0, 3, batch))
    peaks = [_peak_memory(lambda: gradient(net, x, loss, make_solver(dt), checkpoint_every=10))
             for dt in (0.01, 0.005)]
    state_bytes = (NUM_NODES + 1) * batch * 8
    states_per_extra_step = (peaks[1] - peaks[0]) / state_bytes / 100
    assert states_per_extra_step < 0.4, states_per_extra_step


def test_finite_differences_do_not_straddle_a_kink():
    # a ReLU switching inside the stencil (a trained net can put one anywhere): the slope
    # at θ is that of the side without the kink, not the average of both
    from kirchhoff_sim.sensitivity import finite_difference

    theta, eps = 0.2, 1e-6
    h = eps * theta
    kinked = lambda d: 0.3 + 2.0 * d + 5.0 * max(d - 0.5 * h, 0.0)
    value, _ = finite_difference(kinked, theta, eps, kinked(0.0))
    assert value == pytest.approx(2.0, rel=1e-7)
    below = lambda d: 0.3 - 3.0 * d + 4.0 * max(-0.25 * h - d, 0.0)
    assert finite_difference(below, theta, eps, below(0.0))[0] == pytest.approx(-3.0, rel=1e-7)


def test_finite_differences_in_round_off_take_the_smallest_safe_step_not_a_kinked_one():
    # the relative step moves a loss of 1 by a few ulps: the difference is taken at the
    # smallest step 4^k larger that is above round-off — not at 1 % of θ, which here
    # would cross the kink 1e-4·θ away and average two slopes
    from kirchhoff_sim.sensitivity import finite_difference

    theta, eps, slope = 0.2, 1e-6, 1e-3
    f = lambda d: 1.0 + slope * d + 1e-3 * max(d - 1e-4 * theta, 0.0)
    value, _ = finite_difference(f, theta, eps, f(0.0))
    assert value == pytest.approx(slope, rel=1e-6)
