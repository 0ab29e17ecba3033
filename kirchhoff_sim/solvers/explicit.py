"""Explicit Runge–Kutta methods: Butcher tableaux on one shared step.

Every method is a :class:`ButcherTableau` (which checks itself) run by :func:`rk_step`
and driven by :class:`RungeKutta` with a fixed or an adaptive step strategy.

========  =====  ===========  ==============================================
method    order  error est.   notes
========  =====  ===========  ==============================================
Euler     1      —            forward Euler; stable for h < 2·C/G_max
Heun      2      —            explicit trapezoid
RK4       4      —            classic Runge–Kutta
Dopri5    5      4 (FSAL)     Dormand–Prince 5(4), torchdiffeq's ``dopri5``
========  =====  ===========  ==============================================

Explicit methods are only conditionally stable: a physical RC circuit whose time
constants span decades is stiff and wants an implicit method
(:mod:`kirchhoff_sim.solvers.implicit`). Adaptive Dopri5 tells stiffness from a blow-up
as Hairer's ``dopri5`` does (Hairer & Wanner, Solving ODEs II, IV.2, and the stiffness
test of their Fortran code): its last two stages are both at ``t + h``, so

    h·|λ| ≈ h·‖k₇ − k₆‖ / ‖y₁ − Y₆‖

estimates the dominant eigenvalue the step meets. When it exceeds 3.25 (the method's
stability boundary on the negative real axis is −3.3) on 15 accepted steps, with no run
of 6 below it in between, the step size is held by stability, not accuracy: a
:class:`~kirchhoff_sim.errors.StiffnessError` is raised at once instead of crawling to
the step-attempt limit. (Hairer tests every 1000th step unless the test has fired; here
every step is tested — it costs two norms and no evaluation.) A blow-up, in contrast, is
a state leaving the plausible voltage bound
(:class:`~kirchhoff_sim.errors.DivergenceError`).

Discrete adjoint (:func:`rk_step_adjoint`). One step is

    Y_j = y + h Σ_{l<j} a_jl k_l,    k_j = f(Y_j),    y⁺ = y + h Σ_j b_j k_j,

with ``f = C⁻¹F`` and the step size held fixed (an adaptive run's accepted grid is
replayed; the error estimate does not change y⁺). Given ``ȳ⁺ = ∂L/∂y⁺``, reverse-mode
differentiation of these lines, stage by stage from the last, gives

    k̄_j = h b_j ȳ⁺ + h Σ_{i>j} a_ij Ȳ_i,   Ȳ_j = (∂f/∂y)(Y_j)ᵀ k̄_j,   θ̄ += (∂f/∂θ)(Y_j)ᵀ k̄_j,
    ȳ = ȳ⁺ + Σ_j Ȳ_j,

where ``(∂f/∂y)ᵀk̄ = (∂F/∂y)ᵀ(C⁻¹k̄)`` is the assembler's vector–Jacobian product. This
is the exact transpose of the forward arithmetic, so it matches finite differences of
the same discretisation to round-off. The stage values are recomputed from the stored
step-start state ``y`` (one f-evaluation per stage that reaches y⁺, less one), not
stored. The tangent (forward,
direct) mode :func:`rk_step_tangent` differentiates the same lines forwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, StiffnessError
from .base import Trial, as_step, march

STIFF_EXCEEDANCES = 15   # Hairer's dopri5: stiff after 15 accepted steps above the boundary …
STIFF_RESET = 6          # … unless 6 steps below it come in between


@dataclass(frozen=True)
class ButcherTableau:
    """``c`` (nodes), ``a`` (lower-triangular stage weights), ``b`` (weights) and
    optionally ``e = b − b̂`` (error weights of the embedded method)."""

    name: str
    order: int
    c: tuple
    a: tuple
    b: tuple
    e: tuple | None = None
    error_order: int | None = None
    mid: tuple | None = None    # weights of y(t + h/2) for a continuous extension
    stability_boundary: float | None = None   # the stability interval [−b, 0] on the real axis
    stiffness_limit: float | None = None      # Hairer's test: h·|λ| beyond which a step is stability-bound

    def __post_init__(self):
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s - 1:
            raise ValueError(f"{self.name}: tableau sizes do not match")
        if abs(sum(self.b) - 1) > 1e-14:
            raise ValueError(f"{self.name}: weights b must sum to 1")
        for i, row in enumerate(self.a, start=1):
            if len(row) != i or abs(sum(row) - self.c[i]) > 1e-14:
                raise ValueError(f"{self.name}: row {i} of a must have {i} entries summing to c[{i}]")
        if self.e is not None and (len(self.e) != s or abs(sum(self.e)) > 1e-14):
            raise ValueError(f"{self.name}: error weights must have {s} entries summing to 0")

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at the new state."""
        return self.c[-1] == 1.0 and self.a[-1] == tuple(self.b[:-1]) and self.b[-1] == 0.0


