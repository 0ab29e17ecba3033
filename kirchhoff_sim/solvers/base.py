"""What every solver shares: counters, the error norm, step-size strategies and saving.

A solver integrates one layer at a time (``integrate_layer``); :func:`simulate` chains the
layers. Two step strategies exist, and every solver accepts either:

* :class:`FixedStep` — a uniform grid that lands exactly on the layer's end;
* :class:`AdaptiveStep` — error-controlled steps with the PI controller of Hairer's
  DOPRI5 code (``h_new = h·safety·err⁻ᵅ·err_prev^β``, α = 1/k − 0.75β, k = error order
  + 1, β = 0.04; no growth on the step after a rejection; a rejected step shrinks by
  ``safety·err⁻ᵅ``), the defaults a torchdiffeq ``dopri5`` user expects (rtol 1e-7,
  atol 1e-9, safety 0.9, growth ≤ 10×, shrink ≥ 0.2×), and Hairer's starting-step
  heuristic. diffrax's ``PIDController(pcoeff=0.2, icoeff=0.65)`` is the same law for
  accepted steps (its default, ``icoeff=1``, is an I controller with α = 1/5); unlike
  Hairer it never shrinks after an accepted step and caps a rejected step's factor at
  the safety factor (benchmarks/bench_jax.py runs both stacks with the same law).

The error norm is the RMS over nodes of ``err / (atol + rtol·max(|v₀|, |v₁|))`` for each
sample, maximised over the batch: a batch is integrated on one step grid that is fine
enough for every sample in it. ``AdaptiveStep(norm="batch")`` takes torchdiffeq's RMS
over the whole batch instead. ``atol`` must be > 0: the nodes of a net start at 0 V and
cross it, where a pure relative tolerance has no scale.

The shared time loop (:func:`march`) also owns the failure checks: a non-finite state
(:class:`~kirchhoff_sim.errors.NonFiniteStateError`), a node voltage beyond the plausible
bound (:class:`~kirchhoff_sim.errors.DivergenceError`, ``simulate(voltage_limit=…)``), a
step size below its floor (:class:`~kirchhoff_sim.errors.StepSizeTooSmallError`, or
:class:`~kirchhoff_sim.errors.StiffnessError` when the circuit's stiffness put it there),
and Newton failures of implicit steps.

Step-size floor. A step that fails its error test is retried once at the floor before the
run gives up (as ngspice retries at ``delmin``). One exception, for implicit methods only:
a layer whose initial state is far off its slow manifold — an inconsistent initial
condition, e.g. a diode junction starting at 5 V that carries 1e75 A for picoseconds —
has a local error that no step at or above the floor can meet. SPICE takes its first
time point without a truncation-error test for this reason. Here steps at the floor are
accepted without the test (counted in ``Stats.n_unchecked``) until the layer has accepted
a step longer than twice the floor. These steps are backward-Euler steps whatever the
method: L-stable, with no history to carry the inconsistent state on (a trapezoidal step
there rings the junction into reverse bias, a BDF2 step extrapolates from it), so the
error they skip is that of a fast, decaying transient, not of the slow solution. At most
:data:`MAX_UNCHECKED_STEPS` such steps are taken per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..checks import as_int, as_positive, as_real
from ..errors import (
    DivergenceError,
    InputError,
    NewtonConvergenceError,
    NonFiniteStateError,
    SingularJacobianError,
    StepSizeTooSmallError,
    StiffnessError,
)

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
PI_BETA = 0.04            # Hairer's DOPRI5 default for the PI controller's memory term
MAX_STEPS = 100_000       # per layer
MIN_STEP_FRACTION = 1e-12  # floor of the step size, relative to the layer duration
MAX_UNCHECKED_STEPS = 1000  # per layer: steps at the floor accepted without the error test
#: Default bound on |v| (normalised volts) beyond which a run raises DivergenceError: a
#: million times the unit voltage is beyond every rail and every input a net is built for,
#: yet far below overflow, so a blow-up is caught while its state still means something.
VOLTAGE_LIMIT = 1e6


@dataclass
class Stats:
    """Work counters of a run, accumulated over layers (tests assert work budgets)."""

    n_steps: int = 0
    n_rejected: int = 0
    n_fevals: int = 0
    n_newton: int = 0
    n_lu: int = 0
    n_jevals: int = 0
    n_vjps: int = 0
    n_unchecked: int = 0      # steps at the floor accepted without their error test

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def add(self, other: "Stats") -> None:
        """Add ``other``'s counts to these (the pieces of a split batch)."""
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class LayerTape:
    """The accepted step grid of one layer, and what the adjoint needs of each step.

    ``times`` are the step boundaries ``t_0 < t_1 < … < t_n`` (the layer's start and end
    included); ``states`` (only when recording) are the node voltages ``(N+1, B)`` at
    each boundary; ``coefficients`` (implicit solvers) are each step's method weights.
    """

    times: list = field(default_factory=list)
    states: list | None = None
    coefficients: list | None = None
    layer: int | None = None      # index of the layer, for the errors of a backward sweep


