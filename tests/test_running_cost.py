"""A running cost on the whole trajectory (the rails penalty of issue #10) in the discrete
adjoint: its gradient against central finite differences of the same discretisation, for
every solver family (adaptive runs replay their own step grid)."""

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim.sensitivity import gradient, replay_solver, running_cost_value
from kirchhoff_sim.solvers import make_solver
from kirchhoff_sim.training.constraints import rail_running_cost
from kirchhoff_sim.training.losses import bind, cross_entropy

import problems as P

SOLVERS = [dict(method="rk4", dt=0.05), dict(method="heun", dt=0.05), dict(method="dopri5", rtol=1e-6, atol=1e-8),
           dict(method="be", dt=0.05), dict(method="trap", dt=0.05), dict(method="bdf2", dt=0.05),
           dict(method="bdf2", rtol=1e-6, atol=1e-8), dict(method="trap", rtol=1e-6, atol=1e-8)]


def _net(seed=0):
    net = P.random_affine_tanh_net(0.3, seed)
    rng = np.random.default_rng(seed)
    rng.normal(size=sum(g.params.size for g in net.groups))     # the draws of the parameters
    return net, rng.normal(0.0, 2.0, (3, 2)), np.array([0, 1, 1])


@pytest.mark.parametrize("spec", SOLVERS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_running_cost_gradient_matches_finite_differences(spec):
    net, x, y = _net()
    cost = rail_running_cost(-0.5, 0.5, 0.7)
    loss = bind(cross_entropy, y)
    g = gradient(net, x, loss, solver=make_solver(**spec), running_cost=cost)
    plain = gradient(net, x, loss, solver=make_solver(**spec))
    assert g.loss > plain.loss + 1.0            # the trajectory does leave the ±0.5 rails
    solver = replay_solver(g.solution)          # the same step grid for every evaluation
    flat = net.get_flat_params()
    rng = np.random.default_rng(1)
    h = 1e-6
    for i in rng.choice(len(flat), 8, replace=False):
        values = []
        for sign in (+1, -1):
            shifted = flat.copy()
            shifted[i] += sign * h
            net.set_flat_params(shifted)
            values.append(gradient(net, x, loss, solver=solver, running_cost=cost).loss)
        net.set_flat_params(flat)
        fd = (values[0] - values[1]) / (2 * h)
        assert g.flat[i] == pytest.approx(fd, rel=1e-6, abs=1e-6 * np.abs(g.flat).max())


def test_running_cost_is_the_trapezoid_sum_over_step_states():
    net, x, _ = _net()
    solution = ks.simulate(net, x, solver=make_solver(method="rk4", dt=0.25), record_states=True)
    calls = []

    def cost(V):
        calls.append(V.copy())
        return float(V[1].sum()), np.zeros_like(V)

    total = running_cost_value(solution, cost)
    # two layers of two steps of 0.25: per layer weights 0.125, 0.25, 0.125
    expected = sum(c * s[1].sum() for tape in solution.tapes
                   for c, s in zip([0.125, 0.25, 0.125], tape.states))
    assert total == pytest.approx(expected, rel=1e-14)
    assert len(calls) == 6


def test_a_cost_that_is_zero_within_the_rails_changes_nothing():
    net, x, y = _net()
    wide = rail_running_cost(-1e3, 1e3, 1.0)
    loss = bind(cross_entropy, y)
    solver = make_solver(method="rk4", dt=0.05)
    a = gradient(net, x, loss, solver=solver, running_cost=wide)
    b = gradient(net, x, loss, solver=solver)
    assert a.loss == b.loss
    np.testing.assert_array_equal(a.flat, b.flat)
