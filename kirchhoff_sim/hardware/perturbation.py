"""Perturbation: quantisation, mismatch and noise — what building the circuit does to a net.

Each function returns a new net (or new voltages) and leaves its input alone:

* **quantisation** (:func:`quantise`) — programmable parameters rounded to ``bits``-bit
  levels;
* **device mismatch** (:func:`perturb`) — every conductance-like parameter multiplied by
  an independent log-normal factor ``exp(N(0, σ_g²))``, every node capacitor by
  ``exp(N(0, σ_c²))``;
* **kT/C noise** (:func:`with_ktc_noise`) — the thermal noise a capacitor keeps when its
  reset switch opens, ``σ_v = sqrt(k_B·T / C)`` (:func:`~kirchhoff_sim.units.ktc_noise_sigma`),
  on every node's initial voltage;
* **read-out noise** (:func:`with_readout_noise`) — Gaussian noise of a given σ
  (normalised volts) on the read-out voltages, as a comparator or ADC adds it.

Which parameters are conductance-like, programmable offsets or physical properties of the
device is declared by each device class (:attr:`~kirchhoff_sim.devices.Device.parameter_roles`).
"""

from __future__ import annotations

import numpy as np

from ..checks import as_choice, as_int, as_real
from ..devices import CONDUCTANCE, PROGRAMMABLE_ROLES, rows_with_role
from ..errors import InputError
from ..network import KirchhoffNet
from ..units import MAX_PRECISION_BITS, ROOM_TEMPERATURE_K, PhysicalScale, ktc_noise_sigma

__all__ = ["quantise", "perturb", "with_ktc_noise", "with_readout_noise", "check_sigma",
           "MAX_BITS", "QUANTISATION_MODES"]

MAX_BITS = MAX_PRECISION_BITS   # finer levels than float64's mantissa are not representable
QUANTISATION_MODES = ("per_group", "per_net")
#: the largest σ of a log-normal mismatch factor ``exp(σ·z)``: σ = 10 already spreads a
#: parameter over e^±30 at 3σ, and ``exp`` overflows float64 for σ·|z| > 709
MAX_LOG_NORMAL_SIGMA = 10.0
#: the largest σ of additive noise (normalised volts): the plausible bound of any node voltage
MAX_SIGMA = 1e6


def check_sigma(value, name: str, log_normal: bool = False) -> float:
    """A standard deviation: a real number in ``0 .. MAX_SIGMA``, or for a log-normal
    mismatch factor ``exp(σ·z)`` in ``0 .. MAX_LOG_NORMAL_SIGMA``."""
    return as_real(value, name, minimum=0.0, maximum=MAX_LOG_NORMAL_SIGMA if log_normal else MAX_SIGMA)


# ---------------------------------------------------------------- quantisation
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
        return [rows_with_role(g.device, *PROGRAMMABLE_ROLES) for g in net.groups]
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
        exact). Default: every parameter whose role is conductance or bias — a diode's
        physical ``i_s`` and ``r_s`` are left alone.

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
    bits = as_int(bits, "bits", minimum=1, maximum=MAX_BITS)
    as_choice(mode, "quantisation mode", QUANTISATION_MODES)
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
    return net.with_parameters(params)


# ---------------------------------------------------------------- mismatch
def perturb(net, rng, *, sigma_g: float = 0.0, sigma_c: float = 0.0) -> KirchhoffNet:
    """A copy of ``net`` with device and capacitor mismatch.

    Every conductance-like parameter of every edge is multiplied by its own factor
    ``exp(σ_g·z)``, ``z ~ N(0, 1)``, and every node capacitance by ``exp(σ_c·z)``:
    log-normal mismatch, which keeps a conductance's sign (a realised weight never flips)
    and is what matched-device measurements show for relative errors of a few percent.
    The factor's median is 1 and its mean ``exp(σ²/2)``.

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
    sigma_g = check_sigma(sigma_g, "sigma_g", log_normal=True)
    sigma_c = check_sigma(sigma_c, "sigma_c", log_normal=True)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    params = []
    for group in net.groups:
        rows = rows_with_role(group.device, CONDUCTANCE)
        z = rng.standard_normal((len(rows), group.num_edges))
        p = group.params.copy()
        if rows:
            p[rows] = p[rows] * np.exp(sigma_g * z)
        params.append(p)
    capacitance = net.capacitance * np.exp(sigma_c * rng.standard_normal(net.num_nodes))
    return net.with_parameters(params, capacitance=capacitance)


# ---------------------------------------------------------------- noise
def with_ktc_noise(net, X, rng, *, temperature: float = ROOM_TEMPERATURE_K,
                   scale: PhysicalScale | None = None) -> tuple[KirchhoffNet, np.ndarray]:
    """``net`` driven on every node, and initial voltages with kT/C noise on each.

    Every capacitor keeps kT/C noise when its reset switch opens, not just the input
    ones, so the returned net takes all ``N`` nodes as inputs.

    Parameters
    ----------
    net : KirchhoffNet
    X : ndarray, shape (B, d)
        Inputs (normalised volts) as ``net`` takes them.
    rng : numpy.random.Generator
        One ``(B, N)`` block of standard-normal draws.
    temperature : float
        Kelvin.
    scale : PhysicalScale, optional
        ``C0`` and ``V0`` of the noise (default :meth:`PhysicalScale.default`).

    Returns
    -------
    net : KirchhoffNet
        ``net`` with input nodes ``1..N``.
    inputs : ndarray, shape (B, N)
        Its noisy initial voltages (normalised).
    """
    initial = net.initial_state(X)[1:].T
    sigma = ktc_noise_sigma(net.capacitance, temperature, scale)
    inputs = initial + sigma * rng.standard_normal(initial.shape)
    return net.with_parameters(input_nodes=np.arange(1, net.num_nodes + 1)), inputs


def with_readout_noise(readout: np.ndarray, sigma: float, rng) -> np.ndarray:
    """``readout`` plus Gaussian noise of standard deviation ``sigma`` (none drawn at 0)."""
    return readout + sigma * rng.standard_normal(readout.shape) if sigma > 0 else readout
