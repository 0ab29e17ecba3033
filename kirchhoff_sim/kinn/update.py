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

import math

import numpy as np
from scipy.linalg import expm

from ..checks import as_int, as_real, as_real_array
from ..errors import InputError, NonFiniteStateError, ParameterError, ResourceLimitError
from ..solvers.resources import ResourceLimits
from .network import require_kinn

__all__ = ["cascade_matrices", "zoh_matrices", "exact_update", "exponential_euler"]

#: scipy's ``expm`` estimates the norms of powers (up to the 10th) of its argument, which
#: overflow to NaN beyond a norm of about 1e30; a longer step is halved ``s`` times until
#: its norm is at most ``2**PRESCALE_LOG2`` and the result squared back ``s`` times (what
#: expm's own scaling and squaring does), so that ``exp(−huge)`` comes out as 0
PRESCALE_LOG2 = 64


def cascade_matrices(net) -> np.ndarray:
    """The channels' state matrices ``A`` ``(M, n, n)`` (normalised 1/time).

    The rates ``G/C`` and ``K/C`` are taken from the logarithms, so that a cell whose
    ``G`` and ``C`` are both beyond the float range (``log_g = log_c = 800``) still has
    its finite rate.

    Raises
    ------
    InputError
        ``net`` is not a KinnNet.
    ParameterError
        A rate ``G/C`` or ``K/C`` (or ``1/C`` of an input stage) is beyond the float
        range; the message names the stage and channel.
    """
    require_kinn(net, "kinn.cascade_matrices", "kirchhoff_sim.simulate")
    n, M = net.log_c.shape
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):   # judged below, cell by cell
        decay = np.exp(net.log_g - net.log_c)                            # G/C
        coupling = net.k * np.exp(-net.log_c[1:])                        # K/C
        input_gain = np.exp(-net.log_c[0])                               # 1/C0 of the drive
    for name, rates, first in (("G/C", decay, 0), ("K/C", coupling, 1), ("1/C", input_gain[None], 0)):
        bad = np.argwhere(~np.isfinite(rates))
        if bad.size:
            j, m = int(bad[0][0]) + first, int(bad[0][1])
            raise ParameterError(f"stage {j} of channel {m}: its rate {name} is beyond the float range "
                                 f"(log_c = {net.log_c[j, m]:g}, log_g = {net.log_g[j, m]:g}"
                                 + (f", k = {net.k[j - 1, m]:g}" if j > 0 else "") + ")")
    A = np.zeros((M, n, n))
    j = np.arange(n)
    A[:, j, j] = -decay.T
    if n > 1:
        A[:, j[1:], j[:-1]] = coupling.T
    return A


