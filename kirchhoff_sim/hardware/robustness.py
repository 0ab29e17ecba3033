"""Robustness: how much accuracy survives what building the circuit does to it.

A trained KirchhoffNet is a set of ideal parameters. A chip realises them with finite
precision and with random mismatch, and its nodes start and end with thermal noise. This
module applies each of these to a copy of the net and measures the accuracy that is left:

* **quantisation** (:func:`quantise`) — programmable parameters rounded to ``bits``-bit
  levels;
* **device mismatch** (:func:`perturb`) — every conductance-like parameter multiplied by
  an independent log-normal factor ``exp(N(0, σ_g²))``, every node capacitor by
  ``exp(N(0, σ_c²))``;
* **kT/C noise** — the thermal noise a capacitor keeps when its reset switch opens,
  ``σ_v = sqrt(k_B·T / C)``, on every node's initial voltage;
* **read-out noise** — Gaussian noise of a given σ (normalised volts) on the read-out
  voltages, as a comparator or ADC adds it.

A Monte Carlo run (:func:`monte_carlo`) repeats the random ones over many trials. Trial
``i`` draws all its randomness from ``np.random.default_rng([seed, i])``, split into one
child stream per noise source (:meth:`numpy.random.Generator.spawn`), so

* any trial can run anywhere — in this process or on any Dask worker
  (:mod:`~kirchhoff_sim.hardware.distributed`) — and gives the same numbers, whatever
  other trials run beside it;
* switching one noise source on or off does not change the draws of the others, and the
  same standard-normal draws are scaled by each σ of a sweep (common random numbers), so
  the points of :func:`mismatch_sweep` differ by σ, not by luck.

The jobs go through a *runner*: :class:`SerialRunner` (the default) runs them here, one
after the other; :class:`~kirchhoff_sim.hardware.distributed.DaskRunner` spreads them over
a Dask cluster. Both hand the job functions the same plain data (the net, or its model
file as bytes; the inputs; the labels; a spec as a dict), which is why a distributed run
equals the serial run exactly.

Which parameters are conductance-like is fixed in one table, :data:`PARAMETER_ROLES`.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from ..errors import DeviceError, InputError, SimulationError, SpiceError
from ..modelfile import read_model_file, save_net
from ..network import EdgeGroup, KirchhoffNet, Layer
from ..solvers import make_solver, simulate
from ..training.losses import cross_entropy

__all__ = [
    "BIAS", "CONDUCTANCE", "PHYSICAL", "PARAMETER_ROLES", "BACKENDS", "QUANTISATION_MODES",
    "MonteCarloResult", "MonteCarloSpec", "Runner", "SerialRunner",
    "conductance_rows", "ktc_noise_sigma", "mismatch_sweep", "monte_carlo", "parameter_roles",
    "perturb", "quantisation_sweep", "quantise", "run_trial", "run_trials",
]

# ---------------------------------------------------------------- parameter roles
CONDUCTANCE = "conductance"   # a weight a chip realises as a conductance or transconductance
BIAS = "bias"                 # an offset (shift, bias current or voltage): programmable, not a conductance
PHYSICAL = "physical"         # a property of the device itself (a diode's i_s, r_s): not programmed

#: The role of every parameter of every device family, in one place. Mismatch
#: (:func:`perturb`) scales the ``conductance`` ones; quantisation (:func:`quantise`)
#: rounds ``conductance`` and ``bias`` ones and leaves ``physical`` ones alone. A device
#: class outside this table can carry its own ``parameter_roles`` dict attribute.
PARAMETER_ROLES = {
    "Conductance": {"g": CONDUCTANCE},
    "ShiftedReLU": {"shift": BIAS, "gain": CONDUCTANCE},
    "ShiftedLeakyReLU": {"shift": BIAS, "gain": CONDUCTANCE},
    "DifferenceActivation": {"bias": BIAS, "gain": CONDUCTANCE},
    "AffineActivation": {"w_src": CONDUCTANCE, "w_dst": CONDUCTANCE, "bias": BIAS},
    "Diode": {"i_s": PHYSICAL, "r_s": PHYSICAL},
}
_PROGRAMMABLE = (CONDUCTANCE, BIAS)

# ---------------------------------------------------------------- constants
BOLTZMANN = 1.380649e-23                 # J/K, exact since the 2019 SI
DEFAULT_TEMPERATURE = 300.0              # K
DEFAULT_CAPACITANCE_UNIT = 100e-15       # F: C0 of DESIGN.md §5
DEFAULT_VOLTAGE_UNIT = 0.1               # V: V0
DEFAULT_CONDUCTANCE_UNIT = 1e-6          # S: G0 (only the ngspice back end needs it)
DEFAULT_SOLVER = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-6}   # the trainer's default
DEFAULT_BATCH_SIZE = 512                 # samples per simulate() call, as evaluate() uses
DEFAULT_TRIALS = 100
DEFAULT_SWEEP_TRIALS = 20
DEFAULT_QUANTISATION_BITS = (2, 3, 4, 5, 6, 8, 10, 12)
DEFAULT_MISMATCH_SIGMAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
MAX_BITS = 52                            # float64's mantissa: finer levels are not representable
QUANTISATION_MODES = ("per_group", "per_net")
BACKENDS = ("solver", "ngspice")
SUMMARY_PERCENTILES = (5, 50, 95)
CHUNKS_PER_SLOT = 4                      # trial chunks per worker thread: balances uneven trials
NGSPICE_TIMEOUT_SECONDS = 600.0
SPICE_END_TIME_RTOL = 1e-9               # ngspice's last time point against T
_MODEL_CACHE_SIZE = 4                    # deserialised nets kept per process
_UNTOUCHED_NODES_WARNING = r".*node\(s\) are touched by no edge"

# one ngspice process per worker process at a time, even with several worker threads
_NGSPICE_LOCK = threading.Lock()


def parameter_roles(device) -> dict:
    """``{parameter name: role}`` of ``device`` (roles :data:`CONDUCTANCE`, :data:`BIAS`,
    :data:`PHYSICAL`), from :data:`PARAMETER_ROLES` or the device's own
    ``parameter_roles`` attribute.

    Raises
    ------
    DeviceError
        The family is in neither, or its roles do not name exactly its parameters.
    """
    family = type(device).__name__
    roles = getattr(device, "parameter_roles", None) or PARAMETER_ROLES.get(family)
    if roles is None:
        raise DeviceError(
            f"no parameter roles for device family {family}: add it to "
            f"kirchhoff_sim.hardware.robustness.PARAMETER_ROLES (each parameter "
            f"'{CONDUCTANCE}', '{BIAS}' or '{PHYSICAL}') or give the class a "
            f"parameter_roles dict")
    if set(roles) != set(device.param_names) or not set(roles.values()) <= {CONDUCTANCE, BIAS, PHYSICAL}:
        raise DeviceError(f"parameter roles of {family} {roles} do not match its parameters "
                          f"{device.param_names} or use an unknown role")
    return roles


def conductance_rows(device) -> list:
    """Rows of ``device``'s ``(n_params, E)`` parameter array that are conductance-like."""
    roles = parameter_roles(device)
    return [k for k, name in enumerate(device.param_names) if roles[name] == CONDUCTANCE]


