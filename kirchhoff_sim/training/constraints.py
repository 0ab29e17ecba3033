r"""Training against a technology profile: nets that can be built.

A trained net is buildable on a :class:`~kirchhoff_sim.technology.TechnologyProfile` when
its programmed parameters are realisable (every conductance-like parameter exactly 0 — no
device — or inside the conductance window, on the programming grid), its node voltages
stay within the rails along the whole trajectory, and it keeps its accuracy under the
technology's mismatch and noise. DESIGN.md §8: these constraints belong to training, not
to clean-up afterwards. :class:`HardwareConstraints` puts each one into the training step.

**Bounded reparametrisation.** The optimiser sees a latent ``u`` per programmable
parameter, never the parameter itself. Two maps (``reparametrisation``):

* ``"tanh"`` (the default)

  .. math::

      \theta = \theta_{\max}\tanh(u), \qquad
      \frac{\partial\theta}{\partial u} = \theta_{\max}\,(1 - \tanh^2 u)

  with ``θ_max = g_max/G0`` for conductance-like parameters and ``θ_max = min(|rail|)/V0``
  for offsets (a shift or bias is a voltage). The bound holds whatever the optimiser does.
  Its on/off is the projection's dead zone ``|θ| < g_min/2``, i.e. ``|u| < g_min/(2 g_max)``
  (0.005 on the default profile): an Adam step (of about the learning rate whatever the
  gradient) crosses it, so nearly every device switches on within a few steps.

* ``"log_window"`` — a real on/off and a multiplicative magnitude across the window:

  .. math::

      \theta = \operatorname{sign}(u)\, g_{\min}\, e^{\,r\tanh(s/r)}, \quad
      s = |u| - d \ge 0,\ r = \ln(g_{\max}/g_{\min}); \qquad \theta = 0 \ \text{for}\ |u| < d

  (:func:`log_window`). A device is *off* while its latent is in the dead zone
  ``|u| < d`` (``dead_zone``, latent units: crossing it takes ``d/lr`` Adam steps of one
  sign, not one or two), and on it lies in ``[g_min, g_max)`` whatever the optimiser does.
  An on latent's step moves ``ln|θ|`` by at most the step — a *relative* change, the same
  at 1 µS as at 100 µS, which is what programming and mismatch (log-normal) are. In the
  dead zone the slope is the straight-through secant ``g_min/d``, so the data's gradient
  can switch a device on; a sign change passes through off. Offsets are
  ``θ = b·tanh(u/b)`` (``b`` the nearer rail): bounded, with slope 1 at 0, so a latent step
  moves an offset by about the step in normalised volts instead of ``b`` times it.

``gain_sign="positive"`` holds conductance-like parameters ``≥ 0`` (a negative latent is
off): a ShiftedReLU with ``g ≥ 0`` has a non-negative slope (monotone, though with an
offset it still carries current at zero bias); ``"auto"`` (the default) does so when the profile builds passive families only (a passive
technology cannot realise a negative conductance), and for a passive family on a profile
with a cell library (``pdk`` not "none": its resistor cell cannot be negative either). ``init="on"`` (``log_window``) starts
every conductance-like parameter on, near ``init_gain`` (default the floor of the window),
with the sign of the net's initial parameter: the kaiming initial gains lie far below
``g_min``, so otherwise every device starts off and the net's output starts independent of
its input.

**Physical parameters** (a diode's ``i_s``, ``r_s``) are left as they are, except where the
device is a cell model with a realisable window (:meth:`~kirchhoff_sim.devices.Device.parameter_window`:
the sky130 diode cell's ``i_s``, :func:`kirchhoff_sim.cells.diode_device`): there
:func:`bounded_log` keeps it inside the window with multiplicative steps.

**Realisable projection (quantisation-aware training).** The forward pass uses
:math:`P(\theta)`, the nearest realisable value: for a conductance, magnitudes
``k·Δ`` on the profile's programming grid ``Δ = g_max / 2^bits`` with ``k·Δ ≥ g_min``,
or 0 — a device is *off* when ``|θ| < g_min/2`` (a learned on/off: ``u`` moves freely
through the dead zone). Offsets are rounded to ``2^bits`` levels over ``[−θ_max, θ_max]``.
The rounding's gradient is the identity (the straight-through estimator, Bengio et al.
2013, as quantisation-aware training does), so ``∂L/∂u = ∂L/∂P · ∂θ/∂u``; every other
factor of the chain is exact and checked against finite differences in the tests.

**Mismatch and noise in the forward pass.** With ``mismatch_sigma = σ`` each step
multiplies every conductance-like parameter by its own ``exp(σ z)``, ``z ~ N(0, 1)``
(the log-normal mismatch of :func:`~kirchhoff_sim.hardware.perturbation.perturb`), and
``ktc`` adds kT/C noise ``σ_v = sqrt(kT/(C0 C_n))/V0`` to every node's initial voltage.
The draws come from ``np.random.default_rng([seed, epoch, batch, stream])``, so a resumed
run draws exactly what the uninterrupted run drew. The gradient is taken through the
noisy parameters exactly (``∂θ_noisy/∂θ = exp(σz)``).

**Rails as a running cost.** ``rail_weight > 0`` adds

.. math::

    J = w \sum_k c_k \sum_{n,b} \bigl[\mathrm{relu}(v_{n,b,k} - r_+)^2 + \mathrm{relu}(r_- - v_{n,b,k})^2\bigr] / B

over the accepted step states ``v_k`` of the forward run (trapezoid weights ``c_k`` of the
step grid; ``r_±`` the rails in normalised volts times ``rail_margin``) — a penalty on the
whole trajectory, not only the read-out. Its gradient enters the discrete adjoint at every
step state (:func:`~kirchhoff_sim.sensitivity.gradient`'s ``running_cost``).

**Choosing V0.** A net whose every device is positively homogeneous
(:attr:`~kirchhoff_sim.devices.Device.positively_homogeneous`: conductances, shifted
(leaky) ReLUs, affine/difference devices with relu or identity) behaves the same at any
voltage unit: its waveform scales with ``V0``. :func:`choose_voltage_unit` then picks the
largest ``V0 ≤`` the profile's that keeps every node within the rails and every device
under the current limit, with a stated margin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..checks import as_choice, as_int, as_real
from ..devices import BIAS, CONDUCTANCE, PHYSICAL, parameter_roles
from ..errors import InputError
from ..technology import FAMILY_SETS, TechnologyProfile, default_profile
from ..units import ktc_noise_sigma

__all__ = ["HardwareConstraints", "choose_voltage_unit", "rail_running_cost", "log_window", "log_window_inverse",
           "NOISE_STREAMS", "REPARAMETRISATIONS", "RECOMMENDED"]

#: child streams of a step's generator, one per noise source (switching one off does not
#: change the draws of another)
NOISE_STREAMS = {"mismatch": 0, "ktc": 1}
_ARTANH_LIMIT = 1.0 - 1e-12          # a parameter at its bound maps to a finite latent
#: the maps from latent to parameter (module docstring)
REPARAMETRISATIONS = ("tanh", "log_window")
GAIN_SIGNS = ("any", "positive", "auto")   # sign of conductance-like parameters
INITS = ("params", "on")              # where the latents start (log_window)
#: the HardwareConstraints options the task presets and the estimators train with against a
#: profile (README "Nets that can be built"): log-magnitude latents with a real off zone,
#: every device starting on, 10 % mismatch injected each step
RECOMMENDED = {"reparametrisation": "log_window", "init": "on", "dead_zone": 0.5, "mismatch_sigma": 0.1}


@dataclass(frozen=True)
class HardwareConstraints:
    """How a net is held to a technology profile during training.

    Parameters
    ----------
    profile : TechnologyProfile
        The target technology (default :func:`~kirchhoff_sim.technology.default_profile`).
    quantise : bool
        Train on the realisable (projected, quantised) parameters (default True).
    mismatch_sigma : float
        Log-normal σ of the per-step mismatch noise on conductance-like parameters.
    ktc : bool
        Add kT/C noise to every node's initial voltage each step.
    rail_weight : float
        Weight ``w`` of the rail running cost (0 switches it off).
    rail_margin : float
        Fraction of the rails the trajectory may use (the running cost starts there; the
        V0 choice keeps this margin too).
    sparsity : float
        Weight of an L1 penalty ``sparsity · Σ|θ|`` on the conductance-like parameters,
        which turns unneeded devices off.
    reparametrisation : {"tanh", "log_window"}
        The map from latents to parameters (module docstring).
    dead_zone : float
        ``d`` of ``log_window``: the latents ``|u| < d`` of an off device.
    gain_sign : {"any", "positive", "auto"}
        Sign of the conductance-like parameters: either, ``≥ 0``, or (the default) ``≥ 0``
        exactly when the profile builds only passive families, which cannot realise a
        negative conductance.
    init : {"params", "on"}
        Training starts from the net's parameters, or (``log_window``) with every device
        on (:meth:`initial_latents`).
    init_gain : float, optional
        Normalised conductance the devices start at under ``init="on"``, in
        ``[g_min, g_max)`` (default ``g_min``).

    Raises
    ------
    InputError
        A field of the wrong type or out of range.
    """

    profile: TechnologyProfile = None
    quantise: bool = True
    mismatch_sigma: float = 0.0
    ktc: bool = False
    rail_weight: float = 0.0
    rail_margin: float = 0.9
    sparsity: float = 0.0
    reparametrisation: str = "tanh"
    dead_zone: float = 0.5
    gain_sign: str = "auto"
    init: str = "params"
    init_gain: float | None = None

    def __post_init__(self):
        profile = default_profile() if self.profile is None else self.profile
        if not isinstance(profile, TechnologyProfile):
            raise InputError(f"HardwareConstraints.profile must be a TechnologyProfile, got {profile!r}")
        object.__setattr__(self, "profile", profile)
        for name in ("quantise", "ktc"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputError(f"HardwareConstraints.{name} must be True or False, got {getattr(self, name)!r}")
        object.__setattr__(self, "mismatch_sigma", as_real(self.mismatch_sigma, "HardwareConstraints.mismatch_sigma",
                                                           minimum=0.0, maximum=1.0))
        object.__setattr__(self, "rail_weight", as_real(self.rail_weight, "HardwareConstraints.rail_weight", minimum=0.0))
        object.__setattr__(self, "sparsity", as_real(self.sparsity, "HardwareConstraints.sparsity", minimum=0.0))
        object.__setattr__(self, "rail_margin", as_real(self.rail_margin, "HardwareConstraints.rail_margin",
                                                        minimum=0.0, maximum=1.0, exclusive_minimum=True))
        as_choice(self.reparametrisation, "HardwareConstraints.reparametrisation", REPARAMETRISATIONS)
        as_choice(self.gain_sign, "HardwareConstraints.gain_sign", GAIN_SIGNS)
        as_choice(self.init, "HardwareConstraints.init", INITS)
        object.__setattr__(self, "dead_zone", as_real(self.dead_zone, "HardwareConstraints.dead_zone",
                                                      minimum=0.0, exclusive_minimum=True))
        if self.reparametrisation == "tanh" and self.init != "params":
            raise InputError("HardwareConstraints: init='on' needs reparametrisation='log_window' (the tanh "
                             "map has no off zone to start from)")
        if self.init_gain is not None and self.init != "on":
            raise InputError(f"HardwareConstraints.init_gain={self.init_gain!r} is where init='on' starts the "
                             f"devices; with init={self.init!r} it would be ignored")
        if self.init_gain is not None:
            gain = as_real(self.init_gain, "HardwareConstraints.init_gain", minimum=self.conductance_floor,
                           maximum=self.conductance_bound)
            # the map's upper bound is open: a gain at it (to rounding, g_max/G0 is 100 only to
            # within an ulp) has an infinite latent
            if gain >= self.conductance_bound * (1.0 - 1e-9):
                raise InputError(f"HardwareConstraints.init_gain must be below g_max/G0 = {self.conductance_bound:g} "
                                 f"(the map's upper bound is open), got {gain!r}")
            object.__setattr__(self, "init_gain", gain)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """JSON form (stored in the training config of a checkpoint)."""
        out = {k: v for k, v in asdict(self).items() if k != "profile"}
        return {**out, "profile": self.profile.to_dict()}

    @classmethod
    def from_dict(cls, data) -> "HardwareConstraints":
        if not isinstance(data, dict) or "profile" not in data:
            raise InputError(f"hardware constraints must be a dict with a 'profile', got {data!r:.80}")
        fields = dict(data)
        fields["profile"] = TechnologyProfile.from_dict(fields["profile"], where="constraints profile")
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"hardware constraints have unknown fields {sorted(unknown)}")
        return cls(**fields)

    # ------------------------------------------------------------------ bounds
    @property
    def conductance_bound(self) -> float:
        """``θ_max`` of conductance-like parameters: ``g_max / G0`` (normalised)."""
        return self.profile.conductance_max_s / self.profile.scale.G0

    @property
    def conductance_floor(self) -> float:
        """Smallest non-zero conductance ``g_min / G0`` (normalised)."""
        return self.profile.conductance_min_s / self.profile.scale.G0

    @property
    def conductance_step(self) -> float:
        """Programming grid of conductances, ``g_max / 2^bits / G0`` (normalised)."""
        return self.profile.precision_floor_s / self.profile.scale.G0

    @property
    def offset_bound(self) -> float:
        """``θ_max`` of offsets: the nearer rail in normalised volts."""
        return min(self.profile.rail_high_v, -self.profile.rail_low_v) / self.profile.scale.V0

    def rails(self) -> tuple[float, float]:
        """``(r_−, r_+)``: the rails times the margin, in normalised volts."""
        V0 = self.profile.scale.V0
        return self.rail_margin * self.profile.rail_low_v / V0, self.rail_margin * self.profile.rail_high_v / V0

    def _bounds(self, device) -> np.ndarray:
        """Per parameter row of ``device``: ``θ_max`` (conductance or offset) or 0 (a
        physical parameter, left as it is)."""
        roles = parameter_roles(device)
        return np.array([self.conductance_bound if roles[name] == CONDUCTANCE else
                         self.offset_bound if roles[name] == BIAS else 0.0
                         for name in device.param_names])

    def check_net(self, net) -> None:
        """Raise :class:`~kirchhoff_sim.errors.InputError` unless the profile can build
        every device family of ``net`` (the edges are named)."""
        self.profile.check_families(net)

    @property
    def signed(self) -> bool:
        """Whether conductance-like parameters may be negative: ``gain_sign="any"``, or
        ``"auto"`` on a profile that builds an active family (a passive technology cannot
        realise a negative conductance: a negative slope needs an active cell)."""
        if self.gain_sign == "auto":
            return not set(self.profile.device_families) <= set(FAMILY_SETS["passive"])
        return self.gain_sign == "any"

    def signed_for(self, device) -> bool:
        """:attr:`signed` for the groups of ``device``: under ``"auto"`` a passive family
        on a profile with a cell library is unsigned whatever else the profile builds
        (its cell, a resistor, cannot realise a negative conductance; a negative slope
        there is a different family, an active cell)."""
        if self.gain_sign == "auto" and device.passive and self.profile.pdk != "none":
            return False
        return self.signed

    # ------------------------------------------------------------------ the reparametrisation
    def _rows(self, device) -> tuple[np.ndarray, np.ndarray]:
        """Per parameter row of ``device``: is it conductance-like, is it an offset."""
        roles = parameter_roles(device)
        return (np.array([roles[name] == CONDUCTANCE for name in device.param_names])[:, None],
                np.array([roles[name] == BIAS for name in device.param_names])[:, None])

    def latent_from_params(self, net) -> list:
        """Latents ``u`` that give the net's current parameters, one array per group.

        ``tanh``: ``u = artanh(θ/θ_max)`` (a parameter at or past its bound to the bound).
        ``log_window``: the inverse of :func:`log_window` for a conductance inside the
        window; one below the floor is *off* and goes to the dead zone in proportion
        (``u = d·θ/g_min``); offsets ``u = b·artanh(θ/b)``.
        """
        latents = []
        for group in net.groups:
            p = group.params
            if self.reparametrisation == "tanh":
                bound = self._bounds(group.device)[:, None]
                bounded = bound > 0
                ratio = np.clip(np.divide(p, bound, out=np.zeros_like(p), where=bounded),
                                -_ARTANH_LIMIT, _ARTANH_LIMIT)
                latents.append(_window_latents(group.device, p, np.where(bounded, np.arctanh(ratio), p)))
                continue
            conductance, offset = self._rows(group.device)
            b = self.offset_bound
            u_offset = b * np.arctanh(np.clip(p / b, -_ARTANH_LIMIT, _ARTANH_LIMIT))
            u_conductance = log_window_inverse(p, self.conductance_floor, self.conductance_bound, self.dead_zone,
                                               signed=self.signed_for(group.device))
            latents.append(_window_latents(group.device, p,
                                           np.where(conductance, u_conductance, np.where(offset, u_offset, p))))
        return latents

    def initial_latents(self, net) -> list:
        """Where training starts: :meth:`latent_from_params` of the net's parameters
        (``init="params"``), or with every conductance-like parameter switched *on*
        (``init="on"``) at the latent ``u = u₀ + (d/4)·|θ₀|/rms θ₀`` (by :func:`log_window`,
        ``|θ| ≈ g₀·e^{(d/4)·|θ₀|/rms θ₀}`` near the floor): ``u₀`` the latent of ``g₀ =
        init_gain`` (default the floor ``g_min``, ``u₀ = d``), with the sign of the net's
        initial parameter ``θ₀`` (positive unless :attr:`signed`) and its spread, so that
        the devices start unequal. Offsets start where the net has them."""
        latents = self.latent_from_params(net)
        if self.init == "params":
            return latents
        floor, ceiling = self.conductance_floor, self.conductance_bound
        start = self.dead_zone
        if self.init_gain is not None:
            start = float(log_window_inverse(np.array(self.init_gain), floor, ceiling, self.dead_zone))
        out = []
        for group, u in zip(net.groups, latents):
            conductance, _ = self._rows(group.device)
            p = group.params
            rms = np.sqrt(np.mean(p * p, axis=1, keepdims=True))
            spread = np.divide(np.abs(p), rms, out=np.zeros_like(p), where=rms > 0)
            sign = np.where(p < 0, -1.0, 1.0) if self.signed_for(group.device) else 1.0
            out.append(np.where(conductance, sign * (start + 0.25 * self.dead_zone * spread), u))
        return out

    def params_from_latent(self, net, latents) -> tuple[list, list]:
        """``(θ, ∂θ/∂u)`` per group: bounded parameters and their elementwise derivative
        (in the off zone of ``log_window`` the straight-through slope ``g_min/d``)."""
        params, slopes = [], []
        for group, u in zip(net.groups, latents):
            if self.reparametrisation == "tanh":
                bound = self._bounds(group.device)[:, None]
                conductance, _ = self._rows(group.device)
                # unsigned: a conductance's latent below 0 is off, with the slope at 0 (straight-through)
                t = np.tanh(u if self.signed_for(group.device) else np.where(conductance, np.maximum(u, 0.0), u))
                bounded = bound > 0
                _append_windowed(group.device, u, np.where(bounded, bound * t, u),
                                 np.where(bounded, bound * (1.0 - t * t), 1.0), params, slopes)
                continue
            conductance, offset = self._rows(group.device)
            b = self.offset_bound
            t = np.tanh(u / b)
            g, dg = log_window(u, self.conductance_floor, self.conductance_bound, self.dead_zone,
                               signed=self.signed_for(group.device))
            _append_windowed(group.device, u, np.where(conductance, g, np.where(offset, b * t, u)),
                             np.where(conductance, dg, np.where(offset, 1.0 - t * t, 1.0)), params, slopes)
        return params, slopes

    def realisable(self, net, params) -> list:
        """``P(θ)``: each group's parameters moved to the nearest realisable value
        (conductances on the programming grid or 0, offsets on ``2^bits`` levels); with
        ``quantise=False`` the parameters as they are."""
        if not self.quantise:
            return [np.array(p) for p in params]
        out = []
        bits = self.profile.precision_bits
        step = self.conductance_step
        k_min = math.ceil(self.conductance_floor / step - 1e-9)
        k_max = 2 ** bits
        for group, p in zip(net.groups, params):
            roles = parameter_roles(group.device)
            q = np.array(p, dtype=float)
            for k, name in enumerate(group.device.param_names):
                if roles[name] == CONDUCTANCE:
                    magnitude = np.abs(q[k])
                    code = np.clip(np.rint(magnitude / step), 0, k_max)
                    code = np.where(code < k_min, np.where(magnitude < 0.5 * self.conductance_floor, 0, k_min), code)
                    q[k] = np.sign(q[k]) * code * step
                elif roles[name] == BIAS:
                    half = 2 ** (bits - 1)
                    level = self.offset_bound / half
                    q[k] = np.clip(np.rint(q[k] / level), -half, half) * level
            out.append(q)
        return out

    # ------------------------------------------------------------------ noise of one step
    def step_generator(self, seed: int, epoch: int, batch: int, stream: str) -> np.random.Generator:
        """The generator of one noise source for one training step."""
        return np.random.default_rng([as_int(seed, "seed", minimum=0), epoch, batch, NOISE_STREAMS[stream]])

    def mismatch_factors(self, net, rng) -> list:
        """Per group, ``exp(σ z)`` on conductance-like rows and 1 elsewhere, ``(n_params, E_g)``."""
        factors = []
        for group in net.groups:
            roles = parameter_roles(group.device)
            rows = np.array([roles[name] == CONDUCTANCE for name in group.device.param_names])[:, None]
            z = rng.standard_normal(group.params.shape)
            factors.append(np.where(rows, np.exp(self.mismatch_sigma * z), 1.0))
        return factors

    def initial_noise(self, net, rng, batch: int) -> np.ndarray:
        """kT/C noise on every node's initial voltage, ``(batch, N)`` normalised volts."""
        sigma = ktc_noise_sigma(net.capacitance, self.profile.temperature_k, self.profile.scale)
        return rng.standard_normal((batch, net.num_nodes)) * sigma

    # ------------------------------------------------------------------ penalties
    def sparsity_penalty(self, net, params) -> tuple[float, list]:
        """``(sparsity · Σ|θ_g|, its gradient per group)`` over conductance-like rows."""
        value, grads = 0.0, []
        for group, p in zip(net.groups, params):
            roles = parameter_roles(group.device)
            rows = np.array([roles[name] == CONDUCTANCE for name in group.device.param_names])[:, None]
            value += float(self.sparsity * np.abs(p[rows[:, 0]]).sum())
            grads.append(np.where(rows, self.sparsity * np.sign(p), 0.0))
        return value, grads

    def running_cost(self, batch: int):
        """The rail running cost of :func:`rail_running_cost` with this profile's rails,
        or None when ``rail_weight`` is 0."""
        if self.rail_weight == 0:
            return None
        low, high = self.rails()
        return rail_running_cost(low, high, self.rail_weight / batch)


