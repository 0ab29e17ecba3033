"""Executors: where hardware jobs run — the Runner interface and the serial runner.

A runner maps a job function of :mod:`~kirchhoff_sim.hardware.trials` over a list of
calls, ``[fn(net, X, y, **call) for call in calls]``, and returns the results in the
order of the calls. :class:`SerialRunner` does exactly that, on the net object itself;
:class:`~kirchhoff_sim.hardware.distributed.DaskRunner` (in its own module, because
Dask takes a while to import) ships the net as its model file's bytes and runs the calls
on a Dask cluster. Both hand the jobs the same plain data (the net's parameters bit for
bit, the inputs, the labels, a spec as a dict), which is why a distributed run equals the
serial run exactly.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .trials import as_spec, run_trials

__all__ = ["Runner", "SerialRunner", "as_runner", "CHUNKS_PER_SLOT"]

CHUNKS_PER_SLOT = 4                      # trial chunks per worker thread: balances uneven trials


class Runner:
    """Where hardware jobs run. A subclass implements :meth:`map_calls` and
    :attr:`parallelism`; chunking trials into calls is shared here."""

    #: short description for reports
    description = "runner"

    @property
    def parallelism(self) -> int:
        """How many jobs can run at once."""
        return 1

    def map_calls(self, fn, net, X, y, calls: list) -> list:
        """``[fn(net, X, y, **call) for call in calls]``, in order, wherever they run.

        Raises
        ------
        Exception
            The first failing call's own error (the other calls are abandoned).
        ClusterLostError
            A runner whose cluster went away before every call had run; a call whose
            machine went away but that could run again elsewhere is not a failure, since
            calls are pure (:mod:`~kirchhoff_sim.hardware.trials` seeds every trial).
        """
        raise NotImplementedError

    def trial_calls(self, spec, trial_indices) -> list:
        """Calls of :func:`~kirchhoff_sim.hardware.trials.run_trials` covering
        ``trial_indices`` in order, in about :data:`CHUNKS_PER_SLOT` chunks per job slot."""
        indices = np.asarray(trial_indices, dtype=np.int64)
        n_chunks = max(1, min(len(indices), self.parallelism * CHUNKS_PER_SLOT))
        return [{"spec": spec.to_dict(), "trial_indices": chunk.tolist()}
                for chunk in np.array_split(indices, n_chunks) if len(chunk)]

    def map_trials(self, net, X, y, spec, trial_indices=None) -> list:
        """Trial dicts (:func:`~kirchhoff_sim.hardware.trials.run_trial`) for
        ``trial_indices`` (default ``range(spec.trials)``), in that order."""
        spec = as_spec(spec)
        indices = range(spec.trials) if trial_indices is None else trial_indices
        chunks = self.map_calls(run_trials, net, X, y, self.trial_calls(spec, indices))
        return [trial for chunk in chunks for trial in chunk]


class SerialRunner(Runner):
    """Runs every job here, one after the other, on the net object itself."""

    description = "serial"

    def map_calls(self, fn, net, X, y, calls):
        return [fn(net, X, y, **call) for call in calls]


def as_runner(executor) -> Runner:
    """``executor``, or a :class:`SerialRunner` for ``None``."""
    if executor is None:
        return SerialRunner()
    if not hasattr(executor, "map_calls"):
        raise InputError(f"executor must be a Runner (SerialRunner, DaskRunner), got {type(executor).__name__}")
    return executor