# ---------------------------------------------------------------- copies of a net
def _rebuild(net, params=None, capacitance=None, input_nodes=None) -> KirchhoffNet:
    """A new net with ``net``'s topology and the given parameters (one ``(n_params, E_g)``
    array per group, like ``net.parameters``), capacitance and input nodes; ``None``
    keeps ``net``'s. The arrays are copied and validated as any net's are."""
    params = iter(net.parameters if params is None else params)
    layers = [Layer.from_groups([EdgeGroup(g.edges, g.device, next(params)) for g in layer.groups],
                                layer.duration)
              for layer in net.layers]
    with warnings.catch_warnings():
        # the original net warned about its untouched nodes already; its copies need not
        warnings.filterwarnings("ignore", message=_UNTOUCHED_NODES_WARNING, category=UserWarning)
        return KirchhoffNet(layers, num_nodes=net.num_nodes,
                            capacitance=net.capacitance if capacitance is None else capacitance,
                            input_nodes=net.input_nodes if input_nodes is None else input_nodes,
                            readout=net.readout, seed=net.seed, init=net.init)


def net_to_bytes(net) -> bytes:
    """``net`` as the bytes of its model file (:mod:`kirchhoff_sim.modelfile`): plain
    arrays and JSON, which a worker rebuilds with :func:`net_from_bytes` — no pickle."""
    with tempfile.TemporaryDirectory(prefix="kirchhoff-model-") as folder:
        path = save_net(net, os.path.join(folder, "model.npz"))
        with open(path, "rb") as handle:
            return handle.read()