def _window_log_ratio(floor, ceiling, dead_zone) -> float:
    """``r = ln(ceiling/floor)`` of a window ``0 < floor < ceiling`` and a dead zone ``d > 0``
    (InputError names a bad one)."""
    floor = as_real(floor, "log_window floor", minimum=0.0, exclusive_minimum=True)
    ceiling = as_real(ceiling, "log_window ceiling", minimum=0.0, exclusive_minimum=True)
    as_real(dead_zone, "log_window dead_zone", minimum=0.0, exclusive_minimum=True)
    if not floor < ceiling:
        raise InputError(f"log_window: the window's floor {floor!r} must be below its ceiling {ceiling!r}")
    return math.log(ceiling / floor)


def _windows(device) -> list:
    """``[(row, low, high)]``: the physical parameters of ``device`` with a window
    (:meth:`~kirchhoff_sim.devices.Device.parameter_window`, a diode cell's ``i_s``)."""
    return [(k, *window) for k, name in enumerate(device.param_names)
            if parameter_roles(device)[name] == PHYSICAL and (window := device.parameter_window(name)) is not None]


def bounded_log(u, low: float, high: float):
    r"""A physical parameter held inside its window ``(low, high)``, and its slope:

    .. math::

        \theta = \sqrt{\text{low}\cdot\text{high}}\; e^{(r/2)\tanh u}, \quad
        r = \ln(\text{high}/\text{low}), \qquad
        \frac{\partial\theta}{\partial u} = \theta\,\frac{r}{2}\,(1 - \tanh^2 u)

    A latent step moves ``ln θ`` by at most ``r/2`` times the step — a relative change, as
    a saturation current wants (its effect is exponential in the voltage, so an additive
    Adam step of ``lr`` on ``i_s ≈ 10⁻⁵`` would multiply it a thousandfold)."""
    t = np.tanh(u)
    half = 0.5 * math.log(high / low)
    theta = math.sqrt(low * high) * np.exp(half * t)
    return theta, theta * half * (1.0 - t * t)


