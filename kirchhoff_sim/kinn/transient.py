"""Transient analysis and exact gradients of a KINN, by this package's own solvers.

A :class:`~.network.KinnNet` hands the solvers one assembly per window, exactly as a
KirchhoffNet hands them its layers, so :func:`kirchhoff_sim.solvers.simulate` runs it
and the explicit Runge–Kutta methods' discrete adjoints
(:meth:`~kirchhoff_sim.solvers.explicit.RungeKutta.adjoint_layer`) differentiate it:
the gradient is exact for the discretisation the forward run used (DESIGN.md §4).
The implicit methods stamp a KirchhoffNet's edges into their Newton matrices and have
no KINN form yet; they are refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import as_positive, as_real, as_real_array
from ..errors import InputError, StiffnessError, TrainingDivergedError
from ..solvers import Dopri5
from ..solvers import simulate as simulate_circuit
from ..sensitivity import trapezoid_weights
from ..solvers.base import Stats
from ..solvers.simulate import MAX_BATCH
from .network import require_kinn

__all__ = ["KinnGradient", "simulate", "outputs", "gradient", "rail_penalty"]


def _explicit(solver):
    solver = Dopri5() if solver is None else solver
    if getattr(solver, "implicit", False) or not hasattr(solver, "adjoint_layer"):
        raise InputError(f"a KINN runs on the explicit solvers (Dopri5, RK4, Heun, Euler); {solver!r} "
                         f"stamps KirchhoffNet edges, which a KINN window does not have "
                         f"(for stiff cells use kinn.exponential_euler, exact for any step)")
    return solver


def simulate(net, x, solver=None, **options):
    """:func:`kirchhoff_sim.solvers.simulate` of a KINN (``options`` as there).

    Returns
    -------
    Solution
        ``final_state`` ``(B, N)``: every stage voltage at ``T``; the read-out is
        ``net.outputs(solution.final_state)``.

    Raises
    ------
    InputError
        An implicit solver, or as :func:`kirchhoff_sim.solvers.simulate`.
    SimulationError
        As :func:`kirchhoff_sim.solvers.simulate`.
    """
    try:
        return simulate_circuit(net, x, solver=_explicit(solver), **options)
    except StiffnessError as exc:
        # the solvers' advice is an implicit method, which a KINN does not have
        raise exc.copy_with(f"{exc.message.split('; use an implicit method')[0]}; a KINN runs on explicit "
                            f"methods only: take smaller steps, or kinn.exponential_euler (exact for the "
                            f"cascade, stable for any step)") from None


def outputs(net, x, solver=None) -> np.ndarray:
    """The read-out ``(B, n_out)`` at ``T`` of input ``x`` ``(B, d)``.

    Raises
    ------
    InputError
        ``net`` is not a KinnNet, or as :func:`simulate`.
    SimulationError
        As :func:`simulate`.
    """
    require_kinn(net, "kinn.outputs", "kirchhoff_sim.simulate(net, x).readout(net)")
    return net.outputs(simulate(net, x, solver=solver).final_state)


@dataclass
class KinnGradient:
    """A loss and its exact gradient.

    Attributes
    ----------
    value : float
    grads : list of ndarray
        Shaped like ``net.parameters``.
    inputs : ndarray, shape (B, d)
        ``∂loss/∂x``.
    solution : Solution
    stats : Stats
        The backward sweep's work (f-evaluations, VJPs).
    """

    value: float
    grads: list
    inputs: np.ndarray
    solution: object
    stats: Stats

    @property
    def flat(self) -> np.ndarray:
        """The gradient in the order of ``net.get_flat_params()``."""
        return np.concatenate([g.ravel() for g in self.grads])


def rail_penalty(net, V: np.ndarray, limit: float, weight: float, scale: float = 1.0,
                 grads: list | None = None) -> tuple[float, np.ndarray]:
    """``φ = weight·Σ relu(|a| − limit)²`` over every node voltage of the circuit at state
    ``V`` ``(N+1, B)``: the stage nodes, the output summing nodes ``u`` and every window's
    drive summing nodes ``z_l = W_l u + b_l`` (the summing networks are not switched, so
    all of them are live at every time; :mod:`.netlist`).

    Returns ``(scale·φ, scale·∂φ/∂V)``; with ``grads`` (shaped like ``net.parameters``) the
    terms through ``α``, ``W`` and ``b`` (times ``scale``) are added to it.

    Raises
    ------
    InputError
        ``V`` is not a state ``(N+1, B)``.
    """
    v = net.stage_voltages(V)
    u = net.channel_outputs(v)
    z = net.drive_inputs(u)                                         # (L, M, B)
    value, bars = 0.0, []
    for a in (v, u, z):
        over = np.maximum(np.abs(a) - limit, 0.0)
        value += float(np.sum(over * over))
        bars.append((2.0 * weight * scale) * over * np.sign(a))
    v_bar, u_bar, z_bar = bars
    u_bar = u_bar + np.einsum("lmk,lmb->kb", net.W, z_bar)
    v_bar = v_bar + net.alpha[:, :, None] * u_bar[None]
    if grads is not None:
        for l in range(net.num_windows):
            grads[2 * l] += z_bar[l] @ u.T
            grads[2 * l + 1] += z_bar[l].sum(axis=1)
        grads[-1] += np.einsum("jmb,mb->jm", v, u_bar)
    out = np.zeros_like(V)
    out[1:] = v_bar.reshape(net.num_nodes, V.shape[1])
    return weight * scale * value, out


def gradient(net, x, loss, solver=None, rail: float | None = None, rail_weight: float = 1.0,
             max_batch: int | None = MAX_BATCH) -> KinnGradient:
    """Loss and exact gradient of a KINN by the discrete adjoint of the forward run.

    Parameters
    ----------
    net : KinnNet
    x : array_like, shape (B, d)
    loss : callable
        ``loss(readout) -> (value, ∂value/∂readout)`` with ``readout`` ``(B, n_out)``
        (:mod:`kirchhoff_sim.training.losses`).
    solver : optional
        An explicit solver (default Dopri5); adaptive steps are held at those accepted.
    rail : float, optional
        Keep every node voltage within ``±rail`` (normalised, finite and > 0): the loss then includes
        the running cost :func:`rail_penalty` (``rail_weight``) on every step state of
        every window, trapezoid-weighted on the window's step grid, and its exact adjoint
        enters the backward sweep at each state (as
        :func:`kirchhoff_sim.sensitivity.gradient`'s ``running_cost`` does).
    rail_weight : float
        The rail cost's weight (finite, ≥ 0).
    max_batch : int or None
        Most samples on one step grid (:func:`kirchhoff_sim.simulate`); each piece of a
        larger batch is swept back on its own grid.

    Returns
    -------
    KinnGradient
        ``value`` includes the rail cost.

    Raises
    ------
    InputError
        ``net`` is not a KinnNet; an implicit solver; a bad ``rail`` or ``rail_weight``;
        a loss whose value is not one real number or whose gradient is not a real array
        of the read-out's shape.
    TrainingDivergedError
        The loss returned a non-finite value or gradient (the message names the entry).
    SimulationError
        As :func:`simulate`.
    """
    require_kinn(net, "kinn.gradient", "kirchhoff_sim.sensitivity.gradient")
    # checked before the run: a bad rail would give a silently wrong (or negative) loss
    rail = None if rail is None else as_positive(rail, "rail")
    rail_weight = as_real(rail_weight, "rail_weight", minimum=0.0)
    solution = simulate(net, x, solver=solver, record_states=True, max_batch=max_batch)
    value, readout_bar = loss(net.outputs(solution.final_state))
    value = as_real_array(value, "the loss value", finite=False)
    readout_bar = as_real_array(readout_bar, "the loss gradient", finite=False)
    B = solution.final_state.shape[0]
    if value.shape != ():
        raise InputError(f"the loss value must be one number, got shape {value.shape}")
    if readout_bar.shape != (B, net.num_outputs):
        raise InputError(f"loss gradient has shape {readout_bar.shape}, expected {(B, net.num_outputs)}")
    if not np.isfinite(value):
        raise TrainingDivergedError(f"the loss returned a non-finite value {float(value)}")
    bad = np.argwhere(~np.isfinite(readout_bar))
    if bad.size:
        b, k = (int(i) for i in bad[0])
        raise TrainingDivergedError(f"the loss returned a non-finite gradient: sample {b}, output {k} is "
                                    f"{readout_bar[b, k]} ({len(bad)} non-finite entries)")
    grads = [np.zeros_like(p) for p in net.parameters]
    # u = Σ_j α_j v_j on the read-out channels: its cotangent reaches every stage, and α
    v = net.stages_of(solution.final_state)
    u_bar = np.zeros((net.width, B))
    u_bar[:net.num_outputs] = readout_bar.T
    grads[-1] += np.einsum("jmb,mb->jm", v, u_bar)
    stats = Stats()
    rail_value = [0.0]
    inputs_bar = np.empty((B, net.num_inputs))
    for rows, part in solution.parts():
        y_bar = (net.alpha[:, :, None] * u_bar[None, :, rows]).reshape(net.num_nodes, -1)
        y_bar = np.concatenate([np.zeros((1, y_bar.shape[1])), y_bar])
        for l in reversed(range(net.num_windows)):
            extra = {}
            if rail is not None:
                tape = part.tapes[l]
                weights = trapezoid_weights(tape.times)

                def source(n, tape=tape, weights=weights):
                    cost, state_bar = rail_penalty(net, tape.states[n], rail, rail_weight, weights[n], grads)
                    rail_value[0] += cost
                    return state_bar
                extra["state_source"] = source
            y_bar = part.solver.adjoint_layer(net.assemblies()[l], part.tapes[l], y_bar,
                                              net.window_gradient_views(grads, l), stats, **extra)
        inputs_bar[rows] = y_bar[1:1 + net.num_inputs].T
    return KinnGradient(float(value) + rail_value[0], grads, inputs_bar, solution, stats)
