r"""Training against a technology profile: nets that can be built.

A trained net is buildable on a :class:`~kirchhoff_sim.technology.TechnologyProfile` when
its programmed parameters are realisable (every conductance-like parameter exactly 0 — no
device — or inside the conductance window, on the programming grid), its node voltages
stay within the rails along the whole trajectory, and it keeps its accuracy under the
technology's mismatch and noise. DESIGN.md §8: these constraints belong to training, not
to clean-up afterwards. :class:`HardwareConstraints` puts each one into the training step.

**Bounded reparametrisation.** The optimiser sees a latent ``u`` per programmable
parameter, never the parameter itself:

.. math::

    \theta = \theta_{\max}\tanh(u), \qquad
    \frac{\partial\theta}{\partial u} = \theta_{\max}\,(1 - \tanh^2 u)

with ``θ_max = g_max/G0`` for conductance-like parameters and ``θ_max = min(|rail|)/V0``
for offsets (a shift or bias is a voltage). The bound holds whatever the optimiser does.

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

from ..checks import as_int, as_real
from ..devices import BIAS, CONDUCTANCE, parameter_roles
from ..errors import InputError
from ..technology import TechnologyProfile, default_profile
from ..units import ktc_noise_sigma

__all__ = ["HardwareConstraints", "choose_voltage_unit", "rail_running_cost", "NOISE_STREAMS"]

#: child streams of a step's generator, one per noise source (switching one off does not
#: change the draws of another)
NOISE_STREAMS = {"mismatch": 0, "ktc": 1}
_ARTANH_LIMIT = 1.0 - 1e-12          # a parameter at its bound maps to a finite latent


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

    # ------------------------------------------------------------------ the reparametrisation
    def latent_from_params(self, net) -> list:
        """Latents ``u`` that give the net's current parameters, one array per group
        (``u = artanh(θ/θ_max)``, a parameter at or past its bound to the bound)."""
        latents = []
        for group in net.groups:
            bound = self._bounds(group.device)[:, None]
            bounded = bound > 0
            ratio = np.clip(np.divide(group.params, bound, out=np.zeros_like(group.params), where=bounded),
                            -_ARTANH_LIMIT, _ARTANH_LIMIT)
            latents.append(np.where(bounded, np.arctanh(ratio), group.params))
        return latents

    def params_from_latent(self, net, latents) -> tuple[list, list]:
        """``(θ, ∂θ/∂u)`` per group: bounded parameters and their elementwise derivative."""
        params, slopes = [], []
        for group, u in zip(net.groups, latents):
            bound = self._bounds(group.device)[:, None]
            t = np.tanh(u)
            bounded = bound > 0
            params.append(np.where(bounded, bound * t, u))
            slopes.append(np.where(bounded, bound * (1.0 - t * t), 1.0))
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
