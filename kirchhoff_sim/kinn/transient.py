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

from ..errors import InputError
from ..solvers import Dopri5
from ..solvers import simulate as simulate_circuit
from ..solvers.base import Stats

__all__ = ["KinnGradient", "simulate", "outputs", "gradient"]


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
    return simulate_circuit(net, x, solver=_explicit(solver), **options)


def outputs(net, x, solver=None) -> np.ndarray:
    """The read-out ``(B, n_out)`` at ``T`` of input ``x`` ``(B, d)``."""
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


def gradient(net, x, loss, solver=None) -> KinnGradient:
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

    Returns
    -------
    KinnGradient

    Raises
    ------
    InputError
        An implicit solver, or a loss gradient of the wrong shape.
    """
    solution = simulate(net, x, solver=solver, record_states=True)
    value, readout_bar = loss(net.outputs(solution.final_state))
    readout_bar = np.asarray(readout_bar, dtype=float)
    B = solution.final_state.shape[0]
    if readout_bar.shape != (B, net.num_outputs):
        raise InputError(f"loss gradient has shape {readout_bar.shape}, expected {(B, net.num_outputs)}")
    grads = [np.zeros_like(p) for p in net.parameters]
    # u = Σ_j α_j v_j on the read-out channels: its cotangent reaches every stage, and α
    v = net.stage_voltages(solution.final_state)
    u_bar = np.zeros((net.width, B))
    u_bar[:net.num_outputs] = readout_bar.T
    y_bar = np.zeros((net.num_nodes + 1, B))
    y_bar[1:] = (net.alpha[:, :, None] * u_bar[None]).reshape(net.num_nodes, B)
    grads[-1] += np.einsum("jmb,mb->jm", v, u_bar)
    stats = Stats()
    for l in reversed(range(net.num_windows)):
        y_bar = solution.solver.adjoint_layer(net.assemblies()[l], solution.tapes[l], y_bar,
                                              net.window_gradient_views(grads, l), stats)
    inputs_bar = y_bar[1:1 + net.num_inputs].T.copy()
    return KinnGradient(float(value), grads, inputs_bar, solution, stats)