class CheckpointedStates:
    """A layer's step states when only checkpoints were kept (``simulate(record_states=k)``).

    Every ``k``-th state, and the one before it (BDF2's history), is stored; any other is
    recomputed on first access by replaying the solver's accepted steps from the
    checkpoint before it, a segment of ``k`` steps at a time. Replaying is bit-identical
    to the forward run (same arithmetic on the same inputs), so gradients do not change;
    memory drops from O(steps) to O(steps/k + k) states for ~one extra forward pass.
    """

    def __init__(self, stored: list, every: int, replay):
        self.stored, self.every, self.replay = stored, every, replay
        self._segment_start, self._segment = None, None

    def __len__(self):
        return len(self.stored)

    def __getitem__(self, n):
        n = range(len(self.stored))[n]
        if self.stored[n] is not None:
            return self.stored[n]
        start = (n // self.every) * self.every
        if self._segment_start != start:
            stop = min(start + self.every, len(self.stored) - 1)
            before = self.stored[start - 1] if start > 0 else None
            self._segment = self.replay(start, stop, self.stored[start], before)
            self._segment_start = start
        return self._segment[n - start - 1]


NORMS = ("sample", "batch")


def error_ratio(err: np.ndarray, y0: np.ndarray, y1: np.ndarray, rtol: float, atol: float,
                norm: str = "sample") -> float:
    """Scaled error ``err / (atol + rtol·max(|y0|, |y1|))`` over nodes 1..N.

    ``norm="sample"``: the RMS per sample, maximised over the batch — every sample meets
    the tolerance. ``norm="batch"``: one RMS over the whole batch, as torchdiffeq
    computes it for a batched state — cheaper, but a hard sample can be under-resolved.
    """
    scale = atol + rtol * np.maximum(np.abs(y0[1:]), np.abs(y1[1:]))
    squared = (err[1:] / scale) ** 2
    if squared.size == 0:
        return 0.0
    if norm == "batch":
        return float(np.sqrt(np.mean(squared)))
    return float(np.sqrt(np.mean(squared, axis=0)).max())


def check_state(V: np.ndarray, voltage_limit: float, layer: int, time: float, step: int) -> None:
    """Raise unless every node voltage of ``V`` ``(N+1, B)`` is finite and within
    ``±voltage_limit``: :class:`NonFiniteStateError` (some voltage is NaN or infinite) or
    :class:`DivergenceError`, naming the worst node and sample and, in ``samples``, every
    sample out of bounds (so that a caller can drop them all at once).

    One pass over the state (its largest magnitude) in the common case.
    """
    largest = np.max(np.abs(V)) if V.size else 0.0
    if np.isfinite(largest) and largest <= voltage_limit:
        return
    finite = np.isfinite(V)
    with np.errstate(invalid="ignore"):
        outside = ~(np.abs(V) <= voltage_limit) | ~finite     # NaN and ±inf, whatever the bound
    samples = np.unique(np.nonzero(outside)[1])
    where = {"layer": layer, "time": time, "step": step, "samples": samples}
    if not finite.all():
        node, sample = np.argwhere(~finite)[0]
        raise NonFiniteStateError(
            f"a node voltage became {V[node, sample]} — the circuit diverged; "
            f"check the device parameters or use smaller steps", node=int(node), sample=int(sample), **where)
    node, sample = np.unravel_index(np.argmax(np.abs(V)), V.shape)
    raise DivergenceError(
        f"a node voltage reached {V[node, sample]:.3g} V (normalised), beyond the "
        f"plausible bound ±{voltage_limit:g}: the circuit is unstable (positive feedback, a "
        f"negative conductance) or its parameters are unphysical; a larger bound is "
        f"simulate(voltage_limit=...)", node=int(node), sample=int(sample), **where)


class FixedStep:
    """A uniform grid: ``ceil(duration/dt)`` equal steps per layer (exactly hitting its end)."""

    adaptive = False

    def __init__(self, dt: float):
        self.dt = as_positive(dt, "step size dt")

    def leading_be_steps(self, layer: int):
        """None: implicit order-2 methods decide at each layer's start whether to begin
        with backward Euler (:meth:`~kirchhoff_sim.solvers.implicit.Implicit.backward_euler_start`)."""
        return None

    def grid(self, t0: float, t1: float, layer: int) -> np.ndarray:
        # the small slack keeps 1.0/0.1 from becoming 11 steps
        n = max(1, math.ceil((t1 - t0) / self.dt - 1e-9))
        times = t0 + (t1 - t0) * np.arange(n + 1) / n
        times[-1] = t1
        return times

    def __repr__(self):
        return f"FixedStep(dt={self.dt:g})"


class GridStep:
    """Replays given step grids, one array of times per layer (e.g. an adaptive run's).

    Gradient checks use it: finite differences of the *same* discretisation hold the
    forward run's accepted steps fixed, as the discrete adjoint does.
    """

    adaptive = False

    def __init__(self, grids, be_steps):
        self.grids = [np.asarray(g, dtype=float) for g in grids]
        self.be_steps = list(be_steps)

    @classmethod
    def replay(cls, solution) -> "GridStep":
        """The step grid of a :class:`~kirchhoff_sim.solvers.Solution`'s run, with the
        number of backward-Euler steps each layer of an implicit run began with.

        Raises
        ------
        InputError
            A run of a batch split into pieces: each piece has its own grid.
        """
        if solution.tapes is None:
            raise InputError(f"this run's batch was split into {len(solution.parts())} pieces, each with "
                             "its own step grid: replay one piece (Solution.parts()), or simulate "
                             "with max_batch=None")
        return cls([tape.times for tape in solution.tapes],
                   [_leading_order_one(tape.coefficients) for tape in solution.tapes])

    def leading_be_steps(self, layer: int):
        return self.be_steps[layer]

    def grid(self, t0: float, t1: float, layer: int) -> np.ndarray:
        times = self.grids[layer]
        if abs(times[0] - t0) > 1e-12 * max(1.0, abs(t1)) or abs(times[-1] - t1) > 1e-12 * max(1.0, abs(t1)):
            raise InputError(f"replayed grid of layer {layer} spans [{times[0]}, {times[-1]}], "
                             f"not the layer's [{t0}, {t1}]")
        return times

    def __repr__(self):
        return f"GridStep({sum(len(g) - 1 for g in self.grids)} steps)"


def _leading_order_one(coefficients) -> int | None:
    """How many steps of a recorded implicit layer were first-order (backward Euler)."""
    if coefficients is None:
        return None
    count = 0
    for coef in coefficients:
        if coef.order != 1:
            break
        count += 1
    return count


class AdaptiveStep:
    """Error-controlled step size with Hairer's PI controller.

    Parameters
    ----------
    rtol, atol : float
        Relative and absolute tolerance of the local error.
    first_step : float, optional
        Initial step; by default Hairer's heuristic picks one per layer.
    safety, min_factor, max_factor, beta : float
        Controller constants (``beta = 0`` gives the classic I controller).
    max_steps : int
        Accepted + rejected steps allowed per layer before giving up.
    norm : {"sample", "batch"}
        How the batch's errors combine (see :func:`error_ratio`).
    min_step : float, optional
        Step-size floor; by default ``1e-12 ×`` the layer duration.
    """

    adaptive = True

    def __init__(self, rtol: float = 1e-7, atol: float = 1e-9, first_step=None, safety=SAFETY,
                 min_factor=MIN_FACTOR, max_factor=MAX_FACTOR, beta=PI_BETA,
                 max_steps=MAX_STEPS, min_step=None, norm: str = "sample"):
        if norm not in NORMS:
            raise InputError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        rtol = as_real(rtol, "rtol", minimum=0.0)
        atol = as_real(atol, "atol", minimum=0.0)
        if rtol == 0 and atol == 0:
            raise InputError("rtol and atol cannot both be 0")
        if atol == 0:
            # the scale atol + rtol·|v| of a node at 0 V would be 0, and its error 0/0
            raise InputError(
                "atol must be > 0: a net's nodes start at 0 V and cross it, where a purely "
                "relative tolerance has no scale; give atol = rtol × the smallest voltage "
                "that matters")
        if first_step is not None:
            first_step = as_positive(first_step, "first_step")
        max_steps = as_int(max_steps, "max_steps", minimum=1)
        if min_step is not None:
            min_step = as_real(min_step, "min_step", minimum=0.0)
        for name, value in (("safety", safety), ("min_factor", min_factor), ("max_factor", max_factor)):
            as_positive(value, name)
        as_real(beta, "beta", minimum=0.0)
        self.rtol, self.atol = float(rtol), float(atol)
        self.first_step = first_step
        self.safety, self.min_factor, self.max_factor, self.beta = safety, min_factor, max_factor, beta
        self.max_steps, self.min_step = int(max_steps), min_step

    def __repr__(self):
        return f"AdaptiveStep(rtol={self.rtol:g}, atol={self.atol:g})"

    def leading_be_steps(self, layer: int) -> int:
        """Implicit order-2 methods start every layer with backward Euler, as SPICE does
        after a breakpoint (its local error needs no history)."""
        return 1

    def ratio(self, err, y0, y1) -> float:
        return error_ratio(err, y0, y1, self.rtol, self.atol, self.norm)

    def initial_step(self, f, y0, f0, duration, order, stats, floor: float = 0.0) -> float:
        """Hairer's starting-step heuristic (Solving ODEs I, II.4), one extra f-evaluation
        (``f`` must count its own calls).

        The result lies in ``[floor, duration]`` and is finite: the floor bounds the first
        step as it bounds every other, and an initial state whose derivative is
        astronomically large (a diode forward-biased by 12 V carries 1e201 units of current)
        makes the heuristic's norms overflow and its step 0, which becomes the floor.
        """
        if self.first_step is not None:
            return max(min(float(self.first_step), duration), floor)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._heuristic(f, y0, f0, duration, order, floor)

    def _heuristic(self, f, y0, f0, duration, order, floor):
        scale = self.atol + self.rtol * np.abs(y0[1:])
        d0 = np.sqrt(np.mean((y0[1:] / scale) ** 2))
        d1 = np.sqrt(np.mean((f0[1:] / scale) ** 2))
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, duration)
        if not (np.isfinite(h0) and h0 > 0):
            return floor if floor > 0 else min(1e-6, duration)
        f1 = f(y0 + h0 * f0)      # f counts its own evaluations
        d2 = np.sqrt(np.mean(((f1[1:] - f0[1:]) / scale) ** 2)) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
        h = min(100 * h0, h1, duration)
        if not (np.isfinite(h) and h > 0):
            return floor if floor > 0 else h0
        return max(h, floor)

    def next_step(self, h: float, ratio: float, previous_ratio: float, error_order: int,
                  accepted: bool, after_rejection: bool = False) -> float:
        """Proposed next step after a step of size ``h`` with scaled error ``ratio``.

        As Hairer's DOPRI5 (``dopri5.f``, Hairer & Wanner's code to *Solving ODEs I*): an
        accepted step scales by ``safety·ratio^−α·previous^β`` within
        ``[min_factor, max_factor]``, and does not grow when it directly follows a
        rejection (``after_rejection``); a rejected step shrinks by
        ``max(min_factor, safety·ratio^−α)`` — its own error only (dopri5.f's
        ``H/MIN(FACC1, FAC11/SAFE)``, ``FAC11 = ERR**EXPO1``), the memory term is for
        accepted steps.
        """
        k = error_order + 1
        alpha = 1.0 / k - 0.75 * self.beta
        if not accepted:
            return h * max(self.min_factor, min(1.0, self.safety * ratio ** (-alpha)))
        if ratio == 0.0:
            factor = self.max_factor
        else:
            factor = self.safety * ratio ** (-alpha) * previous_ratio ** self.beta
        factor = min(self.max_factor, max(self.min_factor, factor))
        if after_rejection:
            factor = min(1.0, factor)
        return h * factor

    def floor(self, duration: float) -> float:
        return self.min_step if self.min_step is not None else MIN_STEP_FRACTION * duration


