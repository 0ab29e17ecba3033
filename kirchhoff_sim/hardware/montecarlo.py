"""Monte Carlo runs: accuracy under mismatch and noise over seeded trials, and the sweeps.

:func:`monte_carlo` gives the accuracy distribution (:class:`MonteCarloResult`),
:func:`mismatch_sweep` and :func:`quantisation_sweep` the accuracy against mismatch σ and
quantisation bits. Each run sends its trials as one batch of jobs to a runner
(:mod:`.executors`: serial by default, or a
:class:`~kirchhoff_sim.hardware.distributed.DaskRunner`); what a trial does and why it
gives the same numbers wherever it runs is in :mod:`.trials`.
Every point of :func:`mismatch_sweep` uses the same trial seeds, so its points differ
by σ, not by luck (common random numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..checks import as_choice, as_int
from ..solvers import make_solver
from ..solvers.resources import ResourceLimits, estimate_trials
from ..executors import Runner, as_runner
from .executors import trial_calls
from .formatting import json_float
from .perturbation import MAX_BITS, QUANTISATION_MODES, check_sigma
from .trials import (
    MonteCarloSpec,
    as_spec,
    check_labelled_data,
    run_quantised,
    run_trial,
    run_trials,
)

__all__ = ["MonteCarloResult", "MonteCarloSpec", "monte_carlo", "mismatch_sweep", "quantisation_sweep",
           "run_trial", "DEFAULT_SWEEP_TRIALS", "DEFAULT_QUANTISATION_BITS", "DEFAULT_MISMATCH_SIGMAS",
           "SUMMARY_PERCENTILES"]

DEFAULT_SWEEP_TRIALS = 20
DEFAULT_QUANTISATION_BITS = (2, 3, 4, 5, 6, 8, 10, 12)
DEFAULT_MISMATCH_SIGMAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
SUMMARY_PERCENTILES = (5, 50, 95)


@dataclass
class MonteCarloResult:
    """The accuracy distribution of a Monte Carlo run.

    Attributes
    ----------
    spec : MonteCarloSpec
    trial_indices : ndarray of int, shape (trials,)
    accuracies, losses : ndarray, shape (trials,)
        Per trial: fraction of samples classified right; mean cross-entropy of the samples
        that did not run away (NaN when none is left).
    predictions : ndarray of int, shape (trials, B)
        The class of each sample, −1 for a sample whose circuit ran away.
    nominal_accuracy, nominal_loss : float
        The unperturbed, noise-free net with the same simulation settings.
    n_samples : int
        ``B``.
    seconds : float
        Wall-clock time of the whole run.
    runner : str
        Where it ran.
    readouts : ndarray, shape (trials, B, n_readout), or None
        With ``spec.keep_readout``.
    diverged : ndarray of int, shape (trials,)
        Per trial, how many samples' perturbed circuits ran away (node voltages beyond the
        solver's plausible bound): each is counted wrong (see
        :func:`~.trials.run_trial`).
    nominal_diverged : int
        How many ran away in the nominal run (an unstable net, whatever the mismatch).
    """

    spec: MonteCarloSpec
    trial_indices: np.ndarray
    accuracies: np.ndarray
    losses: np.ndarray
    predictions: np.ndarray
    nominal_accuracy: float
    nominal_loss: float
    n_samples: int
    seconds: float
    runner: str
    readouts: np.ndarray | None = None
    diverged: np.ndarray | None = None
    nominal_diverged: int = 0

    def __post_init__(self):
        if self.diverged is None:
            self.diverged = np.zeros(len(self.accuracies), dtype=np.int64)

    @property
    def _correct(self) -> np.ndarray:
        """Samples classified right per trial: whole numbers, so that equal trials give a
        mean equal to each of them and a standard deviation of exactly 0."""
        return np.rint(self.accuracies * self.n_samples)

    @property
    def mean(self) -> float:
        return float(np.mean(self._correct) / self.n_samples)

    @property
    def std(self) -> float:
        """Sample standard deviation of the trial accuracies (0 for one trial)."""
        return float(np.std(self._correct, ddof=1) / self.n_samples) if len(self.accuracies) > 1 else 0.0

    @property
    def min(self) -> float:
        return float(np.min(self.accuracies))

    @property
    def max(self) -> float:
        return float(np.max(self.accuracies))

    def percentiles(self, q=SUMMARY_PERCENTILES) -> dict:
        """``{q: accuracy percentile}`` (linear interpolation between trials)."""
        return {int(p): float(v) for p, v in zip(q, np.percentile(self.accuracies, q))}

    def summary(self) -> dict:
        """Nominal accuracy and the distribution's mean, std, min, max and percentiles."""
        return {"nominal": self.nominal_accuracy, "mean": self.mean, "std": self.std,
                "min": self.min, "max": self.max,
                **{f"p{q}": v for q, v in self.percentiles().items()},
                "drop": self.nominal_accuracy - self.mean, "diverged": int(self.diverged.sum()),
                "nominal_diverged": int(self.nominal_diverged)}

    def to_dict(self) -> dict:
        """JSON-able: the spec, the summary and every trial's accuracy and loss."""
        return {"spec": self.spec.to_dict(), "trials": int(len(self.accuracies)),
                "samples": int(self.n_samples), "runner": self.runner, "seconds": float(self.seconds),
                "nominal_accuracy": self.nominal_accuracy, "nominal_loss": json_float(self.nominal_loss),
                "accuracy": self.summary(),
                "per_trial": {"trial": self.trial_indices.tolist(),
                              "accuracy": self.accuracies.tolist(), "loss": [json_float(v) for v in self.losses],
                              "diverged": self.diverged.tolist()}}

    def __str__(self) -> str:
        s, p = self.spec, self.percentiles()
        simulator = s.backend if s.backend == "ngspice" else f"solver {s.solver.get('method')}"
        return (f"Monte Carlo: {len(self.accuracies)} trials × {self.n_samples} samples "
                f"({simulator}, seed {s.seed}) on {self.runner} in {self.seconds:.1f} s\n"
                f"  {s.describe()}\n"
                f"  accuracy: nominal {self.nominal_accuracy:.4f}; mean {self.mean:.4f} ± {self.std:.4f} "
                f"(min {self.min:.4f}, p5 {p[5]:.4f}, median {p[50]:.4f}, p95 {p[95]:.4f}, "
                f"max {self.max:.4f}); drop {self.nominal_accuracy - self.mean:+.4f}"
                + (f"\n  {int(self.diverged.sum())} of {len(self.accuracies) * self.n_samples} trial samples "
                   f"ran away (unstable chips, counted wrong)" if self.diverged.any() else "")
                + (f"\n  {self.nominal_diverged} of {self.n_samples} samples ran away in the nominal run: the "
                   f"unperturbed net is unstable on them" if self.nominal_diverged else ""))


