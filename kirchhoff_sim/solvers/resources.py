"""What a transient request needs, estimated before any of it is spent.

A request beyond the machine — ``RK4(dt=1e-9)`` over T = 1 is a billion steps and a
tape of a billion floats; a million saved time points of a large batch — would otherwise
end, minutes or hours later, in a ``MemoryError`` traceback. :func:`estimate_resources`
computes, from the net's size, the batch, the solver and what is saved or recorded,

* the number of fixed steps (known up front for a fixed or replayed grid) and the device
  evaluations they cost (steps × evaluations a step × edges × batch; for implicit
  methods a lower bound: one right-hand side and two Newton iterations a step);
* the bytes of the saved trajectory, of the recorded states the adjoint needs (all of
  them, or the checkpoints and one replayed segment), of the step grid and tape, and of
  one step's working arrays;

and :meth:`ResourceEstimate.check` refuses a request over :class:`ResourceLimits` with a
:class:`~kirchhoff_sim.errors.ResourceLimitError` that gives the figures. The estimate is
arithmetic on sizes: cheap, deterministic, no clock (only the default memory limit reads
the machine). The step count of an adaptive run is
not known up front; its recorded states are counted as they are stored
(:meth:`ResourceEstimate.check_recorded`).

The memory limit defaults to a fraction, :data:`MEMORY_FRACTION`, of the memory available
when the limits are made (``MemAvailable`` of ``/proc/meminfo``; the physical memory where
that cannot be read). The figures are lower bounds — the arrays a result is copied into
on its way to a file, NumPy's temporaries and the interpreter are not counted (a
trajectory of 10⁸ save times passed a check against the whole physical memory and then
took 18 GB) — and other processes need their memory too, so a request is refused well
before it would exhaust the machine rather than when it would just fit.

:func:`estimate_trials` applies the same limits to a Monte Carlo run (what its trials
keep, and the device evaluations they cost at least), and :func:`check_workers` bounds
the processes a local run may start by the machine's CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..checks import as_int
from ..errors import InputError, ResourceLimitError

MAX_FIXED_STEPS = 10_000_000        # all layers: ~10 minutes of a small net's Python steps
MAX_DEVICE_EVALUATIONS = 1e13       # edges × samples × evaluations: hours at 1e9 a second
FLOAT_BYTES = 8
TAPE_BYTES_PER_STEP = 40            # a Python float in a list (32) and a list slot (8)
IMPLICIT_RECORD_BYTES = 8           # a step's weights: a reference (BDF2 adds an object)
BDF2_RECORD_BYTES = 200             # BDF2's per-step Coefficients object
MEMORY_FRACTION = 0.5               # of the available memory: headroom for what is not counted
TRIAL_RECORD_BYTES = 512            # a trial's result dict (keys, floats, array header, list slot)
TRIAL_INDEX_BYTES = 44              # a trial index as int64 and as a Python int in its job's list
WORKERS_PER_CPU = 4                 # local worker processes or threads a CPU may be given


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (None where ``os.sysconf`` cannot tell)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated now without swapping (Linux
    ``MemAvailable``), else the physical memory, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()


def check_workers(workers, name: str = "workers") -> int:
    """``workers`` as an int in ``1 .. WORKERS_PER_CPU × CPUs``: local processes or
    threads beyond that only compete for the CPUs (and each holds its own memory).

    Raises
    ------
    InputError
        Not an integer >= 1, or more than the bound (the message gives it).
    """
    workers = as_int(workers, name, minimum=1)
    cpus = os.cpu_count() or 1
    if workers > WORKERS_PER_CPU * cpus:
        raise InputError(f"{name} {workers} is more than this machine can run usefully: at most "
                         f"{WORKERS_PER_CPU * cpus} ({WORKERS_PER_CPU} per CPU, {cpus} CPUs)")
    return workers


@dataclass(frozen=True)
class ResourceLimits:
    """Limits a request must fit (``simulate(..., limits=ResourceLimits(...))``).

    Attributes
    ----------
    max_fixed_steps : int
        Steps of a fixed or replayed grid, over all layers.
    max_device_evaluations : float
        Device evaluations (edges × samples × evaluations) of a fixed or replayed grid.
    memory_bytes : int or None
        Bytes the request may hold at once; None: :data:`MEMORY_FRACTION` of the memory
        available when the limits are made (:func:`available_memory`).
    """

    max_fixed_steps: int = MAX_FIXED_STEPS
    max_device_evaluations: float = MAX_DEVICE_EVALUATIONS
    memory_bytes: int | None = None

    def __post_init__(self):
        for name in ("max_fixed_steps", "max_device_evaluations", "memory_bytes"):
            value = getattr(self, name)
            if value is None and name == "memory_bytes":
                continue
            if isinstance(value, (str, bytes, bool)) or not (np.isfinite(value) and value > 0):
                raise InputError(f"ResourceLimits.{name} must be a number > 0, got {value!r}")
        if self.memory_bytes is None:      # read once: an adaptive run asks at every step
            available = available_memory()
            object.__setattr__(self, "_default_memory",
                               None if available is None else int(MEMORY_FRACTION * available))

    @property
    def memory(self) -> int | None:
        return self.memory_bytes if self.memory_bytes is not None else self._default_memory


@dataclass
class ResourceEstimate:
    """What a request needs. ``memory`` maps what needs it to bytes.

    Attributes
    ----------
    fixed_steps : int or None
        Steps over all layers; None for an adaptive run.
    device_evaluations : float or None
        Lower bound on edges × samples × evaluations; None for an adaptive run.
    memory : dict
        Bytes by purpose: ``"saved trajectory"``, ``"recorded states"``,
        ``"step grid and tape"``, ``"working arrays"``.
    state_bytes : int
        Bytes of one state ``(N+1, B)``.
    """

    fixed_steps: int | None
    device_evaluations: float | None
    memory: dict = field(default_factory=dict)
    state_bytes: int = 0
    advice: str = ("save fewer times, record fewer states (checkpointing), or split the batch")

    @property
    def total_bytes(self) -> int:
        return int(sum(self.memory.values()))

    def describe(self) -> str:
        parts = [f"{k} {_size(v)}" for k, v in self.memory.items() if v]
        text = f"{_size(self.total_bytes)} ({', '.join(parts)})"
        if self.fixed_steps is not None:
            text = (f"{self.fixed_steps:.3g} steps, ≥ {self.device_evaluations:.3g} device "
                    f"evaluations, {text}")
        elif self.device_evaluations is not None:
            text = f"≥ {self.device_evaluations:.3g} device evaluations, {text}"
        return text

    def check(self, limits: ResourceLimits) -> None:
        """Raise :class:`ResourceLimitError` if the request exceeds ``limits``."""
        if self.fixed_steps is not None and self.fixed_steps > limits.max_fixed_steps:
            raise ResourceLimitError(
                f"the request needs {self.fixed_steps:.3g} fixed steps, more than the limit "
                f"{limits.max_fixed_steps:.3g} (ResourceLimits.max_fixed_steps): use a larger dt "
                f"or an adaptive step [{self.describe()}]", self)
        if (self.device_evaluations is not None
                and self.device_evaluations > limits.max_device_evaluations):
            raise ResourceLimitError(
                f"the request needs at least {self.device_evaluations:.3g} device evaluations, "
                f"more than the limit {limits.max_device_evaluations:.3g} "
                f"(ResourceLimits.max_device_evaluations) [{self.describe()}]", self)
        memory = limits.memory
        if memory is not None and self.total_bytes > memory:
            raise ResourceLimitError(
                f"the request needs {_size(self.total_bytes)} of memory, more than the "
                f"{_size(memory)} allowed (ResourceLimits.memory_bytes; default: "
                f"{MEMORY_FRACTION:.0%} of the memory available): {self.advice} "
                f"[{self.describe()}]", self)

    def check_recorded(self, recorded_bytes: int, limits: ResourceLimits, where: dict) -> None:
        """Raise if the states recorded so far by an adaptive run, with the rest of the
        request, exceed the memory limit (``where``: layer, time and step, for the message)."""
        memory = limits.memory
        total = self.total_bytes + recorded_bytes
        if memory is not None and total > memory:
            raise ResourceLimitError(
                f"the states recorded for the adjoint reached {_size(recorded_bytes)} at layer "
                f"{where.get('layer')}, t={where.get('time'):.6g}, step {where.get('step')}; with "
                f"the rest of the request ({self.describe()}) that is more than the "
                f"{_size(memory)} available: record fewer states (checkpoint_every / "
                f"record_states=k) or split the batch", self)


def estimate_resources(net, batch: int, solver, n_save: int = 1, record_states=False,
                       itemsize: int = FLOAT_BYTES) -> ResourceEstimate:
    """Estimate the steps, work and memory of ``simulate(net, x, solver, save_at,
    record_states)`` for a batch of ``batch`` samples and ``n_save`` save times, with states
    of ``itemsize`` bytes a value (8: float64; 4: a float32 run).

    See the module docstring for what is counted; the figures are lower bounds where the
    exact count depends on the run (Newton iterations, adaptive steps).
    """
    N, B = net.num_nodes, int(batch)
    state = (N + 1) * B * int(itemsize)
    steps = _fixed_steps(net, solver)
    implicit = bool(getattr(solver, "implicit", False))
    memory = {"saved trajectory": int(n_save) * state,
              "save times": 2 * int(n_save) * FLOAT_BYTES}      # the times and their check
    evaluations = None
    if steps is not None:
        per_step = 3 if implicit else getattr(getattr(solver, "tableau", None), "stages", 1)
        edges = sum(steps_k * layer.num_edges for steps_k, layer in zip(_per_layer(net, solver), net.layers))
        evaluations = float(per_step) * float(edges) * B
        tape = TAPE_BYTES_PER_STEP + (BDF2_RECORD_BYTES if getattr(solver, "method", None) == "bdf2"
                                      else IMPLICIT_RECORD_BYTES if implicit else 0)
        memory["step grid and tape"] = steps * (tape + FLOAT_BYTES)
        every = int(record_states) if record_states else 0
        if every == 1:
            memory["recorded states"] = (steps + len(net.layers)) * state
        elif every > 1:
            # every k-th state and the one before it, plus one replayed segment of k
            memory["recorded states"] = (2 * (steps // every) + 2 * len(net.layers) + every) * state
    memory["working arrays"] = _working_bytes(net, B, solver, state)
    return ResourceEstimate(steps, evaluations, memory, state)


def estimate_trials(net, samples: int, solver, trials: int, *, batch_size: int | None = None,
                    keep_readout: bool = False) -> ResourceEstimate:
    """Estimate what ``trials`` Monte Carlo trials of ``net`` on ``samples`` inputs keep
    and cost, before any of them runs.

    Each trial keeps its result (a record, its ``(samples,)`` predictions and, with
    ``keep_readout``, its ``(samples, n_readout)`` read-out, each once in the trial's
    record and once in the stacked result) and its index in a job; one trial's simulation
    (a batch of ``batch_size`` samples) runs at a time. The device evaluations are those
    of the fixed grid, or for an adaptive step the lower bound of one evaluation per edge
    and sample, times ``trials``.
    """
    samples, trials = int(samples), int(trials)
    batch = samples if batch_size is None else max(1, min(int(batch_size), samples))
    one_batch = estimate_resources(net, batch, solver)
    kept = samples * FLOAT_BYTES * (1 + (len(net.readout) if keep_readout else 0))
    memory = {"trial results": trials * (TRIAL_RECORD_BYTES + 2 * kept + 2 * FLOAT_BYTES),
              "trial indices": trials * TRIAL_INDEX_BYTES,
              "one trial's simulation": one_batch.total_bytes}
    if one_batch.device_evaluations is not None:
        per_trial = one_batch.device_evaluations * -(-samples // batch)
    else:
        per_trial = float(samples) * sum(layer.num_edges for layer in net.layers)
    return ResourceEstimate(None, per_trial * trials, memory, one_batch.state_bytes,
                            advice="run fewer trials or on fewer samples")


def _per_layer(net, solver) -> list:
    step = solver.step
    if getattr(step, "adaptive", True):
        return []
    bounds = net.layer_boundaries
    if hasattr(step, "grids"):                     # a replayed grid
        return [len(g) - 1 for g in step.grids]
    return [max(1, int(np.ceil((bounds[k + 1] - bounds[k]) / step.dt - 1e-9)))
            for k in range(len(net.layers))]


def _fixed_steps(net, solver) -> int | None:
    if getattr(solver.step, "adaptive", True):
        return None
    return int(sum(_per_layer(net, solver)))


def _working_bytes(net, B: int, solver, state: int) -> int:
    """One step's arrays: the stages or Newton vectors, and for implicit methods the
    edge linearisation ``(E, B)`` ×5 and the Newton matrices (dense ``B·N²`` or the
    block-diagonal sparse LU, taken as three times its pattern)."""
    E = max((layer.num_edges for layer in net.layers), default=0)
    if not getattr(solver, "implicit", False):
        stages = getattr(getattr(solver, "tableau", None), "stages", 1)
        return (stages + 4) * state
    N = net.num_nodes
    kind = getattr(solver, "linear_solver_kind", "auto")
    from .implicit import DENSE_MAX_NODES    # the solver's own rule for "auto"
    dense = kind == "dense" or (kind == "auto" and N <= DENSE_MAX_NODES)
    slots = N + 4 * E                         # an upper bound on the stamp pattern's slots
    matrices = 2 * B * N * N * FLOAT_BYTES if dense else 3 * B * slots * (FLOAT_BYTES + 4)
    return 8 * state + 5 * E * B * FLOAT_BYTES + 2 * slots * B * FLOAT_BYTES + matrices


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"