def as_step(dt=None, rtol=None, atol=None, step=None, **adaptive_kw):
    """Build a step strategy from the convenience arguments of a solver constructor."""
    if step is not None:
        return step
    if dt is not None:
        if rtol is not None or atol is not None:
            raise InputError("give either dt (fixed step) or rtol/atol (adaptive), not both")
        return FixedStep(dt)
    return AdaptiveStep(rtol=1e-7 if rtol is None else rtol, atol=1e-9 if atol is None else atol,
                        **adaptive_kw)


def too_small(h, floor, layer, t, step):
    raise StepSizeTooSmallError(
        f"step size {h:.3g} fell below its floor {floor:.3g}: the circuit is too stiff for "
        f"this method or the tolerances are too tight",
        layer=layer, time=t, step=step,
    )


def gershgorin(assembly, V: np.ndarray, stats):
    """Gershgorin's discs of ``J = C⁻¹∂F/∂v`` at ``V`` ``(N+1, B)``, as two figures.

    Returns ``(radius, stable)``: the bound ``max_n Σ_m |J_nm|`` on the spectral radius
    over nodes and samples (every eigenvalue lies in a disc, so ``ρ(J) ≤ radius``;
    for KCL's diagonally dominant conductance matrices it is within a factor 2 of ρ),
    and whether every disc lies in the closed left half-plane,
    ``J_nn + Σ_{m≠n} |J_nm| ≤ 0`` — then no eigenvalue has a positive real part, the
    linearised circuit cannot grow, and a blow-up is the integrator's, not the circuit's.
    One linearisation, counted in ``stats``. An assembly that is not a KirchhoffNet
    layer's (a KINN window, :mod:`kirchhoff_sim.kinn`) brings its own ``gershgorin``.
    """
    own = getattr(assembly, "gershgorin", None)
    if own is not None:
        return own(V, stats)
    _, gs, gd, _ = assembly.linearise(V, params=False)
    stats.n_fevals += 1
    stats.n_jevals += 1
    pattern = assembly.pattern
    values = pattern.values(gs, gd) / assembly.capacitance[pattern.rows, None]   # (n_slots, B)
    rows = sp.csr_matrix((np.ones(pattern.n_slots), (pattern.rows, np.arange(pattern.n_slots))),
                         shape=(assembly.num_nodes, pattern.n_slots))
    absolute = rows @ np.abs(values)                                    # Σ_m |J_nm|
    diagonal = values[pattern.diagonal]                                 # J_nn, (N, B)
    if absolute.size == 0:
        return 0.0, True
    stable = bool(np.all(diagonal + (absolute - np.abs(diagonal)) <= 0))
    return float(np.max(absolute)), stable


