"""Timing on silicon: latency, settling of the read-out, and what a forward pass costs here.

A net's forward pass lasts ``T`` units of normalised time, i.e. ``T·C0/G0`` seconds on a
chip (DESIGN.md §5) — whatever the number of devices, since they all act at once. The
read-out is often decided earlier. From a dense waveform (:func:`dense_waveforms`, about
400 save points over ``[0, T]``) :func:`settling` finds, per sample:

* the **settle time** of each read-out node: the time after which it stays within
  ``ε`` of its final value, with ``ε`` a fraction (default 1 %) of the sample's read-out
  *swing* (largest minus smallest read-out voltage over the whole waveform). The last
  crossing of the ``ε`` band is located by linear interpolation between grid points;
* the **decision time**: the first grid time from which on the argmax of the read-out
  voltages (the predicted class) equals its value at ``T`` (resolution: one grid step).

:func:`timing_report` puts these in physical seconds and as fractions of ``T``, beside
the wall-clock time that our solver and ngspice take for the same forward pass on this
machine (measured, not modelled).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..checks import as_int, as_real
from ..errors import InputError
from ..solvers import Dopri5, simulate
from .formatting import format_si

__all__ = ["Waveforms", "Settling", "TimingReport", "dense_waveforms", "settling",
           "timing_report", "measure_solver_seconds", "DEFAULT_WAVEFORM_POINTS",
           "DEFAULT_SETTLE_FRACTION"]

DEFAULT_WAVEFORM_POINTS = 400       # save points over [0, T]: enough for trapezoidal energy at ~1e-6
DEFAULT_SETTLE_FRACTION = 0.01      # ε as a fraction of the read-out swing
# the dense pass feeds the energy integrals, so it runs tighter than training does
DEFAULT_WAVEFORM_RTOL = 1e-8
DEFAULT_WAVEFORM_ATOL = 1e-10
BOUNDARY_MERGE_RTOL = 1e-9          # grid points this close (× T) to a layer boundary snap onto it
WALLCLOCK_REPEATS = 3               # best of n: the first call also pays for building the assembly


@dataclass
class Waveforms:
    """All node voltages of a batch on a dense time grid.

    Attributes
    ----------
    ts : ndarray, shape (n_t,)
        Increasing normalised times from 0 to ``T``; every layer boundary is one of them.
    node_voltages : ndarray, shape (n_t, B, N)
        Voltages of nodes 1..N (normalised).
    layer_windows : list of ndarray of int
        Per layer, the indices of ``ts`` inside its closed window ``[t_k, t_{k+1}]``: a
        boundary belongs to both neighbouring layers.
    initial_state : ndarray, shape (N+1, B)
        The state at ``t = 0`` with ground in row 0.
    seconds : float
        Wall-clock time of the dense simulation.
    solver : object
        The solver that produced it.
    """

    ts: np.ndarray
    node_voltages: np.ndarray
    layer_windows: list
    initial_state: np.ndarray
    seconds: float
    solver: object

    @property
    def batch(self) -> int:
        return self.node_voltages.shape[1]

    def state(self, j: int) -> np.ndarray:
        """The full state at ``ts[j]``: shape ``(N+1, B)`` with ground (0 V) in row 0."""
        v = self.node_voltages[j]
        return np.concatenate([np.zeros((1, v.shape[0])), v.T], axis=0)


def time_grid(net, n_points: int = DEFAULT_WAVEFORM_POINTS, extra_times=None) -> tuple[np.ndarray, list]:
    """``n_points`` equally spaced times over ``[0, T]`` with the layer boundaries added.

    ``extra_times`` (e.g. a solver's accepted step times) are merged in.

    Returns
    -------
    ts : ndarray, shape (n_t,)
    layer_windows : list of ndarray of int
        See :attr:`Waveforms.layer_windows`.
    """
    n_points = as_int(n_points, "n_points", minimum=3)
    bounds = net.layer_boundaries
    ts = np.linspace(0.0, net.T, n_points)
    near = np.abs(ts[:, None] - bounds[None, :]) <= BOUNDARY_MERGE_RTOL * net.T
    ts = np.where(near.any(axis=1), bounds[near.argmax(axis=1)], ts)
    extra = np.zeros(0) if extra_times is None else np.asarray(extra_times, dtype=float).ravel()
    extra = extra[(extra > 0) & (extra < net.T)]
    # a step time a rounding error away from a boundary would make a zero-width interval
    extra = extra[~(np.abs(extra[:, None] - bounds[None, :]) <= BOUNDARY_MERGE_RTOL * net.T).any(axis=1)]
    ts = np.unique(np.concatenate([ts, bounds, extra]))
    windows = [np.flatnonzero((ts >= a) & (ts <= b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return ts, windows


def dense_waveforms(net, X, n_points: int = DEFAULT_WAVEFORM_POINTS, solver=None,
                    refine: bool = True) -> Waveforms:
    """Simulate ``X`` saving every node on :func:`time_grid`.

    With ``refine`` the grid also holds every step the adaptive solver accepted in a first
    run (its steps are short where the circuit is fast), so that the trapezoidal energy
    integral resolves fast transients a uniform grid would step over; the waveform is
    then saved from a second run on that grid.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d)
        Inputs (normalised volts).
    n_points : int
        Equally spaced save points over ``[0, T]`` (the layer boundaries are added).
    refine : bool
        Add the solver's own step times to the grid (two runs; see above).
    solver : solver object, optional
        Default ``Dopri5(rtol=1e-8, atol=1e-10)``: the energy integrals and the ngspice
        comparison measure the quadrature, not the solver's error.

    Returns
    -------
    Waveforms
    """
    solver = Dopri5(rtol=DEFAULT_WAVEFORM_RTOL, atol=DEFAULT_WAVEFORM_ATOL) if solver is None else solver
    steps = None
    if refine:
        first = simulate(net, X, solver=solver)
        steps = np.concatenate([np.asarray(tape.times, dtype=float)
                                for _, part in first.parts() for tape in part.tapes])
    ts, windows = time_grid(net, n_points, steps)
    start = time.perf_counter()
    solution = simulate(net, X, solver=solver, save_at=ts)
    seconds = time.perf_counter() - start
    return Waveforms(ts=ts, node_voltages=solution.node_voltages, layer_windows=windows,
                     initial_state=net.initial_state(X), seconds=seconds, solver=solver)


# ---------------------------------------------------------------- settling
@dataclass
class Settling:
    """When the read-out stops moving, per sample (normalised time).

    Attributes
    ----------
    settle_time : ndarray, shape (B, n_readout)
        Time after which each read-out node stays within ``epsilon`` of its final value.
    decision_time : ndarray, shape (B,)
        First grid time from which on the read-out's argmax equals the one at ``T``.
    epsilon : ndarray, shape (B,)
        The band half-width used per sample (normalised volts): ``fraction × swing``.
    swing : ndarray, shape (B,)
        Largest minus smallest read-out voltage over the sample's whole waveform.
    fraction : float
        ``ε`` as a fraction of the swing.
    """

    settle_time: np.ndarray
    decision_time: np.ndarray
    epsilon: np.ndarray
    swing: np.ndarray
    fraction: float

    @property
    def sample_settle_time(self) -> np.ndarray:
        """``(B,)``: when the slowest read-out node of each sample has settled."""
        return self.settle_time.max(axis=1)


def settling(net, waveforms: Waveforms, fraction: float = DEFAULT_SETTLE_FRACTION) -> Settling:
    """Settle and decision times of the read-out nodes (see the module docstring).

    Parameters
    ----------
    net : KirchhoffNet
    waveforms : Waveforms
    fraction : float
        ``ε`` as a fraction of each sample's read-out swing, in (0, 1).

    Returns
    -------
    Settling
    """
    fraction = as_real(fraction, "the settle fraction", minimum=0.0, exclusive_minimum=True, maximum=1.0)
    if fraction == 1.0:
        raise InputError("the settle fraction must be below 1 (a band as wide as the swing says nothing)")
    ts = waveforms.ts
    readout = waveforms.node_voltages[:, :, net.readout - 1]          # (n_t, B, R)
    final = readout[-1]                                                # (B, R)
    swing = readout.max(axis=(0, 2)) - readout.min(axis=(0, 2))        # (B,)
    epsilon = fraction * swing
    excess = np.abs(readout - final) - epsilon[None, :, None]          # > 0: outside the band
    outside = excess > 0
    n_t = len(ts)
    # index of the last grid point outside the band (-1: never outside)
    last = np.where(outside.any(axis=0), n_t - 1 - np.argmax(outside[::-1], axis=0), -1)
    settle = np.zeros(last.shape)
    moved = last >= 0
    j = last[moved]
    b, r = np.nonzero(moved)
    # the final point is always inside the band, so j + 1 exists; interpolate the crossing
    d0, d1 = excess[j, b, r], excess[j + 1, b, r]
    settle[moved] = ts[j] + (ts[j + 1] - ts[j]) * d0 / (d0 - d1)
    winner = readout.argmax(axis=2)                                    # (n_t, B)
    changed = winner != winner[-1]
    last_change = np.where(changed.any(axis=0), n_t - 1 - np.argmax(changed[::-1], axis=0), -1)
    decision = np.where(last_change >= 0, ts[np.minimum(last_change + 1, n_t - 1)], 0.0)
    return Settling(settle_time=settle, decision_time=decision, epsilon=epsilon, swing=swing,
                    fraction=fraction)


# ---------------------------------------------------------------- wall clock
def measure_solver_seconds(net, X, solver=None, repeats: int = WALLCLOCK_REPEATS) -> float:
    """Best-of-``repeats`` wall-clock seconds of ``simulate(net, X, solver)`` (no save points)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        simulate(net, X, solver=solver)
        best = min(best, time.perf_counter() - start)
    return float(best)


