"""The exact (zero-order-hold) update of KINN cells and cascades.

Over a step ``Δ`` in which a channel's input current ``I`` is held, the ``n`` stages of
a channel obey the linear system ``dv/dt = A v + e_0·I/C_0`` (``A`` lower bidiagonal:
``−G_j/C_j`` on the diagonal, ``K_j/C_j`` below it), whose exact solution is::

    v(t+Δ) = Φ v(t) + Γ I,      Φ = exp(AΔ),   Γ = ∫_0^Δ exp(As) ds · e_0/C_0

For one stage this is the update of the KINN abstract, ``v⁺ = a·v + (1 − a)·I/G`` with
``a = exp(−GΔ/C)``; it is stable for every ``Δ`` because every eigenvalue ``−G_j/C_j``
of ``A`` is negative. ``Φ`` and ``Γ`` come together from one matrix exponential of the
augmented ``(n+1)×(n+1)`` matrix ``[[A, e_0/C_0], [0, 0]]·Δ`` (Van Loan, "Computing
integrals involving the matrix exponential", IEEE TAC 23(3), 1978), batched over the
channels by :func:`scipy.linalg.expm`.

:func:`exponential_euler` steps a whole :class:`~.network.KinnNet` this way, holding each
channel's drive ``φ(W u + b)`` at its value at the start of every step. A net's drive
reads the channels' own outputs, so it is *not* constant over a step: the update is then
the exponential-Euler integrator of the circuit — exact for the linear cascade, first
order in ``Δ`` for the feedback — and our transient solvers are the reference it
converges to (tests/test_kinn.py checks both the exactness and the order).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from ..checks import as_int, as_real

__all__ = ["cascade_matrices", "zoh_matrices", "exact_update", "exponential_euler"]


def cascade_matrices(net) -> np.ndarray:
    """The channels' state matrices ``A`` ``(M, n, n)`` (normalised 1/time)."""
    C, G = net.capacitance, net.conductance
    n, M = C.shape
    A = np.zeros((M, n, n))
    j = np.arange(n)
    A[:, j, j] = (-G / C).T
    if n > 1:
        A[:, j[1:], j[:-1]] = (net.k / C[1:]).T
    return A


def zoh_matrices(net, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``(Φ, Γ)`` of a step ``dt``: ``Φ`` ``(M, n, n)`` and ``Γ`` ``(M, n)`` (module docstring).

    Raises
    ------
    InputError
        ``dt`` is not a finite number ≥ 0.
    """
    dt = as_real(dt, "the step dt", minimum=0.0)
    A = cascade_matrices(net)
    M, n, _ = A.shape
    augmented = np.zeros((M, n + 1, n + 1))
    augmented[:, :n, :n] = A * dt
    augmented[:, 0, n] = dt / net.capacitance[0]
    with np.errstate(under="ignore"):     # a long step decays Φ towards 0: underflow is the answer
        E = expm(augmented)
    return E[:, :n, :n], E[:, :n, n]


def exact_update(net, v: np.ndarray, drive: np.ndarray, dt: float) -> np.ndarray:
    """Stage voltages after ``dt`` with each channel's input current held.

    Parameters
    ----------
    net : KinnNet
    v : ndarray, shape (n, M, B)
        Stage voltages at the start (normalised volts).
    drive : ndarray, shape (M, B)
        Input current of every channel, held over the step (normalised amperes).
    dt : float
        The step (normalised time, ≥ 0).

    Returns
    -------
    ndarray, shape (n, M, B)
    """
    Phi, Gamma = zoh_matrices(net, dt)
    return np.einsum("mij,jmb->imb", Phi, v) + Gamma.T[:, :, None] * drive[None]


def exponential_euler(net, x, steps: int = 1) -> np.ndarray:
    """Node voltages at ``T`` ``(B, N)`` of input ``x`` ``(B, d)``, stepped by
    :func:`exact_update` with ``steps`` equal steps per window, each holding the drive
    ``φ(W_l u + b_l)`` at its value at the step's start.

    Raises
    ------
    InputError
        Bad inputs, or ``steps`` not an integer ≥ 1.
    """
    steps = as_int(steps, "steps", minimum=1)
    v = net.stage_voltages(net.initial_state(x))
    for l, duration in enumerate(net.durations):
        Phi, Gamma = zoh_matrices(net, duration / steps)
        for _ in range(steps):
            z = net.W[l] @ net.channel_outputs(v) + net.b[l][:, None]
            v = np.einsum("mij,jmb->imb", Phi, v) + Gamma.T[:, :, None] * net.activation.value(z)[None]
    return v.reshape(net.num_nodes, -1).T.copy()