@functools.lru_cache(maxsize=_MODEL_CACHE_SIZE)
def net_from_bytes(data: bytes) -> KirchhoffNet:
    """The net in model-file bytes from :func:`net_to_bytes` (cached: a worker rebuilds a
    net once, however many jobs it runs on it; the net is never modified in place)."""
    with tempfile.TemporaryDirectory(prefix="kirchhoff-model-") as folder:
        path = os.path.join(folder, "model.npz")
        with open(path, "wb") as handle:
            handle.write(data)
        return read_model_file(path)[0]


def _as_net(net) -> KirchhoffNet:
    if isinstance(net, KirchhoffNet):
        return net
    if isinstance(net, (bytes, bytearray, memoryview)):
        return net_from_bytes(bytes(net))
    raise InputError(f"expected a KirchhoffNet or its model-file bytes, got {type(net).__name__}")


# ---------------------------------------------------------------- quantisation
def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise InputError(f"bits must be an integer in 1..{MAX_BITS}, got {bits!r}")
    return int(bits)


def _round_to_levels(values: np.ndarray, bits: int, half_range: np.ndarray) -> np.ndarray:
    """Nearest of ``2**bits`` evenly spaced levels from ``-half_range`` to ``+half_range``.

    ``values`` ``(R, E)`` and ``half_range`` ``(R, 1)`` (or scalars), with
    ``|values| ≤ half_range``. A zero range (an all-zero row) maps to zero.
    """
    top = 2 ** bits - 1                                   # highest level code
    step = 2.0 * half_range / top
    safe_step = np.where(step > 0, step, 1.0)             # zero range: every code gives 0
    codes = np.clip(np.rint((values + half_range) / safe_step), 0, top)
    return np.clip(codes * step - half_range, -half_range, half_range)


def _selected_rows(net, which) -> list:
    """Per group, the parameter rows to quantise: the programmable ones, or those named."""
    if which is None:
        return [[k for k, name in enumerate(g.device.param_names)
                 if parameter_roles(g.device)[name] in _PROGRAMMABLE] for g in net.groups]
    names = {which} if isinstance(which, str) else set(which)
    known = {name for g in net.groups for name in g.device.param_names}
    unknown = names - known
    if unknown:
        raise InputError(f"which= names parameters {sorted(unknown)} that no device of the net "
                         f"has; its parameters are {sorted(known)}")
    return [[k for k, name in enumerate(g.device.param_names) if name in names] for g in net.groups]


def quantise(net, bits: int, *, mode: str = "per_group", which=None) -> KirchhoffNet:
    """A copy of ``net`` with its programmable parameters rounded to ``bits``-bit levels.

    Each range is **symmetric**, ``[−m, +m]`` with ``m = max |p|`` over the values it
    covers: a chip realises a signed weight as a differential pair (``G⁺ − G⁻``), so both
    signs span the same range. It holds ``2**bits`` evenly spaced levels that include both
    ends (a mid-rise quantiser: 1 bit is ``±m``, binary weights). So the largest-magnitude
    parameter keeps its value exactly, no non-zero parameter changes sign, and zero is
    *not* a level — the levels nearest it are ``±m/(2**bits − 1)``. An all-zero row stays zero.

    Parameters
    ----------
    net : KirchhoffNet
        Not modified.
    bits : int
        Precision, 1 to :data:`MAX_BITS`.
    mode : {"per_group", "per_net"}
        ``"per_group"``: one range per edge group and parameter row (a DAC range per
        device array). ``"per_net"``: one range per parameter name over the whole net.
    which : str or set of str, optional
        Names of the parameters to quantise (e.g. ``{"gain"}`` to leave the shifts
        exact). Default: every parameter whose role in :data:`PARAMETER_ROLES` is
        conductance or bias — a diode's physical ``i_s`` and ``r_s`` are left alone.

    Returns
    -------
    KirchhoffNet
        Same topology, capacitance, input and read-out nodes.

    Raises
    ------
    InputError
        ``bits`` out of range, an unknown ``mode`` or a name in ``which`` that no device
        of the net has.
    ParameterError
        A requested quantisation gives a device an invalid value (e.g. a diode's ``i_s``).
    """
    bits = _check_bits(bits)
    if mode not in QUANTISATION_MODES:
        raise InputError(f"unknown quantisation mode {mode!r}; choose one of {QUANTISATION_MODES}")
    rows = _selected_rows(net, which)
    params = [g.params.copy() for g in net.groups]
    if mode == "per_group":
        for p, r in zip(params, rows):
            if r:
                half_range = np.abs(p[r]).max(axis=1, keepdims=True)
                p[r] = _round_to_levels(p[r], bits, half_range)
    else:
        half_range = {}
        for group, p, r in zip(net.groups, params, rows):
            for k in r:
                name = group.device.param_names[k]
                half_range[name] = max(half_range.get(name, 0.0), float(np.abs(p[k]).max(initial=0.0)))
        for group, p, r in zip(net.groups, params, rows):
            for k in r:
                p[k] = _round_to_levels(p[k], bits, half_range[group.device.param_names[k]])
    return _rebuild(net, params=params)


