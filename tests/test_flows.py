"""Continuous normalising flows (issue #15, DESIGN.md §9): the exact O(E) Jacobian trace,
its gradient, the log-density as augmented state and its discrete adjoint, the reverse
pass, sampling, and flow training through the trainer and the CLI.

Every derivative is checked against central finite differences; the log-density against
an exact solution (a linear flow: ``Δ = −T·tr A``, the map ``expm(A T)``) and against
itself (the density integrates to one, sampling and scoring agree, reverse ∘ forward is
the identity).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

import kirchhoff_sim as ks
from kirchhoff_sim import devices, flows
from kirchhoff_sim.cli import main
from kirchhoff_sim.errors import DatasetError, InputError
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.training.datasets import DENSITY_NAMES, load_density
from kirchhoff_sim.training.models import build_flow_net
from kirchhoff_sim.training.trainer import TrainConfig, evaluate, train

import problems as P

GRADIENT_RTOL = 1e-6      # the acceptance criterion for log-likelihood gradients
EPS = 1e-6

# every family and activation, with parameters away from kinks and inside the windows
FAMILIES = [
    *P.paper_families(),
    pytest.param(lambda: devices.Diode(thermal_voltage=1.0, default_i_s=0.2, default_r_s=0.0), id="Diode-ideal"),
    pytest.param(lambda: devices.Diode(thermal_voltage=0.5, default_i_s=0.2, default_r_s=0.7), id="Diode-series"),
    pytest.param(lambda: devices.TanhCell(slope=0.8, slope_per_log_amplitude=0.1, amplitude_min=0.05,
                                          amplitude_max=5.0), id="TanhCell"),
]

# 3 nodes + ground, every ordered pair once, ground included
EDGES = ks.topology.fully_connected(4, repeat=(1, 1))
CAPACITANCE = np.array([1.0, 0.7, 1.6])


def _params(device, n_edges, rng):
    if isinstance(device, devices.Diode):
        # small enough i_s for the ideal diode that its reversed (anti-dissipative,
        # exponential) field does not run away within the test's durations
        low, high = (0.1, 0.3) if device.default_r_s > 0 else (0.01, 0.03)
        return np.vstack([rng.uniform(low, high, n_edges), np.full(n_edges, device.default_r_s)])
    if isinstance(device, devices.TanhCell):
        return np.vstack([rng.normal(0, 0.3, n_edges), rng.choice([-1, 1], n_edges) * rng.uniform(0.3, 1.5, n_edges)])
    return rng.normal(0.0, 0.6, (device.n_params, n_edges))


def _net(make, layers=2, seed=0, duration=0.4):
    rng = np.random.default_rng(seed)
    device = make()
    if isinstance(device, devices.Diode):
        # a diode net reversed in time is anti-dissipative with an exponential current:
        # over 2 × 0.4 it runs away (a property of the circuit, not of the solver)
        duration = 0.1
    return ks.KirchhoffNet([ks.Layer(EDGES, device, duration, params=_params(device, len(EDGES), rng))
                            for _ in range(layers)], num_nodes=3, capacitance=CAPACITANCE)


def _state(rng, batch=4, scale=0.8):
    V = np.zeros((4, batch))
    V[1:] = rng.normal(0.0, scale, (3, batch))
    return V


def _central(f, x, eps=EPS):
    """Central differences of a scalar-or-vector ``f`` in every entry of ``x`` (a copy)."""
    out = []
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        out.append((np.asarray(f(plus)) - np.asarray(f(minus))) / (2 * eps))
    return np.array(out).reshape(x.shape + np.shape(out[0]))


def _inside_domain(net):
    """Flat mask of the parameters a central difference may move (not an ideal diode's
    r_s = 0, the edge of its domain)."""
    masks = []
    for layer in net.layers:
        for g in layer.groups:
            mask = np.ones(g.params.shape, bool)
            if isinstance(g.device, devices.Diode):
                mask[1] = g.params[1] > 0
            masks.append(mask.ravel())
    return np.concatenate(masks)


def _relative(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


# ---------------------------------------------------------------- device second derivatives
@pytest.mark.parametrize("make", FAMILIES)
def test_response_curvature_matches_finite_differences_of_the_slope(make):
    device = make()
    rng = np.random.default_rng(1)
    p = _params(device, 6, rng)[:, :, None]
    z = rng.uniform(-1.5, 1.5, (6, 3))
    if isinstance(device, (devices.ShiftedReLU, devices.ShiftedLeakyReLU)):
        z = p[0] + np.where(z > 0, 0.3, -0.3) + z      # off the knee
    slope = lambda z_, p_: np.broadcast_to(device.response_linearise(z_, p_, False)[1], z.shape)
    s, ds_dz, ds_dp = device.response_curvature(z, p)
    np.testing.assert_allclose(np.broadcast_to(s, z.shape), slope(z, p), rtol=1e-14, atol=1e-15)
    expected = (slope(z + EPS, p) - slope(z - EPS, p)) / (2 * EPS)
    got = np.zeros(z.shape) if ds_dz is None else np.broadcast_to(ds_dz, z.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
    for k in range(device.n_params):
        plus, minus = p.copy(), p.copy()
        plus[k] += EPS
        minus[k] -= EPS
        rtol = 1e-6
        if isinstance(device, devices.Diode) and device.param_names[k] == "r_s" and not p[k].any():
            # r_s = 0 is the edge of the domain: a one-sided difference into r_s > 0
            minus, rtol = p, 1e-4
        expected = (slope(z, plus) - slope(z, minus)) / (np.ravel(plus[k] - minus[k])[0])
        got = np.zeros(z.shape) if ds_dp[k] is None else np.broadcast_to(ds_dp[k], z.shape)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-8, err_msg=device.param_names[k])


def test_the_diode_curvature_on_its_linear_continuation():
    device = devices.Diode(thermal_voltage=0.02)
    p = np.array([[1e-3], [0.0]])[:, :, None]
    z = np.array([[devices.DIODE_EXP_LIMIT * 0.02 + 0.5]])   # beyond the exponential's limit
    _, ds_dz, (ds_dis, _) = device.response_curvature(z, p)
    assert ds_dz[0, 0] == 0.0                                 # a straight line in u
    slope = lambda i_s: device.response_linearise(z, np.array([[[i_s]], [[0.0]]]), False)[1]
    np.testing.assert_allclose(ds_dis, (slope(1e-3 + 1e-9) - slope(1e-3 - 1e-9)) / 2e-9, rtol=1e-6)


# ---------------------------------------------------------------- the Jacobian trace
@pytest.mark.parametrize("make", FAMILIES)
def test_jacobian_trace_equals_the_diagonal_of_a_finite_difference_jacobian(make):
    net = _net(make)
    V = _state(np.random.default_rng(2))
    for assembly in net.assemblies():
        diagonal = sum((assembly.rhs(V + EPS * e)[n] - assembly.rhs(V - EPS * e)[n]) / (2 * EPS)
                       for n in range(1, 4) for e in [np.eye(4)[n][:, None] * np.ones((1, V.shape[1]))])
        np.testing.assert_allclose(assembly.jacobian_trace(V), diagonal, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("make", FAMILIES)
def test_trace_vjp_matches_finite_differences_in_voltages_and_parameters(make):
    net = _net(make, layers=1)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(3)
    V = _state(rng)
    weight = rng.normal(size=V.shape[1])
    theta_bar = [np.zeros_like(p) for p in net.parameters]
    v_bar = assembly.trace_vjp(V, weight, theta_bar)
    objective = lambda V_: weight @ assembly.jacobian_trace(V_)
    expected_v = _central(lambda Vn: objective(np.vstack([np.zeros((1, V.shape[1])), Vn])), V[1:])
    np.testing.assert_allclose(v_bar[1:], expected_v, rtol=1e-6, atol=1e-8)
    assert np.all(v_bar[0] == 0)
    group = net.layers[0].groups[0]
    original = group.params.copy()

    def at(params):
        group.params[...] = params
        return weight @ assembly.jacobian_trace(V)
    try:
        expected_p = _central(at, original)
    finally:
        group.params[...] = original
    # the ideal diode's r_s = 0 is the edge of its domain (checked one-sided above)
    rows = [k for k, name in enumerate(group.device.param_names)
            if not (isinstance(group.device, devices.Diode) and name == "r_s" and not original[k].any())]
    np.testing.assert_allclose(theta_bar[0][rows], expected_p[rows], rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- the log-density
def test_a_linear_flow_has_the_exact_map_and_log_density_change():
    """f = A v with A = C⁻¹K: the map is expm(A·T) and Δ = −T·tr A (Liouville)."""
    rng = np.random.default_rng(4)
    g = rng.uniform(0.2, 1.0, len(EDGES))
    net = ks.KirchhoffNet([ks.Layer(EDGES, devices.Conductance(), 0.7, params=g[None])], num_nodes=3,
                          capacitance=CAPACITANCE)
    A = P.conductance_matrix(EDGES, g, 3) / CAPACITANCE[:, None]
    x = rng.normal(size=(5, 3))
    run = flows.flow(net, x, solver=ks.Dopri5(rtol=1e-11, atol=1e-13))
    np.testing.assert_allclose(run.state, x @ expm(A * 0.7).T, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(run.log_density_change, -0.7 * np.trace(A), rtol=1e-10)
    back = flows.flow(net, run.state, reverse=True, solver=ks.Dopri5(rtol=1e-11, atol=1e-13))
    np.testing.assert_allclose(back.log_density_change, 0.7 * np.trace(A), rtol=1e-10)


@pytest.mark.parametrize("make", FAMILIES)
def test_reverse_then_forward_returns_the_start(make):
    net = _net(make)
    x = np.random.default_rng(5).normal(0, 0.8, (6, 3))
    solver = ks.Dopri5(rtol=1e-9, atol=1e-11)
    back = flows.flow(net, x, reverse=True, solver=solver)
    again = flows.flow(net, back.state, solver=solver)
    np.testing.assert_allclose(again.state, x, atol=1e-7)
    # a piecewise-linear family's trace jumps where a device crosses its knee: the
    # log-density's integrand is discontinuous there, which an order-5 error estimate
    # resolves only to about 1e-6 at this tolerance (the voltages, continuous, to 1e-7)
    kinked = any(getattr(g.device, "_act", getattr(g.device, "activation", None)).name in ("relu", "leaky_relu")
                 for layer in net.layers for g in layer.groups
                 if hasattr(g.device, "_act") or hasattr(g.device, "activation"))
    np.testing.assert_allclose(again.log_density_change, -back.log_density_change, atol=1e-5 if kinked else 1e-7)


def test_the_density_of_a_2d_flow_integrates_to_one_and_sampling_agrees_with_scoring():
    net = build_flow_net(2, repeat=(3, 3), seed=2, init="normal")
    for layer in net.layers:
        layer.groups[0].params[...] = np.random.default_rng(6).normal(0, 0.5, layer.groups[0].params.shape)
    solver = ks.Dopri5(rtol=1e-8, atol=1e-10)
    grid = np.linspace(-7, 7, 141)
    gx, gy = np.meshgrid(grid, grid)
    density = np.exp(flows.log_likelihood(net, np.column_stack([gx.ravel(), gy.ravel()]), solver=solver))
    assert density.sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=2e-3)
    x, logp = flows.sample(net, 50, rng=0, solver=solver)
    np.testing.assert_allclose(flows.log_likelihood(net, x, solver=solver), logp, atol=1e-6)


@pytest.mark.parametrize("make", FAMILIES)
@pytest.mark.parametrize("solver", [lambda: ks.RK4(0.1), lambda: ks.Dopri5(dt=0.2), lambda: ks.Heun(0.05)],
                         ids=["RK4", "Dopri5-fixed", "Heun"])
def test_nll_gradient_matches_finite_differences(make, solver):
    net = _net(make)
    x = np.random.default_rng(7).normal(0, 0.8, (5, 3))
    g = flows.nll_gradient(net, x, solver=solver())
    _assert_gradient_is_the_finite_difference(
        net, g, lambda xx: -flows.log_likelihood(net, xx, solver=solver()).mean(), x, chosen_seed=8, count=12)


def _assert_gradient_is_the_finite_difference(net, g, loss, x, chosen_seed, count):
    """``g`` (a FlowGradient at points ``x``) against central differences of ``loss(x)``
    in ``count`` random parameters and in every coordinate of ``x``."""
    assert g.loss == pytest.approx(loss(x), rel=1e-13)
    flat = net.get_flat_params()
    chosen = np.random.default_rng(chosen_seed).choice(np.flatnonzero(_inside_domain(net)), count, replace=False)

    def at(values):
        theta = flat.copy()
        theta[chosen] = values
        net.set_flat_params(theta)
        return loss(x)
    try:
        expected = _central(at, flat[chosen])
    finally:
        net.set_flat_params(flat)
    assert _relative(g.flat[chosen], expected) <= GRADIENT_RTOL
    assert _relative(g.inputs, _central(loss, x)) <= GRADIENT_RTOL


def test_an_adaptive_nll_gradient_is_the_adjoint_of_its_own_step_grid():
    """With Dopri5 adaptive, the gradient is that of the run on the accepted grid: finite
    differences on that grid (replayed as fixed steps) agree to round-off."""
    net = _net(lambda: devices.AffineActivation("tanh"))
    x = np.random.default_rng(9).normal(0, 0.8, (4, 3))
    g = flows.nll_gradient(net, x, solver=ks.Dopri5(rtol=1e-6, atol=1e-8))
    run = flows.flow(net, x, reverse=True, solver=ks.Dopri5(rtol=1e-6, atol=1e-8), record_states=True)
    assert len(run.tapes[0][0].times) > 3
    # the same grid as a fixed-step replay: Dopri5 with the recorded steps
    from kirchhoff_sim.solvers.base import GridStep
    from kirchhoff_sim.solvers.explicit import DOPRI5, RungeKutta
    replay = RungeKutta(DOPRI5, GridStep([tape.times for tape, _ in run.tapes], [0] * len(run.tapes)))
    np.testing.assert_allclose(flows.nll_gradient(net, x, solver=replay).flat, g.flat, rtol=1e-12, atol=1e-14)


def test_batch_pieces_give_the_whole_batch_result():
    net = _net(lambda: devices.AffineActivation("tanh"))
    x = np.random.default_rng(10).normal(0, 0.8, (7, 3))
    whole = flows.nll_gradient(net, x, solver=ks.RK4(0.1), max_batch=None)
    split = flows.nll_gradient(net, x, solver=ks.RK4(0.1), max_batch=3)
    assert split.loss == pytest.approx(whole.loss, rel=1e-14)
    np.testing.assert_allclose(split.flat, whole.flat, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(flows.log_likelihood(net, x, solver=ks.RK4(0.1), max_batch=2),
                               whole.log_likelihood, rtol=1e-13)


# ---------------------------------------------------------------- potentials (reverse KL)
EDGES_2D = ks.topology.fully_connected(3, repeat=(1, 1))


def _net_2d(make, layers=2, seed=0, duration=0.3):
    rng = np.random.default_rng(seed)
    device = make()
    return ks.KirchhoffNet([ks.Layer(EDGES_2D, device, duration, params=_params(device, len(EDGES_2D), rng))
                            for _ in range(layers)], num_nodes=2, capacitance=CAPACITANCE[:2])


def test_the_potentials_are_rezende_and_mohamed_u1_u2_with_their_gradients():
    u1, u2 = flows.POTENTIALS["potential1"], flows.POTENTIALS["potential2"]
    # U1 at (x, 0): the ring term vanishes at radius 2, the lobes at x1 = ±2
    assert u1(np.array([[2.0, 0.0]]))[0] == pytest.approx(-np.log(1 + np.exp(-0.5 * (4 / 0.6) ** 2)), abs=1e-15)
    assert u1(np.array([[0.0, 1.0]]))[0] == pytest.approx(0.5 * (1 / 0.4) ** 2 - np.log(2 * np.exp(-0.5 * 2 ** 2 / 0.36)))
    # U2 vanishes on the wave x2 = sin(π x1 / 2)
    assert u2(np.array([[1.0, 1.0], [3.0, -1.0]])) == pytest.approx([0.0, 0.0], abs=1e-14)
    assert u2(np.array([[0.0, 0.4]]))[0] == pytest.approx(0.5)
    x = np.random.default_rng(11).normal(0, 1.5, (6, 2))
    for u in (u1, u2):
        expected = np.stack([_central(lambda p: u(p[None])[0], row) for row in x])
        np.testing.assert_allclose(u.grad(x), expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("make", FAMILIES)
@pytest.mark.parametrize("potential", ["potential1", "potential2"])
def test_reverse_kl_gradient_matches_finite_differences(make, potential):
    net = _net_2d(make)
    z = np.random.default_rng(12).normal(0, 1.0, (5, 2))
    solver = lambda: ks.RK4(0.1)                       # noqa: E731
    g = flows.reverse_kl_gradient(net, potential, z, solver=solver())
    x, log_q = flows.sample(net, 5, rng=np.random.default_rng(12), solver=solver())
    np.testing.assert_allclose(g.log_likelihood, log_q, rtol=1e-13)
    _assert_gradient_is_the_finite_difference(
        net, g, lambda zz: flows.reverse_kl(net, potential, zz, solver=solver()).mean(), z, chosen_seed=13, count=10)


def test_reverse_kl_pieces_and_refusals():
    net = _net_2d(lambda: devices.AffineActivation("tanh"))
    z = np.random.default_rng(14).normal(0, 1.0, (7, 2))
    whole = flows.reverse_kl_gradient(net, "potential2", z, solver=ks.RK4(0.1), max_batch=None)
    split = flows.reverse_kl_gradient(net, flows.POTENTIALS["potential2"], z, solver=ks.RK4(0.1), max_batch=3)
    assert split.loss == pytest.approx(whole.loss, rel=1e-14)
    np.testing.assert_allclose(split.flat, whole.flat, rtol=1e-12, atol=1e-15)
    with pytest.raises(InputError, match="unknown potential 'potential3'.*potential1, potential2"):
        flows.reverse_kl(net, "potential3", z)
    with pytest.raises(InputError, match="potential must be"):
        flows.reverse_kl_gradient(net, lambda x: x, z)
    with pytest.raises(InputError, match="2-D"):
        flows.reverse_kl(_net(lambda: devices.AffineActivation("tanh")), "potential1", np.zeros((2, 3)))
    # non-finite points are the caller's error, not a diverged circuit
    for bad in (np.nan, np.inf):
        with pytest.raises(InputError, match="input sample 0, feature 0"):
            flows.reverse_kl_gradient(net, "potential1", [[bad, 0.0], [0.0, 0.0]])
        with pytest.raises(InputError, match="input sample 1, feature 1"):
            flows.log_likelihood(net, [[0.0, 0.0], [0.0, bad]])
    # a user's potential must give one finite energy and gradient pair a point
    u2 = flows.POTENTIALS["potential2"]
    cases = {"gradient gave float64\\(7, 1\\)": flows.Potential("wide", u2.energy, lambda x: x[:, :1]),
             "energy gave float64\\(\\)": flows.Potential("scalar", lambda x: 0.0, u2.gradient),
             "gradient is not finite": flows.Potential("nan", u2.energy, lambda x: x * np.nan)}
    for match, potential in cases.items():
        with pytest.raises(InputError, match=match):
            flows.reverse_kl_gradient(net, potential, z, solver=ks.RK4(0.1))
    with pytest.raises(InputError, match="takes points \\(B, 2\\)"):
        u2([1.0, 2.0, 3.0])
    with pytest.raises(DatasetError, match="unknown density"):
        load_density(np.array(["potential1", "x"]))


# ---------------------------------------------------------------- refusals
def test_refusals_name_what_is_wrong():
    net = _net(lambda: devices.AffineActivation("tanh"))
    with pytest.raises(InputError, match="explicit"):
        flows.flow(net, np.zeros((2, 3)), solver=ks.BDF2(dt=0.1))
    with pytest.raises(InputError, match="one column per node"):
        flows.log_likelihood(net, np.zeros((2, 2)))
    with pytest.raises(InputError, match="inputs"):
        flows.nll_gradient(net, np.zeros((0, 3)))
    with pytest.raises(InputError, match="n_samples"):
        flows.sample(net, 0)
    with pytest.raises(InputError, match="max_batch"):
        flows.log_likelihood(net, np.zeros((2, 3)), max_batch=0)
    other = ks.KirchhoffNet(net.layers, num_nodes=3, input_nodes=[2, 3])
    with pytest.raises(InputError):
        flows.flow(other, np.zeros((1, 3)))
    with pytest.raises(InputError, match="2-D"):
        flows.plot_flow(net, np.zeros((3, 3)))
    with pytest.raises(DatasetError, match="twomoon"):
        load_density("moons")


@pytest.mark.parametrize("name", DENSITY_NAMES)
def test_every_density_draws_its_points_reproducibly(name):
    a, b = load_density(name, n_samples=400, seed=3), load_density(name, n_samples=400, seed=3)
    assert a.X_train.shape[1] == 2 and len(a.X_train) + len(a.X_test) == 400
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert np.isfinite(a.X_train).all() and a.y_train.shape == (len(a.X_train), 0)


# ---------------------------------------------------------------- training
def test_training_a_flow_lowers_the_test_negative_log_likelihood():
    data = load_density("twomoon", n_samples=512, seed=0)
    net = build_flow_net(2, repeat=(4, 4), seed=0)
    solver = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-6}
    before = evaluate(net, data.X_test, data.y_test, "nll", ks.Dopri5(rtol=1e-4, atol=1e-6))["loss"]
    config = TrainConfig(epochs=3, batch_size=128, lr=2e-2, loss="nll", validation_fraction=0.0, solver=solver)
    result = train(net, data, config, progress=False, log=None)
    after = evaluate(net, data.X_test, data.y_test, "nll", ks.Dopri5(rtol=1e-4, atol=1e-6))["loss"]
    assert after < before - 0.3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_cli_trains_a_flow_with_its_plot(tmp_path, capsys):
    out, png = tmp_path / "moons_flow.npz", tmp_path / "flow.png"
    assert main(["train", "--flow", "--task", "twomoon", "--epochs", "1", "--batch-size", "512",
                 "--out", str(out), "--plot", str(png), "--no-progress"]) == 0
    net, meta, _ = read_model_file(out)
    assert meta["flow"] == {"dim": 2, "base": "standard normal", "sample_direction": "forward",
                            "density_direction": "reverse", "trained_by": "maximum likelihood of data"}
    assert meta["training"]["config"]["loss"] == "nll" and np.isfinite(meta["test"]["nll"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "negative log-likelihood" in capsys.readouterr().out
    # evaluate finds the density from the model's metadata and gives the same test NLL
    assert main(["evaluate", str(out), "--json", "--no-feasibility"]) == 0
    import json
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "twomoon" and result["test_loss"] == pytest.approx(meta["test"]["nll"], rel=1e-12)


def test_training_a_flow_by_reverse_kl_lowers_its_test_kl():
    data = load_density("potential1", n_samples=512, seed=0)
    net = build_flow_net(2, repeat=(4, 4), seed=0)
    solver = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-6}
    loss = "reverse_kl:potential1"
    before = evaluate(net, data.X_test, data.y_test, loss, ks.Dopri5(rtol=1e-4, atol=1e-6))["loss"]
    config = TrainConfig(epochs=3, batch_size=128, lr=2e-2, loss=loss, validation_fraction=0.0, solver=solver)
    train(net, data, config, progress=False, log=None)
    after = evaluate(net, data.X_test, data.y_test, loss, ks.Dopri5(rtol=1e-4, atol=1e-6))["loss"]
    assert after < before - 0.3
    # the test points are base draws: N(0, I), mean 0 and unit spread
    assert np.abs(data.X_train.mean(axis=0)).max() < 0.15 and np.abs(data.X_train.std(axis=0) - 1).max() < 0.1


def test_cli_trains_a_flow_on_a_potential_and_evaluates_it(tmp_path, capsys):
    out, png = tmp_path / "p2.npz", tmp_path / "p2.png"
    assert main(["train", "--flow", "--task", "potential2", "--epochs", "1", "--batch-size", "512",
                 "--out", str(out), "--plot", str(png), "--no-progress"]) == 0
    net, meta, _ = read_model_file(out)
    assert meta["flow"]["potential"] == "potential2"
    assert meta["training"]["config"]["loss"] == "reverse_kl:potential2"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "reverse KL to potential2" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json", "--no-feasibility"]) == 0
    import json
    result = json.loads(capsys.readouterr().out)
    assert result["test_loss"] == pytest.approx(meta["test"]["reverse_kl"], rel=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["--flow", "--task", "moons"], "density"),
    (["--task", "potential1"], "is a potential: train it as a flow with --flow"),
    (["--task", "twomoon"], "--flow"),
    (["--flow", "--task", "twomoon", "--hidden", "3"], "--hidden"),
    (["--flow", "--task", "twomoon", "--method", "bdf2"], "implicit"),
])
def test_cli_refuses_flow_options_in_one_line(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()


# ---------------------------------------------------------------- the estimator
def test_the_flow_estimator_fits_scores_samples_and_pickles():
    import pickle

    from kirchhoff_sim.training.estimators import KirchhoffFlow

    data = load_density("twomoon", n_samples=512, seed=1)
    untrained = KirchhoffFlow(repeat=(4, 4), epochs=0 + 1, lr=1e-12).fit(data.X_train)
    flow_ = KirchhoffFlow(repeat=(4, 4), epochs=3, batch_size=128).fit(data.X_train)
    assert flow_.score(data.X_test) > untrained.score(data.X_test) + 0.3
    np.testing.assert_allclose(flow_.score_samples(data.X_test[:5]),
                               flows.log_likelihood(flow_.net_, data.X_test[:5], solver=ks.Dopri5(rtol=1e-4, atol=1e-6)))
    points = flow_.sample(20, random_state=3)
    assert points.shape == (20, 2)
    np.testing.assert_array_equal(points, flow_.sample(20, random_state=3))
    again = pickle.loads(pickle.dumps(flow_))
    np.testing.assert_array_equal(again.score_samples(data.X_test[:5]), flow_.score_samples(data.X_test[:5]))
    with pytest.raises(InputError, match="explicit"):
        KirchhoffFlow(method="bdf2").fit(data.X_train)
