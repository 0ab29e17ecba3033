"""Implicit, SPICE-style methods: backward Euler, trapezoidal and BDF2 (Gear-2).

All three are linear multistep formulas on a variable grid, written for the network
ODE ``C dv/dt = F(v)`` (``F = Aᵀ i``) as

    C/h · (α₀ v₊ + α₁ vₙ + α₂ vₙ₋₁) = β₀ F(v₊) + β₁ F(vₙ)                       (★)

==============  =====  ============================================  ==============
method          order  α                                             β
==============  =====  ============================================  ==============
backward Euler  1      (1, −1, 0)                                    (1, 0)
trapezoidal     2      (1, −1, 0)                                    (½, ½)
BDF2            2      ((1+2ω)/(1+ω), −(1+ω), ω²/(1+ω)), ω = h/hₙ₋₁  (1, 0)
==============  =====  ============================================  ==============

BE and BDF2 are L-stable; the trapezoidal rule is A-stable but not L-stable (it can ring
on very stiff nodes, as in SPICE). A layer's first step has no history: see
:func:`method_coefficients`.

(★) is solved for ``v₊`` by one shared Newton kernel with the matrix
``α₀ C/h − β₀ K(v)``, ``K = ∂F/∂v`` stamped by the assembler; the linear-solve pair is
chosen once: a batched dense solve for small N, one block-diagonal sparse LU for large N.

Step control estimates the local truncation error as SPICE does, from divided
differences of the solution history: with nodes ``s_j = (t_{n+1-j} − t_{n+1})/h`` the
exact solution leaves the residual ``h^{p+1} y^{(p+1)}·[Σ α_j s_j^{p+1}/(p+1)! −
Σ β_j s_j^p/p!]`` in (★), and ``y^{(p+1)} = f^{(p)}`` comes from the last ``p+1``
values of ``f = C⁻¹F``.

Discrete adjoint (:meth:`Implicit.adjoint_layer`). Write (★) as ``G(v₊, vₙ, vₙ₋₁, θ) = 0``
with ``∂G/∂v₊ = M = α₀C/h − β₀K(v₊)``, ``∂G/∂vₙ = α₁C/h − β₁K(vₙ)``,
``∂G/∂vₙ₋₁ = α₂C/h`` and ``∂G/∂θ = −β₀∂F/∂θ(v₊) − β₁∂F/∂θ(vₙ)``. By the implicit
function theorem, a cotangent ``v̄₊`` moves back through one step as

    Mᵀ w = v̄₊,
    v̄ₙ += −α₁ C/h·w + β₁ K(vₙ)ᵀ w,     v̄ₙ₋₁ += −α₂ C/h·w,
    θ̄  += β₀ (∂F/∂θ)(v₊)ᵀ w + β₁ (∂F/∂θ)(vₙ)ᵀ w,

one transposed solve with the forward Newton matrix per step (the same linear-solve
pair, ``trans='T'``). Steps are processed from the last, so each state's cotangent is
complete before it is used. The step sizes and each step's weights (a BE start, BDF2's
ω) are those the forward run recorded. Forward (direct) sensitivities solve
``M v̇₊ = −α₁C/h·v̇ₙ − α₂C/h·v̇ₙ₋₁ + β₁(K(vₙ)v̇ₙ + ∂F/∂θ(vₙ)θ̇) + β₀∂F/∂θ(v₊)θ̇``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from ..errors import InputError, NewtonConvergenceError
from .base import Trial, as_step, march

NEWTON_MAXITER = 10          # SPICE's ITL4
NEWTON_RTOL = 1e-10          # tight, so the discrete adjoint sees the exact (★) solution
NEWTON_ATOL = 1e-12
DENSE_MAX_NODES = 128        # above this, one sparse LU of the block-diagonal matrix wins


@dataclass(frozen=True)
class Coefficients:
    """The weights of (★) for one step, and the order of the method that uses them."""

    alpha: tuple
    beta: tuple
    order: int
    nodes: tuple          # s_j of the α terms: 0, −1, −(1 + 1/ω)

    def error_constant(self) -> float:
        p = self.order
        c = sum(a * s ** (p + 1) for a, s in zip(self.alpha, self.nodes)) / math.factorial(p + 1)
        c -= sum(b * s ** p for b, s in zip(self.beta, self.nodes)) / math.factorial(p)
        return c / self.alpha[0]


BACKWARD_EULER = Coefficients((1.0, -1.0), (1.0, 0.0), 1, (0.0, -1.0))
TRAPEZOIDAL = Coefficients((1.0, -1.0), (0.5, 0.5), 2, (0.0, -1.0))


def method_coefficients(method: str, h: float, h_prev: float | None, be_start: bool) -> Coefficients:
    """Weights of (★) for ``method`` with step ``h`` after a step ``h_prev``.

    ``h_prev`` is None on a layer's first step, where order-2 methods have no history:
    with step control they start with backward Euler as SPICE does after a breakpoint
    (its LTE needs no history); on a fixed grid they start with a trapezoidal step, which
    keeps the global order 2.
    """
    if method == "be":
        return BACKWARD_EULER
    if h_prev is None:
        return BACKWARD_EULER if be_start else TRAPEZOIDAL
    if method == "trap":
        return TRAPEZOIDAL
    w = h / h_prev
    return Coefficients(((1 + 2 * w) / (1 + w), -(1 + w), w * w / (1 + w)), (1.0, 0.0), 2,
                        (0.0, -1.0, -(1.0 + 1.0 / w)))


# ------------------------------------------------------------------ linear solvers
class DenseSolver:
    """Batched dense LU (LAPACK ``gesv`` on a ``(B, N, N)`` stack): best for small N."""

    name = "dense"

    def factor(self, pattern, slot_values):
        return pattern.dense(slot_values)

    def solve(self, factor, rhs, transpose=False):
        M = factor.transpose(0, 2, 1) if transpose else factor
        return np.linalg.solve(M, rhs.T[:, :, None])[:, :, 0].T


class SparseSolver:
    """One sparse LU (SuperLU) of the block-diagonal ``(B·N)²`` matrix: best for large N."""

    name = "sparse"

    def factor(self, pattern, slot_values):
        return spla.splu(pattern.block_diagonal(slot_values))

    def solve(self, factor, rhs, transpose=False):
        B = rhs.shape[1]
        x = factor.solve(np.ascontiguousarray(rhs.T).ravel(), trans="T" if transpose else "N")
        return x.reshape(B, -1).T


def linear_solver(kind: str, num_nodes: int):
    if kind == "auto":
        kind = "dense" if num_nodes <= DENSE_MAX_NODES else "sparse"
    if kind == "dense":
        return DenseSolver()
    if kind == "sparse":
        return SparseSolver()
    raise InputError(f"linear_solver must be 'auto', 'dense' or 'sparse', got {kind!r}")


def newton_matrix_values(assembly, gs, gd, alpha0_over_h, beta0):
    """Slot values of ``α₀C/h − β₀K`` for every sample, ``(n_slots, B)``."""
    pattern = assembly.pattern
    values = -beta0 * pattern.values(gs, gd)
    values[pattern.diagonal] += alpha0_over_h * assembly.capacitance[:, None]
    return values


# ------------------------------------------------------------------ the solver
@dataclass
class _History:
    """Accepted points of the current layer, most recent last: (t, V, f)."""

    points: list
    solver: object
    last_h: float | None = None


class Implicit:
    """An implicit multistep solver: a method, a step strategy and a linear solver.

    Use the named constructors :func:`BackwardEuler`, :func:`Trapezoidal`, :func:`BDF2`.
    """

    implicit = True
    _ORDERS = {"be": 1, "trap": 2, "bdf2": 2}
    _NAMES = {"be": "BackwardEuler", "trap": "Trapezoidal", "bdf2": "BDF2"}

    def __init__(self, method: str, step, linear_solver: str = "auto",
                 newton_rtol: float = NEWTON_RTOL, newton_atol: float = NEWTON_ATOL,
                 newton_maxiter: int = NEWTON_MAXITER):
        if method not in self._ORDERS:
            raise InputError(f"implicit method must be one of {list(self._ORDERS)}, got {method!r}")
        self.method, self.step = method, step
        if linear_solver not in ("auto", "dense", "sparse"):
            raise InputError(f"linear_solver must be 'auto', 'dense' or 'sparse', got {linear_solver!r}")
        self.linear_solver_kind = linear_solver
        if int(newton_maxiter) != newton_maxiter or newton_maxiter < 1:
            raise InputError(f"newton_maxiter must be an integer >= 1, got {newton_maxiter!r}")
        for name, value in (("newton_rtol", newton_rtol), ("newton_atol", newton_atol)):
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be finite and >= 0, got {value!r}")
        if newton_rtol == 0 and newton_atol == 0:
            raise InputError("newton_rtol and newton_atol cannot both be 0")
        self.newton_rtol, self.newton_atol = float(newton_rtol), float(newton_atol)
        self.newton_maxiter = int(newton_maxiter)

    def __repr__(self):
        return f"{self._NAMES[self.method]}({self.step!r})"

    @property
    def order(self) -> int:
        return self._ORDERS[self.method]

    start_order = 1   # every layer starts with a backward-Euler step

    def integrate_layer(self, assembly, V, t0, t1, ctx):
        return march(self, self.step, assembly, V, t0, t1, ctx)

    # -- the three hooks of the shared time loop --------------------------------------
    def start_layer(self, assembly, V, f0, ctx):
        return _History([(None, V, f0)], linear_solver(self.linear_solver_kind, assembly.num_nodes))

    def attempt(self, assembly, V, f0, h, state, ctx):
        first = len(state.points) == 1
        coef = method_coefficients(self.method, h, None if first else state.last_h, self.step.be_start)
        C = assembly.capacitance[:, None]
        y, converged = self._solve_step(assembly, V, f0, h, coef, state, ctx, C)
        if not converged:
            return Trial(None, ok=False)
        f1 = ctx.counted(assembly.rhs)(y)
        err = None
        if self.step.adaptive:
            err = self._truncation_error(coef, h, state, f0, f1)
        return Trial(y, f1, err, coef.order, record=coef)

    def _solve_step(self, assembly, V, f0, h, coef, state, ctx, C):
        """Solve (★) for one step with weights ``coef``; returns ``(v₊, converged)``."""
        # history part of (★): C/h·(α₁vₙ + α₂vₙ₋₁) − β₁F(vₙ), with F = C·f on nodes 1..N
        known = coef.alpha[1] * V[1:]
        if len(coef.alpha) == 3:
            known = known + coef.alpha[2] * state.points[-2][1][1:]
        history = C / h * known - coef.beta[1] * C * f0[1:]
        # Newton starts from the forward-Euler predictor, accurate for small steps; when a
        # stiff exponential device (a diode at 0.8 V) makes it overshoot by orders of
        # magnitude, it starts again from the previous state before the step is given up.
        for guess in (V + h * f0, V):
            y, converged = self.newton(assembly, state.solver, guess, coef.alpha[0] / h, coef.beta[0],
                                       history, ctx)
            if converged:
                return y, True
        return y, False

    def accept(self, state, t, h, trial):
        state.points = (state.points + [(t + h, trial.y1, trial.f1)])[-3:]
        state.last_h = h

    # -- sensitivities over one layer's recorded steps -----------------------------------
    def _matrix(self, assembly, solver, v_plus, coef, h, stats):
        """Factor ``M = α₀C/h − β₀K(v₊)`` at a recorded step."""
        _, gs, gd, _ = assembly.linearise(v_plus, params=False)
        stats.n_jevals += 1
        stats.n_lu += 1
        return solver.factor(assembly.pattern, newton_matrix_values(assembly, gs, gd, coef.alpha[0] / h, coef.beta[0]))

    def adjoint_layer(self, assembly, tape, y_bar, theta_bar, stats):
        """Carry ``v̄`` from the layer's end to its start (see the module docstring)."""
        solver = linear_solver(self.linear_solver_kind, assembly.num_nodes)
        C = assembly.capacitance[:, None]
        states, times = tape.states, tape.times
        # cotangents of the states not yet complete, by index (at most three live at once)
        bars = {len(times) - 1: y_bar.copy()}

        def bar(n):
            if n not in bars:
                bars[n] = np.zeros_like(y_bar)
            return bars[n]

        for n in reversed(range(len(times) - 1)):
            coef, h = tape.coefficients[n], times[n + 1] - times[n]
            lu = self._matrix(assembly, solver, states[n + 1], coef, h, stats)
            w = np.zeros_like(y_bar)
            w[1:] = solver.solve(lu, bars.pop(n + 1)[1:], transpose=True)
            assembly.vjp(states[n + 1], coef.beta[0] * w, theta_bar)
            stats.n_vjps += 1
            if coef.beta[1] != 0.0:
                bar(n)[...] += assembly.vjp(states[n], coef.beta[1] * w, theta_bar)
                stats.n_vjps += 1
            bar(n)[1:] -= coef.alpha[1] / h * C * w[1:]
            if len(coef.alpha) == 3:
                bar(n - 1)[1:] -= coef.alpha[2] / h * C * w[1:]
        return bars[0]

    def replay(self, assembly, tape, start, stop, y_start, y_before, stats):
        """States after steps ``start..stop-1`` of a recorded layer, re-solved from ``y_start``
        with the recorded weights (bit-identical to the forward run)."""
        from .simulate import _Context

        ctx = _Context(stats, None, 0)
        C = assembly.capacitance[:, None]
        solver = linear_solver(self.linear_solver_kind, assembly.num_nodes)
        states, y, previous = [], y_start, y_before
        for n in range(start, stop):
            coef, h = tape.coefficients[n], tape.times[n + 1] - tape.times[n]
            f0 = ctx.counted(assembly.rhs)(y)
            state = _History([(None, previous, None), (None, y, f0)], solver)
            y_next, ok = self._solve_step(assembly, y, f0, h, coef, state, ctx, C)
            if not ok:
                raise NewtonConvergenceError("replaying a recorded step did not converge", step=n)
            previous, y = y, y_next
            states.append(y)
        return states

    def tangent_layer(self, assembly, tape, y_dot, theta_dot, stats):
        """Carry ``v̇`` from the layer's start to its end along the recorded steps."""
        solver = linear_solver(self.linear_solver_kind, assembly.num_nodes)
        C = assembly.capacitance[:, None]
        states, times = tape.states, tape.times
        dots = [y_dot]
        for n in range(len(times) - 1):
            coef, h = tape.coefficients[n], times[n + 1] - times[n]
            rhs = -coef.alpha[1] / h * C * dots[n][1:]
            if len(coef.alpha) == 3:
                rhs -= coef.alpha[2] / h * C * dots[n - 1][1:]
            if coef.beta[1] != 0.0:
                rhs += coef.beta[1] * assembly.jvp(states[n], dots[n], theta_dot)[1:]
            if theta_dot is not None:
                rhs += coef.beta[0] * assembly.jvp(states[n + 1], np.zeros_like(y_dot), theta_dot)[1:]
            lu = self._matrix(assembly, solver, states[n + 1], coef, h, stats)
            nxt = np.zeros_like(y_dot)
            nxt[1:] = solver.solve(lu, rhs)
            dots.append(nxt)
        return dots[-1]

    def fail(self, ctx, t, n):
        raise NewtonConvergenceError(
            f"Newton's method did not converge in {self.newton_maxiter} iterations at a fixed "
            f"step; use a smaller dt or an adaptive step", layer=ctx.layer, time=t, step=n)

    # -- kernels ------------------------------------------------------------------------
    def newton(self, assembly, solver, y, alpha0_over_h, beta0, history, ctx):
        """Solve ``α₀C/h·v − β₀F(v) + history = 0`` for v; returns ``(v, converged)``.

        ``y`` (N+1, B) is the predictor; row 0 (ground) is never touched.
        """
        C = assembly.capacitance[:, None]
        y = y.copy()
        for _ in range(self.newton_maxiter):
            current, gs, gd, _ = assembly.linearise(y, params=False)
            ctx.stats.n_jevals += 1
            ctx.stats.n_fevals += 1
            F = assembly.node_currents(current)[1:]
            residual = alpha0_over_h * C * y[1:] - beta0 * F + history
            lu = solver.factor(assembly.pattern, newton_matrix_values(assembly, gs, gd, alpha0_over_h, beta0))
            ctx.stats.n_lu += 1
            delta = solver.solve(lu, -residual)
            ctx.stats.n_newton += 1
            y[1:] += delta
            if not np.isfinite(delta).all():
                return y, False
            if np.all(np.abs(delta) <= self.newton_rtol * np.abs(y[1:]) + self.newton_atol):
                return y, True
        return y, False

    def _truncation_error(self, coef, h, state, f0, f1):
        """LTE estimate ``C_err·h^{p+1}·y^{(p+1)}`` from divided differences of f."""
        dd1_new = (f1 - f0) / h
        if coef.order == 1:
            derivative = dd1_new                              # y'' ≈ f'
        else:
            t_prev, _, f_prev = state.points[-2]
            h_prev = state.last_h
            dd1_old = (f0 - f_prev) / h_prev
            derivative = 2.0 * (dd1_new - dd1_old) / (h + h_prev)   # y''' ≈ f'' = 2·DD₂
        return abs(coef.error_constant()) * h ** (coef.order + 1) * derivative


