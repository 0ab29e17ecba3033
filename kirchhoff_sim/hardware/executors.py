"""Monte Carlo trials on a runner: trials chunked into calls of ``run_trials``.

A runner is any :class:`~kirchhoff_sim.executors.Runner`; a call runs
:func:`~kirchhoff_sim.hardware.trials.run_trials` on a chunk of trial indices.

The runners themselves live in :mod:`kirchhoff_sim.executors` (every distributed job of
the package goes through them); their names are re-exported here for code written
before they moved.
"""

from __future__ import annotations

import numpy as np

from ..executors import Runner, SerialRunner, as_runner
from .trials import as_spec, run_trials

__all__ = ["Runner", "SerialRunner", "as_runner", "trial_calls", "map_trials", "CHUNKS_PER_SLOT"]

CHUNKS_PER_SLOT = 4                      # trial chunks per worker thread: balances uneven trials


def trial_calls(runner: Runner, spec, trial_indices) -> list:
    """Calls of :func:`~kirchhoff_sim.hardware.trials.run_trials` covering
    ``trial_indices`` in order, in about :data:`CHUNKS_PER_SLOT` chunks per job slot of
    ``runner``."""
    indices = np.asarray(trial_indices, dtype=np.int64)
    n_chunks = max(1, min(len(indices), runner.parallelism * CHUNKS_PER_SLOT))
    return [{"spec": spec.to_dict(), "trial_indices": chunk.tolist()}
            for chunk in np.array_split(indices, n_chunks) if len(chunk)]


def map_trials(runner: Runner, net, X, y, spec, trial_indices=None) -> list:
    """Trial dicts (:func:`~kirchhoff_sim.hardware.trials.run_trial`) for
    ``trial_indices`` (default ``range(spec.trials)``), in that order, run by ``runner``."""
    spec = as_spec(spec)
    indices = range(spec.trials) if trial_indices is None else trial_indices
    chunks = runner.map_calls(run_trials, net, X, y, trial_calls(runner, spec, indices))
    return [trial for chunk in chunks for trial in chunk]