@dataclass
class TimingReport:
    """Physical timing of a forward pass and measured simulation times.

    All ``*_s`` values are physical seconds on the chip; ``*_fraction`` are fractions of
    ``T``; ``wallclock_*`` are seconds measured on this machine.

    Attributes
    ----------
    T : float
        Read-out time (normalised).
    time_unit_s : float
        ``C0/G0``.
    latency_s : float
        ``T·C0/G0``.
    settle_fraction : float
        ``ε`` as a fraction of the read-out swing.
    settle_median_s, settle_max_s : float
        Over samples, of each sample's slowest read-out node.
    decision_median_s, decision_max_s : float
    settle_median_fraction, settle_max_fraction, decision_median_fraction, decision_max_fraction : float
    samples : int
        Samples in the settling analysis.
    wallclock_solver_batch_s : float
        Our solver on the whole batch (best of :data:`WALLCLOCK_REPEATS`).
    wallclock_solver_per_sample_s : float
        The same divided by the batch size.
    wallclock_solver_single_s : float or None
        Our solver on the first sample alone — the forward pass ngspice also ran.
    wallclock_spice_per_sample_s : float or None
        ngspice's own run time (``SpiceResult.elapsed``, subprocess back end) per sample,
        mean over the samples it ran; None without an ngspice run.
    wallclock_spice_compile_s : float or None
        Compiling one netlist (mean).
    solver : str
        The solver timed.
    """

    T: float
    time_unit_s: float
    latency_s: float
    settle_fraction: float
    settle_median_s: float
    settle_max_s: float
    decision_median_s: float
    decision_max_s: float
    settle_median_fraction: float
    settle_max_fraction: float
    decision_median_fraction: float
    decision_max_fraction: float
    samples: int
    wallclock_solver_batch_s: float
    wallclock_solver_per_sample_s: float
    wallclock_solver_single_s: float | None = None
    wallclock_spice_per_sample_s: float | None = None
    wallclock_spice_compile_s: float | None = None
    solver: str = ""

    def to_dict(self) -> dict:
        """JSON-able: floats, the sample count as an int, the solver as a string, None where not measured."""
        out = {}
        for name, value in self.__dict__.items():
            if value is None or isinstance(value, str):
                out[name] = value
            else:
                out[name] = int(value) if name == "samples" else float(value)
        return out

    def __str__(self) -> str:
        lines = [
            f"forward latency T·C0/G0 = {self.T:g} × {format_si(self.time_unit_s, 's')} = "
            f"{format_si(self.latency_s, 's')}",
            f"read-out settled (within {self.settle_fraction:.0%} of its swing, slowest node, {self.samples} samples): "
            f"median {format_si(self.settle_median_s, 's')} ({self.settle_median_fraction:.1%} of T), "
            f"max {format_si(self.settle_max_s, 's')} ({self.settle_max_fraction:.1%} of T)",
            f"class decided (argmax of the read-out final): median {format_si(self.decision_median_s, 's')} "
            f"({self.decision_median_fraction:.1%} of T), max {format_si(self.decision_max_s, 's')} "
            f"({self.decision_max_fraction:.1%} of T)",
            f"wall-clock on this machine (measured): our solver ({self.solver}) "
            f"{format_si(self.wallclock_solver_batch_s, 's')} for {self.samples} samples "
            f"({format_si(self.wallclock_solver_per_sample_s, 's')}/sample)"
            + ("" if self.wallclock_solver_single_s is None
               else f", {format_si(self.wallclock_solver_single_s, 's')} for one sample"),
        ]
        if self.wallclock_spice_per_sample_s is not None:
            lines.append(f"  ngspice (subprocess, one netlist per sample): "
                         f"{format_si(self.wallclock_spice_per_sample_s, 's')} per sample + "
                         f"{format_si(self.wallclock_spice_compile_s, 's')} to compile the netlist")
        return "\n".join(lines)