def _result(spec, nominal, trials, seconds, runner: Runner, n_samples) -> MonteCarloResult:
    return MonteCarloResult(
        spec=spec, trial_indices=np.array([t["trial"] for t in trials], dtype=np.int64),
        accuracies=np.array([t["accuracy"] for t in trials]), losses=np.array([t["loss"] for t in trials]),
        predictions=np.stack([t["predictions"] for t in trials]),
        nominal_accuracy=nominal["accuracy"], nominal_loss=nominal["loss"], n_samples=n_samples,
        seconds=seconds, runner=runner.description,
        readouts=np.stack([t["readout"] for t in trials]) if spec.keep_readout else None,
        diverged=np.array([len(t["diverged_samples"]) for t in trials], dtype=np.int64),
        nominal_diverged=len(nominal["diverged_samples"]))


def _with_nominal(runner: Runner, net, X, y, spec: MonteCarloSpec, specs) -> tuple:
    """One batch of jobs: the nominal run of ``spec`` and every trial of each of ``specs``.

    Returns the nominal trial, the trials of each spec (a list per spec, in trial order)
    and the wall-clock seconds of the batch.

    Raises
    ------
    ResourceLimitError
        What the trials keep, or the device evaluations they cost, is beyond
        :class:`~kirchhoff_sim.solvers.resources.ResourceLimits` (before any trial runs).
    """
    trials = 1 + sum(s.trials for s in specs)
    estimate_trials(net, len(X), make_solver(**spec.solver), trials, batch_size=spec.batch_size,
                    keep_readout=any(s.keep_readout for s in specs)).check(ResourceLimits())
    calls = [{"spec": spec.without_noise().to_dict(), "trial_indices": [0]}]
    spans = []
    for s in specs:
        chunk_calls = trial_calls(runner, s, range(s.trials))
        spans.append((len(calls), len(calls) + len(chunk_calls)))
        calls += chunk_calls
    start = time.perf_counter()
    chunks = runner.map_calls(run_trials, net, X, y, calls)
    seconds = time.perf_counter() - start
    return chunks[0][0], [[t for chunk in chunks[a:b] for t in chunk] for a, b in spans], seconds


