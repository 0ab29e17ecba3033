"""Device library: the two-terminal devices that sit on a KirchhoffNet's edges.

A device is a small declarative unit. It knows its current ``i(vs, vd; p)`` — flowing
from the edge's source node to its destination node (DESIGN.md §1) — its partial
derivatives, its parameter names and its SPICE form. It does **not** know about edges,
incidence or signs: the assembler (:mod:`kirchhoff_sim.assembly`) gathers ``vs`` and
``vd``, calls the device, and scatters ``±i`` into the nodes.

Shapes: ``vs`` and ``vd`` are ``(E, B)`` (edges × batch); ``p`` is ``(n_params, E, 1)``
so that ``p[k]`` broadcasts against ``(E, B)``. Everything is vectorised over both axes.

Families (``vs``, ``vd`` source and destination voltages, ``p`` the edge's parameters):

==========================  =========================================  ======
class                       current                                    params
==========================  =========================================  ======
Conductance                 ``p0·(vs−vd)``                              g
ShiftedReLU                 ``p1·relu((vs−vd) − p0)``                  shift, gain
ShiftedLeakyReLU            ``p1·leaky_relu((vs−vd) − p0)``            shift, gain
DifferenceActivation(act)   ``act(p1·(vs−vd) + p0)``                   bias, gain
AffineActivation(act)       ``act(p0·vs + p1·vd + p2)``                w_src, w_dst, bias
Diode                       Shockley with series resistance (Lambert W) i_s, r_s
==========================  =========================================  ======

``act`` is one of :data:`ACTIVATIONS`: identity, relu, leaky_relu (slope 0.01), tanh,
softplus. The first five families are the reference implementation's (Gao et al.,
ICCAD'24); note that they are mostly *active* cells — see :attr:`Device.passive`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .checks import as_real_array
from .errors import DeviceError, ParameterError

LEAKY_SLOPE = 0.01  # torch.nn.functional.leaky_relu's default, as the reference uses


# ----------------------------------------------------------------------- activations
@dataclass(frozen=True)
class Activation:
    """A scalar nonlinearity with its derivatives and its ngspice B-source form.

    ``value(z)``, ``slope(z)`` (first derivative) and ``curvature(z)`` (second derivative)
    act elementwise; ``spice(z)`` turns an expression string into the activation's
    ngspice expression.
    """

    name: str

    def value(self, z):
        return _ACT_FUNCS[self.name][0](z)

    def slope(self, z):
        return _ACT_FUNCS[self.name][1](z)

    def curvature(self, z):
        return _ACT_FUNCS[self.name][2](z)

    def value_and_slope(self, z):
        """``(act(z), act'(z))``, sharing work where the two share it (tanh)."""
        if self.name == "tanh":
            a = np.tanh(z)
            return a, 1.0 - a * a
        return self.value(z), self.slope(z)

    def slope_and_curvature(self, z):
        """``(act'(z), act''(z))``, sharing work where the two share it (tanh, softplus)."""
        if self.name == "tanh":
            a = np.tanh(z)
            slope = 1.0 - a * a
            return slope, -2.0 * a * slope
        if self.name == "softplus":
            sigma, other = _sigmoid(z), _sigmoid(-z)
            return sigma, sigma * other
        return self.slope(z), self.curvature(z)

    def spice(self, z: str) -> str:
        return _ACT_SPICE[self.name].format(z=z)

    @property
    def positively_homogeneous(self) -> bool:
        """``act(αz) = α·act(z)`` for ``α > 0``: identity, relu, leaky relu."""
        return self.name in ("identity", "relu", "leaky_relu")


def _softplus(z):
    # log(1 + e^z) without overflow for large z; e^z underflowing to 0 is exact enough
    with np.errstate(under="ignore"):
        return np.logaddexp(0.0, z)


def _sigmoid(z):
    with np.errstate(under="ignore"):
        return special.expit(z)


_ACT_FUNCS = {
    "identity": (lambda z: z, lambda z: np.ones_like(z), lambda z: np.zeros_like(z)),
    "relu": (
        lambda z: np.maximum(z, 0.0),
        lambda z: (z > 0).astype(z.dtype),
        lambda z: np.zeros_like(z),
    ),
    "leaky_relu": (
        lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
        lambda z: np.where(z > 0, 1.0, LEAKY_SLOPE),
        lambda z: np.zeros_like(z),
    ),
    "tanh": (
        np.tanh,
        lambda z: 1.0 - np.tanh(z) ** 2,
        lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2),
    ),
    "softplus": (
        _softplus,
        _sigmoid,
        lambda z: _sigmoid(z) * _sigmoid(-z),
    ),
}

# ngspice B-source forms. relu is written with max(); ngspice's u() is the unit step.
_ACT_SPICE = {
    "identity": "({z})",
    "relu": "max({z},0)",
    "leaky_relu": f"max({{z}},{LEAKY_SLOPE}*({{z}}))",
    "tanh": "tanh({z})",
    # ngspice's exp() saturates at 1e99 (argument ≈ 228): the stable form keeps growing
    "softplus": "(max({z},0)+ln(1+exp(-abs({z}))))",
}