def bounded_log_inverse(theta, low: float, high: float):
    """The latent of :func:`bounded_log` (a value at or beyond the window to its edge)."""
    half = 0.5 * math.log(high / low)
    ratio = np.log(np.maximum(theta, 1e-300) / math.sqrt(low * high)) / half
    return np.arctanh(np.clip(ratio, -_ARTANH_LIMIT, _ARTANH_LIMIT))


def _window_latents(device, p, latents):
    for row, low, high in _windows(device):
        latents = latents.copy()
        latents[row] = 0.0 if low == high else bounded_log_inverse(p[row], low, high)
    return latents


def _append_windowed(device, u, theta, slope, params, slopes):
    """Append ``θ``, ``∂θ/∂u`` of a group with its windowed rows replaced: inside the window
    by :func:`bounded_log`, a window of one value (``low == high``: a parameter the cell
    does not have, such as the diode cell's series resistance) held there, slope 0."""
    for row, low, high in _windows(device):
        theta, slope = theta.copy(), slope.copy()
        if low == high:
            theta[row], slope[row] = low, 0.0
        else:
            theta[row], slope[row] = bounded_log(u[row], low, high)
    params.append(theta)
    slopes.append(slope)


def log_window(u, floor: float, ceiling: float, dead_zone: float, signed: bool = True):
    r"""The ``log_window`` map of a conductance-like latent and its (straight-through) slope.

    .. math::

        \theta = \operatorname{sign}(u)\, g_{\min}\, e^{\,r \tanh(s/r)}, \quad
        s = |u| - d \ge 0, \quad r = \ln(g_{\max}/g_{\min}); \qquad \theta = 0 \ \text{for } |u| < d

    Parameters
    ----------
    u : ndarray
        Latents.
    floor, ceiling : float
        ``g_min`` and ``g_max`` (normalised), ``0 < floor < ceiling``.
    dead_zone : float
        ``d``: the latents of an *off* device.
    signed : bool
        False: only ``u ≥ d`` is on (a non-negative conductance); every ``u < d`` is off.

    Returns
    -------
    (ndarray, ndarray)
        ``θ`` and ``∂θ/∂u``: exact where the device is on (``|θ|·(1 − tanh²(s/r))``, a
        relative step of at most ``Δu`` per latent step), and in the off zone the secant
        ``g_min/d`` — the straight-through slope that lets a device switch on.
    """
    r = _window_log_ratio(floor, ceiling, dead_zone)
    s = (np.abs(u) if signed else u) - dead_zone
    on = s >= 0
    t = np.tanh(np.maximum(s, 0.0) / r)
    magnitude = floor * np.exp(r * t)
    sign = np.where(u < 0, -1.0, 1.0) if signed else 1.0
    return np.where(on, sign * magnitude, 0.0), np.where(on, magnitude * (1.0 - t * t), floor / dead_zone)