# ---------------------------------------------------------------- mismatch
def _check_sigma(value, name) -> float:
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"{name} must be finite and >= 0, got {value!r}")
    return sigma


def perturb(net, rng, *, sigma_g: float = 0.0, sigma_c: float = 0.0) -> KirchhoffNet:
    """A copy of ``net`` with device and capacitor mismatch.

    Every conductance-like parameter (:data:`PARAMETER_ROLES`) of every edge is multiplied
    by its own factor ``exp(σ_g·z)``, ``z ~ N(0, 1)``, and every node capacitance by
    ``exp(σ_c·z)``: log-normal mismatch, which keeps a conductance's sign (a realised
    weight never flips) and is what matched-device measurements show for relative errors
    of a few percent. The factor's median is 1 and its mean ``exp(σ²/2)``.

    The draws are made in a fixed order whatever the σ — per group a ``(rows, E)`` block
    of conductance draws, then ``N`` capacitor draws — so a generator in a given state
    always gives the same ``z`` and different σ scale the same draws. With both σ zero
    the copy equals ``net`` exactly (every factor is ``exp(0) = 1``).

    Parameters
    ----------
    net : KirchhoffNet
        Not modified.
    rng : numpy.random.Generator
    sigma_g, sigma_c : float
        Standard deviations of the log of the conductance and capacitance factors
        (0.05 ≈ 5 % mismatch).

    Returns
    -------
    KirchhoffNet
    """
    sigma_g = _check_sigma(sigma_g, "sigma_g")
    sigma_c = _check_sigma(sigma_c, "sigma_c")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    params = []
    for group in net.groups:
        rows = conductance_rows(group.device)
        z = rng.standard_normal((len(rows), group.num_edges))
        p = group.params.copy()
        if rows:
            p[rows] = p[rows] * np.exp(sigma_g * z)
        params.append(p)
    capacitance = net.capacitance * np.exp(sigma_c * rng.standard_normal(net.num_nodes))
    return _rebuild(net, params=params, capacitance=capacitance)


def ktc_noise_sigma(capacitance, temperature: float = DEFAULT_TEMPERATURE,
                    capacitance_unit: float = DEFAULT_CAPACITANCE_UNIT,
                    voltage_unit: float = DEFAULT_VOLTAGE_UNIT) -> np.ndarray:
    """RMS kT/C noise ``sqrt(k_B·T / (C0·C_n)) / V0`` in normalised volts.

    Parameters
    ----------
    capacitance : array_like, shape (N,)
        Normalised node capacitances ``C_n``.
    temperature : float
        Kelvin.
    capacitance_unit, voltage_unit : float
        ``C0`` in farads and ``V0`` in volts (DESIGN.md §5).

    Returns
    -------
    ndarray, shape (N,)
        E.g. 100 fF at 300 K: 203 µV, i.e. 2.03e-3 at ``V0 = 0.1 V``.
    """
    capacitance = np.asarray(capacitance, dtype=float)
    return np.sqrt(BOLTZMANN * temperature / (capacitance_unit * capacitance)) / voltage_unit


