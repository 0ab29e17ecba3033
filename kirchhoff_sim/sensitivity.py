"""Sensitivity analysis: gradients of a loss on the read-out through the transient.

Training a KirchhoffNet is a transient sensitivity analysis. The gradient of a loss
``L(v_T[readout])`` with respect to every device parameter and every input voltage comes
from the **discrete adjoint**: the exact transpose of the forward scheme on the forward
run's own step grid (DESIGN.md §4). Each solver supplies ``adjoint_layer`` next to the
scheme it transposes (:mod:`~kirchhoff_sim.solvers.explicit`,
:mod:`~kirchhoff_sim.solvers.implicit`); this module runs the forward pass with its
states recorded, seeds ``v̄_T = ∂L/∂v_T`` and sweeps the layers backwards. Nothing is
integrated backwards in time, so the result matches finite differences of the *same*
simulation to round-off — :func:`check_gradient` shows it.

The forward (direct) method, :func:`forward_sensitivity`, propagates tangents along the
same grid instead: cheaper when only a few parameter directions matter.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ParameterError
from .solvers import Solution, simulate
from .solvers.base import CheckpointedStates, GridStep, Stats


@dataclass
class Gradient:
    """A loss and its gradients.

    Attributes
    ----------
    loss : float
    params : list of ndarray
        ``∂L/∂θ``, one ``(n_params, E_g)`` array per group, like ``net.parameters``.
    inputs : ndarray, shape (B, d)
        ``∂L/∂x`` for the input voltages (columns in the order of the input nodes).
    solution : Solution
        The forward run (with its step grid and states).
    stats : Stats
        Work of the backward sweep.
    """

    loss: float
    params: list
    inputs: np.ndarray
    solution: Solution
    stats: Stats

    @property
    def flat(self) -> np.ndarray:
        """``∂L/∂θ`` flattened like :meth:`KirchhoffNet.get_flat_params`."""
        return np.concatenate([g.ravel() for g in self.params])


def _input_nodes(net, x) -> np.ndarray:
    x = np.asarray(x)
    width = x.shape[-1]
    return net.input_nodes if net.input_nodes is not None else np.arange(1, width + 1)


def _checkpointed(solution, net, every: int, stats):
    """Give every tape a state store that replays the steps between checkpoints."""
    for k, tape in enumerate(solution.tapes):
        if every > 1:
            assembly = net.assemblies()[k]

            def replay(start, stop, y_start, y_before, tape=tape, assembly=assembly):
                return solution.solver.replay(assembly, tape, start, stop, y_start, y_before, stats)
            tape.states = CheckpointedStates(tape.states, every, replay)


def gradient(net, x, loss, solver=None, checkpoint_every: int = 1) -> Gradient:
    """Loss and its gradient by the discrete adjoint.

    Parameters
    ----------
    net : KirchhoffNet
    x : array_like, shape (B, d)
        Input voltages.
    loss : callable
        ``loss(readout) -> (value, d value / d readout)`` with ``readout`` the
        ``(B, n_readout)`` voltages at ``T`` (see :mod:`kirchhoff_sim.training.losses`).
    solver : optional
        Any solver (default :func:`~kirchhoff_sim.Dopri5`); adaptive step sizes are held
        fixed at those the forward run accepted.
    checkpoint_every : int
        Keep every step's state (1, the default) or only every ``k``-th and recompute the
        rest in the backward sweep: less memory for long runs, same gradient.

    Returns
    -------
    Gradient
    """
    solution = simulate(net, x, solver=solver, record_states=checkpoint_every)
    stats = Stats()
    _checkpointed(solution, net, checkpoint_every, stats)
    value, readout_bar = loss(solution.readout(net))
    readout_bar = np.asarray(readout_bar, dtype=float)
    if readout_bar.shape != (solution.final_state.shape[0], len(net.readout)):
        raise InputError(f"loss gradient has shape {readout_bar.shape}, expected "
                         f"{(solution.final_state.shape[0], len(net.readout))}")
    y_bar = np.zeros((net.num_nodes + 1, readout_bar.shape[0]))
    y_bar[net.readout] = readout_bar.T
    theta_bar = [np.zeros_like(p) for p in net.parameters]
    offsets = np.cumsum([0] + [len(l.groups) for l in net.layers])
    for k in reversed(range(len(net.layers))):
        assembly = net.assemblies()[k]
        y_bar = solution.solver.adjoint_layer(assembly, solution.tapes[k], y_bar,
                                              theta_bar[offsets[k]:offsets[k + 1]], stats)
    inputs_bar = y_bar[_input_nodes(net, x)].T.copy()
    return Gradient(float(value), theta_bar, inputs_bar, solution, stats)


def forward_sensitivity(net, x, direction, solver=None, input_direction=None):
    """Directional derivative of the final state by the forward (direct) method.

    Parameters
    ----------
    direction : array_like
        A direction in parameter space, flattened like ``net.get_flat_params()``
        (or None for no parameter change).
    input_direction : array_like, shape (B, d), optional
        A direction for the input voltages.

    Returns
    -------
    final_state : ndarray, shape (B, N)
    tangent : ndarray, shape (B, N)
        ``d v_T / dε`` for ``θ + ε·direction`` (and ``x + ε·input_direction``).
    """
    solution = simulate(net, x, solver=solver, record_states=True)
    theta_dot = None
    if direction is not None:
        direction = np.asarray(direction, dtype=float)
        if direction.shape != (net.num_params,):
            raise InputError(f"direction must have shape ({net.num_params},), got {direction.shape}")
        theta_dot, offset = [], 0
        for p in net.parameters:
            theta_dot.append(direction[offset:offset + p.size].reshape(p.shape))
            offset += p.size
    y_dot = np.zeros((net.num_nodes + 1, solution.final_state.shape[0]))
    if input_direction is not None:
        nodes = _input_nodes(net, x)
        input_direction = np.asarray(input_direction, dtype=float)
        if input_direction.shape != (y_dot.shape[1], len(nodes)):
            raise InputError(f"input_direction must have shape {(y_dot.shape[1], len(nodes))} "
                             f"(batch, input nodes), got {input_direction.shape}")
        y_dot[nodes] = input_direction.T
    offsets = np.cumsum([0] + [len(l.groups) for l in net.layers])
    stats = Stats()
    for k, assembly in enumerate(net.assemblies()):
        group_dots = None if theta_dot is None else theta_dot[offsets[k]:offsets[k + 1]]
        y_dot = solution.solver.tangent_layer(assembly, solution.tapes[k], y_dot, group_dots, stats)
    return solution.final_state, y_dot[1:].T.copy()


def replay_solver(solution: Solution):
    """A copy of the run's solver that replays its accepted step grid exactly."""
    replay = copy.copy(solution.solver)
    replay.step = GridStep.replay(solution)
    return replay