def monte_carlo(net, X, y, spec: MonteCarloSpec, executor=None) -> MonteCarloResult:
    """Accuracy of ``net`` on ``(X, y)`` over ``spec.trials`` random trials.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d)
    y : array_like of int, shape (B,)
    spec : MonteCarloSpec
    executor : Runner, optional
        Where the trials run: :class:`~.executors.SerialRunner` (default) or a started
        :class:`~kirchhoff_sim.hardware.distributed.DaskRunner`. The result is the same.

    Returns
    -------
    MonteCarloResult
        Also holds the nominal (noise-free) accuracy, computed with the same settings.
    """
    spec = as_spec(spec)
    X, y = check_labelled_data(net, X, y)
    runner = as_runner(executor)
    nominal, (trials,), seconds = _with_nominal(runner, net, X, y, spec, [spec])
    return _result(spec, nominal, trials, seconds, runner, len(X))


def mismatch_sweep(net, X, y, sigmas=DEFAULT_MISMATCH_SIGMAS, trials: int = DEFAULT_SWEEP_TRIALS,
                   *, spec: MonteCarloSpec | None = None, executor=None) -> list:
    """Accuracy against device mismatch σ_g: a Monte Carlo per σ.

    Every σ uses the same trial seeds, so trial ``i`` at each σ scales the same
    standard-normal draws (common random numbers). All trials of all σ go to the runner
    as one batch of jobs.

    Parameters
    ----------
    sigmas : sequence of float
        Log-normal σ of the conductance-like parameters.
    trials : int
        Trials per σ.
    spec : MonteCarloSpec, optional
        Everything else (seed, solver, capacitor mismatch, noise, ...); its ``sigma_g``
        and ``trials`` are replaced.
    executor : Runner, optional

    Returns
    -------
    list of dict
        Per σ: ``sigma``, ``trials``, ``nominal``, ``mean``, ``std``, ``min``, ``max``,
        ``p5``, ``p50``, ``p95``, ``drop``, ``diverged`` (trial samples that ran away),
        ``nominal_diverged`` and the per-trial ``accuracies``.
    """
    base = MonteCarloSpec() if spec is None else as_spec(spec)
    X, y = check_labelled_data(net, X, y)
    specs = [replace(base, sigma_g=check_sigma(s, "sigma", log_normal=True), trials=as_int(trials, "trials", minimum=1))
             for s in sigmas]
    runner = as_runner(executor)
    nominal, per_spec, seconds = _with_nominal(runner, net, X, y, base, specs)
    rows = []
    for s, trial_list in zip(specs, per_spec):
        result = _result(s, nominal, trial_list, seconds, runner, len(X))
        rows.append({"sigma": s.sigma_g, "trials": s.trials, **result.summary(),
                     "accuracies": result.accuracies.tolist()})
    return rows


def quantisation_sweep(net, X, y, bits=DEFAULT_QUANTISATION_BITS, *, mode: str = "per_group",
                       which=None, spec: MonteCarloSpec | None = None, executor=None) -> list:
    """Accuracy of ``quantise(net, b)`` for each ``b`` in ``bits`` (no random effects).

    Parameters
    ----------
    bits : sequence of int
    mode, which
        As :func:`~.perturbation.quantise`.
    spec : MonteCarloSpec, optional
        Simulation settings (solver, back end, batch size); its random effects are ignored.
    executor : Runner, optional

    Returns
    -------
    list of dict
        ``bits``, ``accuracy``, ``loss`` and ``diverged`` (samples whose quantised circuit
        ran away, counted wrong) per entry of ``bits``, in order.
    """
    base = MonteCarloSpec() if spec is None else as_spec(spec)
    X, y = check_labelled_data(net, X, y)
    as_choice(mode, "quantisation mode", QUANTISATION_MODES)
    which = None if which is None else sorted({which} if isinstance(which, str) else set(which))
    calls = [{"spec": base.to_dict(), "bits": as_int(b, "bits", minimum=1, maximum=MAX_BITS),
              "mode": mode, "which": which} for b in bits]
    return as_runner(executor).map_calls(run_quantised, net, X, y, calls)