# ---------------------------------------------------------------- the Monte Carlo spec
def _check_count(value, name, minimum) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_unit(value, name) -> float:
    try:
        unit = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(unit) and unit > 0):
        raise InputError(f"{name} must be finite and > 0, got {value!r}")
    return unit


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
        Add kT/C noise to every node's initial voltage, σ from :func:`ktc_noise_sigma`
        with the trial's (mismatched) capacitances.
    readout_noise : float
        σ of Gaussian noise on the read-out voltages, in normalised volts.
    trials : int
        Number of trials.
    seed : int
        Trial ``i`` draws from ``np.random.default_rng([seed, i])``.
    solver : dict
        :func:`~kirchhoff_sim.solvers.make_solver` keywords (default: the trainer's
        dopri5 at rtol 1e-4, atol 1e-6).
    backend : {"solver", "ngspice"}
        Simulate each trial with our solver (whole batches) or compile every sample to a
        netlist and run it in ngspice (subprocess, one process at a time per worker).
    temperature : float
        Kelvin, for kT/C noise.
    capacitance_unit, voltage_unit, conductance_unit : float
        ``C0`` (F), ``V0`` (V), ``G0`` (S) of DESIGN.md §5: ``C0`` and ``V0`` set the
        kT/C noise; all three set the ngspice netlist's units.
    batch_size : int
        Samples per :func:`~kirchhoff_sim.solvers.simulate` call. An adaptive step is
        shared by a batch, so results depend on it (slightly); every trial uses the same.
    keep_readout : bool
        Return each trial's read-out voltages ``(B, n_readout)`` too.
    spice_options : dict
        :class:`~kirchhoff_sim.spice.netlist.SpiceOptions` keywords for the ngspice back
        end (default: the compiler's, which are tight; a larger ``max_step_fraction``
        is several times faster and less exact).
    """

    sigma_g: float = 0.0
    sigma_c: float = 0.0
    ktc: bool = False
    readout_noise: float = 0.0
    trials: int = DEFAULT_TRIALS
    seed: int = 0
    solver: dict = field(default_factory=lambda: dict(DEFAULT_SOLVER))
    backend: str = "solver"
    temperature: float = DEFAULT_TEMPERATURE
    capacitance_unit: float = DEFAULT_CAPACITANCE_UNIT
    voltage_unit: float = DEFAULT_VOLTAGE_UNIT
    conductance_unit: float = DEFAULT_CONDUCTANCE_UNIT
    batch_size: int = DEFAULT_BATCH_SIZE
    keep_readout: bool = False
    spice_options: dict = field(default_factory=dict)

    def __post_init__(self):
        checked = {
            "sigma_g": _check_sigma(self.sigma_g, "MonteCarloSpec.sigma_g"),
            "sigma_c": _check_sigma(self.sigma_c, "MonteCarloSpec.sigma_c"),
            "readout_noise": _check_sigma(self.readout_noise, "MonteCarloSpec.readout_noise"),
            "trials": _check_count(self.trials, "MonteCarloSpec.trials", 1),
            "seed": _check_count(self.seed, "MonteCarloSpec.seed", 0),
            "batch_size": _check_count(self.batch_size, "MonteCarloSpec.batch_size", 1),
            "temperature": _check_unit(self.temperature, "MonteCarloSpec.temperature"),
            "capacitance_unit": _check_unit(self.capacitance_unit, "MonteCarloSpec.capacitance_unit"),
            "voltage_unit": _check_unit(self.voltage_unit, "MonteCarloSpec.voltage_unit"),
            "conductance_unit": _check_unit(self.conductance_unit, "MonteCarloSpec.conductance_unit"),
        }
        for name in ("ktc", "keep_readout"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputError(f"MonteCarloSpec.{name} must be True or False, got {getattr(self, name)!r}")
            checked[name] = bool(getattr(self, name))
        if self.backend not in BACKENDS:
            raise InputError(f"MonteCarloSpec.backend must be one of {BACKENDS}, got {self.backend!r}")
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
        if self.spice_options:
            from ..spice.netlist import SpiceOptions

            try:
                SpiceOptions(**self.spice_options)
            except TypeError as exc:
                raise InputError(f"MonteCarloSpec.spice_options {self.spice_options!r} are not "
                                 f"SpiceOptions keywords ({exc})") from None
        checked["spice_options"] = dict(self.spice_options)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """Plain, JSON-able fields; :meth:`from_dict` rebuilds the spec."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MonteCarloSpec":
        names = {f.name for f in fields(cls)}
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
        parts.append(f"kT/C noise at {self.temperature:g} K, C0 = {self.capacitance_unit:g} F, "
                     f"V0 = {self.voltage_unit:g} V" if self.ktc else "no kT/C noise")
        parts.append(f"read-out noise σ = {self.readout_noise:g}" if self.readout_noise else "no read-out noise")
        return ", ".join(parts)