def BackwardEuler(dt=None, rtol=None, atol=None, linear_solver="auto", **options) -> Implicit:
    """Backward Euler, order 1, L-stable: fixed step ``dt`` or LTE control (rtol/atol)."""
    return _implicit("be", dt, rtol, atol, linear_solver, options)


def Trapezoidal(dt=None, rtol=None, atol=None, linear_solver="auto", **options) -> Implicit:
    """Trapezoidal rule, order 2, A-stable (SPICE's default): fixed ``dt`` or LTE control."""
    return _implicit("trap", dt, rtol, atol, linear_solver, options)


def BDF2(dt=None, rtol=None, atol=None, linear_solver="auto", **options) -> Implicit:
    """Variable-step BDF2 (Gear-2), order 2, L-stable: fixed ``dt`` or LTE control."""
    return _implicit("bdf2", dt, rtol, atol, linear_solver, options)


_STEP_OPTIONS = ("first_step", "safety", "min_factor", "max_factor", "beta", "max_steps", "min_step", "norm")


def _implicit(method, dt, rtol, atol, linear_solver, options) -> Implicit:
    """Split ``options`` between the step strategy and the Newton settings."""
    step_options = {k: options.pop(k) for k in list(options) if k in _STEP_OPTIONS}
    step = as_step(dt=dt, rtol=rtol, atol=atol, **step_options)
    return Implicit(method, step, linear_solver, **options)
