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

from .checks import as_int
from .errors import InputError, ParameterError
from .solvers import Solution, simulate
from .solvers.simulate import MAX_BATCH
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


def _checkpointed(solution, assemblies, every: int, stats):
    """Give every tape a state store that replays the steps between checkpoints."""
    for k, tape in enumerate(solution.tapes):
        if every > 1:
            assembly = assemblies[k]

            def replay(start, stop, y_start, y_before, tape=tape, assembly=assembly):
                return solution.solver.replay(assembly, tape, start, stop, y_start, y_before, stats)
            tape.states = CheckpointedStates(tape.states, every, replay)


def trapezoid_weights(t) -> np.ndarray:
    """Weights ``w`` ``(n,)`` with ``Σ w_j f(t_j)`` the trapezoidal rule on the grid ``t``:
    ``(h_{j-1} + h_j)/2`` (the one home of the rule: running costs on step grids, the
    chip report's energy integrals)."""
    t = np.asarray(t, dtype=float)
    w = np.zeros(len(t))
    if len(t) > 1:
        h = np.diff(t)
        w[:-1] += 0.5 * h
        w[1:] += 0.5 * h
    return w


def running_cost_value(solution, running_cost) -> float:
    """``Σ_layers Σ_n c_n φ(v_n)``: the running cost on the step states of a recorded run
    (trapezoid weights of each layer's own grid)."""
    total = 0.0
    for _, part in solution.parts():
        for tape in part.tapes:
            for n, c in enumerate(trapezoid_weights(tape.times)):
                total += c * running_cost(tape.states[n])[0]
    return total


