"""The one entry point: :func:`simulate` a net over all its layers on a whole batch."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..checks import as_int
from ..errors import DivergenceError, InputError, NonFiniteStateError
from .base import VOLTAGE_LIMIT, LayerTape, Saver, Stats
from .explicit import Dopri5
from .precision import check_precision
from .resources import ResourceLimits, estimate_resources

#: Samples integrated on one adaptive step grid (``simulate(max_batch=…)``). A step grid
#: serves its whole batch and its hardest sample sets every step, so one grid for a large
#: batch costs more than linearly (issue #14: 100× the samples took 237× the time); pieces
#: of at most this many samples, each with its own grid, keep the cost linear in the batch
#: while a piece is still wide enough to amortise the per-step overhead (benchmarks/
#: bench_batch.py measures both).
MAX_BATCH = 1024


@dataclass
class Solution:
    """What a transient analysis returns.

    Attributes
    ----------
    ts : ndarray, shape (n_save,)
        Save times (normalised); ``[T]`` when none were requested.
    node_voltages : ndarray, shape (n_save, B, N)
        Voltages of nodes 1..N at the save times.
    final_state : ndarray, shape (B, N)
        Voltages at ``T``.
    stats : Stats
        Work counters (steps, rejected steps, f-evaluations, Newton iterations, LUs).
    tapes : list of LayerTape or None
        Per layer, the accepted step grid (and, when recorded, the states); None for a
        batch split into pieces, whose tapes are the pieces' own (:meth:`parts`).
    solver : object
        The solver that produced it.
    pieces : list of (slice, Solution) or None
        For a batch split into pieces with step grids of their own
        (``simulate(max_batch=…)``): each piece's rows of the batch and its run.
    """

    ts: np.ndarray
    node_voltages: np.ndarray
    final_state: np.ndarray
    stats: Stats
    tapes: list | None
    solver: object
    pieces: list | None = None

    def parts(self) -> list:
        """``[(rows, Solution)]``: the runs that make up this one, each with one step grid
        per layer — the pieces of a split batch, or this run whole (``slice(0, B)``)."""
        if self.pieces is None:
            return [(slice(0, self.final_state.shape[0]), self)]
        return self.pieces

    def readout(self, net) -> np.ndarray:
        """Read-out at ``T``, ``(B, n_readout)``: the read-out nodes' voltages, or for a net
        whose read-out combines node voltages (a KINN's ``u = Σ α v``) its ``outputs``."""
        combined = getattr(net, "outputs", None)
        if callable(combined):
            return combined(self.final_state)
        return self.final_state[:, net.readout - 1]


class _Context:
    """Per-run bookkeeping handed to the solvers: counters, saving, the tape and the
    run's bounds (the plausible voltage, the memory of recorded states)."""

    def __init__(self, stats, saver, keep_every: int, voltage_limit: float = VOLTAGE_LIMIT,
                 estimate=None, limits=None):
        self.stats, self.saver, self.keep_every = stats, saver, keep_every
        self.voltage_limit = voltage_limit
        self.estimate, self.limits = estimate, limits
        self.recorded_bytes = 0
        self.layer, self.tape = 0, None

    def counted(self, f):
        def counted_f(y):
            self.stats.n_fevals += 1
            return f(y)
        return counted_f

    def observe(self, ta, Va, fa, tb, Vb, fb_thunk, last, dense=None):
        if self.saver is not None:
            self.saver.on_step(ta, Va, fa, tb, Vb, fb_thunk, last, dense)

    def record(self, t, V, record):
        self.tape.times.append(t)
        if self.tape.states is not None:
            n, k = len(self.tape.times) - 1, self.keep_every
            keep = k == 1 or n % k in (0, k - 1)
            self.tape.states.append(V if keep else None)
            if keep and self.estimate is not None and self.estimate.fixed_steps is None:
                # an adaptive run's states are counted as they are stored
                self.recorded_bytes += V.nbytes
                self.estimate.check_recorded(self.recorded_bytes, self.limits,
                                             {"layer": self.layer, "time": t, "step": n - 1})
        if self.tape.coefficients is not None:
            self.tape.coefficients.append(record)


def simulate(net, x, solver=None, save_at=None, record_states: bool = False,
             voltage_limit: float = VOLTAGE_LIMIT, limits: ResourceLimits | None = None,
             max_batch: int | None = MAX_BATCH, dtype=None) -> Solution:
    """Transient analysis of ``net`` for a batch of inputs.

    Parameters
    ----------
    net : KirchhoffNet
    x : array_like, shape (B, d) or (d,)
        Input voltages, written on the net's input nodes; other nodes start at 0 V.
    solver : solver object, optional
        :func:`Dopri5` (default, rtol 1e-7, atol 1e-9), :func:`RK4`, :func:`BDF2`, ...
    save_at : array_like, optional
        Increasing times in ``[0, T]`` at which to save all node voltages.
    record_states : bool or int
        Keep the state at every accepted step (what the adjoint needs); an int ``k > 1``
        keeps only every ``k``-th (checkpointing, see
        :class:`~kirchhoff_sim.solvers.base.CheckpointedStates`).
    voltage_limit : float
        Plausible bound on every node voltage (normalised volts, default
        :data:`~kirchhoff_sim.solvers.base.VOLTAGE_LIMIT` = 1e6); an accepted state
        beyond it raises :class:`~kirchhoff_sim.errors.DivergenceError`. ``np.inf``
        keeps only the check for NaN/inf.
    limits : ResourceLimits, optional
        Steps, work and memory the request may need; it is estimated before any work
        and refused beyond them (default :class:`ResourceLimits()`: 1e7 fixed steps,
        1e13 device evaluations, half the memory available).
    max_batch : int or None
        Most samples on one step grid (default :data:`MAX_BATCH`): a larger batch is
        split into near-equal pieces, each integrated on its own grid (the result does
        not depend on the split beyond the solver's tolerance, and the cost stays linear
        in the batch; :meth:`Solution.parts`). None keeps the whole batch on one grid.
    dtype : {None, "float64", "float32"}
        Working precision (:mod:`~kirchhoff_sim.solvers.precision`; default float64): the
        node voltages, currents and the solution's arrays are of this type, the
        parameters rounded to it at the start of the run.

    Returns
    -------
    Solution

    Raises
    ------
    InputError
        Bad inputs, save times, solver, bounds or dtype; a tolerance the dtype cannot
        meet, or an implicit method in float32
        (:func:`~kirchhoff_sim.solvers.precision.check_precision`).
    ResourceLimitError
        The request exceeds ``limits`` (before any work; for an adaptive run's recorded
        states, as soon as they do).
    SimulationError
        The run failed: :class:`~kirchhoff_sim.errors.NonFiniteStateError`,
        :class:`~kirchhoff_sim.errors.DivergenceError`,
        :class:`~kirchhoff_sim.errors.StepSizeTooSmallError` (and its
        :class:`~kirchhoff_sim.errors.StiffnessError`),
        :class:`~kirchhoff_sim.errors.NewtonConvergenceError` (and its
        :class:`~kirchhoff_sim.errors.SingularJacobianError`), each naming the layer,
        the time and the step.
    """
    solver = Dopri5() if solver is None else solver
    if not hasattr(solver, "integrate_layer"):
        raise InputError(f"solver must be a kirchhoff_sim solver (Dopri5(), BDF2(), ...), got {solver!r}")
    if isinstance(voltage_limit, (str, bytes, bool)) or not (voltage_limit > 0):
        raise InputError(f"voltage_limit must be a number > 0 (or np.inf), got {voltage_limit!r}")
    limits = ResourceLimits() if limits is None else limits
    if not isinstance(limits, ResourceLimits):
        raise InputError(f"limits must be a ResourceLimits, got {limits!r}")
    max_batch = None if max_batch is None else as_int(max_batch, "max_batch", minimum=1)
    dtype = check_precision(solver, dtype)
    V = net.initial_state(x).astype(dtype, copy=False)
    B = V.shape[1]
    T = net.T
    ts = _check_save_times(save_at, T)
    keep_every = int(record_states) if record_states else 0
    if record_states is not False and keep_every < 1:
        raise InputError(f"record_states must be a bool or an int >= 1, got {record_states!r}")
    estimate = estimate_resources(net, B, solver, len(ts), record_states, itemsize=dtype.itemsize)
    estimate.check(limits)
    if max_batch is not None and B > max_batch:
        return _split_batch(net, np.asarray(x, dtype=float), -(-B // max_batch),
                            dict(solver=solver, save_at=save_at, record_states=record_states,
                                 voltage_limit=voltage_limit, limits=limits, dtype=dtype))
    saver = Saver(ts, net.num_nodes, B, dtype)
    saver.at_start(0.0, V)
    stats = Stats()
    ctx = _Context(stats, saver, keep_every, float(voltage_limit), estimate, limits)
    bounds = net.layer_boundaries
    tapes = []
    for k, assembly in enumerate(net.assemblies(dtype)):
        tape = LayerTape(times=[bounds[k]], states=[V] if record_states else None,
                         coefficients=[] if solver.implicit else None, layer=k)
        ctx.layer, ctx.tape = k, tape
        V = solver.integrate_layer(assembly, V, bounds[k], bounds[k + 1], ctx)
        tapes.append(tape)
    saver.values[saver.next:] = V   # save times at T up to rounding
    node_voltages = np.transpose(saver.values[:, 1:, :], (0, 2, 1))
    return Solution(ts, node_voltages, V[1:].T.copy(), stats, tapes, solver)


@contextlib.contextmanager
def samples_counted_from(first: int):
    """Re-raise a :class:`~kirchhoff_sim.errors.DivergenceError` or
    :class:`~kirchhoff_sim.errors.NonFiniteStateError` of the block of samples run
    inside with its ``sample`` counted in the whole batch, whose row ``first`` is the
    block's first."""
    try:
        yield
    except (DivergenceError, NonFiniteStateError) as exc:
        if exc.sample is None or not first:
            raise
        moved = exc.copy_with(sample=exc.sample + first, samples=[b + first for b in exc.samples])
        raise moved.with_traceback(exc.__traceback__) from None


def _split_batch(net, x: np.ndarray, n_pieces: int, options: dict) -> Solution:
    """Run ``x`` ``(B, d)`` as ``n_pieces`` near-equal pieces, each on its own step grids."""
    bounds = [k * x.shape[0] // n_pieces for k in range(n_pieces + 1)]
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        with samples_counted_from(a):
            pieces.append((slice(a, b), simulate(net, x[a:b], max_batch=None, **options)))
    stats = Stats()
    for _, part in pieces:
        stats.add(part.stats)
    first = pieces[0][1]
    return Solution(first.ts, np.concatenate([p.node_voltages for _, p in pieces], axis=1),
                    np.concatenate([p.final_state for _, p in pieces], axis=0), stats, None,
                    first.solver, pieces)


def _check_save_times(save_at, T) -> np.ndarray:
    if save_at is None:
        return np.array([T])
    ts = np.asarray(save_at, dtype=float).ravel()
    if ts.size == 0 or not np.isfinite(ts).all():
        raise InputError("save_at must be a non-empty array of finite times")
    if np.any(np.diff(ts) < 0):
        raise InputError("save_at must be non-decreasing")
    if ts[0] < 0 or ts[-1] > T * (1 + 1e-12):
        raise InputError(f"save_at must lie in [0, T={T:g}], got [{ts[0]:g}, {ts[-1]:g}]")
    return ts