def log_window_inverse(theta, floor: float, ceiling: float, dead_zone: float, signed: bool = True):
    """Latents that :func:`log_window` maps to ``theta``: inside the window its inverse (a
    value past ``g_max`` to just below it); below ``g_min`` the dead zone in proportion,
    ``u = d·θ/g_min`` (off, on the line of the straight-through slope); with
    ``signed=False`` a negative value is off too."""
    r = _window_log_ratio(floor, ceiling, dead_zone)
    magnitude = np.abs(theta) if signed else np.asarray(theta, dtype=float)
    on = magnitude >= floor
    ratio = np.log(np.maximum(magnitude, floor) / floor) / r
    s = r * np.arctanh(np.clip(ratio, 0.0, _ARTANH_LIMIT))
    sign = np.where(np.asarray(theta) < 0, -1.0, 1.0) if signed else 1.0
    return np.where(on, sign * (dead_zone + s), dead_zone * np.asarray(theta) / floor)


def rail_running_cost(low: float, high: float, weight: float):
    """``φ(V) = weight · Σ [relu(v − high)² + relu(low − v)²]`` over nodes and samples.

    Returns
    -------
    callable
        ``cost(V) -> (value, dφ/dV)`` for node voltages ``V`` ``(N+1, B)`` (row 0 is
        ground, which never leaves the rails).
    """
    def cost(V):
        over = np.maximum(V - high, 0.0)
        under = np.maximum(low - V, 0.0)
        return float(weight * (np.sum(over * over) + np.sum(under * under))), 2.0 * weight * (over - under)
    return cost


