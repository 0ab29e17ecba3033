"""A large batch is split into pieces with step grids of their own (issue #14): one grid
for the whole batch lets its hardest sample set every step, so the cost grew faster than
the batch. Results must not depend on the split beyond the solver's tolerance; with a
fixed step grid they must not depend on it at all (to round-off), gradients and tangents
included; the work is the pieces' work."""

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim import kinn
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.sensitivity import forward_sensitivity, gradient, replay_solver
from kirchhoff_sim.solvers import simulate
from kirchhoff_sim.solvers.simulate import MAX_BATCH
from kirchhoff_sim.training.constraints import rail_running_cost
from kirchhoff_sim.training.losses import bind, cross_entropy

import problems as P


def _net(seed=0):
    return P.random_affine_tanh_net(0.5, seed)


def _inputs(batch, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (batch, 2))
    return x, rng.integers(0, 2, batch)


def test_split_result_is_the_whole_batch_result_to_the_tolerance():
    net = _net()
    x, _ = _inputs(30)
    solver = ks.Dopri5(rtol=1e-9, atol=1e-11)
    whole = simulate(net, x, solver=solver, max_batch=None, save_at=[0.25, 0.5, 1.0])
    split = simulate(net, x, solver=solver, max_batch=7, save_at=[0.25, 0.5, 1.0])
    assert whole.pieces is None and len(whole.parts()) == 1
    assert [(rows.start, rows.stop) for rows, _ in split.parts()] == [(0, 6), (6, 12), (12, 18), (18, 24), (24, 30)]
    assert split.tapes is None
    scale = np.abs(whole.final_state).max()
    np.testing.assert_allclose(split.final_state, whole.final_state, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(split.node_voltages, whole.node_voltages, rtol=0, atol=1e-8 * scale)
    # each piece is exactly a run of its own rows, and the work is the pieces' work
    steps = 0
    for rows, part in split.parts():
        alone = simulate(net, x[rows], solver=solver, max_batch=None)
        np.testing.assert_array_equal(part.final_state, alone.final_state)
        assert part.stats == alone.stats
        steps += part.stats.n_steps
    assert split.stats.n_steps == steps


def test_split_with_a_fixed_grid_changes_nothing():
    net = _net()
    x, _ = _inputs(11)
    solver = ks.RK4(0.05)
    whole = simulate(net, x, solver=solver, max_batch=None)
    split = simulate(net, x, solver=solver, max_batch=4)
    np.testing.assert_allclose(split.final_state, whole.final_state, rtol=1e-14, atol=1e-15)
    assert split.stats.n_fevals == 3 * whole.stats.n_fevals     # one evaluation a piece a stage


@pytest.mark.parametrize("checkpoint_every", [1, 3])
def test_split_gradient_equals_the_whole_batch_gradient_on_a_fixed_grid(checkpoint_every):
    net = _net()
    x, y = _inputs(11)
    loss = bind(cross_entropy, y)
    cost = rail_running_cost(-0.5, 0.5, 0.3)
    solver = ks.RK4(0.05)
    whole = gradient(net, x, loss, solver, checkpoint_every, running_cost=cost, max_batch=None)
    split = gradient(net, x, loss, solver, checkpoint_every, running_cost=cost, max_batch=4)
    assert len(split.solution.parts()) == 3
    assert split.loss == pytest.approx(whole.loss, rel=1e-13)
    np.testing.assert_allclose(split.flat, whole.flat, rtol=1e-12, atol=1e-14 * np.abs(whole.flat).max())
    np.testing.assert_allclose(split.inputs, whole.inputs, rtol=1e-12, atol=1e-15)


def test_split_adaptive_gradient_is_the_sum_of_the_pieces_gradients():
    # each piece is swept back on its own grid: a gradient of a sum over samples is the
    # sum of the pieces' gradients, each on its own rows
    net = _net()
    x, y = _inputs(9)
    solver = ks.Dopri5(rtol=1e-6, atol=1e-8)
    weights = np.linspace(0.5, 1.5, len(x))

    def loss_of(rows):
        def loss(readout):
            w = weights[rows][:, None]
            return float(np.sum(w * readout ** 2)), 2.0 * w * readout
        return loss

    split = gradient(net, x, loss_of(slice(0, 9)), solver, max_batch=4)
    total = 0.0
    for rows, _ in split.solution.parts():
        piece = gradient(net, x[rows], loss_of(rows), solver, max_batch=None)
        total = total + piece.flat
        np.testing.assert_array_equal(split.inputs[rows], piece.inputs)
    np.testing.assert_allclose(split.flat, total, rtol=1e-13, atol=1e-16)


def test_split_forward_sensitivity_on_a_fixed_grid():
    net = _net()
    x, _ = _inputs(7)
    direction = np.random.default_rng(2).normal(size=net.num_params)
    solver = ks.RK4(0.05)
    whole = forward_sensitivity(net, x, direction, solver, input_direction=np.ones_like(x), max_batch=None)
    split = forward_sensitivity(net, x, direction, solver, input_direction=np.ones_like(x), max_batch=3)
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(split[1], whole[1], rtol=1e-12, atol=1e-14)


def test_split_kinn_gradient_on_a_fixed_grid():
    net = kinn.KinnNet(4, 2, 3, 2, durations=(1.0, 0.5), seed=3)
    rng = np.random.default_rng(4)
    net.b[:] = rng.normal(size=net.b.shape)
    x = rng.normal(size=(10, 3))
    loss = bind(cross_entropy, rng.integers(0, 2, 10))
    solver = ks.RK4(0.05)
    whole = kinn.gradient(net, x, loss, solver, rail=0.2, max_batch=None)
    split = kinn.gradient(net, x, loss, solver, rail=0.2, max_batch=3)
    assert len(split.solution.parts()) == 4
    assert split.value == pytest.approx(whole.value, rel=1e-13)
    for a, b in zip(split.grads, whole.grads):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14 * max(1.0, np.abs(b).max()))
    np.testing.assert_allclose(split.inputs, whole.inputs, rtol=1e-11, atol=1e-15)


def test_default_max_batch_splits_only_large_batches():
    net = _net()
    x = np.random.default_rng(0).normal(0, 0.3, (MAX_BATCH + 1, 2))
    solution = simulate(net, x, solver=ks.RK4(0.25))
    assert [rows.stop - rows.start for rows, _ in solution.parts()] == [(MAX_BATCH + 1) // 2, (MAX_BATCH + 2) // 2]
    assert simulate(net, x[:MAX_BATCH], solver=ks.RK4(0.25)).pieces is None


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True, np.nan])
def test_bad_max_batch_is_refused(bad):
    with pytest.raises(InputError, match="max_batch"):
        simulate(_net(), _inputs(4)[0], max_batch=bad)


def test_a_split_run_cannot_be_replayed_whole():
    net = _net()
    split = simulate(net, _inputs(6)[0], solver=ks.Dopri5(rtol=1e-6), max_batch=3)
    with pytest.raises(InputError, match="split into 2 pieces"):
        replay_solver(split)
    replay_solver(split.parts()[1][1])      # a piece replays