def _as_spec(spec) -> MonteCarloSpec:
    if isinstance(spec, MonteCarloSpec):
        return spec
    if isinstance(spec, dict):
        return MonteCarloSpec.from_dict(spec)
    raise InputError(f"spec must be a MonteCarloSpec or its dict, got {type(spec).__name__}")


# ---------------------------------------------------------------- one trial
def _check_data(net, X, y):
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


def _solver_readout(net, inputs, spec) -> np.ndarray:
    solver = make_solver(**spec.solver)
    size = spec.batch_size
    return np.concatenate([simulate(net, inputs[i:i + size], solver=solver).readout(net)
                           for i in range(0, len(inputs), size)])


def _ngspice_readout(net, inputs, spec) -> np.ndarray:
    """Read-out at ``T`` of every sample from its own ngspice run, in normalised volts."""
    from ..spice.netlist import SpiceOptions, to_netlist
    from ..spice.runner import run_netlist
    from ..spice.scale import PhysicalScale

    scale = PhysicalScale(V0=spec.voltage_unit, C0=spec.capacitance_unit, G0=spec.conductance_unit)
    options = SpiceOptions(**spec.spice_options)
    out = np.empty((len(inputs), len(net.readout)))
    for b, x in enumerate(inputs):
        netlist = to_netlist(net, x, scale=scale, options=options)
        with _NGSPICE_LOCK:
            result = run_netlist(netlist.text, backend="subprocess", timeout=NGSPICE_TIMEOUT_SECONDS)
        if abs(result.time[-1] - netlist.tstop) > SPICE_END_TIME_RTOL * netlist.tstop:
            raise SpiceError(f"sample {b}: ngspice stopped at {result.time[-1]:.6g} s, before "
                             f"T = {netlist.tstop:.6g} s")
        out[b] = [result.voltage(netlist.node_name(n))[-1] for n in net.readout]
    return out / scale.V0


def run_trial(net, X, y, spec, trial_index: int) -> dict:
    """One Monte Carlo trial: perturb, add noise, simulate every sample, score.

    Parameters
    ----------
    net : KirchhoffNet or bytes
        The nominal net, or its model file's bytes (:func:`net_to_bytes`).
    X : array_like, shape (B, d)
        Input voltages (normalised).
    y : array_like of int, shape (B,)
        Class labels: index of the read-out node that should be highest.
    spec : MonteCarloSpec or dict
    trial_index : int
        ``i``: all randomness comes from ``np.random.default_rng([spec.seed, i])``.

    Returns
    -------
    dict
        ``trial`` (int), ``accuracy`` (float), ``loss`` (mean cross-entropy of the noisy
        read-out), ``predictions`` (int ndarray ``(B,)``) and, with
        ``spec.keep_readout``, ``readout`` (ndarray ``(B, n_readout)``).

    Raises
    ------
    SimulationError
        The perturbed circuit's transient failed; the message names the trial and seed.
    """
    net = _as_net(net)
    spec = _as_spec(spec)
    X, y = _check_data(net, X, y)
    index = _check_count(trial_index, "trial_index", 0)
    # one child stream per noise source: turning one on or off leaves the others' draws alone
    mismatch_rng, thermal_rng, readout_rng = np.random.default_rng([spec.seed, index]).spawn(3)
    trial_net = perturb(net, mismatch_rng, sigma_g=spec.sigma_g, sigma_c=spec.sigma_c)
    inputs = X
    if spec.ktc:
        # every capacitor keeps kT/C noise, not just the input ones: drive all nodes
        initial = trial_net.initial_state(X)[1:].T
        sigma = ktc_noise_sigma(trial_net.capacitance, spec.temperature, spec.capacitance_unit,
                                spec.voltage_unit)
        inputs = initial + sigma * thermal_rng.standard_normal(initial.shape)
        trial_net = _rebuild(trial_net, input_nodes=np.arange(1, net.num_nodes + 1))
    try:
        readout = (_solver_readout if spec.backend == "solver" else _ngspice_readout)(trial_net, inputs, spec)
    except SimulationError as exc:
        error = type(exc)(f"Monte Carlo trial {index} (seed {spec.seed}, {spec.describe()}): {exc}")
        error.layer, error.time, error.step = exc.layer, exc.time, exc.step
        raise error from exc
    except SpiceError as exc:
        raise type(exc)(f"Monte Carlo trial {index} (seed {spec.seed}) in ngspice: {exc}") from exc
    if spec.readout_noise > 0:
        readout = readout + spec.readout_noise * readout_rng.standard_normal(readout.shape)
    loss, _ = cross_entropy(readout, y)
    predictions = readout.argmax(axis=1)
    result = {"trial": index, "accuracy": float(np.mean(predictions == y)), "loss": float(loss),
              "predictions": predictions}
    if spec.keep_readout:
        result["readout"] = readout
    return result