def stiffness_of_blow_up(method, assembly, V, h, ctx, t, n):
    """Raise :class:`StiffnessError` when an explicit method's failure at ``V`` (a step of
    ``h`` diverged, or could not be made above the floor) is its own instability: the
    circuit is provably stable there (:func:`gershgorin`) and ``h·ρ`` exceeds the
    method's stability interval on the negative real axis. Returns otherwise."""
    limit = getattr(method, "stability_limit", None)
    if limit is None:
        return
    radius, stable = gershgorin(assembly, V, ctx.stats)
    if stable and h * radius > limit:
        raise StiffnessError(
            f"the circuit is stiff for {method!r}: it is stable (every Gershgorin disc of its "
            f"Jacobian lies in the left half-plane), but its fastest rate |λ| ≤ {radius:.3g} "
            f"needs steps h < {limit:g}/|λ| = {limit / radius:.3g} to be stable, and the step "
            f"was {h:.3g}; use an implicit method (BDF2, Trapezoidal, BackwardEuler)",
            stiffness=h * radius, layer=ctx.layer, time=t, step=n)


def _floor_failure(method, assembly, V, h, floor, ctx, t, n, newton_failure):
    """The typed error for a step that cannot be made at or above the floor."""
    if newton_failure is not None:
        error = SingularJacobianError if newton_failure == "singular" else NewtonConvergenceError
        what = ("the Newton matrix was singular" if newton_failure == "singular"
                else "Newton's method did not converge")
        raise error(f"{what} at every step size down to the floor {floor:.3g}",
                    layer=ctx.layer, time=t, step=n)
    stiffness_of_blow_up(method, assembly, V, floor, ctx, t, n)
    too_small(h, floor, ctx.layer, t, n)


