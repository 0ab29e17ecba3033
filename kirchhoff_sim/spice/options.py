"""ngspice's simulation options (:class:`SpiceOptions`), the netlist modes and integration methods.

The options are in the net's normalised units; the compiler
(:mod:`~kirchhoff_sim.spice.netlist`) scales them to the circuit's when it writes
``.options`` and ``.tran``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import as_choice, as_int, as_positive, as_real
from ..errors import InputError
from ..units import CELSIUS_TO_KELVIN

__all__ = ["METHODS", "MODES", "SpiceOptions"]

MODES = ("behavioral", "primitive")
METHODS = ("gear", "trap")
#: highest order ngspice integrates with, per method
MAX_ORDER = {"gear": 6, "trap": 2}
_POSITIVE_FIELDS = ("abstol", "vntol", "chgtol", "trtol", "gate_width", "switch_ron", "switch_roff")
_FRACTION_FIELDS = ("max_step_fraction", "first_step_fraction")   # in (0, 1]
_OPTIONAL_POSITIVE_FIELDS = ("max_step", "first_step")


@dataclass(frozen=True)
class SpiceOptions:
    """ngspice simulation options, in the net's **normalised** units.

    Tolerances are scaled by the :class:`PhysicalScale` when written, so the same
    options give the same relative accuracy at any scale (ngspice's defaults —
    ``abstol=1e-12`` A, ``chgtol=1e-14`` C — are absolute, and ``chgtol=1e-14`` C is
    10 % of the charge on 100 fF at 1 V).

    Parameters
    ----------
    method : {"trap", "gear"}
        Integration method (ngspice ``.options method``). ``trap`` by default: at the
        steps a tight comparison runs at (mostly limited by ``max_step``) its error
        constant (1/12) beats gear-2's (2/9), and it measured 2–4× closer to the ODE on
        every device family. ``gear`` (BDF, L-stable) damps the very stiff modes that can
        make the trapezoidal rule ring.
    maxord : int
        Highest order of the integration method (``gear`` 1..6, ``trap`` 1..2).
    reltol : float
        Relative tolerance (dimensionless).
    abstol : float
        Absolute current tolerance in units of ``G0·V0``.
    vntol : float
        Absolute voltage tolerance in units of ``V0``.
    chgtol : float
        Absolute charge tolerance in units of ``C0·V0``.
    trtol : float
        ngspice's truncation-error over-estimation factor (default there 7; 1 trusts
        the estimate as it is).
    max_step : float or None
        Largest time step in normalised time (``.tran``'s ``tmax``); None means
        ``max_step_fraction`` of the shortest layer.
    max_step_fraction : float
        See ``max_step``.
    first_step : float or None
        ``.tran``'s ``tstep`` in normalised time; None means ``first_step_fraction`` of
        the maximum step. With ``tmax`` given, ``tstep`` only sets ngspice's first step
        (a hundredth of it). ngspice accepts that first step without a truncation-error
        check, so a large one misses a fast initial transient (a forward-biased diode:
        3e-4 of the swing at ``tstep = tmax``). A tiny one fails the other way: the
        charge-based error estimate of the next steps is then rounding noise, the step
        collapses and ngspice stops with "Timestep too small" — on a 17k-edge net
        whenever the first step was below ~1e-6·tmax (ngspice's floor is 1e-11·tmax).
    first_step_fraction : float
        See ``first_step``; the default 1e-3 starts at 1e-5·tmax.
    gate_width : float
        Width of the clock ramps between layers, in normalised time.
    switch_ron, switch_roff : float
        On and off resistance of the layer switches of primitive elements, in units of
        ``1/G0``.
    temperature : float
        Circuit and model nominal temperature in °C (``temp``/``tnom``); it sets the
        diode's ``N`` (see :func:`~kirchhoff_sim.units.diode_emission_coefficient`).
    save_branch_currents : bool
        Also save every B source's current (``.save all @b<k>[i] …``), so that energy and
        power can be computed from ngspice's own branch currents. The raw file grows by
        one vector per edge.

    Raises
    ------
    InputError
        A field of the wrong type or out of range (naming the field): each is stored in
        its canonical type (``float``, ``int``).
    """

    method: str = "trap"
    maxord: int = 2
    reltol: float = 1e-6
    abstol: float = 1e-12
    vntol: float = 1e-9
    chgtol: float = 1e-15
    trtol: float = 1.0
    max_step: float | None = None
    max_step_fraction: float = 1e-3
    first_step: float | None = None
    first_step_fraction: float = 1e-3
    gate_width: float = 1e-6
    switch_ron: float = 1e-6
    switch_roff: float = 1e9
    temperature: float = 27.0
    save_branch_currents: bool = False

    def __post_init__(self):
        # each field is checked and stored in its canonical type (a NumPy float would
        # otherwise reach the netlist as "np.float64(...)")
        checked = {"method": as_choice(self.method, "SpiceOptions.method", METHODS)}
        checked["maxord"] = as_int(self.maxord, f"SpiceOptions.maxord (method={self.method})",
                                   minimum=1, maximum=MAX_ORDER[self.method])
        checked["reltol"] = as_real(self.reltol, "SpiceOptions.reltol", minimum=0.0,
                                    exclusive_minimum=True)
        if checked["reltol"] >= 1:
            raise InputError(f"SpiceOptions.reltol must be < 1, got {self.reltol!r}")
        for name in _POSITIVE_FIELDS:
            checked[name] = as_positive(getattr(self, name), f"SpiceOptions.{name}")
        for name in _FRACTION_FIELDS:
            checked[name] = as_real(getattr(self, name), f"SpiceOptions.{name}", minimum=0.0,
                                    exclusive_minimum=True, maximum=1.0)
        for name in _OPTIONAL_POSITIVE_FIELDS:
            if getattr(self, name) is not None:
                checked[name] = as_positive(getattr(self, name), f"SpiceOptions.{name}")
        checked["temperature"] = as_real(self.temperature, "SpiceOptions.temperature (°C)",
                                         minimum=-CELSIUS_TO_KELVIN, exclusive_minimum=True)
        if not isinstance(self.save_branch_currents, bool):
            raise InputError(f"SpiceOptions.save_branch_currents must be True or False, "
                             f"got {self.save_branch_currents!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
