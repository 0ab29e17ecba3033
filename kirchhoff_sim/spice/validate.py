"""Check, number by number, that ngspice computes what our solver says.

:func:`validate` compiles every sample of a batch to a netlist
(:func:`~kirchhoff_sim.spice.netlist.to_netlist`), runs it in ngspice
(:func:`~kirchhoff_sim.spice.runner.run_netlist`), runs our solver on the whole batch at a
tight tolerance, and compares the two on one time grid: ``n_points`` equally spaced
normalised times over ``[0, T]`` (mapped to seconds by the scale's time unit).

Each sample goes through the one ngspice round trip
(:mod:`~kirchhoff_sim.spice.roundtrip`): ngspice's own time points, the initial condition
prepended as t = 0, brought onto the grid by a cubic spline per layer window
(:meth:`~kirchhoff_sim.spice.roundtrip.NgspiceRun.on_grid`).

Errors are reported in volts (physical) and relative to the sample's *swing*: the
largest minus the smallest node voltage the solver saw over the whole waveform of that
sample. A sample's predicted class is the argmax of the read-out voltages at ``T``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..checks import as_choice, as_int
from ..devices import Diode
from ..errors import InputError, SpiceConvergenceError, StepSizeTooSmallError, StiffnessError
from ..network import as_batch
from ..solvers import BDF2, Dopri5, simulate, solver_spec
from ..units import PhysicalScale
from .netlist import to_netlist
from .options import MODES, SpiceOptions
from .roundtrip import DEFAULT_TIMEOUT_SECONDS, map_samples, resolve_workers, run_compiled
from .runner import BACKENDS

__all__ = ["SampleAgreement", "ValidationReport", "validate", "DEFAULT_SOLVER_RTOL",
           "DEFAULT_SOLVER_ATOL"]

# our solver runs this tightly so that the comparison measures ngspice, not our own error
DEFAULT_SOLVER_RTOL = 1e-9
DEFAULT_SOLVER_ATOL = 1e-11


@dataclass
class SampleAgreement:
    """ngspice against the solver for one sample.

    Voltages are physical (volts); relative errors are divided by ``swing``.

    Attributes
    ----------
    index : int
        Row of the sample in ``X``.
    max_abs_error : float
        ``max |V_spice − V_solver|`` over every node and grid time, in V.
    final_abs_error : float
        The same at ``T`` only, in V.
    swing : float
        Largest minus smallest node voltage of the solver's waveform, in V.
    max_rel_error, final_rel_error : float
        The two errors divided by ``swing``.
    worst_node : int
        Node index (1..N) of ``max_abs_error``.
    worst_time : float
        Time of ``max_abs_error`` in seconds.
    solver_class, spice_class : int
        Argmax of the read-out voltages at ``T`` (index into ``net.readout``).
    class_agrees : bool
    spice_seconds : float
        Wall-clock time of the ngspice run.
    spice_points : int
        Time points ngspice computed (without the prepended t = 0).
    """

    index: int
    max_abs_error: float
    final_abs_error: float
    swing: float
    max_rel_error: float
    final_rel_error: float
    worst_node: int
    worst_time: float
    solver_class: int
    spice_class: int
    class_agrees: bool
    spice_seconds: float
    spice_points: int


@dataclass
class ValidationReport:
    """Agreement of ngspice with the solver over a batch (:func:`validate`).

    Attributes
    ----------
    samples : list of SampleAgreement
    mode : str
    backend : str
    scale : PhysicalScale
    options : SpiceOptions
    solver : dict
        The solver's spec (method, rtol, atol).
    n_points : int
        Grid points over ``[0, T]`` at which the waveforms are compared.
    notes : list of str
        How the comparison was made (t = 0 point, interpolation, ...).
    assumptions : list of str
        The compiler's assumptions (:attr:`Netlist.assumptions` of the first sample).
    unsupported : list of str
        Primitive mode: edges written as B sources (first sample's netlist).
    """

    samples: list
    mode: str
    backend: str
    scale: PhysicalScale
    options: SpiceOptions
    solver: dict
    n_points: int
    notes: list = field(default_factory=list)
    assumptions: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)

    # ------------------------------------------------------------ aggregates
    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def max_abs_error(self) -> float:
        """Worst ``max_abs_error`` over the samples, in V."""
        return max(s.max_abs_error for s in self.samples)

    @property
    def max_rel_error(self) -> float:
        """Worst waveform error relative to its sample's swing."""
        return max(s.max_rel_error for s in self.samples)

    @property
    def max_final_rel_error(self) -> float:
        return max(s.final_rel_error for s in self.samples)

    @property
    def class_agreement(self) -> float:
        """Fraction of samples whose predicted class is the same in ngspice and the solver."""
        return sum(s.class_agrees for s in self.samples) / len(self.samples)

    @property
    def all_classes_agree(self) -> bool:
        return all(s.class_agrees for s in self.samples)

    @property
    def spice_seconds(self) -> float:
        """Total wall-clock time of the ngspice runs (they may overlap in parallel)."""
        return sum(s.spice_seconds for s in self.samples)

    def to_dict(self) -> dict:
        """JSON-serialisable: every number a Python float/int/bool."""
        return {
            "mode": self.mode,
            "backend": self.backend,
            "scale": self.scale.to_dict(),
            "options": self.options.to_dict(),
            "solver": dict(self.solver),
            "n_points": self.n_points,
            "num_samples": self.num_samples,
            "aggregate": {
                "max_abs_error_V": self.max_abs_error,
                "max_rel_error": self.max_rel_error,
                "max_final_rel_error": self.max_final_rel_error,
                "class_agreement": self.class_agreement,
                "all_classes_agree": self.all_classes_agree,
                "spice_seconds": self.spice_seconds,
            },
            "samples": [plain_record(asdict(s)) for s in self.samples],
            "notes": list(self.notes),
            "assumptions": list(self.assumptions),
            "unsupported": list(self.unsupported),
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        head = (f"ngspice vs solver: {self.num_samples} sample(s), {self.mode} netlist, "
                f"{self.backend} backend, {self.n_points} grid points")
        rows = [f"{'sample':>6}  {'max|dV| (V)':>12}  {'rel.swing':>10}  {'at T rel.':>10}  "
                f"{'class s/n':>9}  {'ngspice s':>9}"]
        for s in self.samples:
            rows.append(f"{s.index:>6}  {s.max_abs_error:>12.3e}  {s.max_rel_error:>10.3e}  "
                        f"{s.final_rel_error:>10.3e}  {s.solver_class:>4}/{s.spice_class:<4}  "
                        f"{s.spice_seconds:>9.3f}")
        tail = (f"worst relative error {self.max_rel_error:.3e} (at T {self.max_final_rel_error:.3e}); "
                f"classes agree on {sum(s.class_agrees for s in self.samples)}/{self.num_samples}")
        return "\n".join([head, *rows, tail])


def _validate_chunk(net, settings: dict, chunk: dict) -> ValidationReport:
    """The job of one chunk of samples (see ``validate(executor=...)``)."""
    from ..modelfile import received_net

    return validate(received_net(net), chunk["x"], samples=chunk["samples"], workers=1, **settings)


def _validate_on(executor, net, X, samples, chunk_size: int, settings: dict) -> ValidationReport:
    """:func:`validate` in chunks of ``chunk_size`` samples, as jobs of ``executor``."""
    from ..executors import as_runner

    runner = as_runner(executor)
    labels = list(range(len(X))) if samples is None else [int(i) for i in samples]
    if len(labels) != len(X):
        raise InputError(f"samples names {len(labels)} indices for {len(X)} rows of X")
    to_netlist(net, X[0], scale=settings["scale"] or PhysicalScale.default(), mode=settings["mode"],
               options=settings["options"] or SpiceOptions())     # bad options fail before any job
    chunks = [{"x": X[a:a + chunk_size], "samples": labels[a:a + chunk_size]}
              for a in range(0, len(X), chunk_size)]
    shared = (runner.share_net(net), settings)
    try:
        reports = list(runner.imap(_validate_chunk, shared, chunks))
    finally:
        runner.release(shared[0])
    first = reports[0]
    solvers = {json.dumps(r.solver, sort_keys=True) for r in reports}
    notes = list(first.notes) + [f"run as {len(chunks)} job(s) of {chunk_size} sample(s) on "
                                 f"{runner.description}; the solver's reference was computed per job"]
    if len(solvers) > 1:
        notes.append(f"the jobs' references used different solvers (a stiff chunk falls back to BDF2): "
                     f"{sorted(solvers)}")
    return replace(first, samples=[s for r in reports for s in r.samples], notes=notes)


def plain_record(record: dict) -> dict:
    """A flat record of numbers (and lists of numbers) as JSON-serialisable Python
    bools, ints and floats."""
    out = {}
    for key, value in record.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            out[key] = [float(v) for v in value]
        elif isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        else:
            out[key] = float(value)
    return out


#: tolerances of the implicit reference of a stiff circuit, tightest first: an exponential
#: junction's start transient can need steps below the step floor at the tightest
STIFF_REFERENCE_RTOLS = (DEFAULT_SOLVER_RTOL, 1e-8, 1e-7, 1e-6)


def _implicit_reference(net, X, t_grid):
    """A stiff circuit (an exponential junction, a large conductance): the default
    explicit reference gives way to the SPICE-style implicit one, at the tightest
    tolerance of :data:`STIFF_REFERENCE_RTOLS` whose start transient fits the step floor."""
    for rtol in STIFF_REFERENCE_RTOLS:
        solver = BDF2(rtol=rtol, atol=rtol * DEFAULT_SOLVER_ATOL / DEFAULT_SOLVER_RTOL)
        try:
            return solver, simulate(net, X, solver=solver, save_at=t_grid)
        except StepSizeTooSmallError:
            if rtol == STIFF_REFERENCE_RTOLS[-1]:
                raise
    raise AssertionError("unreachable")


def validate(net, X, *, solver=None, scale: PhysicalScale | None = None,
             mode: str = "behavioral", options: SpiceOptions | None = None,
             backend: str = "subprocess", n_points: int = 201,
             timeout: float = DEFAULT_TIMEOUT_SECONDS, workers: int | None = None,
             samples=None, executor=None, chunk_size: int = 1) -> ValidationReport:
    """Compare ngspice's transient with our solver's, sample by sample.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d) or (d,)
        Input samples (normalised volts).
    solver : solver object, optional
        Our reference; default ``Dopri5(rtol=1e-9, atol=1e-11)`` so that its own error is
        far below what is being measured, or ``BDF2`` when Dopri5 reports the circuit
        stiff (:class:`~kirchhoff_sim.errors.StiffnessError`), at the tightest tolerance of
        :data:`STIFF_REFERENCE_RTOLS` that gets through the start (the report states it).
    scale : PhysicalScale, optional
        Units of the netlists (default :meth:`PhysicalScale.default`: 0.1 V, 100 fF, 1 µS).
    mode : {"behavioral", "primitive"}
    options : SpiceOptions, optional
        ngspice options (default :class:`SpiceOptions`'s tight ones).
    backend : {"subprocess", "shared"}
        ngspice back end; subprocess runs go in parallel over ``workers`` threads.
    n_points : int
        Grid points over ``[0, T]`` at which waveforms are compared (>= 2).
    timeout : float
        Per-sample ngspice time limit in seconds.
    workers : int, optional
        Parallel ngspice processes (subprocess backend); default ``min(4, CPUs, B)``.
    samples : sequence of int, optional
        Indices into ``X`` reported in :attr:`SampleAgreement.index` (default 0..B-1).
    executor : Runner, optional
        Run the samples as jobs of this runner (a
        :class:`~kirchhoff_sim.hardware.distributed.DaskRunner` for a cluster), in
        chunks of ``chunk_size`` samples, each validated on its worker with one ngspice
        at a time; the reports are joined in sample order. The solver's reference is then
        computed per chunk, so the waveform errors equal those of a serial run with the
        same ``chunk_size`` (the ngspice seconds are each run's own).
    chunk_size : int
        Samples per job with ``executor`` (≥ 1, default 1).

    Returns
    -------
    ValidationReport

    Raises
    ------
    InputError
        Bad ``X``, ``n_points``, ``workers``, back end or mode.
    SpiceError
        From compiling or running a sample (rejected netlist, non-convergence, timeout,
        :class:`~kirchhoff_sim.errors.SpiceStoppedEarlyError` if ngspice stopped before T).
    """
    as_choice(mode, "netlist mode", MODES)
    as_choice(backend, "SPICE backend", BACKENDS)
    n_points = as_int(n_points, "n_points", minimum=2)
    X = as_batch(X)
    if executor is not None:
        return _validate_on(executor, net, X, samples, as_int(chunk_size, "chunk_size", minimum=1),
                            {"solver": solver, "scale": scale, "mode": mode, "options": options,
                             "backend": backend, "n_points": n_points, "timeout": timeout})
    scale = PhysicalScale.default() if scale is None else scale
    options = SpiceOptions() if options is None else options
    reference_given = solver is not None
    solver = Dopri5(rtol=DEFAULT_SOLVER_RTOL, atol=DEFAULT_SOLVER_ATOL) if solver is None else solver
    labels = list(range(len(X))) if samples is None else [int(i) for i in samples]
    if len(labels) != len(X):
        raise InputError(f"samples names {len(labels)} indices for {len(X)} rows of X")
    workers = resolve_workers(workers, len(X), backend)
    # compile the first sample here: bad options, names or devices fail before any run
    first = to_netlist(net, X[0], scale=scale, mode=mode, options=options)

    t_grid = np.linspace(0.0, net.T, n_points)
    try:
        solution = simulate(net, X, solver=solver, save_at=t_grid)
    except StiffnessError:
        if reference_given:
            raise
        solver, solution = _implicit_reference(net, X, t_grid)
    reference = scale.V0 * solution.node_voltages          # (n_points, B, N), volts
    t_phys = t_grid * scale.time_unit
    readout = net.readout - 1

    def compare(b) -> SampleAgreement:
        # one sample end to end, so that only its numbers outlive the (large) netlist text
        netlist = first if b == 0 else to_netlist(net, X[b], scale=scale, mode=mode, options=options)
        run = run_compiled(netlist, backend=backend, timeout=timeout)
        spice = scale.V0 * run.on_grid(t_grid)                # (n_points, N), volts
        ours = reference[:, b, :]
        difference = np.abs(spice - ours)
        worst = np.unravel_index(int(np.argmax(difference)), difference.shape)
        swing = float(ours.max() - ours.min())
        if not swing > 0:
            swing = float(scale.V0)   # a constant waveform: relative to the voltage unit
        solver_class = int(np.argmax(ours[-1, readout]))
        spice_class = int(np.argmax(spice[-1, readout]))
        max_abs = float(difference.max())
        final_abs = float(difference[-1].max())
        return SampleAgreement(
            index=labels[b], max_abs_error=max_abs, final_abs_error=final_abs, swing=swing,
            max_rel_error=max_abs / swing, final_rel_error=final_abs / swing,
            worst_node=int(worst[1]) + 1, worst_time=float(t_phys[worst[0]]),
            solver_class=solver_class, spice_class=spice_class,
            class_agrees=solver_class == spice_class, spice_seconds=run.elapsed,
            spice_points=int(len(run.result.time)),
        )

    try:
        records = map_samples(compare, len(X), workers=workers, backend=backend)
    except SpiceConvergenceError as exc:
        junctions = sorted({type(g.device).__name__ for g in net.groups if isinstance(g.device, Diode)})
        if mode == "behavioral" and junctions:
            # a B source has no junction limiting: ngspice's Newton can fail where its own
            # D element (primitive mode, with SPICE's pnjlim) converges
            raise SpiceConvergenceError(f"{exc}; the net has {junctions} devices, whose exponential a "
                                        f"behavioural B source gives ngspice without junction limiting: "
                                        f"validate with mode='primitive' (--mode primitive), where they "
                                        f"are ngspice's own D elements") from None
        raise

    try:
        solver_description = solver_spec(solver)
    except InputError:
        solver_description = {"solver": repr(solver)}
    notes = [
        "ngspice's '.tran ... uic' output has no t = 0 point; the netlist's initial condition "
        "(IC = V0·x) was prepended as t = 0 before resampling",
        f"ngspice's waveforms were interpolated (a cubic spline per layer window) onto "
        f"{n_points} equally spaced times over [0, T] = [0, {first.tstop:.6g}] s",
        f"solver: {solver_description}; errors are in volts and relative to each sample's "
        f"swing (max − min node voltage of the solver's waveform)",
        "predicted class: argmax of the read-out node voltages at T",
    ]
    return ValidationReport(
        samples=records, mode=mode, backend=backend, scale=scale, options=options,
        solver=solver_description, n_points=int(n_points), notes=notes,
        assumptions=list(first.assumptions), unsupported=[str(u) for u in first.unsupported],
    )