ACTIVATIONS = tuple(_ACT_FUNCS)


def activation(name: str) -> Activation:
    """Return the activation called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in _ACT_FUNCS:
        raise DeviceError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return Activation(name)


# ----------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class Linearisation:
    """A device's current and first derivatives at one operating point.

    Every array broadcasts to ``(E, B)``; ``di_dp`` is a tuple with one such array per
    parameter (a tuple, not a stacked array, to avoid copying), or None when it was not
    asked for.
    """

    current: np.ndarray
    di_dvs: np.ndarray
    di_dvd: np.ndarray
    di_dp: tuple | None


# ---------------------------------------------------------------- parameter roles
CONDUCTANCE = "conductance"   # a weight a chip realises as a conductance or transconductance
BIAS = "bias"                 # an offset (shift, bias current or voltage): programmable, not a conductance
PHYSICAL = "physical"         # a property of the device itself (a diode's i_s, r_s): not programmed
ROLES = (CONDUCTANCE, BIAS, PHYSICAL)
#: parameter initialisations of :meth:`Device.init_params`
INIT_SCHEMES = ("kaiming", "normal", "uniform", "ones", "zeros")
PROGRAMMABLE_ROLES = (CONDUCTANCE, BIAS)


def parameter_roles(device) -> dict:
    """``{parameter name: role}`` of ``device`` (its class's :attr:`Device.parameter_roles`).

    Mismatch scales the ``conductance`` parameters; quantisation rounds ``conductance``
    and ``bias`` ones and leaves ``physical`` ones alone; the feasibility report checks
    ``conductance`` ones against the technology's conductance window.

    Raises
    ------
    DeviceError
        The family declares no roles, or its roles do not name exactly its parameters.
    """
    family = type(device).__name__
    roles = getattr(device, "parameter_roles", None)
    if not roles:
        raise DeviceError(
            f"no parameter roles for device family {family}: give the class a parameter_roles "
            f"dict naming each parameter '{CONDUCTANCE}', '{BIAS}' or '{PHYSICAL}'")
    if set(roles) != set(device.param_names) or not set(roles.values()) <= set(ROLES):
        raise DeviceError(f"parameter roles of {family} {roles} do not match its parameters "
                          f"{device.param_names} or use an unknown role")
    return dict(roles)


def rows_with_role(device, *roles) -> list:
    """Rows of ``device``'s ``(n_params, E)`` parameter array whose role is in ``roles``."""
    declared = parameter_roles(device)
    return [k for k, name in enumerate(device.param_names) if declared[name] in roles]


class Device:
    """Base class of a two-terminal device family.

    Every family's current is a function of one per-edge *input*

        z = w_src·vs + w_dst·vd + bias          (:meth:`input_weights`)

    — the branch voltage ``vs − vd`` for most devices — through a :meth:`response`
    ``i = r(z; p)``. A family implements :meth:`response`, :meth:`response_linearise`
    (``r``, ``∂r/∂z`` and ``∂r/∂p`` at fixed z) and :meth:`spice_expression`; one whose
    input weights are parameters also overrides :meth:`input_weights` and
    :meth:`input_param_terms`. The chain rule through z (:meth:`linearise`) is done
    here once, and the assembler uses the same structure to evaluate and differentiate
    whole chunks of edges with one sparse product for the gather.
    """

    #: names of the per-edge parameters, in storage order
    param_names: tuple[str, ...] = ()
    #: role of each parameter (:data:`CONDUCTANCE`, :data:`BIAS` or :data:`PHYSICAL`)
    parameter_roles: dict = {}

    @property
    def positively_homogeneous(self) -> bool:
        """True when scaling every voltage and every :data:`BIAS` parameter by ``α > 0``
        scales the current by ``α``: ``i(αvs, αvd; αb) = α·i(vs, vd; b)``.

        A net of such devices behaves the same at any voltage unit ``V0`` (its waveform
        just scales), so ``V0`` can be chosen to fit the rails after training. Linear and
        piecewise-linear families are; tanh, softplus and the diode's exponential are not.
        """
        return False
    #: True when the device can only absorb power (a resistor, a diode); False for
    #: transconductor cells and current sources, which need a supply.
    passive: bool = False

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    # -- physics ------------------------------------------------------------------
    def input_weights(self, p):
        """``(w_src, w_dst, bias)`` of the device input, each broadcastable to ``(E, 1)``."""
        return 1.0, -1.0, 0.0

    def input_param_terms(self, vs, vd):
        """``∂z/∂p_k`` per parameter (None for a parameter z does not depend on), or None."""
        return None

    def response(self, z, p):
        """The current as a function of the device input ``z`` ``(E, B)``."""
        raise NotImplementedError

    def response_linearise(self, z, p, params: bool = True):
        """``(r, ∂r/∂z, ∂r/∂p)`` at fixed z; ``∂r/∂p`` is a tuple with one array (or None
        where it is zero) per parameter, or None when ``params`` is False."""
        raise NotImplementedError

    #: rows of the parameters that *are* the input weights ``(w_src, w_dst)`` (None where
    #: the weight is a constant): the Jacobian trace of a flow depends on them directly
    input_weight_rows: tuple = (None, None)

    def response_curvature(self, z, p):
        """``(s, ∂s/∂z, ∂s/∂p)`` of the slope ``s = ∂r/∂z`` at fixed z — the second
        derivatives a flow's log-density gradient needs (DESIGN.md §9): the Jacobian's
        trace is ``Σ_e s_e·κ_e``, so its adjoint differentiates ``s``. ``∂s/∂p`` is a tuple
        with one array (or None where it is zero) per parameter.

        Raises
        ------
        DeviceError
            A family that does not give its second derivatives.
        """
        raise DeviceError(f"{type(self).__name__} gives no second derivatives, which the "
                          f"log-density of a flow needs")

    def limit_input(self, z, z_previous, p):
        """The device input at which Newton's method linearises this device next.

        An implicit step's Newton iteration proposes node voltages and so a device input
        ``z`` ``(E, B)``; a device whose current is exponential in ``z`` returns a
        *limited* input instead, closer to ``z_previous`` (the input it was linearised at
        in the previous iteration, or None before the first iteration of a layer), as
        SPICE's devices limit their junction voltages. The Newton kernel then uses the
        device's tangent at the limited input (its companion model), so only the
        iteration changes, never the converged solution: an iteration in which any input
        was limited does not count as converged. The default is no limiting (identity).
        """
        return z

    def current(self, vs, vd, p):
        """Edge current from src to dst, ``(E, B)``."""
        w_src, w_dst, bias = self.input_weights(p)
        return self.response(w_src * vs + w_dst * vd + bias, p)

    def linearise(self, vs, vd, p, params: bool = True) -> Linearisation:
        """Current and its partial derivatives in ``vs``, ``vd`` (and ``p`` if ``params``)."""
        w_src, w_dst, bias = self.input_weights(p)
        z = w_src * vs + w_dst * vd + bias
        current, di_dz, direct = self.response_linearise(z, p, params)
        di_dp = None
        if params:
            terms = self.input_param_terms(vs, vd) or (None,) * self.n_params
            di_dp = tuple(_add(_add(np.zeros(z.shape), d), None if t is None else di_dz * t)
                          for d, t in zip(direct, terms))
        return Linearisation(current, w_src * di_dz, w_dst * di_dz, di_dp)

    def spice_expression(self, vs: str, vd: str, p) -> str:
        """ngspice B-source current expression for one edge with parameter values ``p``."""
        raise NotImplementedError

    # -- bookkeeping --------------------------------------------------------------
    def spec(self) -> dict:
        """JSON-serialisable description from which :func:`from_spec` rebuilds the device."""
        return {"family": type(self).__name__}

    def init_params(self, rng: np.random.Generator, n_edges: int, scheme: str = "kaiming") -> np.ndarray:
        """Initial parameters ``(n_params, n_edges)``.

        ``kaiming`` is the reference implementation's default (torch's
        ``kaiming_normal_`` on the ``(n_params, E)`` tensor: N(0, 2/E)); ``normal`` is
        N(0, 0.01²) (the reference's ``gauss``); ``uniform`` is U(0, 1); ``ones`` and
        ``zeros`` are constant.
        """
        shape = (self.n_params, n_edges)
        if scheme == "kaiming":
            return rng.normal(0.0, math.sqrt(2.0 / max(n_edges, 1)), shape)
        if scheme == "normal":
            return rng.normal(0.0, 0.01, shape)
        if scheme == "uniform":
            return rng.uniform(0.0, 1.0, shape)
        if scheme == "ones":
            return np.ones(shape)
        if scheme == "zeros":
            return np.zeros(shape)
        raise DeviceError(f"unknown initialisation {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")

    def check_params(self, params: np.ndarray, where: str = "") -> None:
        """Raise :class:`ParameterError` unless ``params`` is real, finite and ``(n_params, E)``."""
        params = as_real_array(params, f"{where}{type(self).__name__} parameters", finite=False,
                               error=ParameterError)
        if params.ndim != 2 or params.shape[0] != self.n_params:
            raise ParameterError(
                f"{where}{type(self).__name__} expects parameters of shape "
                f"({self.n_params}, n_edges) [{', '.join(self.param_names)}], got {params.shape}"
            )
        bad = ~np.isfinite(params)
        if bad.any():
            row, edge = np.argwhere(bad)[0]
            raise ParameterError(
                f"{where}parameter {self.param_names[row]!r} of edge {edge} is {params[row, edge]} "
                f"({int(bad.sum())} non-finite entries in all)"
            )

    def parameter_window(self, name: str):
        """``(low, high)`` that constrained training keeps the physical parameter ``name``
        inside, or None (the default: a physical parameter is left as it is)."""
        return None

    def __repr__(self) -> str:
        extra = {k: v for k, v in self.spec().items() if k != "family"}
        args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(str(sorted(self.spec().items())))


def _add(a, b):
    return a if b is None else a + b


def _fmt(x: float) -> str:
    """A float written so that ngspice reads back exactly the same double."""
    return repr(float(x))


class Conductance(Device):
    """Linear conductance ``i = g·(vs − vd)``: a resistor of resistance ``1/g``.

    Passive only while ``g ≥ 0``; the feasibility report flags negative values.
    """

    param_names = ("g",)
    parameter_roles = {"g": CONDUCTANCE}
    positively_homogeneous = True
    passive = True

    def response(self, z, p):
        return p[0] * z

    def response_linearise(self, z, p, params=True):
        return p[0] * z, np.broadcast_to(p[0], z.shape), (z,) if params else None

    def response_curvature(self, z, p):
        return np.broadcast_to(p[0], z.shape), None, (1.0,)

    def spice_expression(self, vs, vd, p):
        return f"{_fmt(p[0])}*({vs}-{vd})"


class _ShiftedRectifier(Device):
    """``p1·act((vs − vd) − p0)`` for a piecewise-linear rectifier ``act``."""

    param_names = ("shift", "gain")
    parameter_roles = {"shift": BIAS, "gain": CONDUCTANCE}
    positively_homogeneous = True     # relu and leaky relu are: act(αz) = α·act(z)
    _act: Activation

    def response(self, z, p):
        return p[1] * self._act.value(z - p[0])

    def response_linearise(self, z, p, params=True):
        a, da = self._act.value_and_slope(z - p[0])
        g = p[1] * da
        return p[1] * a, g, (-g, a) if params else None

    def response_curvature(self, z, p):
        # s = p1·act'(z − p0): piecewise constant, so ∂s/∂z = ∂s/∂p0 = 0 off the knee
        return p[1] * self._act.slope(z - p[0]), None, (None, self._act.slope(z - p[0]))

    def spice_expression(self, vs, vd, p):
        z = f"{vs}-{vd}-({_fmt(p[0])})"
        return f"{_fmt(p[1])}*{self._act.spice(z)}"


class ShiftedReLU(_ShiftedRectifier):
    """``i = p1·relu((vs − vd) − p0)``: the reference's main classifier device."""

    _act = Activation("relu")


class ShiftedLeakyReLU(_ShiftedRectifier):
    """``i = p1·leaky_relu((vs − vd) − p0)`` with slope 0.01 below the knee."""

    _act = Activation("leaky_relu")


class _Activated(Device):
    """A family whose current passes through an activation (:data:`ACTIVATIONS`)."""

    def __init__(self, activation_name: str = "tanh"):
        self.activation = activation(activation_name)

    @property
    def positively_homogeneous(self) -> bool:
        return self.activation.positively_homogeneous

    def spec(self):
        return {"family": type(self).__name__, "activation": self.activation.name}


class DifferenceActivation(_Activated):
    """``i = act(p1·(vs − vd) + p0)``: an activation of the branch voltage."""

    param_names = ("bias", "gain")
    parameter_roles = {"bias": BIAS, "gain": CONDUCTANCE}

    def response(self, z, p):
        return self.activation.value(p[1] * z + p[0])

    def response_linearise(self, z, p, params=True):
        a, da = self.activation.value_and_slope(p[1] * z + p[0])
        return a, p[1] * da, (da, da * z) if params else None

    def response_curvature(self, z, p):
        # s = p1·act'(u), u = p1·z + p0
        u = p[1] * z + p[0]
        da, dda = self.activation.slope_and_curvature(u)
        return p[1] * da, p[1] * p[1] * dda, (p[1] * dda, da + p[1] * z * dda)

    def spice_expression(self, vs, vd, p):
        return self.activation.spice(f"{_fmt(p[1])}*({vs}-{vd})+({_fmt(p[0])})")


class AffineActivation(_Activated):
    """``i = act(p0·vs + p1·vd + p2)``: the reference's generative device (with tanh).

    A transconductor cell: it draws current from a supply whenever its bias ``p2`` or
    its input weights are not those of a resistor (``p0 = −p1 ≥ 0``, identity).
    """

    param_names = ("w_src", "w_dst", "bias")
    parameter_roles = {"w_src": CONDUCTANCE, "w_dst": CONDUCTANCE, "bias": BIAS}

    def input_weights(self, p):
        return p[0], p[1], p[2]

    input_weight_rows = (0, 1)

    def input_param_terms(self, vs, vd):
        return vs, vd, 1.0

    def response(self, z, p):
        return self.activation.value(z)

    def response_linearise(self, z, p, params=True):
        a, da = self.activation.value_and_slope(z)
        return a, da, (None, None, None) if params else None

    def response_curvature(self, z, p):
        return (*self.activation.slope_and_curvature(z), (None, None, None))

    def spice_expression(self, vs, vd, p):
        return self.activation.spice(
            f"{_fmt(p[0])}*{vs}+({_fmt(p[1])})*{vd}+({_fmt(p[2])})"
        )


def AffineTanh() -> AffineActivation:
    """The reference's generative device, ``tanh(p0·vs + p1·vd + p2)``."""
    return AffineActivation("tanh")


#: Above ``u/nVt = DIODE_EXP_LIMIT`` an ideal diode's current continues along its tangent
#: instead of the exponential, as HSPICE's EXPLI and SPICE's limited exponentials do: the
#: current then never overflows (``e^{u/nVt}`` does above u ≈ 18 V at 300 K) and its slope
#: stays finite. e^80 ≈ 5.5e34 is far beyond any current a circuit carries for longer than
#: picoseconds, so solutions do not change, and 80 is below the argument (227.96) at which
#: ngspice's own exp() saturates, so the SPICE form below is exact in ngspice.
DIODE_EXP_LIMIT = 80.0


class Diode(Device):
    """Shockley diode (anode = src, cathode = dst) with optional series resistance.

    With ``u = vs − vd``, thermal voltage ``n·Vt`` (:attr:`thermal_voltage`, in the net's
    voltage unit), saturation current ``i_s`` and series resistance ``r_s``, the current
    solves ``i = i_s·(exp((u − i·r_s)/nVt) − 1)``. Its closed form uses the Lambert W
    function, evaluated in log space with Wright's ω (``ω(x) = W(eˣ)``) so it never
    overflows:

        i = (nVt/r_s)·ω(ln(i_s·r_s/nVt) + (u + i_s·r_s)/nVt) − i_s        (r_s > 0)
        i = i_s·(exp(u/nVt) − 1)                                          (r_s = 0)

    and ``di/du = (i + i_s)/(nVt + r_s·(i + i_s))``. Without series resistance the
    exponential is continued linearly above ``x = u/nVt = X`` (:data:`DIODE_EXP_LIMIT`):

        i = i_s·(e^X·(1 + x − X) − 1),   di/du = i_s·e^X/nVt               (r_s = 0, x > X)

    a C¹ continuation, so current and derivatives stay finite and consistent (the line
    itself reaches the largest double only near u = 1e282 for i_s = 1e-9).
    (With series resistance the current is at most u/r_s and the junction exponent
    ``ln(1 + i/i_s)`` reaches X only beyond u ≈ r_s·i_s·e^X, so the closed form is kept.)

    Newton's method limits the junction voltage between iterations as SPICE does
    (:meth:`limit_input`).

    Parameters (per edge): ``i_s`` > 0 and ``r_s`` ≥ 0, both normalised (current unit
    G0·V0, resistance unit 1/G0). ``thermal_voltage`` is ``n·kT/q`` in units of V0; the
    default, 0.025852, is an ideal silicon junction at 300 K when V0 = 1 V. At another
    V0 the same normalised device is a junction with ideality ``N = 0.025852·1 V/V0``,
    which the chip report flags when it leaves 1–2 (``diode_ideality``).
    """

    param_names = ("i_s", "r_s")
    parameter_roles = {"i_s": PHYSICAL, "r_s": PHYSICAL}
    passive = True

    def __init__(self, thermal_voltage: float = 0.025852, default_i_s: float = 1e-9,
                 default_r_s: float = 0.0, i_s_min: float | None = None, i_s_max: float | None = None):
        if not thermal_voltage > 0:
            raise DeviceError(f"Diode thermal_voltage must be > 0, got {thermal_voltage}")
        self.thermal_voltage = float(thermal_voltage)
        self.default_i_s = float(default_i_s)
        self.default_r_s = float(default_r_s)
        if (i_s_min is None) != (i_s_max is None):
            raise DeviceError("Diode i_s_min and i_s_max go together (a window), or neither")
        if i_s_min is not None:
            for name, value in (("i_s_min", i_s_min), ("i_s_max", i_s_max)):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise DeviceError(f"Diode {name} must be a finite number, got {value!r}")
            if not 0 < i_s_min < i_s_max:
                raise DeviceError(f"Diode needs 0 < i_s_min < i_s_max, got {i_s_min!r}, {i_s_max!r}")
            i_s_min, i_s_max = float(i_s_min), float(i_s_max)
        self.i_s_min, self.i_s_max = i_s_min, i_s_max

    def parameter_window(self, name: str):
        """``(low, high)`` of the physical parameter ``name`` where the device is a cell
        model with a realisable range, else None: constrained training keeps the parameter
        inside it (:mod:`kirchhoff_sim.training.constraints`). A diode cell's ``i_s`` has
        the window of its widths; its ``r_s`` is held at 0 (``(0, 0)``: the cell has no
        series resistance to program)."""
        if self.i_s_min is None:
            return None
        return (self.i_s_min, self.i_s_max) if name == "i_s" else (0.0, 0.0)

    def spec(self):
        spec = {
            "family": type(self).__name__,
            "thermal_voltage": self.thermal_voltage,
            "default_i_s": self.default_i_s,
            "default_r_s": self.default_r_s,
        }
        if self.i_s_min is not None:      # only a cell model has a window: older specs stay as they were
            spec.update(i_s_min=self.i_s_min, i_s_max=self.i_s_max)
        return spec

    def init_params(self, rng, n_edges, scheme="kaiming"):
        # a diode's parameters are physical, not learnt from a random start
        return np.array([[self.default_i_s], [self.default_r_s]]) * np.ones((1, n_edges))

    def check_params(self, params, where=""):
        super().check_params(params, where)
        params = np.asarray(params)
        if (params[0] <= 0).any() or (params[1] < 0).any():
            raise ParameterError(f"{where}Diode needs i_s > 0 and r_s >= 0 on every edge")

    def response(self, z, p):
        return self._solve(z, p)[0]

    def _solve(self, u, p):
        """``(i, i + i_s, slope, i_s, r_s)`` for branch voltage ``u``, all broadcast to one
        shape; ``slope = nVt·∂f/∂v`` of the junction law ``f`` at the junction voltage
        (``i + i_s`` except on the linear continuation)."""
        nvt = self.thermal_voltage
        shape = np.broadcast_shapes(np.shape(u), np.shape(p[0]))
        # in float64 whatever the working precision: e^x overflows float32 beyond x = 88,
        # far below the continuation's knee (the assembly rounds the currents to its type)
        u, i_s, r_s = (np.broadcast_to(np.asarray(a, dtype=np.float64), shape) for a in (u, p[0], p[1]))
        i = np.empty(shape)
        series = r_s > 0
        ideal = ~series
        x = u[ideal] / nvt
        i[ideal] = i_s[ideal] * np.expm1(np.minimum(x, DIODE_EXP_LIMIT))
        if series.any():
            rs, isat = r_s[series], i_s[series]
            arg = np.log(isat * rs / nvt) + (u[series] + isat * rs) / nvt
            with np.errstate(under="ignore"):    # deep reverse bias: ω → 0, i → −i_s exactly
                i[series] = nvt / rs * special.wrightomega(arg).real - isat
        total = i + i_s
        slope = total
        beyond = ideal.copy()
        beyond[ideal] = x > DIODE_EXP_LIMIT
        if beyond.any():
            # the tangent of i_s·e^x at X, continued: i_s·e^X·(1 + x − X) − i_s
            edge = i_s[beyond] * math.exp(DIODE_EXP_LIMIT)
            i[beyond] = edge * (1.0 + (u[beyond] / nvt - DIODE_EXP_LIMIT)) - i_s[beyond]
            total = i + i_s
            slope = np.where(beyond, i_s * math.exp(DIODE_EXP_LIMIT), total)
        return i, total, slope, i_s, r_s

    def response_linearise(self, z, p, params=True):
        i, g, di_dp, _, _ = self._linearised(z, p, params)
        return i, g, di_dp

    def _linearised(self, z, p, params):
        """``(i, di/du, di/dp, S, denom)`` with the junction's slope term ``S`` and
        ``denom = nVt + r_s·S``."""
        i, total, slope, i_s, r_s = self._solve(z, p)
        nvt = self.thermal_voltage
        denom = nvt + r_s * slope
        g = slope / denom                       # di/du
        di_dp = None
        if params:
            # implicit differentiation of F(i, u, i_s, r_s) = i_s·(e^{(u − i r_s)/nVt} − 1) − i = 0,
            # where ∂F/∂i = −denom/nVt, ∂F/∂i_s = i/i_s and ∂F/∂r_s = −i·slope/nVt (the
            # continuation is linear in i_s too, so ∂F/∂i_s = i/i_s holds there as well)
            di_dp = ((i / i_s) * nvt / denom, -i * slope / denom)
        return i, g, di_dp, slope, denom

    def response_curvature(self, z, p):
        # g = S/(nVt + r_s·S) with S = i + i_s (the junction's slope term): ∂g/∂S =
        # nVt/denom², ∂g/∂r_s|_S = −S²/denom², and S moves with i (∂S/∂u = g, ∂S/∂i_s =
        # ∂i/∂i_s + 1, ∂S/∂r_s = ∂i/∂r_s). On the linear continuation S = i_s·e^X is fixed
        # in u, and r_s = 0 there.
        _, g, (di_dis, di_drs), slope, denom = self._linearised(z, p, True)
        i_s, r_s = p[0], p[1]
        nvt = self.thermal_voltage
        d_slope = nvt / (denom * denom)
        line = (r_s == 0) & (np.broadcast_to(z, slope.shape) / nvt > DIODE_EXP_LIMIT)
        dS_du = np.where(line, 0.0, g)
        dS_dis = np.where(line, slope / i_s, di_dis + 1.0)
        dS_drs = np.where(line, 0.0, di_drs)
        return (g, d_slope * dS_du,
                (d_slope * dS_dis, d_slope * dS_drs - slope * slope / (denom * denom)))

    def critical_voltage(self, i_s):
        """SPICE's ``vcrit = nVt·ln(nVt/(√2·i_s))``, where the junction current's curvature
        is largest (Nagel, SPICE2, 1975): limiting only acts above it."""
        nvt = self.thermal_voltage
        return nvt * np.log(nvt / (math.sqrt(2.0) * i_s))

    def limit_input(self, z, z_previous, p):
        """SPICE's junction-voltage limiting (``pnjlim``).

        The junction voltage is ``v_j = u − r_s·i(u)`` (``u`` itself without series
        resistance). Where the proposed ``v_j`` lies above ``vcrit`` and more than
        ``2·nVt`` from the previous one ``v₀``, it is replaced by

            v₀ + nVt·ln(1 + (v_j − v₀)/nVt)    (v₀ > 0, argument > 0)
            vcrit                               (v₀ > 0, argument ≤ 0)
            nVt·ln(v_j/nVt)                     (v₀ ≤ 0)

        so that one iteration raises the junction current by a bounded factor instead of
        ``exp((v_j − v₀)/nVt)``: Nagel's SPICE2 thesis (1975) and ngspice's ``DEVpnjlim``
        (devsup.c), without ngspice's later reverse-bias limiting (a reverse-biased
        junction's current is bounded by ``−i_s`` anyway). The limited branch voltage is
        the one with that junction voltage, ``u = v_j + r_s·i_s·(e^{v_j/nVt} − 1)``
        (exact, the Shockley law solved for u). Before the first iteration of a layer
        (``z_previous`` None) the previous junction voltage is taken as 0 V, the
        junction's initial condition in SPICE's ``.tran … uic``. Here vcrit is taken no
        lower than nVt, so that the logarithms' arguments are positive for any i_s.
        """
        i_s, r_s = p[0], p[1]
        nvt = self.thermal_voltage
        series = np.any(r_s > 0)
        junction = z - r_s * self.response(z, p) if series else z
        if z_previous is None:
            previous = np.zeros_like(z)
        else:
            previous = z_previous - r_s * self.response(z_previous, p) if series else z_previous
        vcrit = np.maximum(self.critical_voltage(i_s), nvt)
        act = (junction > vcrit) & (np.abs(junction - previous) > 2.0 * nvt)
        if not act.any():
            return z
        limited = junction.copy()
        vcrit = np.broadcast_to(vcrit, z.shape)
        from_on = act & (previous > 0)
        arg = 1.0 + (junction - previous) / nvt
        grow = from_on & (arg > 0)
        limited[grow] = previous[grow] + nvt * np.log(arg[grow])
        drop = from_on & ~(arg > 0)
        limited[drop] = vcrit[drop]
        from_off = act & ~(previous > 0)
        limited[from_off] = nvt * np.log(junction[from_off] / nvt)
        z = z.copy()
        if series:
            i_s_b, r_s_b = np.broadcast_to(i_s, z.shape), np.broadcast_to(r_s, z.shape)
            drop_back = r_s_b[act] * i_s_b[act] * np.expm1(np.minimum(limited[act] / nvt, 700.0))
            z[act] = limited[act] + drop_back
        else:
            z[act] = limited[act]
        return z

    def spice_expression(self, vs, vd, p):
        """ngspice B-source current of an ideal diode, with the linear continuation of
        the exponential above :data:`DIODE_EXP_LIMIT` written out:
        ``i_s·(exp(min(x, X))·(1 + max(x − X, 0)) − 1)``, ``x = (vs − vd)/nVt``."""
        if p[1] != 0:
            raise DeviceError(
                "a diode with series resistance has no closed-form B-source expression; "
                "compile it in primitive mode (a D element with RS)"
            )
        x = f"({vs}-{vd})/{_fmt(self.thermal_voltage)}"
        limit = _fmt(DIODE_EXP_LIMIT)
        return f"{_fmt(p[0])}*(exp(min({x},{limit}))*(1+max({x}-{limit},0))-1)"


# ------------------------------------------------------------------------- registry
class TanhCell(Device):
    """A characterised transconductor *cell model*: ``i = A·tanh(β(A)·((vs − vd) − c))``.

    The behavioural model of the sky130 tanh cell (:mod:`kirchhoff_sim.cells`), fitted to
    ngspice sweeps of the transistor-level circuit: a subthreshold differential pair
    gives ``I_b·tanh(κ·ΔV/2U_T)``; its slope ``β`` drifts with the bias current, which
    the fit gives as ``β(A) = slope + slope_per_log_amplitude·ln|A|`` (normalised units,
    ``|A|`` clipped to ``[amplitude_min, amplitude_max]``, the cell's bias window).
    Parameters: ``c`` the input offset (normalised volts) and ``A`` the signed saturation
    current (normalised; the sign is the cell's orientation). The defaults are the
    sky130 tt fit at 27 °C and V0 = 0.05 V; :func:`kirchhoff_sim.cells.cell_device`
    builds the device of another corner, temperature or scale.
    """

    param_names = ("offset", "amplitude")
    parameter_roles = {"offset": BIAS, "amplitude": CONDUCTANCE}

    def __init__(self, slope: float = 0.67, slope_per_log_amplitude: float = 0.0,
                 amplitude_min: float = 0.2, amplitude_max: float = 2.0, cell: str = "sky130 tanh cell"):
        for name, value in (("slope", slope), ("slope_per_log_amplitude", slope_per_log_amplitude),
                            ("amplitude_min", amplitude_min), ("amplitude_max", amplitude_max)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise DeviceError(f"TanhCell {name} must be a finite number, got {value!r}")
        if not 0 < amplitude_min < amplitude_max:
            raise DeviceError(f"TanhCell needs 0 < amplitude_min < amplitude_max, got {amplitude_min!r}, {amplitude_max!r}")
        if not isinstance(cell, str):
            raise DeviceError(f"TanhCell cell must be a string, got {cell!r}")
        self.slope, self.slope_per_log_amplitude = float(slope), float(slope_per_log_amplitude)
        self.amplitude_min, self.amplitude_max, self.cell = float(amplitude_min), float(amplitude_max), cell
        lowest = self.slope + self.slope_per_log_amplitude * math.log(
            self.amplitude_max if self.slope_per_log_amplitude < 0 else self.amplitude_min)
        if lowest <= 0:
            raise DeviceError(f"TanhCell slope must stay positive over the bias window, reaches {lowest:g}")

    def _slope(self, amplitude):
        """``β(A)`` and ``A·∂β/∂A`` (zero outside the clipped window)."""
        magnitude = np.abs(amplitude)
        inside = (magnitude > self.amplitude_min) & (magnitude < self.amplitude_max)
        clipped = np.clip(magnitude, self.amplitude_min, self.amplitude_max)
        return (self.slope + self.slope_per_log_amplitude * np.log(clipped),
                np.where(inside, self.slope_per_log_amplitude, 0.0))

    def response(self, z, p):
        beta, _ = self._slope(p[1])
        return p[1] * np.tanh(beta * (z - p[0]))

    def response_linearise(self, z, p, params=True):
        beta, a_dbeta = self._slope(p[1])
        u = z - p[0]
        t = np.tanh(beta * u)
        g = p[1] * beta * (1.0 - t * t)
        if not params:
            return p[1] * t, g, None
        return p[1] * t, g, (-g, t + a_dbeta * u * (1.0 - t * t))

    def response_curvature(self, z, p):
        # s = A·β·sech²(βu), u = z − c; A·∂β/∂A = a_dbeta
        beta, a_dbeta = self._slope(p[1])
        u = z - p[0]
        t = np.tanh(beta * u)
        sech2 = 1.0 - t * t
        ds_dz = -2.0 * p[1] * beta * beta * t * sech2
        return (p[1] * beta * sech2, ds_dz,
                (-ds_dz, sech2 * (beta + a_dbeta * (1.0 - 2.0 * beta * u * t))))

    def spice_expression(self, vs, vd, p):
        a = _fmt(p[1])
        beta = (f"({_fmt(self.slope)}+({_fmt(self.slope_per_log_amplitude)})*"
                f"ln(min(max(abs({a}),{_fmt(self.amplitude_min)}),{_fmt(self.amplitude_max)})))")
        return f"{a}*tanh({beta}*({vs}-{vd}-({_fmt(p[0])})))"

    def spec(self):
        return {"family": "TanhCell", "slope": self.slope, "slope_per_log_amplitude": self.slope_per_log_amplitude,
                "amplitude_min": self.amplitude_min, "amplitude_max": self.amplitude_max, "cell": self.cell}


_FAMILIES = {
    cls.__name__: cls
    for cls in (Conductance, ShiftedReLU, ShiftedLeakyReLU, DifferenceActivation,
                AffineActivation, Diode, TanhCell)
}
FAMILIES = tuple(_FAMILIES)


def family_class(name: str) -> type:
    """The device class of the family ``name`` (one of :data:`FAMILIES`)."""
    if name not in _FAMILIES:
        raise DeviceError(f"unknown device family {name!r}; known: {', '.join(FAMILIES)}")
    return _FAMILIES[name]


def from_spec(spec: dict) -> Device:
    """Rebuild a device from :meth:`Device.spec` (as stored in a model file)."""
    if not isinstance(spec, dict) or "family" not in spec:
        raise DeviceError(f"a device spec must be a dict with a 'family' key, got {spec!r}")
    family = spec["family"]
    if family not in _FAMILIES:
        raise DeviceError(f"unknown device family {family!r}; known: {', '.join(FAMILIES)}")
    kwargs = {k: v for k, v in spec.items() if k != "family"}
    if "activation" in kwargs:
        kwargs["activation_name"] = kwargs.pop("activation")
    try:
        return _FAMILIES[family](**kwargs)
    except TypeError as exc:
        raise DeviceError(f"bad options for device {family}: {kwargs!r} ({exc})") from None
