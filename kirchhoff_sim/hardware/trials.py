"""Monte Carlo trials: the spec of a run and the jobs a worker executes, plain data in and out.

The jobs are one trial (:func:`run_trial`), a chunk of trials (:func:`run_trials`) and
one quantisation point (:func:`run_quantised`). Trial ``i`` draws all its randomness from
``np.random.default_rng([seed, i])``, split into one child stream per noise source
(:meth:`numpy.random.Generator.spawn`), so

* any trial can run anywhere — in this process or on any Dask worker — and gives the
  same numbers, whatever other trials run beside it;
* switching one noise source on or off does not change the draws of the others, and the
  same standard-normal draws are scaled by each σ of a sweep (common random numbers).

A job receives the net as a :class:`~kirchhoff_sim.network.KirchhoffNet` or as its
model file's bytes (:func:`~kirchhoff_sim.modelfile.net_to_bytes`, how a net travels to
a worker); bytes are rebuilt once per process and kept in a small LRU cache
(:func:`~kirchhoff_sim.modelfile.received_net`), however many jobs run on the same net. The spec travels as the
dict of :meth:`MonteCarloSpec.to_dict`.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import InitVar, asdict, dataclass, field, fields, replace

import numpy as np

from ..checks import as_choice, as_int, as_positive
from ..errors import DivergenceError, InputError, NonFiniteStateError, SimulationError, SpiceError
from ..modelfile import received_net
from ..solvers import default_solver_spec, make_solver, simulate
from ..spice import SpiceOptions, to_netlist
from ..spice.roundtrip import run_compiled
from ..training.losses import cross_entropy
from ..units import ROOM_TEMPERATURE_K, PhysicalScale
from .perturbation import check_sigma, perturb, quantise, with_ktc_noise, with_readout_noise

__all__ = ["MonteCarloSpec", "BACKENDS", "DEFAULT_TRIALS", "DEFAULT_BATCH_SIZE", "as_spec",
           "check_labelled_data", "received_net", "run_trial", "run_trials", "run_quantised"]

DEFAULT_TRIALS = 100
DEFAULT_BATCH_SIZE = 512                 # samples per simulate() call, as evaluate() uses
BACKENDS = ("solver", "ngspice")
#: keywords of earlier releases for the scale's units (folded into ``scale``, one release)
_LEGACY_UNITS = {"voltage_unit": "V0", "capacitance_unit": "C0", "conductance_unit": "G0"}

# one ngspice process per worker process at a time, even with several worker threads
_NGSPICE_LOCK = threading.Lock()


# ---------------------------------------------------------------- the spec
@dataclass(frozen=True)
class MonteCarloSpec:
    """What a Monte Carlo run varies and how each trial is simulated.

    Parameters
    ----------
    sigma_g : float
        Log-normal σ of the conductance-like parameters (device mismatch; 0.05 ≈ 5 %).
    sigma_c : float
        Log-normal σ of the node capacitances (capacitor mismatch).
    ktc : bool
        Add kT/C noise to every node's initial voltage, σ from
        :func:`~kirchhoff_sim.units.ktc_noise_sigma` with the trial's (mismatched)
        capacitances.
    readout_noise : float
        σ of Gaussian noise on the read-out voltages, in normalised volts.
    trials : int
        Number of trials.
    seed : int
        Trial ``i`` draws from ``np.random.default_rng([seed, i])``.
    solver : dict
        :func:`~kirchhoff_sim.solvers.make_solver` keywords (default
        :data:`~kirchhoff_sim.solvers.DEFAULT_SOLVER`, the trainer's).
    backend : {"solver", "ngspice"}
        Simulate each trial with our solver (whole batches) or compile every sample to a
        netlist and run it in ngspice (:mod:`~kirchhoff_sim.spice.roundtrip`, one
        process at a time per worker).
    temperature : float
        Kelvin, for kT/C noise.
    scale : PhysicalScale or dict
        The physical scale of DESIGN.md §5 (default :meth:`PhysicalScale.default`, the
        technology profile's): ``C0`` and ``V0`` set the kT/C noise, all three the ngspice
        netlist's units. A dict ``{"V0", "C0", "G0"}`` (as :meth:`to_dict` writes it) is
        read as one.
    batch_size : int
        Samples per :func:`~kirchhoff_sim.solvers.simulate` call. An adaptive step is
        shared by a batch, so results depend on it (slightly); every trial uses the same.
    keep_readout : bool
        Return each trial's read-out voltages ``(B, n_readout)`` too.
    spice_options : dict
        :class:`~kirchhoff_sim.spice.SpiceOptions` keywords for the ngspice back end
        (default: the compiler's, which are tight; a larger ``max_step_fraction`` is
        several times faster and less exact).
    capacitance_unit, voltage_unit, conductance_unit : float, optional
        Deprecated spellings of ``scale.C0``, ``scale.V0``, ``scale.G0``: each given one
        replaces that unit of ``scale`` (with a DeprecationWarning).
    """

    sigma_g: float = 0.0
    sigma_c: float = 0.0
    ktc: bool = False
    readout_noise: float = 0.0
    trials: int = DEFAULT_TRIALS
    seed: int = 0
    solver: dict = field(default_factory=default_solver_spec)
    backend: str = "solver"
    temperature: float = ROOM_TEMPERATURE_K
    scale: PhysicalScale = field(default_factory=PhysicalScale.default)
    batch_size: int = DEFAULT_BATCH_SIZE
    keep_readout: bool = False
    spice_options: dict = field(default_factory=dict)
    capacitance_unit: InitVar[float | None] = None
    voltage_unit: InitVar[float | None] = None
    conductance_unit: InitVar[float | None] = None

    def __post_init__(self, capacitance_unit, voltage_unit, conductance_unit):
        checked = {
            "sigma_g": check_sigma(self.sigma_g, "MonteCarloSpec.sigma_g", log_normal=True),
            "sigma_c": check_sigma(self.sigma_c, "MonteCarloSpec.sigma_c", log_normal=True),
            "readout_noise": check_sigma(self.readout_noise, "MonteCarloSpec.readout_noise"),
            "trials": as_int(self.trials, "MonteCarloSpec.trials", minimum=1),
            "seed": as_int(self.seed, "MonteCarloSpec.seed", minimum=0),
            "batch_size": as_int(self.batch_size, "MonteCarloSpec.batch_size", minimum=1),
            "temperature": as_positive(self.temperature, "MonteCarloSpec.temperature"),
            "scale": _checked_scale(self.scale, {"capacitance_unit": capacitance_unit,
                                                 "voltage_unit": voltage_unit,
                                                 "conductance_unit": conductance_unit}),
            "backend": as_choice(self.backend, "MonteCarloSpec.backend", BACKENDS),
        }
        for name in ("ktc", "keep_readout"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputError(f"MonteCarloSpec.{name} must be True or False, got {getattr(self, name)!r}")
            checked[name] = bool(getattr(self, name))
        if not isinstance(self.solver, dict):
            raise InputError(f"MonteCarloSpec.solver must be a make_solver keyword dict, got {self.solver!r}")
        try:
            make_solver(**self.solver)     # fail now, not in the first trial on a worker
        except TypeError as exc:
            raise InputError(f"MonteCarloSpec.solver {self.solver!r} is not a make_solver spec ({exc})") from None
        checked["solver"] = dict(self.solver)
        if not isinstance(self.spice_options, dict):
            raise InputError(f"MonteCarloSpec.spice_options must be a SpiceOptions keyword dict, "
                             f"got {self.spice_options!r}")
        try:
            SpiceOptions(**self.spice_options)
        except TypeError as exc:
            raise InputError(f"MonteCarloSpec.spice_options {self.spice_options!r} are not "
                             f"SpiceOptions keywords ({exc})") from None
        checked["spice_options"] = dict(self.spice_options)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """Plain, JSON-able fields (the scale as ``{"V0", "C0", "G0"}``); :meth:`from_dict`
        rebuilds the spec."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MonteCarloSpec":
        """The spec of :meth:`to_dict` (the deprecated unit keys are read too)."""
        names = {f.name for f in fields(cls)} | set(_LEGACY_UNITS)
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown MonteCarloSpec fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)

    def without_noise(self) -> "MonteCarloSpec":
        """The same simulation settings with every random effect off (the nominal run)."""
        return replace(self, sigma_g=0.0, sigma_c=0.0, ktc=False, readout_noise=0.0)

    def describe(self) -> str:
        """One line naming the random effects that are on."""
        parts = [f"mismatch σ_g = {self.sigma_g:g}", f"σ_c = {self.sigma_c:g}"]
        parts.append(f"kT/C noise at {self.temperature:g} K, C0 = {self.scale.C0:g} F, "
                     f"V0 = {self.scale.V0:g} V" if self.ktc else "no kT/C noise")
        parts.append(f"read-out noise σ = {self.readout_noise:g}" if self.readout_noise else "no read-out noise")
        return ", ".join(parts)


def _checked_scale(scale, legacy: dict) -> PhysicalScale:
    """``scale`` (a PhysicalScale or its dict) with the deprecated unit keywords applied."""
    if isinstance(scale, dict):
        scale = PhysicalScale.from_dict(scale)
    if not isinstance(scale, PhysicalScale):
        raise InputError(f"MonteCarloSpec.scale must be a PhysicalScale or its dict, got {type(scale).__name__}")
    given = {_LEGACY_UNITS[name]: value for name, value in legacy.items() if value is not None}
    if given:
        warnings.warn("MonteCarloSpec(capacitance_unit=, voltage_unit=, conductance_unit=) are deprecated; "
                      "pass scale=PhysicalScale(V0, C0, G0)", DeprecationWarning, stacklevel=4)
        scale = PhysicalScale(**{**scale.to_dict(), **given})
    return scale


def as_spec(spec) -> MonteCarloSpec:
    """``spec`` itself, or the spec of its dict."""
    if isinstance(spec, MonteCarloSpec):
        return spec
    if isinstance(spec, dict):
        return MonteCarloSpec.from_dict(spec)
    raise InputError(f"spec must be a MonteCarloSpec or its dict, got {type(spec).__name__}")


# ---------------------------------------------------------------- one trial
def check_labelled_data(net, X, y):
    """``X`` as float ``(B, d)`` and ``y`` as int ``(B,)`` class indices of the read-out."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) == 0:
        raise InputError(f"X must be a non-empty (samples, features) array, got shape {X.shape}")
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"y must hold one integer class label per sample, shape ({len(X)},), got "
                         f"{y.dtype} {y.shape}; robustness runs measure classification accuracy")
    n_classes = len(net.readout)
    if y.min() < 0 or y.max() >= n_classes:
        raise InputError(f"labels must lie in 0..{n_classes - 1} (the net reads out {n_classes} "
                         f"nodes), got {int(y.min())}..{int(y.max())}")
    return X, y


def _solver_readout(net, inputs, spec) -> tuple[np.ndarray, np.ndarray]:
    """Read-out at ``T`` of every sample ``(B, n_readout)`` and the samples whose circuit
    ran away (their rows NaN).

    A perturbed or quantised chip can be unstable for some inputs: its node voltages grow
    without bound (:class:`~kirchhoff_sim.errors.DivergenceError`, or overflow to inf).
    That is a result of the trial — the chip fails on that input — not a failure of the
    run: the samples beyond the bound when the run stops are dropped and the rest of the
    block run again (a block costs one run more than the number of times its samples run
    away at different steps). Other simulation errors propagate.
    """
    solver = make_solver(**spec.solver)
    out = np.full((len(inputs), len(net.readout)), np.nan)
    diverged = []
    for start in range(0, len(inputs), spec.batch_size):
        live = np.arange(start, min(start + spec.batch_size, len(inputs)))
        while live.size:
            try:
                out[live] = simulate(net, inputs[live], solver=solver).readout(net)
                break
            except (DivergenceError, NonFiniteStateError) as exc:
                if not exc.samples:
                    raise
                diverged.extend(int(b) for b in live[list(exc.samples)])   # all that ran away by then
                live = np.delete(live, list(exc.samples))
    return out, np.array(sorted(diverged), dtype=np.int64)


def _ngspice_readout(net, inputs, spec) -> tuple[np.ndarray, np.ndarray]:
    """Read-out at ``T`` of every sample from its own ngspice run, in normalised volts
    (and no runaway samples: ngspice's failure to reach ``T`` is an error)."""
    options = SpiceOptions(**spec.spice_options)
    out = np.empty((len(inputs), len(net.readout)))
    for b, x in enumerate(inputs):
        netlist = to_netlist(net, x, scale=spec.scale, options=options)
        netlist.sample_index = b
        with _NGSPICE_LOCK:
            out[b] = run_compiled(netlist).readout(net)
    return out, np.zeros(0, dtype=np.int64)


def _scored(readout: np.ndarray, y: np.ndarray, diverged: np.ndarray) -> dict:
    """Accuracy, loss and predictions of a trial's read-out; a runaway sample has no
    class (prediction −1, counted wrong) and no loss (the loss is the mean cross-entropy
    of the others, NaN when none is left)."""
    finite = np.ones(len(y), dtype=bool)
    finite[diverged] = False
    predictions = np.full(len(y), -1, dtype=np.int64)
    predictions[finite] = readout[finite].argmax(axis=1)
    loss = float(cross_entropy(readout[finite], y[finite])[0]) if finite.any() else float("nan")
    return {"accuracy": float(np.mean(predictions == y)), "loss": loss, "predictions": predictions,
            "diverged_samples": diverged}


def run_trial(net, X, y, spec, trial_index: int, label: str | None = None) -> dict:
    """One Monte Carlo trial: perturb, add noise, simulate every sample, score.

    Parameters
    ----------
    net : KirchhoffNet or bytes
        The nominal net, or its model file's bytes (:func:`~kirchhoff_sim.modelfile.net_to_bytes`).
    X : array_like, shape (B, d)
        Input voltages (normalised).
    y : array_like of int, shape (B,)
        Class labels: index of the read-out node that should be highest.
    spec : MonteCarloSpec or dict
    trial_index : int
        ``i``: all randomness comes from ``np.random.default_rng([spec.seed, i])``.
    label : str, optional
        What an error message calls the run (default: the trial, its seed and effects).

    Returns
    -------
    dict
        ``trial`` (int), ``accuracy`` (float), ``loss`` (mean cross-entropy of the noisy
        read-out; NaN when every sample ran away), ``predictions`` (int ndarray ``(B,)``),
        ``diverged_samples`` (int ndarray, the samples whose circuit ran away — prediction
        −1, counted wrong, left out of the loss; see :func:`_solver_readout`) and, with
        ``spec.keep_readout``, ``readout`` (ndarray ``(B, n_readout)``, NaN rows for the
        runaway samples).

    Raises
    ------
    SimulationError
        The perturbed circuit's transient failed other than by running away (a step size
        too small, Newton's method); the message names the trial and seed.
    SpiceError
        With the ngspice back end: ngspice failed or stopped before ``T``.
    """
    net = received_net(net)
    spec = as_spec(spec)
    X, y = check_labelled_data(net, X, y)
    index = as_int(trial_index, "trial_index", minimum=0)
    # one child stream per noise source: turning one on or off leaves the others' draws alone
    mismatch_rng, thermal_rng, readout_rng = np.random.default_rng([spec.seed, index]).spawn(3)
    trial_net = perturb(net, mismatch_rng, sigma_g=spec.sigma_g, sigma_c=spec.sigma_c)
    inputs = X
    if spec.ktc:
        trial_net, inputs = with_ktc_noise(trial_net, X, thermal_rng, temperature=spec.temperature,
                                           scale=spec.scale)
    what = f"Monte Carlo trial {index} (seed {spec.seed}, {spec.describe()})" if label is None else label
    try:
        readout, diverged = (_solver_readout if spec.backend == "solver" else _ngspice_readout)(
            trial_net, inputs, spec)
    except SimulationError as exc:
        raise exc.copy_with(f"{what}: {exc.message}") from exc
    except SpiceError as exc:
        raise type(exc)(f"{what} in ngspice: {exc}") from exc
    readout = with_readout_noise(readout, spec.readout_noise, readout_rng)
    result = {"trial": index, **_scored(readout, y, diverged)}
    if spec.keep_readout:
        result["readout"] = readout
    return result


def run_trials(net, X, y, spec, trial_indices) -> list:
    """:func:`run_trial` for each index, in order (the unit of work a runner ships)."""
    return [run_trial(net, X, y, spec, i) for i in trial_indices]


def run_quantised(net, X, y, spec, bits, mode, which) -> dict:
    """Accuracy of ``quantise(net, bits)`` without random effects (a sweep point)."""
    quantised = quantise(received_net(net), bits, mode=mode, which=which)
    result = run_trial(quantised, X, y, as_spec(spec).without_noise(), 0,
                       label=f"the net quantised to {bits} bits ({mode})")
    return {"bits": bits, "accuracy": result["accuracy"], "loss": result["loss"],
            "diverged": int(len(result["diverged_samples"]))}