def timing_report(net, profile, settle: Settling, *, wallclock_solver_batch_s: float,
                  samples: int, wallclock_solver_single_s: float | None = None,
                  wallclock_spice_per_sample_s: float | None = None,
                  wallclock_spice_compile_s: float | None = None, solver: str = "") -> TimingReport:
    """Put a :class:`Settling` and measured wall-clock times into physical units.

    Parameters
    ----------
    net : KirchhoffNet
    profile : TechnologyProfile
    settle : Settling
    wallclock_solver_batch_s : float
        Measured seconds of our solver on ``samples`` samples.
    samples : int
    wallclock_solver_single_s, wallclock_spice_per_sample_s, wallclock_spice_compile_s : float, optional
        Measured seconds (see :class:`TimingReport`).
    solver : str
        Description of the timed solver.
    """
    unit = profile.scale.time_unit
    T = net.T
    slowest = settle.sample_settle_time
    return TimingReport(
        T=T, time_unit_s=unit, latency_s=T * unit, settle_fraction=settle.fraction,
        settle_median_s=float(np.median(slowest)) * unit, settle_max_s=float(slowest.max()) * unit,
        decision_median_s=float(np.median(settle.decision_time)) * unit,
        decision_max_s=float(settle.decision_time.max()) * unit,
        settle_median_fraction=float(np.median(slowest)) / T, settle_max_fraction=float(slowest.max()) / T,
        decision_median_fraction=float(np.median(settle.decision_time)) / T,
        decision_max_fraction=float(settle.decision_time.max()) / T,
        samples=int(samples), wallclock_solver_batch_s=float(wallclock_solver_batch_s),
        wallclock_solver_per_sample_s=float(wallclock_solver_batch_s) / max(int(samples), 1),
        wallclock_solver_single_s=wallclock_solver_single_s,
        wallclock_spice_per_sample_s=wallclock_spice_per_sample_s,
        wallclock_spice_compile_s=wallclock_spice_compile_s, solver=solver,
    )
