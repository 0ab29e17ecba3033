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
on very stiff nodes, as in SPICE). A layer's first step has no history: order-2 methods
start it with backward Euler or a trapezoidal step (:meth:`Implicit.backward_euler_start`).

(★) is solved for ``v₊`` by one shared Newton kernel (:meth:`Implicit.newton`) with the
matrix ``α₀C/h − β₀K(v)``, ``K = ∂F/∂v`` stamped by the assembler; the linear-solve pair
is chosen once: a batched dense solve for small N, one block-diagonal sparse LU for large
N. What SPICE does to make Newton converge on exponential devices, the kernel does too:

* **junction limiting** — a device may limit its input between iterations
  (:meth:`Device.limit_input <kirchhoff_sim.devices.Device.limit_input>`; the diode's is
  SPICE's ``pnjlim``); the device is then stamped by its tangent at the limited input
  (its companion model) and the iteration does not count as converged. Iterations in
  which an input was limited make bounded, logarithmic progress by design, so they do
  not count against ``newton_maxiter`` (SPICE's ITL4 = 10); all iterations together are
  capped at :data:`NEWTON_MAXITER_LIMITED` (SPICE's DC limit ITL1 = 100);
* **restarts** — Newton starts from the forward-Euler predictor, then from the previous
  state, and — when a device limits and linearising at the previous state's own inputs
  broke down (a junction at 5 V has a conductance that makes the matrix singular in
  float64) — from the previous state with every junction started at its initial
  condition (SPICE's ``uic`` start: 0 V);
* **step cuts** — with step control a failed Newton solve cuts the step by 8 (SPICE);
  on a fixed grid it is an error (:class:`~kirchhoff_sim.errors.NewtonConvergenceError`,
  or :class:`~kirchhoff_sim.errors.SingularJacobianError` when the matrix was singular),
  never a raw ``LinAlgError``;
* **a backward-Euler start** with step control, and on a fixed grid wherever the
  trapezoidal start would apply a stiff initial current explicitly
  (:meth:`Implicit.backward_euler_start`).

Limiting and restarts change only the Newton iteration, never (★) or its converged
solution (an iteration with a limited input is never the last), so the discrete adjoint
below is unchanged by them; the backward-Euler start is a change of the scheme's weights,
which the tape records per step and the adjoint transposes like any other step.

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

from ..errors import InputError, NewtonConvergenceError, SingularJacobianError
from .base import Trial, as_step, march

NEWTON_MAXITER = 10          # SPICE's ITL4
NEWTON_MAXITER_LIMITED = 100  # all iterations, limited ones included: SPICE's ITL1
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
    they start with backward Euler (``be_start``) or a trapezoidal step; see
    :meth:`Implicit.backward_euler_start` for which.
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
class SingularMatrix(Exception):
    """A factorisation or solve of the linear-solve pair met a singular matrix (private:
    callers turn it into :class:`~kirchhoff_sim.errors.SingularJacobianError` with the
    layer, time and step, or into a failed Newton attempt)."""


class DenseSolver:
    """Batched dense LU (LAPACK ``gesv`` on a ``(B, N, N)`` stack): best for small N."""

    name = "dense"

    def factor(self, pattern, slot_values):
        return pattern.dense(slot_values)

    def solve(self, factor, rhs, transpose=False):
        M = factor.transpose(0, 2, 1) if transpose else factor
        try:
            return np.linalg.solve(M, rhs.T[:, :, None])[:, :, 0].T
        except np.linalg.LinAlgError as exc:
            raise SingularMatrix(str(exc)) from None


class SparseSolver:
    """One sparse LU (SuperLU) of the block-diagonal ``(B·N)²`` matrix: best for large N."""

    name = "sparse"

    def factor(self, pattern, slot_values):
        try:
            return spla.splu(pattern.block_diagonal(slot_values))
        except RuntimeError as exc:        # SuperLU: "Factor is exactly singular"
            raise SingularMatrix(str(exc)) from None

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


def newton_matrix_values(assembly, K, alpha0_over_h, beta0):
    """Slot values of ``α₀C/h − β₀K`` for every sample, ``(n_slots, B)``, from the slot
    values ``K`` of the conductance matrices (:meth:`LayerAssembly.stamps`)."""
    values = -beta0 * K
    values[assembly.pattern.diagonal] += alpha0_over_h * assembly.capacitance[:, None]
    return values


# ------------------------------------------------------------------ the solver
@dataclass
class _History:
    """Accepted points of the current layer, most recent last: (t, V, f)."""

    points: list
    solver: object
    last_h: float | None = None
    steps: int = 0                 # accepted steps of the layer
    started: bool = False          # past the backward-Euler steps the layer starts with


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

    def attempt(self, assembly, V, f0, h, state, ctx, floor_start=False):
        # floor_start: a step the start exemption may accept untested (see base.py)
        if (self.method == "be" or floor_start
                or self.backward_euler_start(assembly, V, f0, h, state, ctx)):
            coef = BACKWARD_EULER
        else:
            coef = method_coefficients(self.method, h, None if state.steps == 0 else state.last_h,
                                       be_start=False)
        C = assembly.capacitance[:, None]
        y, failure = self._solve_step(assembly, V, f0, h, coef, state, ctx.stats, C)
        if failure is not None:
            return Trial(None, ok=False, failure=failure)
        f1 = ctx.counted(assembly.rhs)(y)
        err = None
        if self.step.adaptive:
            err = self._truncation_error(coef, h, state, f0, f1)
        return Trial(y, f1, err, coef.order, record=coef)

    def _solve_step(self, assembly, V, f0, h, coef, state, stats, C):
        """Solve (★) for one step with weights ``coef``; returns ``(v₊, failure)`` with
        ``failure`` None on convergence, else the last attempt's reason (see :meth:`newton`)."""
        # history part of (★): C/h·(α₁vₙ + α₂vₙ₋₁) − β₁F(vₙ), with F = C·f on nodes 1..N
        known = coef.alpha[1] * V[1:]
        if len(coef.alpha) == 3:
            known = known + coef.alpha[2] * state.points[-2][1][1:]
        history = C / h * known - coef.beta[1] * C * f0[1:]
        # Newton starts from the forward-Euler predictor, accurate for small steps; when a
        # stiff exponential device (a diode at 0.8 V) makes it overshoot by orders of
        # magnitude, it starts again from the previous state before the step is given up.
        # Devices that limit their input limit against the previous state's inputs
        # (SPICE's previous time point); when linearising there broke down (a singular
        # matrix: a junction at 5 V), they start once more from their initial condition.
        z_start = assembly.device_inputs(V) if assembly.limiting else None
        for guess in (V + h * f0, V):
            y, failure = self.newton(assembly, state.solver, guess, coef.alpha[0] / h, coef.beta[0],
                                     history, stats, z_start)
            if failure is None:
                return y, None
        if z_start is not None and failure in ("singular", "diverged"):
            y, failure = self.newton(assembly, state.solver, V, coef.alpha[0] / h, coef.beta[0],
                                     history, stats, None)
        return y, failure

    def accept(self, state, t, h, trial):
        state.points = (state.points + [(t + h, trial.y1, trial.f1)])[-3:]
        state.last_h = h
        state.steps += 1

    def backward_euler_start(self, assembly, V, f0, h, state, ctx) -> bool:
        """Whether the step from ``V`` is one of the backward-Euler steps an order-2
        method starts a layer with.

        With step control: the first step, as SPICE after a breakpoint (its local error
        needs no history). On a fixed grid the trapezoidal start (which keeps the
        methods' error constant) is taken unless its explicit half — an Euler step of h/2
        with the current ``f(V)`` — would be unstable, ``(h/2)·|λ| > 2``, with ``λ`` the
        rate along ``f(V)``'s own direction (:func:`_initial_rate`, one f-evaluation).
        From an inconsistent initial state (a diode junction at 5 V carries 1e75 units of
        current) that half-step alone sends the node to −5e71 V; a step later, with the
        junction still a little above its slow manifold, the trapezoidal rule would ring
        it into reverse bias. So the layer takes backward-Euler steps, which damp such a
        transient (L-stability), until the test passes; BDF2 takes one more, so that no
        state the test rejected enters its two-step history. The global order stays 2:
        each start step's local error is O(h²), and there are a bounded few. A replayed
        grid (:class:`~.base.GridStep`) repeats the recorded number of such steps.
        """
        if state.started:
            return False
        known = self.step.leading_be_steps(ctx.layer)
        if known is not None:
            if state.steps < known:
                return True
        elif h * _initial_rate(assembly, V, f0, ctx.stats) > 4.0:
            return True
        else:
            state.started = True
            return self.method == "bdf2" and state.steps > 0
        state.started = True
        return False

    # -- sensitivities over one layer's recorded steps -----------------------------------
    def _matrix(self, assembly, solver, v_plus, coef, h, stats):
        """Factor ``M = α₀C/h − β₀K(v₊)`` at a recorded step."""
        _, K = assembly.stamps(v_plus)
        stats.n_jevals += 1
        stats.n_lu += 1
        return solver.factor(assembly.pattern, newton_matrix_values(assembly, K, coef.alpha[0] / h, coef.beta[0]))

    def _recorded_solve(self, assembly, solver, tape, n, coef, h, rhs, stats, transpose=False):
        """``M⁻¹rhs`` (or ``M⁻ᵀrhs``) at recorded step ``n``; a singular M is a typed error."""
        try:
            lu = self._matrix(assembly, solver, tape.states[n + 1], coef, h, stats)
            return solver.solve(lu, rhs, transpose=transpose)
        except SingularMatrix:
            raise SingularJacobianError("the Newton matrix of a recorded step is singular",
                                        layer=tape.layer, time=tape.times[n], step=n) from None

    def adjoint_layer(self, assembly, tape, y_bar, theta_bar, stats, state_source=None):
        """Carry ``v̄`` from the layer's end to its start (see the module docstring).

        The transpose of the recorded steps, whatever Newton did to reach them: junction
        limiting and restarts only change the iteration (a limited iteration is never the
        last), and the backward-Euler start steps are recorded with their own weights.
        ``state_source(n)``, if given, is a loss's direct dependence on the layer's state
        ``n`` (a running cost): its cotangent completes ``v̄_n`` before it is transposed.
        """
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
            if state_source is not None:
                bar(n + 1)[...] += state_source(n + 1)
            w = np.zeros_like(y_bar)
            w[1:] = self._recorded_solve(assembly, solver, tape, n, coef, h, bars.pop(n + 1)[1:],
                                         stats, transpose=True)
            assembly.vjp(states[n + 1], coef.beta[0] * w, theta_bar)
            stats.n_vjps += 1
            if coef.beta[1] != 0.0:
                bar(n)[...] += assembly.vjp(states[n], coef.beta[1] * w, theta_bar)
                stats.n_vjps += 1
            bar(n)[1:] -= coef.alpha[1] / h * C * w[1:]
            if len(coef.alpha) == 3:
                bar(n - 1)[1:] -= coef.alpha[2] / h * C * w[1:]
        if state_source is not None:
            bar(0)[...] += state_source(0)
        return bars[0]

    def replay(self, assembly, tape, start, stop, y_start, y_before, stats):
        """States after steps ``start..stop-1`` of a recorded layer, re-solved from ``y_start``
        with the recorded weights (bit-identical to the forward run)."""
        C = assembly.capacitance[:, None]
        solver = linear_solver(self.linear_solver_kind, assembly.num_nodes)
        states, y, previous = [], y_start, y_before
        for n in range(start, stop):
            coef, h = tape.coefficients[n], tape.times[n + 1] - tape.times[n]
            f0 = assembly.rhs(y)
            stats.n_fevals += 1
            state = _History([(None, previous, None), (None, y, f0)], solver)
            y_next, failure = self._solve_step(assembly, y, f0, h, coef, state, stats, C)
            if failure is not None:
                raise NewtonConvergenceError("replaying a recorded step did not converge",
                                             layer=tape.layer, time=tape.times[n], step=n)
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
            nxt = np.zeros_like(y_dot)
            nxt[1:] = self._recorded_solve(assembly, solver, tape, n, coef, h, rhs, stats)
            dots.append(nxt)
        return dots[-1]

    def fail(self, ctx, t, n, trial):
        """The typed error of a failed step on a fixed grid (which cannot cut the step)."""
        if trial.failure == "singular":
            raise SingularJacobianError(
                "the Newton matrix α₀C/h − β₀K is singular to working precision at a fixed "
                "step; use a smaller dt or an adaptive step", layer=ctx.layer, time=t, step=n)
        why = ("its update became non-finite" if trial.failure == "diverged"
               else f"not in {self.newton_maxiter} iterations")
        raise NewtonConvergenceError(
            f"Newton's method did not converge ({why}) at a fixed step; use a smaller dt or "
            f"an adaptive step", layer=ctx.layer, time=t, step=n)

    # -- kernels ------------------------------------------------------------------------
    def newton(self, assembly, solver, y, alpha0_over_h, beta0, history, stats, z_start=None):
        """Solve ``α₀C/h·v − β₀F(v) + history = 0`` for v by Newton's method.

        Parameters
        ----------
        assembly : LayerAssembly
        solver : DenseSolver or SparseSolver
            The linear-solve pair.
        y : ndarray, shape (N+1, B)
            The starting guess; row 0 (ground) is never touched.
        alpha0_over_h, beta0 : float
            The weights of ``v₊`` in (★).
        history : ndarray, shape (N, B)
            The known part of (★).
        stats : Stats
            The counters this solve adds to (f- and Jacobian evaluations, LU
            factorisations, iterations).
        z_start : list or None
            Per group the device inputs the first iteration limits against
            (:meth:`LayerAssembly.linearise_limited`); unused when no device limits.

        Returns
        -------
        v : ndarray, shape (N+1, B)
        failure : str or None
            None when converged (every update within ``newton_rtol·|v| + newton_atol``
            in an iteration without limiting); else ``"singular"`` (the matrix could not
            be factored), ``"diverged"`` (a non-finite update) or ``"maxiter"``.
        """
        C = assembly.capacitance[:, None]
        y = y.copy()
        limiting = assembly.limiting
        z, counted = z_start, 0
        for _ in range(NEWTON_MAXITER_LIMITED):
            if limiting:
                current, gs, gd, z, limited = assembly.linearise_limited(y, z)
                F, K = assembly.node_currents(current), assembly.pattern.values(gs, gd)
            else:
                F, K = assembly.stamps(y)
                limited = False
            stats.n_jevals += 1
            stats.n_fevals += 1
            residual = alpha0_over_h * C * y[1:] - beta0 * F[1:] + history
            try:
                lu = solver.factor(assembly.pattern, newton_matrix_values(assembly, K, alpha0_over_h, beta0))
                stats.n_lu += 1
                delta = solver.solve(lu, -residual)
            except SingularMatrix:
                return y, "singular"
            stats.n_newton += 1
            y[1:] += delta
            if not np.isfinite(delta).all():
                return y, "diverged"
            if limited:
                continue
            if np.all(np.abs(delta) <= self.newton_rtol * np.abs(y[1:]) + self.newton_atol):
                return y, None
            counted += 1
            if counted >= self.newton_maxiter:
                return y, "maxiter"
        return y, "maxiter"

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


def _initial_rate(assembly, V, f0, stats) -> float:
    """``|λ|`` along the derivative's own direction, ``‖f(V + εf₀) − f₀‖ / (ε‖f₀‖)`` per
    sample (Euclidean norms over nodes 1..N), the largest over the batch; each sample's ε
    moves its state by 1e-7 of its size. One f-evaluation, counted; 0 where ``f₀``
    vanishes, inf where it is not finite."""
    f0_norm = np.sqrt(np.sum(f0[1:] ** 2, axis=0))                      # (B,)
    if not np.all(np.isfinite(f0_norm)):
        return np.inf
    moving = f0_norm > 0
    if not moving.any():
        return 0.0
    eps = np.zeros_like(f0_norm)
    eps[moving] = 1e-7 * (1.0 + np.max(np.abs(V[:, moving]), axis=0)) / f0_norm[moving]
    f1 = assembly.rhs(V + eps * f0)
    stats.n_fevals += 1
    change = np.sqrt(np.sum((f1[1:] - f0[1:]) ** 2, axis=0))
    return float(np.max(change[moving] / (eps[moving] * f0_norm[moving])))


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