def choose_voltage_unit(net, trajectory_max_voltage: float, max_current: float,
                        profile: TechnologyProfile, margin: float = 0.9) -> tuple[float, str]:
    """The voltage unit ``V0`` at which a positively homogeneous net fits the profile.

    Parameters
    ----------
    net : KirchhoffNet
    trajectory_max_voltage : float
        ``max |v|`` over nodes, samples and time (normalised volts).
    max_current : float
        ``max |i|`` over devices, samples and time (normalised current).
    profile : TechnologyProfile
    margin : float
        Fraction of the rails and of the current limit to use.

    Returns
    -------
    (float, str)
        ``V0`` in volts — the profile's own when it already fits, never larger — and a
        sentence saying why.

    Raises
    ------
    InputError
        The net has a device family that is not positively homogeneous (its behaviour
        depends on ``V0``), so ``V0`` cannot be chosen after training.
    """
    families = sorted({type(g.device).__name__ for g in net.groups if not g.device.positively_homogeneous})
    if families:
        raise InputError(f"V0 cannot be chosen after training: {families} are not positively homogeneous "
                         f"(their current is not proportional to the voltage scale); hold the rails in "
                         f"training instead (rail_weight > 0)")
    scale = profile.scale
    rail = min(profile.rail_high_v, -profile.rail_low_v)
    limits = {"the rails": margin * rail / max(trajectory_max_voltage, 1e-300),
              "the current limit": margin * profile.current_limit_a / max(scale.G0 * max_current, 1e-300)}
    binding = min(limits, key=limits.get)
    v0 = min(scale.V0, limits[binding])
    if v0 == scale.V0:
        return v0, f"the profile's V0 = {scale.V0:g} V already keeps the net within the rails and the current limit"
    return v0, (f"V0 = {v0:.4g} V (profile {scale.V0:g} V): the largest that keeps the net within {binding} "
                f"with a {margin:.0%} margin (max |v| = {trajectory_max_voltage:.4g}, max |i| = {max_current:.4g} "
                f"normalised); every device is positively homogeneous, so the waveform only scales")
