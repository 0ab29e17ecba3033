"""The one ngspice round trip: compile a sample, run it, check it reached T, read it back.

Everything that compares ngspice with the solver — :func:`~kirchhoff_sim.spice.validate`,
the benchmarks, the Monte Carlo runs and the chip report's energy check — goes through
:func:`simulate_in_ngspice` (one sample) or :func:`simulate_batch_in_ngspice` (a batch,
one ngspice process per sample in parallel), and gets an :class:`NgspiceRun` back:

1. :func:`~kirchhoff_sim.spice.netlist.to_netlist` compiles the net and one sample;
2. :func:`~kirchhoff_sim.spice.runner.run_netlist` runs it in ngspice;
3. ngspice's last time point must be ``T`` to within :data:`END_TIME_RTOL` — the one
   tolerance of this check — or :class:`~kirchhoff_sim.errors.SpiceStoppedEarlyError`
   is raised (a transient that stopped early without an error would otherwise be read
   out at the wrong time);
4. the waveforms come back in the net's **normalised** units (DESIGN.md §5): time in
   units of ``C0/G0``, voltages in units of ``V0``.

``.tran … uic`` writes no point at t = 0, so the known initial condition (the netlist's
``IC=`` values) is prepended as the t = 0 point. Between ngspice's own points,
:meth:`NgspiceRun.on_grid` resamples with a cubic spline, one per layer window (the layer
boundaries are breakpoints of the clocks, so ngspice has a point on each, and the
waveform's kink there does not ring into the neighbouring layer). Linear interpolation
would add up to ``h²/8·|v''|`` for ngspice's step ``h`` — on a diode's fast initial
transient 3e-4 of the swing, larger than ngspice's own error; the spline's ``O(h⁴)``
error is below it (measured: the grid errors then equal the errors at ngspice's own time
points). A window with fewer than :data:`CUBIC_MIN_POINTS` points is interpolated
linearly.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from ..checks import as_choice, as_real_array
from ..errors import InputError, SpiceError, SpiceStoppedEarlyError
from ..network import as_batch
from ..solvers.resources import check_workers
from ..units import PhysicalScale
from .netlist import Netlist, to_netlist
from .runner import BACKENDS, END_TIME_RTOL, SpiceResult, run_netlist

__all__ = [
    "CUBIC_MIN_POINTS",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_WORKERS",
    "END_TIME_RTOL",
    "NgspiceRun",
    "map_samples",
    "resolve_workers",
    "run_compiled",
    "simulate_batch_in_ngspice",
    "simulate_in_ngspice",
]

# END_TIME_RTOL (from the runner, the one spelling): ngspice's last time point against T,
# and its points against the layer boundaries, relative to T
DEFAULT_TIMEOUT_SECONDS = 600.0
#: parallel ngspice processes of a batch by default (capped by the CPUs and the batch)
DEFAULT_WORKERS = 4
#: fewer ngspice points than this in a layer window: linear interpolation there
CUBIC_MIN_POINTS = 4


@dataclass
class NgspiceRun:
    """One sample's ngspice transient, in the net's normalised units.

    Attributes
    ----------
    netlist : Netlist
        The compiled netlist (``node_map``, ``layer_boundaries``, ``tstop``,
        ``initial_voltages``, ``scale`` ...).
    result : SpiceResult
        ngspice's raw vectors in volts, amperes and seconds, as ngspice wrote them
        (no t = 0 point; branch currents saved by ``save_branch_currents`` are here).
    time : np.ndarray, shape (n_t,)
        ngspice's own time points in normalised time, strictly increasing: t = 0
        prepended from the initial condition when ngspice wrote none, a repeated time
        point dropped (the first is kept), the last point snapped to T.
    node_voltages : np.ndarray, shape (n_t, N)
        Normalised node voltages at ``time``; column ``n - 1`` is node ``n``.
    elapsed : float
        Wall-clock seconds of the ngspice run.
    """

    netlist: Netlist
    result: SpiceResult
    time: np.ndarray
    node_voltages: np.ndarray
    elapsed: float

    @classmethod
    def from_result(cls, netlist: Netlist, result: SpiceResult) -> "NgspiceRun":
        """Read ``result`` (ngspice's run of ``netlist.text``) back in normalised units.

        Raises
        ------
        SpiceStoppedEarlyError
            ngspice's last time point is not ``netlist.tstop`` to within
            :data:`END_TIME_RTOL`.
        InputError
            A node of ``netlist.node_map`` has no voltage vector in ``result``.
        """
        scale = netlist.scale
        num_nodes = len(netlist.node_map) - 1
        seconds = np.asarray(result.time, dtype=float)
        volts = np.stack([result.voltage(netlist.node_map[n]) for n in range(1, num_nodes + 1)],
                         axis=1) if num_nodes else np.empty((len(seconds), 0))
        tstop = float(netlist.tstop)
        reached = float(seconds[-1]) if seconds.size else 0.0
        if not abs(reached - tstop) <= END_TIME_RTOL * tstop:
            raise SpiceStoppedEarlyError(
                f"ngspice's transient stopped at {reached:.6g} s, not at T = {tstop:.6g} s "
                f"(tolerance {END_TIME_RTOL:g} of T); nothing was read out"
            )
        if seconds.size == 0 or seconds[0] > 0:
            seconds = np.concatenate([[0.0], seconds])
            volts = np.concatenate([np.asarray(netlist.initial_voltages, dtype=float)[None, :], volts])
        increasing = np.concatenate([[True], np.diff(seconds) > 0])
        time = seconds[increasing] / scale.time_unit
        time[-1] = tstop / scale.time_unit
        return cls(netlist=netlist, result=result, time=time,
                   node_voltages=volts[increasing] / scale.V0, elapsed=float(result.elapsed))

    @property
    def num_nodes(self) -> int:
        return self.node_voltages.shape[1]

    @property
    def T(self) -> float:
        """The read-out time in normalised units (the last entry of :attr:`time`)."""
        return float(self.time[-1])

    @property
    def final_voltages(self) -> np.ndarray:
        """Normalised node voltages at T, shape (N,)."""
        return self.node_voltages[-1].copy()

    def readout(self, net) -> np.ndarray:
        """Normalised voltages of ``net``'s read-out nodes at T, shape (R,)."""
        return self.node_voltages[-1, np.asarray(net.readout) - 1]

    def on_grid(self, t) -> np.ndarray:
        """Node voltages resampled onto the normalised times ``t``, shape (len(t), N).

        A cubic spline through ngspice's points, one per layer window; linear in a
        window with fewer than :data:`CUBIC_MIN_POINTS` points.

        Parameters
        ----------
        t : array_like, shape (n,)
            Non-decreasing normalised times inside ``[0, T]`` (up to
            :data:`END_TIME_RTOL` of T).

        Raises
        ------
        InputError
            ``t`` is not a finite 1-D non-decreasing array inside ``[0, T]``.
        """
        grid = as_real_array(t, "t", ndim=1)
        if np.any(np.diff(grid) < 0):
            raise InputError("t must be non-decreasing")
        end = self.T
        slack = END_TIME_RTOL * end
        if grid.size and (grid[0] < -slack or grid[-1] > end + slack):
            raise InputError(f"t spans [{grid[0]:.6g}, {grid[-1]:.6g}] but the ngspice run covers "
                             f"[0, {end:.6g}] (normalised time)")
        out = np.empty((len(grid), self.num_nodes))
        bounds = np.asarray(self.netlist.layer_boundaries, dtype=float) / self.netlist.scale.time_unit
        time, values = self.time, self.node_voltages
        for start, stop in zip(bounds[:-1], bounds[1:]):
            on_grid = (grid >= start - slack) & (grid <= stop + slack)
            if not on_grid.any():
                continue
            inside = (time >= start - slack) & (time <= stop + slack)
            if inside.sum() >= CUBIC_MIN_POINTS:
                with np.errstate(under="ignore"):      # a node that sits at ~0 V: underflow is exact
                    out[on_grid] = CubicSpline(time[inside], values[inside], axis=0)(grid[on_grid])
            else:
                out[on_grid] = np.stack([np.interp(grid[on_grid], time, values[:, n])
                                         for n in range(self.num_nodes)], axis=1)
        return out


def simulate_in_ngspice(net, x, *, scale: PhysicalScale | None = None, options=None,
                        mode: str = "behavioral", backend: str = "subprocess",
                        timeout: float = DEFAULT_TIMEOUT_SECONDS) -> NgspiceRun:
    """Compile one sample, run it in ngspice and read it back (the round trip).

    Parameters
    ----------
    net : KirchhoffNet
    x : array_like, shape (d,)
        One input sample (normalised volts).
    scale : PhysicalScale, optional
        Units of the netlist; default :meth:`PhysicalScale.default`.
    options : SpiceOptions, optional
        ngspice options (default :class:`~kirchhoff_sim.spice.options.SpiceOptions`).
    mode : {"behavioral", "primitive"}
    backend : {"subprocess", "shared"}
    timeout : float
        Wall-clock limit of the ngspice run in seconds.

    Returns
    -------
    NgspiceRun

    Raises
    ------
    InputError, UnsafeNameError, DeviceError
        From compiling (:func:`~kirchhoff_sim.spice.netlist.to_netlist`).
    SpiceError
        From running (:func:`~kirchhoff_sim.spice.runner.run_netlist`: rejected netlist,
        non-convergence, timeout, ngspice missing or crashed).
    SpiceStoppedEarlyError
        ngspice's transient ended before T.
    """
    netlist = to_netlist(net, x, scale=scale, mode=mode, options=options)
    return run_compiled(netlist, backend=backend, timeout=timeout)


def run_compiled(netlist: Netlist, *, backend: str = "subprocess",
                 timeout: float = DEFAULT_TIMEOUT_SECONDS) -> NgspiceRun:
    """Steps 2–4 of the round trip for a netlist compiled already (same errors)."""
    if not isinstance(netlist, Netlist):
        raise InputError(f"netlist must be a compiled Netlist, got {type(netlist).__name__}")
    return NgspiceRun.from_result(netlist, run_netlist(netlist.text, backend=backend, timeout=timeout))


def simulate_batch_in_ngspice(net, X, *, workers: int | None = None,
                              scale: PhysicalScale | None = None, options=None,
                              mode: str = "behavioral", backend: str = "subprocess",
                              timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[NgspiceRun]:
    """:func:`simulate_in_ngspice` for every row of ``X``, in sample order.

    Subprocess runs go in parallel, one ngspice process per sample over ``workers``
    threads (each thread waits on its process; the GIL is free meanwhile); the shared
    back end is one ngspice per Python process and runs the samples one after another.
    Each run keeps its netlist text and raw vectors: for a large net and batch, call
    :func:`simulate_in_ngspice` per sample and keep only what is needed.

    Parameters
    ----------
    X : array_like, shape (B, d) or (d,)
    workers : int, optional
        Parallel ngspice processes; default ``min(DEFAULT_WORKERS, CPUs, B)``.

    Other parameters and errors are those of :func:`simulate_in_ngspice`; the first
    failing sample's error is raised (it names the sample).

    Returns
    -------
    list of NgspiceRun
        ``runs[b]`` is row ``b`` of ``X``; ``runs[b].netlist.sample_index == b``.
    """
    X = as_batch(X)

    def one(b) -> NgspiceRun:
        netlist = to_netlist(net, X[b], scale=scale, mode=mode, options=options)
        netlist.sample_index = b
        try:
            return run_compiled(netlist, backend=backend, timeout=timeout)
        except SpiceError as exc:
            raise type(exc)(f"sample {b}: {exc}") from exc

    return map_samples(one, len(X), workers=workers, backend=backend)


def map_samples(function, count: int, *, workers: int | None = None,
                backend: str = "subprocess") -> list:
    """``[function(b) for b in range(count)]``, over ``workers`` threads for subprocess runs.

    The one place that decides how samples of ngspice runs go in parallel (the shared
    back end serialises its runs anyway, so it gets no threads).

    Raises
    ------
    InputError
        ``workers`` is not a positive integer, or an unknown back end.
    """
    workers = resolve_workers(workers, count, backend)
    if workers == 1:
        return [function(b) for b in range(count)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, range(count)))


def resolve_workers(workers: int | None, count: int, backend: str = "subprocess") -> int:
    """How many threads :func:`map_samples` uses for ``count`` samples (checked up front).

    ``None`` gives ``min(DEFAULT_WORKERS, CPUs, count)``; the shared back end and a single
    sample always get 1.

    Raises
    ------
    InputError
        ``workers`` is not a positive integer, or an unknown back end.
    """
    as_choice(backend, "SPICE backend", BACKENDS)
    if workers is None:
        workers = min(DEFAULT_WORKERS, os.cpu_count() or 1, max(count, 1))
    workers = check_workers(workers, "workers")
    return 1 if backend == "shared" or count <= 1 else workers