def run_trials(net, X, y, spec, trial_indices) -> list:
    """:func:`run_trial` for each index, in order (the unit of work a runner ships)."""
    return [run_trial(net, X, y, spec, i) for i in trial_indices]


def _quantised_run(net, X, y, spec, bits, mode, which) -> dict:
    """Accuracy of ``quantise(net, bits)`` without random effects (a sweep point)."""
    quantised = quantise(_as_net(net), bits, mode=mode, which=which)
    result = run_trial(quantised, X, y, _as_spec(spec).without_noise(), 0)
    return {"bits": bits, "accuracy": result["accuracy"], "loss": result["loss"]}


# ---------------------------------------------------------------- runners
class Runner:
    """Where robustness jobs run. A subclass implements :meth:`map_calls` and
    :attr:`parallelism`; chunking trials into calls is shared here."""

    #: short description for reports
    description = "runner"

    @property
    def parallelism(self) -> int:
        """How many jobs can run at once."""
        return 1

    def map_calls(self, fn, net, X, y, calls: list) -> list:
        """``[fn(net, X, y, **call) for call in calls]``, in order, wherever they run."""
        raise NotImplementedError

    def trial_calls(self, spec, trial_indices) -> list:
        """Calls of :func:`run_trials` covering ``trial_indices`` in order, in chunks."""
        indices = np.asarray(trial_indices, dtype=np.int64)
        n_chunks = max(1, min(len(indices), self.parallelism * CHUNKS_PER_SLOT))
        return [{"spec": spec.to_dict(), "trial_indices": chunk.tolist()}
                for chunk in np.array_split(indices, n_chunks) if len(chunk)]

    def map_trials(self, net, X, y, spec, trial_indices=None) -> list:
        """Trial dicts (:func:`run_trial`) for ``trial_indices`` (default
        ``range(spec.trials)``), in that order."""
        spec = _as_spec(spec)
        indices = range(spec.trials) if trial_indices is None else trial_indices
        chunks = self.map_calls(run_trials, net, X, y, self.trial_calls(spec, indices))
        return [trial for chunk in chunks for trial in chunk]


class SerialRunner(Runner):
    """Runs every job here, one after the other, on the net object itself."""

    description = "serial"

    def map_calls(self, fn, net, X, y, calls):
        return [fn(net, X, y, **call) for call in calls]


# ---------------------------------------------------------------- results
@dataclass
class MonteCarloResult:
    """The accuracy distribution of a Monte Carlo run.

    Attributes
    ----------
    spec : MonteCarloSpec
    trial_indices : ndarray of int, shape (trials,)
    accuracies, losses : ndarray, shape (trials,)
        Per trial: fraction of samples classified right; mean cross-entropy.
    predictions : ndarray of int, shape (trials, B)
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
                "drop": self.nominal_accuracy - self.mean}

    def to_dict(self) -> dict:
        """JSON-able: the spec, the summary and every trial's accuracy and loss."""
        return {"spec": self.spec.to_dict(), "trials": int(len(self.accuracies)),
                "samples": int(self.n_samples), "runner": self.runner, "seconds": float(self.seconds),
                "nominal_accuracy": self.nominal_accuracy, "nominal_loss": self.nominal_loss,
                "accuracy": self.summary(),
                "per_trial": {"trial": self.trial_indices.tolist(),
                              "accuracy": self.accuracies.tolist(), "loss": self.losses.tolist()}}

    def __str__(self) -> str:
        s, p = self.spec, self.percentiles()
        simulator = s.backend if s.backend == "ngspice" else f"solver {s.solver.get('method')}"
        return (f"Monte Carlo: {len(self.accuracies)} trials × {self.n_samples} samples "
                f"({simulator}, seed {s.seed}) on {self.runner} in {self.seconds:.1f} s\n"
                f"  {s.describe()}\n"
                f"  accuracy: nominal {self.nominal_accuracy:.4f}; mean {self.mean:.4f} ± {self.std:.4f} "
                f"(min {self.min:.4f}, p5 {p[5]:.4f}, median {p[50]:.4f}, p95 {p[95]:.4f}, "
                f"max {self.max:.4f}); drop {self.nominal_accuracy - self.mean:+.4f}")