class Saver:
    """Collects the node voltages at requested times, interpolating inside steps.

    Inside a step ``[ta, tb]`` the state is the method's own continuous extension when it
    has one (Dopri5's quartic, order 4), else the cubic Hermite interpolant of the two end
    states and their derivatives (local error O(h⁴)); a save time that coincides with a
    step end takes that end state exactly.
    """

    def __init__(self, times: np.ndarray, num_nodes: int, batch: int, dtype=np.float64):
        self.times = times
        self.values = np.full((len(times), num_nodes + 1, batch), np.nan, dtype=dtype)
        self.next = 0

    def at_start(self, t0, V0):
        while self.next < len(self.times) and self.times[self.next] <= t0:
            self.values[self.next] = V0
            self.next += 1

    def on_step(self, ta, Va, fa, tb, Vb, fb_thunk, is_last, dense=None):
        """Record saves in ``(ta, tb]``; ``fb_thunk()`` gives ``f(Vb)`` only if needed, and
        ``dense(θ)``, when given, is the method's own interpolant (used instead of Hermite)."""
        while self.next < len(self.times):
            ts = self.times[self.next]
            if ts > tb and not (is_last and ts - tb <= 1e-12 * max(1.0, abs(tb))):
                break
            if ts >= tb or tb - ts <= 1e-14 * max(1.0, abs(tb)):
                self.values[self.next] = Vb
            elif dense is not None:
                self.values[self.next] = dense((ts - ta) / (tb - ta))
            else:
                h = tb - ta
                s = (ts - ta) / h
                fb = fb_thunk()
                h00 = 2 * s**3 - 3 * s**2 + 1
                h10 = s**3 - 2 * s**2 + s
                h01 = -2 * s**3 + 3 * s**2
                h11 = s**3 - s**2
                self.values[self.next] = h00 * Va + h10 * h * fa + h01 * Vb + h11 * h * fb
            self.next += 1