@dataclass
class GradientCheck:
    """Adjoint against central finite differences of the same discretisation."""

    indices: np.ndarray
    adjoint: np.ndarray
    finite_difference: np.ndarray
    max_relative_error: float
    eps: float

    def __str__(self):
        return (f"gradient check on {len(self.indices)} parameters: max relative error "
                f"{self.max_relative_error:.2e} (eps={self.eps:g})")


def check_gradient(net, x, loss, solver=None, n_params: int = 10, eps: float = 1e-6,
                   seed: int = 0, include_inputs: bool = True) -> GradientCheck:
    """Compare the adjoint gradient with central finite differences.

    The finite differences replay the forward run's step grid (:func:`replay_solver`),
    so both sides differentiate the same discrete map. ``n_params`` parameters are
    sampled at random (plus every input voltage of the first sample when
    ``include_inputs``). Steps are ``eps·|θ|`` (``eps`` where θ = 0); where ``θ − step``
    leaves a device's domain a one-sided second-order difference is used. The relative error is ``|g_adj − g_fd| / max(|g_fd|, scale)``
    with ``scale`` the largest gradient entry, so tiny entries do not dominate.
    """
    grad = gradient(net, x, loss, solver)
    replay = replay_solver(grad.solution)
    flat = net.get_flat_params()
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(flat.size, size=min(n_params, flat.size), replace=False))

    def loss_at(params, xx):
        saved = net.get_flat_params()
        try:
            net.set_flat_params(params)
            return loss(simulate(net, xx, solver=replay).readout(net))[0]
        finally:
            net.set_flat_params(saved)

    def shifted(i, steps, step):
        out = flat.copy()
        out[i] += steps * step
        return out

    adjoint, fd = [], []
    for i in indices:
        # a step relative to the parameter, so that a diode's i_s = 1e-9 is not swamped
        step = eps * abs(flat[i]) if flat[i] != 0 else eps
        try:
            fd.append((loss_at(shifted(i, 1, step), x) - loss_at(shifted(i, -1, step), x)) / (2 * step))
        except ParameterError:
            # θ − ε is outside the device's domain (a diode's r_s = 0): a one-sided
            # second-order difference, (−3f(θ) + 4f(θ+ε) − f(θ+2ε)) / 2ε
            fd.append((-3 * loss_at(flat, x) + 4 * loss_at(shifted(i, 1, step), x)
                       - loss_at(shifted(i, 2, step), x)) / (2 * step))
        adjoint.append(grad.flat[i])
    x = np.atleast_2d(np.asarray(x, dtype=float))
    if include_inputs:
        for j in range(x.shape[1]):
            xp, xm = x.copy(), x.copy()
            xp[0, j] += eps
            xm[0, j] -= eps
            fd.append((loss_at(flat, xp) - loss_at(flat, xm)) / (2 * eps))
            adjoint.append(grad.inputs[0, j])
    adjoint, fd = np.array(adjoint), np.array(fd)
    scale = max(np.abs(fd).max(), 1e-300)
    rel = np.abs(adjoint - fd) / np.maximum(np.abs(fd), scale)
    return GradientCheck(indices, adjoint, fd, float(rel.max()), eps)