def zoh_matrices(net, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``(Φ, Γ)`` of a step ``dt``: ``Φ`` ``(M, n, n)`` and ``Γ`` ``(M, n)`` (module docstring).

    Exact for any step: a step far beyond the cells' time constants gives ``Φ = 0`` and
    ``Γ`` the cascade's steady state, as it should.

    Raises
    ------
    InputError
        ``dt`` is not a finite number ≥ 0, or ``net`` is not a KinnNet.
    ParameterError
        As :func:`cascade_matrices`.
    NonFiniteStateError
        ``Φ`` or ``Γ`` itself is beyond the float range (a cascade whose gains ``K/G``
        multiply past 1e308); the message names the channel.
    """
    dt = as_real(dt, "the step dt", minimum=0.0)
    A = cascade_matrices(net)
    M, n, _ = A.shape
    if dt == 0.0:
        return np.broadcast_to(np.eye(n), (M, n, n)).copy(), np.zeros((M, n))
    # Van Loan's matrix, ordered (input, stage 0, …, stage n−1), is lower bidiagonal: the
    # held input feeds stage 0, stage j−1 feeds stage j. Its step is halved per channel
    # (a slow channel is not over-scaled by a fast one) until its norm is within reach of
    # expm, and the result squared back
    with np.errstate(divide="ignore"):                              # an all-zero A: log2(0) = −inf
        log2_norm = math.log2(dt) + np.log2((n + 1) * np.abs(A).max(axis=(1, 2)))
    halvings = np.maximum(np.ceil(log2_norm) - PRESCALE_LOG2, 0).astype(int)          # (M,)
    step = np.ldexp(dt, -halvings)                                                     # (M,)
    # the input entry h/C0 from the logs (C0 alone may underflow where h/C0 does not),
    # scaled down by e^shift when large; Γ is linear in it, so it is scaled back after
    log_input = np.log(step) - net.log_c[0]
    shift = np.maximum(log_input - PRESCALE_LOG2 * math.log(2), 0.0)
    chain = np.zeros((M, n + 1, n + 1))
    chain[:, 1:, 1:] = A * step[:, None, None]
    E = np.empty_like(chain)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):   # Φ decays to 0; overflow judged below
        chain[:, 1, 0] = np.exp(log_input - shift)
        for s in np.unique(halvings):
            rows = halvings == s
            block = expm(chain[rows])
            for level in range(s + 1):
                if level:
                    block = block @ block
                _exact_bidiagonal(block, chain[rows], level)
            E[rows] = block
        Phi, Gamma = E[:, 1:, 1:], E[:, 1:, 0] * np.exp(shift)[:, None]
    bad = np.flatnonzero(~(np.isfinite(Phi).all(axis=(1, 2)) & np.isfinite(Gamma).all(axis=1)))
    if bad.size:
        raise NonFiniteStateError(f"the exact update of a step {dt:g} is beyond the float range for channel "
                                  f"{bad[0]} (its stage gains K/G or 1/G are too large)")
    return Phi, Gamma


def _exact_bidiagonal(E: np.ndarray, X: np.ndarray, level: int) -> None:
    """Overwrite the diagonal and first sub-diagonal of ``E = exp(2^level·X)`` (``X``
    lower bidiagonal, diagonal ≤ 0) with their exact values, in place.

    Squaring alone loses them when one entry of ``X`` dwarfs the others (a decay
    ``e^{−λh}`` under a huge ``K``); recomputing them at every squaring is Al-Mohy and
    Higham's Code Fragment 2.1 ("A new scaling and squaring algorithm for the matrix
    exponential", SIAM J. Matrix Anal. Appl. 31(3), 2009). For ``[[a, 0], [t, b]]`` the
    sub-diagonal is ``t·(e^b − e^a)/(b − a) = t·e^{max}·(1 − e^{−δ})/δ``, ``δ = |b − a|``,
    written so that no step of it overflows for ``a, b ≤ 0``: the ``2^level`` of ``t``
    and ``δ`` cancel. The caller ignores underflow and overflow (``2^level·X`` may be −inf).
    """
    scale = math.ldexp(1.0, level)
    d0 = np.diagonal(X, axis1=1, axis2=2)
    d = d0 * scale                                                         # −inf where λh overflows
    t = np.diagonal(X, offset=-1, axis1=1, axis2=2)
    gap = np.abs(np.diff(d0, axis=1))                                      # δ / 2^level
    top = np.exp(np.maximum(d[:, :-1], d[:, 1:]))
    safe = np.where(gap > 0, gap, 1.0)
    divided = np.where(gap > 0, -np.expm1(-gap * scale) / safe, scale)    # (e^b − e^a)/(b − a)/e^max
    sub = t * top * divided
    sub[np.isnan(sub)] = 0.0                                               # 0·inf: a decay that wins
    i = np.arange(X.shape[1])
    E[:, i, i] = np.exp(d)
    E[:, i[1:], i[:-1]] = sub


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

    Raises
    ------
    InputError
        ``v`` or ``drive`` not a finite real array of the shape above, or a bad ``dt``.
    ParameterError, NonFiniteStateError
        As :func:`zoh_matrices`.
    """
    require_kinn(net, "kinn.exact_update", "kirchhoff_sim.simulate")
    v = as_real_array(v, "stage voltages v", ndim=3)
    drive = as_real_array(drive, "drive", ndim=2)
    if v.shape[:2] != (net.stages, net.width):
        raise InputError(f"stage voltages v must be (stages, width, B) = ({net.stages}, {net.width}, B), "
                         f"got {v.shape}")
    if drive.shape != (net.width, v.shape[2]):
        raise InputError(f"drive must be (width, B) = {(net.width, v.shape[2])}, one current per channel "
                         f"and sample, got {drive.shape}")
    Phi, Gamma = zoh_matrices(net, dt)
    return np.einsum("mij,jmb->imb", Phi, v) + Gamma.T[:, :, None] * drive[None]


def exponential_euler(net, x, steps: int = 1, limits: ResourceLimits | None = None) -> np.ndarray:
    """Node voltages at ``T`` ``(B, N)`` of input ``x`` ``(B, d)``, stepped by
    :func:`exact_update` with ``steps`` equal steps per window, each holding the drive
    ``φ(W_l u + b_l)`` at its value at the step's start.

    ``limits`` (default :class:`~kirchhoff_sim.solvers.resources.ResourceLimits`) bounds
    the steps over all windows by its ``max_fixed_steps``, as for a fixed-step simulate.

    Raises
    ------
    InputError
        Bad inputs, ``net`` not a KinnNet, or ``steps`` not an integer ≥ 1.
    ResourceLimitError
        ``steps`` times the windows exceeds ``limits.max_fixed_steps``.
    ParameterError
        As :func:`cascade_matrices`.
    NonFiniteStateError
        The update of a window, or the state after a step, is beyond the float range
        (the message names the window and step).
    """
    require_kinn(net, "kinn.exponential_euler", "kirchhoff_sim.simulate")
    steps = as_int(steps, "steps", minimum=1)
    limits = ResourceLimits() if limits is None else limits
    if steps * net.num_windows > limits.max_fixed_steps:
        raise ResourceLimitError(f"exponential_euler with steps={steps} over {net.num_windows} window(s) needs "
                                 f"{steps * net.num_windows:.3g} steps, more than the limit "
                                 f"{limits.max_fixed_steps:.3g} (ResourceLimits.max_fixed_steps)")
    v = net.stage_voltages(net.initial_state(x))
    for l, (start, duration) in enumerate(zip(net.layer_boundaries, net.durations)):
        try:
            Phi, Gamma = zoh_matrices(net, duration / steps)
        except NonFiniteStateError as exc:
            raise NonFiniteStateError(exc.args[0], layer=l) from None
        for step in range(steps):
            with np.errstate(over="ignore", invalid="ignore"):         # judged just below
                z = net.W[l] @ net.channel_outputs(v) + net.b[l][:, None]
                v = np.einsum("mij,jmb->imb", Phi, v) + Gamma.T[:, :, None] * net.activation.value(z)[None]
            if not np.isfinite(v).all():
                # only an unbounded φ (relu, identity) with a feedback gain > 1 grows like this
                raise NonFiniteStateError("exponential_euler: a stage voltage left the float range",
                                          layer=l, time=start + step * duration / steps, step=step)
    return v.reshape(net.num_nodes, -1).T.copy()