@dataclass
class Trial:
    """The outcome of one attempted step, as a method reports it to :func:`march`.

    ``err`` is the local error estimate (None for a fixed-step method without one) of
    order ``error_order``; ``ok`` is False when the step failed outright (Newton did not
    converge) and must be retried smaller; ``record`` is what the tape keeps for the
    adjoint; ``f1`` is ``f(y1)`` when the method already has it.
    """

    y1: np.ndarray | None
    f1: np.ndarray | None = None
    err: np.ndarray | None = None
    error_order: int = 1
    ok: bool = True
    record: object = None
    dense: object = None      # θ ↦ state at t + θh, when the method has its own interpolant
    failure: str | None = None    # why an implicit step failed: "singular", "diverged", "maxiter"
    stiffness: float | None = None  # an estimate of h·|λ| (Hairer's test), when the method has one


def march(method, step, assembly, V, t0, t1, ctx):
    """The time loop shared by every solver: propose, attempt, accept or reject.

    ``method`` supplies ``start_layer(assembly, V, f0, ctx) -> state``,
    ``attempt(assembly, V, f0, h, state, ctx, floor_start) -> Trial`` and
    ``accept(state, t, h, trial)``; ``floor_start`` tells an implicit method that a
    failed error test will be waived (the start exemption of the module docstring);
    this loop owns the step grid (fixed, or adaptive with the PI controller), the last
    step that lands exactly on ``t1``, saving, the tape and the failure checks.
    """
    # Overflow inside a device is how a blow-up starts; let it produce inf/NaN so the
    # finiteness checks below report it with its layer, time and step, whatever the
    # caller's numpy error settings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _march(method, step, assembly, V, t0, t1, ctx)