# stability boundaries: where |R(z)| = 1 on the negative real axis for R(z) = 1 + z,
# 1 + z + z²/2, Σ_{k≤4} z^k/k! and Dopri5's stability polynomial (Hairer & Wanner II, IV.2)
EULER = ButcherTableau("Euler", 1, c=(0.0,), a=(), b=(1.0,), stability_boundary=2.0)
HEUN = ButcherTableau("Heun", 2, c=(0.0, 1.0), a=((1.0,),), b=(0.5, 0.5), stability_boundary=2.0)
CLASSIC_RK4 = ButcherTableau(
    "RK4", 4,
    c=(0.0, 0.5, 0.5, 1.0),
    a=((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    stability_boundary=2.785,
)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = ButcherTableau(
    "Dopri5", 5,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DP_B[:-1],
    ),
    b=_DP_B,
    e=tuple(b - bh for b, bh in zip(_DP_B, _DP_BHAT)),
    error_order=4,
    # Shampine's (1986) mid-point weights: with y₀, y₁, f₀, f₁ they fix the quartic
    # continuous extension of order 4 that torchdiffeq's dopri5 also uses
    mid=(6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2,
         -2691868925 / 45128329728 / 2, 187940372067 / 1594534317056 / 2,
         -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2),
    stability_boundary=3.306,
    stiffness_limit=3.25,      # Hairer's threshold in dopri5, just inside the boundary
)


def rk_step(f, y, f0, h, tableau: ButcherTableau):
    """One explicit Runge–Kutta step.

    Parameters
    ----------
    f : callable
        ``f(y) -> dy/dt`` (the layer's network ODE; autonomous within a layer).
    y, f0 : ndarray, shape (N+1, B)
        State at the start of the step and ``f(y)``.
    h : float
    tableau : ButcherTableau

    Returns
    -------
    y1 : ndarray
        State after the step.
    f1 : ndarray or None
        ``f(y1)`` when the tableau is FSAL (free), else None.
    err : ndarray or None
        Local error estimate ``h·Σ e_j k_j`` when the tableau has error weights.
    stages : list of ndarray
        The stage derivatives ``k_j`` (the adjoint recomputes them from ``y``).
    """
    h = float(h)       # a Python float: a numpy float64 step would promote a float32 state
    k = [f0]
    y_stage = y
    for row in tableau.a:
        y_stage = y + h * _combine(row, k)
        k.append(f(y_stage))
    if tableau.fsal:
        y1, f1 = y_stage, k[-1]
    else:
        y1, f1 = y + h * _combine(tableau.b, k), None
    err = h * _combine(tableau.e, k) if tableau.e is not None else None
    return y1, f1, err, k


def _reaches_output(tableau: ButcherTableau, j: int) -> bool:
    """Whether stage j influences y⁺ (a non-zero weight, directly or through later stages)."""
    if tableau.b[j] != 0.0:
        return True
    return any(tableau.a[i - 1][j] != 0.0 and _reaches_output(tableau, i) for i in range(j + 1, tableau.stages))


def rk_step_adjoint(assembly, y, h, tableau: ButcherTableau, y1_bar, theta_bar, stats):
    """Transpose of one :func:`rk_step` (see the module docstring); returns ``ȳ``.

    ``theta_bar`` (one ``(n_params, E_g)`` array per group) is accumulated in place.
    """
    f, h = assembly.rhs, float(h)
    s = tableau.stages
    # stage j needs k_0..k_{j-1}; the last stage with a non-zero weight bounds the work
    # (Dopri5's FSAL stage never reaches y⁺; Euler needs no evaluation at all)
    last = max(j for j in range(s) if _reaches_output(tableau, j))
    k = []
    for j in range(last):
        k.append(f(y if j == 0 else y + h * _combine(tableau.a[j - 1], k)))
    stats.n_fevals += last
    Y = [y] + [y + h * _combine(tableau.a[j - 1], k) for j in range(1, last + 1)]
    Y_bar = [None] * s
    y_bar = y1_bar.copy()
    for j in reversed(range(last + 1)):
        k_bar = None
        if tableau.b[j] != 0.0:
            k_bar = (h * tableau.b[j]) * y1_bar
        for i in range(j + 1, s):
            a_ij = tableau.a[i - 1][j]
            if a_ij != 0.0 and Y_bar[i] is not None:
                term = (h * a_ij) * Y_bar[i]
                k_bar = term if k_bar is None else k_bar + term
        if k_bar is None:          # e.g. Dopri5's FSAL stage: it does not reach y⁺
            continue
        Y_bar[j] = assembly.vjp(Y[j], assembly.inv_capacitance * k_bar, theta_bar)
        stats.n_vjps += 1
        y_bar += Y_bar[j]
    return y_bar


def rk_step_tangent(assembly, y, h, tableau: ButcherTableau, y_dot, theta_dot, stats):
    """Forward-mode derivative of one :func:`rk_step`: returns ``(y⁺, ẏ⁺)``."""
    f, h = assembly.rhs, float(h)
    k, k_dot = [], []
    for j in range(tableau.stages):
        if j == 0:
            Y, Y_dot = y, y_dot
        else:
            row = tableau.a[j - 1]
            Y = y + h * _combine(row, k)
            Y_dot = y_dot + h * _combine(row, k_dot)
        k.append(f(Y))
        k_dot.append(assembly.inv_capacitance * assembly.jvp(Y, Y_dot, theta_dot))
    stats.n_fevals += tableau.stages
    return y + h * _combine(tableau.b, k), y_dot + h * _combine(tableau.b, k_dot)


def quartic_interpolant(y0, y1, y_mid, hf0, hf1):
    """The quartic ``p(θ)``, θ ∈ [0, 1], with ``p(0) = y₀``, ``p(½) = y_mid``, ``p(1) = y₁``,
    ``p'(0) = h f₀``, ``p'(1) = h f₁``: Dormand–Prince's order-4 continuous extension."""
    a = 2 * (hf1 - hf0) - 8 * (y1 + y0) + 16 * y_mid
    b = 5 * hf0 - 3 * hf1 + 18 * y0 + 14 * y1 - 32 * y_mid
    c = hf1 - 4 * hf0 - 11 * y0 - 5 * y1 + 16 * y_mid
    return lambda s: (((a * s + b) * s + c) * s + hf0) * s + y0


def _combine(weights, k):
    """``Σ w_j k_j`` skipping zero weights."""
    out = None
    for w, kj in zip(weights, k):
        if w == 0.0:
            continue
        out = w * kj if out is None else out + w * kj
    return out if out is not None else np.zeros_like(k[0])


class RungeKutta:
    """An explicit Runge–Kutta solver: a tableau and a step strategy.

    Use the named constructors :func:`Euler`, :func:`Heun`, :func:`RK4`, :func:`Dopri5`.
    """

    implicit = False

    def __init__(self, tableau: ButcherTableau, step):
        if step.adaptive and tableau.e is None:
            raise InputError(f"{tableau.name} has no error estimate; give it a fixed step dt")
        self.tableau, self.step = tableau, step

    def __repr__(self):
        return f"{self.tableau.name}({self.step!r})"

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def stability_limit(self) -> float | None:
        """``h·|λ|`` beyond which the method is unstable on the negative real axis."""
        return self.tableau.stability_boundary

    @property
    def start_order(self) -> int:
        return self.tableau.error_order or self.tableau.order

    def integrate_layer(self, assembly, V, t0, t1, ctx):
        """Integrate one layer from ``t0`` to ``t1``; returns the state at ``t1``."""
        return march(self, self.step, assembly, V, t0, t1, ctx)

    # -- the three hooks of the shared time loop --------------------------------------
    def start_layer(self, assembly, V, f0, ctx):
        tableau = self.tableau
        if self.step.adaptive and tableau.stiffness_limit is not None and tableau.fsal \
                and tableau.c[-2] == 1.0:
            return _StiffnessMonitor(self, ctx.layer)
        return None

    def attempt(self, assembly, V, f0, h, state, ctx, floor_start=False):
        y1, f1, err, k = rk_step(ctx.counted(assembly.rhs), V, f0, h, self.tableau)
        dense = None
        if self.tableau.mid is not None and f1 is not None:
            dense = quartic_interpolant(V, y1, V + h * _combine(self.tableau.mid, k), h * f0, h * f1)
        stiffness = None
        if state is not None:
            stiffness = stiffness_estimate(V, y1, k, h, self.tableau)
        return Trial(y1, f1, err, self.tableau.error_order or self.tableau.order, dense=dense,
                     stiffness=stiffness)

    def accept(self, state, t, h, trial):
        if state is not None:
            state.observe(trial.stiffness, t)

    # -- sensitivities over one layer's recorded steps -----------------------------------
    def adjoint_layer(self, assembly, tape, y_bar, theta_bar, stats, state_source=None):
        """Carry ``ȳ`` from the layer's end to its start through every recorded step.

        ``state_source(n)``, if given, is a loss's direct dependence on the layer's state
        ``n`` (a running cost): its ``(N+1, B)`` cotangent is added to ``ȳ`` when the sweep
        reaches that state, before stepping over it.
        """
        for n in reversed(range(len(tape.times) - 1)):
            if state_source is not None:
                y_bar = y_bar + state_source(n + 1)
            h = tape.times[n + 1] - tape.times[n]
            y_bar = rk_step_adjoint(assembly, tape.states[n], h, self.tableau, y_bar, theta_bar, stats)
        return y_bar if state_source is None else y_bar + state_source(0)

    def replay(self, assembly, tape, start, stop, y_start, y_before, stats):
        """States after steps ``start..stop-1`` of a recorded layer, recomputed from ``y_start``."""
        f = assembly.rhs
        states, y = [], y_start
        for n in range(start, stop):
            y = rk_step(f, y, f(y), tape.times[n + 1] - tape.times[n], self.tableau)[0]
            stats.n_fevals += self.tableau.stages
            states.append(y)
        return states

    def tangent_layer(self, assembly, tape, y_dot, theta_dot, stats):
        """Carry ``ẏ`` from the layer's start to its end along the recorded grid."""
        y = tape.states[0]
        for n in range(len(tape.times) - 1):
            h = tape.times[n + 1] - tape.times[n]
            y, y_dot = rk_step_tangent(assembly, y, h, self.tableau, y_dot, theta_dot, stats)
        return y_dot


def stiffness_estimate(y, y1, k, h, tableau: ButcherTableau) -> float:
    """Hairer's ``h·|λ|`` from a step whose last two stages sit at ``t + h`` (Dopri5):
    ``h·‖k_s − k_{s−1}‖ / ‖y₁ − Y_{s−1}‖`` per sample over nodes 1..N, the largest over
    the batch (0 where the two stage states coincide)."""
    y_stage = y + h * _combine(tableau.a[-2], k)
    numerator = np.sum((k[-1][1:] - k[-2][1:]) ** 2, axis=0)
    denominator = np.sum((y1[1:] - y_stage[1:]) ** 2, axis=0)
    positive = denominator > 0
    if not positive.any():
        return 0.0
    return float(h * np.sqrt(np.max(numerator[positive] / denominator[positive])))


class _StiffnessMonitor:
    """Hairer's counters over one layer's accepted steps (see the module docstring)."""

    def __init__(self, solver, layer):
        self.solver, self.layer = solver, layer
        self.above, self.below, self.step = 0, 0, 0

    def observe(self, stiffness, t):
        limit = self.solver.tableau.stiffness_limit
        if stiffness is not None and stiffness > limit:
            self.below = 0
            self.above += 1
            if self.above >= STIFF_EXCEEDANCES:
                raise StiffnessError(
                    f"the circuit is stiff for {self.solver!r}: {STIFF_EXCEEDANCES} accepted steps "
                    f"met h·|λ| > {limit:g} (now {stiffness:.3g}, Hairer's test), so the step size "
                    f"is held at the stability boundary, not by the tolerances; use an implicit "
                    f"method (BDF2, Trapezoidal, BackwardEuler)",
                    stiffness=stiffness, layer=self.layer, time=t, step=self.step)
        else:
            self.below += 1
            if self.below >= STIFF_RESET:
                self.above = 0
        self.step += 1


def Euler(dt: float) -> RungeKutta:
    """Forward Euler, order 1, fixed step ``dt``."""
    return RungeKutta(EULER, as_step(dt=dt))


def Heun(dt: float) -> RungeKutta:
    """Heun's method (explicit trapezoid), order 2, fixed step ``dt``."""
    return RungeKutta(HEUN, as_step(dt=dt))


def RK4(dt: float) -> RungeKutta:
    """Classic fourth-order Runge–Kutta, fixed step ``dt``."""
    return RungeKutta(CLASSIC_RK4, as_step(dt=dt))


def Dopri5(rtol=None, atol=None, dt=None, **adaptive_kw) -> RungeKutta:
    """Dormand–Prince 5(4): adaptive with PI control (defaults rtol 1e-7, atol 1e-9, as
    torchdiffeq's ``dopri5``), or fixed step with ``dt``."""
    return RungeKutta(DOPRI5, as_step(dt=dt, rtol=rtol, atol=atol, **adaptive_kw))