def gradient(net, x, loss, solver=None, checkpoint_every: int = 1, running_cost=None,
             max_batch: int | None = MAX_BATCH, dtype=None) -> Gradient:
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
    running_cost : callable, optional
        ``φ(V) -> (value, ∂φ/∂V)`` for node voltages ``V`` ``(N+1, B)``: a cost on the
        whole trajectory, added as ``Σ_n c_n φ(v_n)`` over every layer's step states with
        the trapezoid weights ``c_n`` of its step grid (e.g. a penalty on leaving the
        rails, :func:`~kirchhoff_sim.training.constraints.rail_running_cost`). Its
        gradient enters the discrete adjoint at each state (``state_source`` of the
        solvers' ``adjoint_layer``), so it is exact for the discretisation like the rest.
    max_batch : int or None
        Most samples on one step grid (:func:`~kirchhoff_sim.simulate`): each piece of a
        larger batch is swept back on its own grid, and the loss sees the whole batch. A
        running cost is a trapezoid rule on each piece's own grid, so a split changes its
        quadrature (by the rule's error on those grids, which can exceed the solver's
        tolerance: 6e-4 relative for a rail cost at rtol 1e-7); ``φ`` must add up over
        samples (a sum, not a batch mean) for the pieces to add up to the batch.
    dtype : {None, "float64", "float32"}
        Working precision of the forward run and of the adjoint sweep (its cotangents);
        the parameter gradients are summed in float64 whatever it is (so that summing
        over steps and samples adds no round-off of its own), and returned in float64.

    Returns
    -------
    Gradient
        ``loss`` includes the running cost.

    Raises
    ------
    InputError, SimulationError
        As :func:`~kirchhoff_sim.solvers.simulate`; a loss gradient of the wrong shape.
    """
    solution = simulate(net, x, solver=solver, record_states=checkpoint_every, max_batch=max_batch, dtype=dtype)
    dtype = solution.final_state.dtype
    assemblies = net.assemblies(dtype)
    stats = Stats()
    for _, part in solution.parts():
        _checkpointed(part, assemblies, checkpoint_every, stats)
    value, readout_bar = loss(solution.readout(net))
    if running_cost is not None:
        value = value + running_cost_value(solution, running_cost)
    readout_bar = np.asarray(readout_bar, dtype=float)
    if readout_bar.shape != (solution.final_state.shape[0], len(net.readout)):
        raise InputError(f"loss gradient has shape {readout_bar.shape}, expected "
                         f"{(solution.final_state.shape[0], len(net.readout))}")
    theta_bar = [np.zeros_like(p) for p in net.parameters]
    inputs = _input_nodes(net, x)
    inputs_bar = np.empty((readout_bar.shape[0], len(inputs)))
    offsets = np.cumsum([0] + [len(l.groups) for l in net.layers])
    for rows, part in solution.parts():
        y_bar = np.zeros((net.num_nodes + 1, rows.stop - rows.start), dtype=dtype)
        y_bar[net.readout] = readout_bar[rows].T
        for k in reversed(range(len(net.layers))):
            extra = {}
            if running_cost is not None:
                tape, weights = part.tapes[k], trapezoid_weights(part.tapes[k].times)
                extra["state_source"] = (lambda n, tape=tape, weights=weights:
                                         (weights[n] * running_cost(tape.states[n])[1]).astype(dtype, copy=False))
            y_bar = part.solver.adjoint_layer(assemblies[k], part.tapes[k], y_bar,
                                              theta_bar[offsets[k]:offsets[k + 1]], stats, **extra)
        inputs_bar[rows] = y_bar[inputs].T
    return Gradient(float(value), theta_bar, inputs_bar, solution, stats)


def forward_sensitivity(net, x, direction, solver=None, input_direction=None,
                        max_batch: int | None = MAX_BATCH):
    """Directional derivative of the final state by the forward (direct) method.

    Parameters
    ----------
    direction : array_like
        A direction in parameter space, flattened like ``net.get_flat_params()``
        (or None for no parameter change).
    input_direction : array_like, shape (B, d), optional
        A direction for the input voltages.
    max_batch : int or None
        Most samples on one step grid (:func:`~kirchhoff_sim.simulate`).

    Returns
    -------
    final_state : ndarray, shape (B, N)
    tangent : ndarray, shape (B, N)
        ``d v_T / dε`` for ``θ + ε·direction`` (and ``x + ε·input_direction``).
    """
    solution = simulate(net, x, solver=solver, record_states=True, max_batch=max_batch)
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
    tangent = np.empty((y_dot.shape[1], net.num_nodes))
    for rows, part in solution.parts():
        piece = np.ascontiguousarray(y_dot[:, rows])
        for k, assembly in enumerate(net.assemblies()):
            group_dots = None if theta_dot is None else theta_dot[offsets[k]:offsets[k + 1]]
            piece = part.solver.tangent_layer(assembly, part.tapes[k], piece, group_dots, stats)
        tangent[rows] = piece[1:].T
    return solution.final_state, tangent


def replay_solver(solution: Solution):
    """A copy of the run's solver that replays its accepted step grid exactly."""
    replay = copy.copy(solution.solver)
    replay.step = GridStep.replay(solution)
    return replay


#: central differences whose round-off could exceed this fraction of the difference are
#: redone by Ridders' extrapolation from a larger step
ROUNDOFF_GUARD = 1e-7
ROUNDOFF_ULPS = 4             # rounding error of one loss evaluation, in units of eps·|L|
RIDDERS_START = 1e-2          # first step of the round-off fallback, relative to |θ|
RIDDERS_CENTRAL_LEVELS = 8
RIDDERS_ONE_SIDED_LEVELS = 14
#: a second difference beyond this fraction of the first marks a kink inside the stencil
#: (a smooth loss has |f(h) − 2f(0) + f(−h)| ≈ f″h² ≪ |f(h) − f(−h)| ≈ 2f′h at h = 1e-6·θ;
#: a slope that jumps by 0.2 % within the stencil gives 1e-3). A smooth loss flagged by
#: it only costs the one-sided extrapolations, which are right for it too.
KINK_RATIO = 1e-5
KINK_SHRINKS = 4             # steps ÷4 tried to get a kink out of the stencil


@dataclass
class GradientCheck:
    """Adjoint against finite differences of the same discretisation.

    ``fd_error`` holds, per compared entry, the error estimate of a Ridders extrapolation
    (NaN where a plain central difference sufficed).
    """

    indices: np.ndarray
    adjoint: np.ndarray
    finite_difference: np.ndarray
    max_relative_error: float
    eps: float
    fd_error: np.ndarray | None = None

    def __str__(self):
        return (f"gradient check on {len(self.indices)} parameters: max relative error "
                f"{self.max_relative_error:.2e} (eps={self.eps:g})")


def ridders(quotient, h0: float, order: int, levels: int, shrink: float = 2.0):
    """Richardson extrapolation of a difference quotient to step 0 (Ridders 1982;
    Numerical Recipes' ``dfridr``).

    ``quotient(h)`` is a difference quotient whose error expands in powers of h: all of
    them for a one-sided difference (``order=1``), even ones for a central difference
    (``order=2``). It is evaluated at ``h0, h0/shrink, …`` (``levels`` steps) and the
    Neville tableau ``T[i][j] = (s^{order·j}·T[i][j−1] − T[i−1][j−1]) / (s^{order·j} − 1)``
    removes one error term per column. The entry whose difference from its neighbours
    is smallest wins; that difference is the error estimate.

    Returns
    -------
    estimate, error : float
    """
    previous = [quotient(h0)]
    best, error, h = previous[0], np.inf, h0
    for i in range(1, levels):
        h /= shrink
        row = [quotient(h)]
        for j in range(1, i + 1):
            factor = shrink ** (order * j)
            row.append((factor * row[j - 1] - previous[j - 1]) / (factor - 1.0))
            estimate_error = max(abs(row[j] - row[j - 1]), abs(row[j] - previous[j - 1]))
            if estimate_error <= error:
                best, error = row[j], estimate_error
        previous = row
    return float(best), float(error)


def finite_difference(f, theta: float, eps: float, f0: float):
    """``∂f/∂θ`` of ``f(δ) = L(θ + δ)`` by finite differences, robust at domain bounds.

    A central difference at the relative step ``eps·|θ|`` (``eps`` where θ = 0), as long
    as the difference ``f(+h) − f(−h)`` is far above the rounding of ``f`` itself (more
    than ``ROUNDOFF_ULPS·ε·|f₀| / ROUNDOFF_GUARD``); otherwise at the smallest step 4ᵏ
    times larger where it is, and failing that — a parameter such as a diode's
    ``i_s = 1e-9`` whose relative step changes the loss by a few hundred ulps — Ridders'
    extrapolation of central differences from ``RIDDERS_START·|θ|``. Where
    ``θ − h`` leaves the device's domain (a diode's ``r_s = 0``, where a
    :class:`ParameterError` says so), one-sided differences from ``h`` downwards,
    extrapolated by Ridders: near such a bound the loss can curve on a scale far below
    ``eps`` (a series resistance of 1e-9 already caps a forward-biased diode's current),
    which no fixed one-sided stencil resolves. Where the second difference is not small
    beside the first — a kink (a ReLU switching) between ``θ − h`` and ``θ + h`` — both
    one-sided quotients are extrapolated from ``h`` downwards and the one with the
    smaller error estimate is kept.

    Returns
    -------
    derivative : float
    error : float
        Ridders' error estimate, NaN for a plain central difference.
    """
    step = eps * abs(theta) if theta != 0 else eps
    plus = f(step)
    try:
        minus = f(-step)
    except ParameterError:
        return ridders(lambda h: (f(h) - f0) / h, step, 1, RIDDERS_ONE_SIDED_LEVELS)
    roundoff = ROUNDOFF_ULPS * np.finfo(float).eps * abs(f0)
    h0 = RIDDERS_START * (abs(theta) if theta != 0 else 1.0)

    def kinked(plus, minus):
        # a second difference not small beside the first: a kink (a ReLU switching,
        # which training can put anywhere) inside ±h, or a curvature the step is too
        # coarse for — either way a smaller step is needed
        return abs(plus - 2.0 * f0 + minus) > KINK_RATIO * abs(plus - minus) + 4.0 * roundoff

    h = step
    if kinked(plus, minus):
        for _ in range(KINK_SHRINKS):
            h /= 4.0
            plus, minus = f(h), f(-h)
            if not kinked(plus, minus):
                if roundoff <= ROUNDOFF_GUARD * abs(plus - minus):
                    return (plus - minus) / (2 * h), float("nan")
                break                     # clear of the kink but in round-off: one-sided
        # a kink at θ itself, or one that a step above round-off cannot avoid: the one-sided derivatives differ; keep the side Ridders trusts more
        forward = ridders(lambda d: (f(d) - f0) / d, step, 1, RIDDERS_ONE_SIDED_LEVELS)
        backward = ridders(lambda d: (f0 - f(-d)) / d, step, 1, RIDDERS_ONE_SIDED_LEVELS)
        return min(forward, backward, key=lambda estimate: estimate[1])
    while roundoff > ROUNDOFF_GUARD * abs(plus - minus) and 4.0 * h <= h0:
        # drowned in round-off: the smallest step 4ᵏ times larger that is not — but not
        # one that reaches a kink (a large step can), there the last one serves
        wider = 4.0 * h
        try:
            wider_plus, wider_minus = f(wider), f(-wider)
        except ParameterError:
            return ridders(lambda d: (f(d) - f0) / d, step, 1, RIDDERS_ONE_SIDED_LEVELS)
        if kinked(wider_plus, wider_minus):
            return (plus - minus) / (2 * h), float("nan")
        h, plus, minus = wider, wider_plus, wider_minus
    if roundoff <= ROUNDOFF_GUARD * abs(plus - minus):
        return (plus - minus) / (2 * h), float("nan")
    try:
        f(-h0)
    except ParameterError:
        return ridders(lambda h: (f(h) - f0) / h, step, 1, RIDDERS_ONE_SIDED_LEVELS)
    return ridders(lambda h: (f(h) - f(-h)) / (2 * h), h0, 2, RIDDERS_CENTRAL_LEVELS)


def check_gradient(net, x, loss, solver=None, n_params: int = 10, eps: float = 1e-6,
                   seed: int = 0, include_inputs: bool = True) -> GradientCheck:
    """Compare the adjoint gradient with finite differences of the same discretisation.

    The finite differences replay the forward run's step grid (:func:`replay_solver`),
    so both sides differentiate the same discrete map. ``n_params`` parameters are
    sampled at random (plus every input voltage of the first sample when
    ``include_inputs``). Each derivative comes from :func:`finite_difference`: central
    differences at ``eps·|θ|`` (``eps`` where θ = 0), Ridders' extrapolation where they
    would drown in round-off, and extrapolated one-sided differences where ``θ − step``
    leaves a device's domain. The relative error is ``|g_adj − g_fd| / max(|g_fd|, scale)``
    with ``scale`` the largest gradient entry, so tiny entries do not dominate.

    Raises
    ------
    InputError
        ``n_params`` not an integer ≥ 0 (0 with ``include_inputs`` False checks nothing),
        ``eps`` not a finite number in (0, 1), ``seed`` not an integer ≥ 0,
        ``include_inputs`` not a bool.
    """
    n_params = as_int(n_params, "check_gradient's n_params", minimum=0)
    seed = as_int(seed, "check_gradient's seed", minimum=0)
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not (0 < eps < 1):
        raise InputError(f"check_gradient's eps must be a number in (0, 1) (a relative step), got {eps!r}")
    if not isinstance(include_inputs, (bool, np.bool_)):
        raise InputError(f"check_gradient's include_inputs must be True or False, got {include_inputs!r}")
    if n_params == 0 and not include_inputs:
        raise InputError("check_gradient has nothing to check: n_params=0 and include_inputs=False")
    grad = gradient(net, x, loss, solver, max_batch=None)   # one step grid to replay
    replay = replay_solver(grad.solution)
    flat = net.get_flat_params()
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(flat.size, size=min(n_params, flat.size), replace=False))
    x = np.atleast_2d(np.asarray(x, dtype=float))

    def loss_at(params, xx):
        saved = net.get_flat_params()
        try:
            net.set_flat_params(params)
            return loss(simulate(net, xx, solver=replay, max_batch=None).readout(net))[0]
        finally:
            net.set_flat_params(saved)

    def shifted(i, delta):
        out = flat.copy()
        out[i] += delta
        return out

    def input_shifted(j, delta):
        out = x.copy()
        out[0, j] += delta
        return out

    base = grad.loss              # the replay reproduces the forward run bit for bit
    adjoint, fd, fd_error = [], [], []
    for i in indices:
        value, error = finite_difference(lambda d, i=i: loss_at(shifted(i, d), x), flat[i], eps, base)
        fd.append(value)
        fd_error.append(error)
        adjoint.append(grad.flat[i])
    if include_inputs:
        for j in range(x.shape[1]):
            # an absolute step: input voltages have a natural unit and may be 0
            value, error = finite_difference(lambda d, j=j: loss_at(flat, input_shifted(j, d)), 0.0,
                                             eps, base)
            fd.append(value)
            fd_error.append(error)
            adjoint.append(grad.inputs[0, j])
    adjoint, fd = np.array(adjoint), np.array(fd)
    scale = max(np.abs(fd).max(), 1e-300)
    rel = np.abs(adjoint - fd) / np.maximum(np.abs(fd), scale)
    return GradientCheck(indices, adjoint, fd, float(rel.max()), eps, np.array(fd_error))