def _runner(executor) -> Runner:
    if executor is None:
        return SerialRunner()
    if not hasattr(executor, "map_calls"):
        raise InputError(f"executor must be a Runner (SerialRunner, DaskRunner), got {type(executor).__name__}")
    return executor


def _result(spec, nominal, trials, seconds, runner, n_samples) -> MonteCarloResult:
    return MonteCarloResult(
        spec=spec, trial_indices=np.array([t["trial"] for t in trials], dtype=np.int64),
        accuracies=np.array([t["accuracy"] for t in trials]), losses=np.array([t["loss"] for t in trials]),
        predictions=np.stack([t["predictions"] for t in trials]),
        nominal_accuracy=nominal["accuracy"], nominal_loss=nominal["loss"], n_samples=n_samples,
        seconds=seconds, runner=runner.description,
        readouts=np.stack([t["readout"] for t in trials]) if spec.keep_readout else None)


def monte_carlo(net, X, y, spec: MonteCarloSpec, executor=None) -> MonteCarloResult:
    """Accuracy of ``net`` on ``(X, y)`` over ``spec.trials`` random trials.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d)
    y : array_like of int, shape (B,)
    spec : MonteCarloSpec
    executor : Runner, optional
        Where the trials run: :class:`SerialRunner` (default) or a started
        :class:`~kirchhoff_sim.hardware.distributed.DaskRunner`. The result is the same.

    Returns
    -------
    MonteCarloResult
        Also holds the nominal (noise-free) accuracy, computed with the same settings.
    """
    spec = _as_spec(spec)
    X, y = _check_data(net, X, y)
    runner = _runner(executor)
    start = time.perf_counter()
    calls = [{"spec": spec.without_noise().to_dict(), "trial_indices": [0]}]
    calls += runner.trial_calls(spec, range(spec.trials))
    chunks = runner.map_calls(run_trials, net, X, y, calls)
    nominal, trials = chunks[0][0], [t for chunk in chunks[1:] for t in chunk]
    return _result(spec, nominal, trials, time.perf_counter() - start, runner, len(X))


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
        ``p5``, ``p50``, ``p95``, ``drop`` and the per-trial ``accuracies``.
    """
    base = MonteCarloSpec() if spec is None else _as_spec(spec)
    X, y = _check_data(net, X, y)
    specs = [replace(base, sigma_g=_check_sigma(s, "sigma"), trials=_check_count(trials, "trials", 1))
             for s in sigmas]
    runner = _runner(executor)
    start = time.perf_counter()
    calls = [{"spec": base.without_noise().to_dict(), "trial_indices": [0]}]
    spans = []
    for s in specs:
        chunk_calls = runner.trial_calls(s, range(s.trials))
        spans.append((len(calls), len(calls) + len(chunk_calls)))
        calls += chunk_calls
    chunks = runner.map_calls(run_trials, net, X, y, calls)
    seconds = time.perf_counter() - start
    rows = []
    for s, (a, b) in zip(specs, spans):
        result = _result(s, chunks[0][0], [t for chunk in chunks[a:b] for t in chunk], seconds, runner, len(X))
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
        As :func:`quantise`.
    spec : MonteCarloSpec, optional
        Simulation settings (solver, back end, batch size); its random effects are ignored.
    executor : Runner, optional

    Returns
    -------
    list of dict
        ``bits``, ``accuracy``, ``loss`` per entry of ``bits``, in order.
    """
    base = MonteCarloSpec() if spec is None else _as_spec(spec)
    X, y = _check_data(net, X, y)
    if mode not in QUANTISATION_MODES:
        raise InputError(f"unknown quantisation mode {mode!r}; choose one of {QUANTISATION_MODES}")
    which = None if which is None else sorted({which} if isinstance(which, str) else set(which))
    calls = [{"spec": base.to_dict(), "bits": _check_bits(b), "mode": mode, "which": which} for b in bits]
    return _runner(executor).map_calls(_quantised_run, net, X, y, calls)