def _march(method, step, assembly, V, t0, t1, ctx):
    stats, f = ctx.stats, ctx.counted(assembly.rhs)
    duration = t1 - t0
    f0 = f(V)
    state = method.start_layer(assembly, V, f0, ctx)
    if step.adaptive:
        floor = step.floor(duration)
        h = step.initial_step(f, V, f0, duration, method.start_order, stats, floor)
        # the start exemption of the module docstring (implicit methods only)
        starting, unchecked = bool(getattr(method, "implicit", False)), 0
    else:
        grid = step.grid(t0, t1, ctx.layer)
    t, n, attempts, previous_ratio, rejected = t0, 0, 0, 1e-4, False
    while True:
        if step.adaptive:
            at_floor = h <= floor
            last = t + h >= t1 - 1e-12 * duration
            t_new = t1 if last else t + h
        else:
            last = n + 2 == len(grid)
            t_new = grid[n + 1]
        h_try = t_new - t
        trial = method.attempt(assembly, V, f0, h_try, state, ctx,
                               floor_start=step.adaptive and starting and at_floor)
        attempts += 1
        if not trial.ok and not step.adaptive:
            method.fail(ctx, t, n, trial)
        ratio = 0.0
        if trial.ok and step.adaptive:
            ratio = step.ratio(trial.err, V, trial.y1)
            if not np.isfinite(ratio):
                ratio = 1e10      # a blown-up trial: shrink hard and retry
        accepted = trial.ok and ratio <= 1.0
        if step.adaptive and trial.ok and not accepted and at_floor and starting:
            unchecked += 1
            if unchecked > MAX_UNCHECKED_STEPS:
                raise StepSizeTooSmallError(
                    f"the layer's start transient did not end within {MAX_UNCHECKED_STEPS} steps "
                    f"at the floor {floor:.3g} (accepted without their error test): the "
                    f"tolerances are too tight for this floor", layer=ctx.layer, time=t, step=n)
            stats.n_unchecked += 1
            accepted = True
        if accepted:
            try:
                check_state(trial.y1, ctx.voltage_limit, ctx.layer, t, n)
            except (DivergenceError, NonFiniteStateError) as blow_up:
                # an explicit method past its stability limit on a stable circuit diverges
                # too; tell the two apart before reporting a divergence
                try:
                    stiffness_of_blow_up(method, assembly, V, h_try, ctx, t, n)
                except StiffnessError as stiff:
                    raise stiff from blow_up
                raise
            cache = [trial.f1]

            def f_end():
                if cache[0] is None:
                    cache[0] = f(trial.y1)
                return cache[0]

            ctx.observe(t, V, f0, t_new, trial.y1, f_end, last, trial.dense)
            ctx.record(t_new, trial.y1, trial.record)
            method.accept(state, t, h_try, trial)
            t, V, n = t_new, trial.y1, n + 1
            stats.n_steps += 1
            if last:
                return V
            f0 = f_end()
            if step.adaptive and starting and h_try > 2 * floor:
                starting = False
        else:
            stats.n_rejected += 1
        if step.adaptive:
            if trial.ok:
                h = step.next_step(h_try, ratio, previous_ratio, trial.error_order, accepted, rejected)
                if accepted:
                    previous_ratio = max(ratio, 1e-4)
                rejected = not accepted
            else:
                h = h_try / 8.0   # Newton failed: cut the step as SPICE does
            if h < floor:
                if accepted or not at_floor:
                    h = floor     # try the floor itself once before giving up (ngspice's delmin)
                else:
                    _floor_failure(method, assembly, V, h, floor, ctx, t, n, trial.failure)
            if attempts > step.max_steps:
                raise StepSizeTooSmallError(
                    f"more than {step.max_steps} step attempts in one layer",
                    layer=ctx.layer, time=t, step=n)
