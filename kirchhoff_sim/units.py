"""Physical units and constants: how a normalised KirchhoffNet maps onto volts, farads
and seconds, and the physics that every layer above shares (kT/C noise, diode ``N``).

A normalised net (DESIGN.md §5) becomes a circuit through three numbers, a voltage unit
``V0``, a capacitance unit ``C0`` and a conductance unit ``G0``:

=====================  =============================  ============================
quantity               physical                       normalised
=====================  =============================  ============================
node voltage           ``V = V0·v``                   ``v``
device current         ``I = G0·V0·i(V/V0)``          ``i(v)``
capacitor              ``C0·C_n``                     ``C_n``
time                   ``t_phys = (C0/G0)·t``         ``t``
conductance            ``G0·g``                       ``g``
charge                 ``C0·V0·q``                    ``q``
energy                 ``C0·V0²·w``                   ``w``
=====================  =============================  ============================

The physical ODE ``C0·C_n dV/dt_phys = Σ ±I`` is then exactly ``G0·V0`` times the
normalised one, so a circuit built at any scale reproduces the normalised waveform
``V(t_phys)/V0 = v(t)``.

This module sits below everything else in the package (it imports only
:mod:`~kirchhoff_sim.errors` and :mod:`~kirchhoff_sim.checks`): the netlist compiler, the
technology profile, the chip report and the Monte Carlo runs all take their scale and
constants from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from .checks import as_positive
from .errors import InputError

__all__ = [
    "PhysicalScale", "BOLTZMANN", "ELEMENTARY_CHARGE", "CELSIUS_TO_KELVIN",
    "NGSPICE_BOLTZMANN", "NGSPICE_CHARGE", "ROOM_TEMPERATURE_K", "SPICE_NOMINAL_TEMPERATURE_C",
    "ktc_noise_sigma", "thermal_voltage", "diode_emission_coefficient", "format_si",
    "SCALE_PARAMETERS", "SCALE_RANGES", "check_scale_unit", "MAX_PRECISION_BITS",
]

_SI_PREFIXES = {-18: "a", -15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k"}

# ---------------------------------------------------------------- constants
BOLTZMANN = 1.380649e-23            # J/K, exact since the 2019 SI redefinition
ELEMENTARY_CHARGE = 1.602176634e-19  # C, exact since the 2019 SI redefinition
CELSIUS_TO_KELVIN = 273.15
ROOM_TEMPERATURE_K = 300.0          # the default temperature of kT/C figures
SPICE_NOMINAL_TEMPERATURE_C = 27.0  # SPICE's TNOM and default circuit temperature
# ngspice 39's own constants (src/include/ngspice/const.h, CODATA 2014), used where our
# numbers must reproduce ngspice's thermal voltage exactly
NGSPICE_BOLTZMANN = 1.38064852e-23   # J/K
NGSPICE_CHARGE = 1.6021766208e-19    # C

#: the shipped default technology profile, the one source of the default scale
DEFAULT_PROFILE_PATH = ("default_profile.json",)   # inside the kirchhoff_sim package
#: the technology-profile file's keys of the three units (DESIGN.md §5)
SCALE_PARAMETERS = {"voltage_unit_v": "V0", "capacitance_unit_f": "C0", "conductance_unit_s": "G0"}
#: the physically plausible range (inclusive) of each unit: wide enough for any process and
#: for the normalised scale (all 1), narrow enough that every derived unit — time C0/G0,
#: energy C0·V0², power G0·V0², kT/C noise sqrt(kT/C0)/V0 — is a finite, non-zero float
SCALE_RANGES = {"V0": (1e-9, 1e4), "C0": (1e-24, 1e3), "G0": (1e-18, 1e3)}
_SCALE_SYMBOLS = {"V0": "V", "C0": "F", "G0": "S"}
_DERIVED_UNITS = ("time_unit", "current_unit", "charge_unit", "energy_unit", "power_unit", "resistance_unit")
#: float64's mantissa: a parameter quantised to more bits than this is not representable
MAX_PRECISION_BITS = 52


@dataclass(frozen=True)
class PhysicalScale:
    """Units that map a normalised net onto a physical circuit.

    Parameters
    ----------
    V0 : float
        Voltage unit in volts.
    C0 : float
        Capacitance unit in farads.
    G0 : float
        Conductance unit in siemens; the current unit is ``G0·V0``.

    All three are required: the one default scale is :meth:`default`, the default
    technology profile's, so that the netlist compiler, the chip report and the
    feasibility checks agree (DESIGN.md §5).

    Raises
    ------
    InputError
        If a unit is not a positive finite real number within :data:`SCALE_RANGES`, or a
        derived unit (time, current, charge, energy, power, resistance) is not a finite
        number > 0.
    """

    V0: float
    C0: float
    G0: float

    def __post_init__(self):
        for name in ("V0", "C0", "G0"):
            object.__setattr__(self, name, check_scale_unit(getattr(self, name), name, f"PhysicalScale.{name}"))
        for name in _DERIVED_UNITS:       # implied by the ranges; checked so that it stays so
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"PhysicalScale({self.V0:g} V, {self.C0:g} F, {self.G0:g} S): its {name} "
                                 f"is {value:g}, not a finite number > 0")

    @classmethod
    def default(cls) -> "PhysicalScale":
        """The default technology profile's scale (``kirchhoff_sim/default_profile.json``:
        V0 = 0.1 V, C0 = 100 fF, G0 = 1 µS)."""
        return cls(**_default_scale_values())

    @classmethod
    def normalised(cls) -> "PhysicalScale":
        """All units 1: the netlist is written in the net's own normalised units."""
        return cls(1.0, 1.0, 1.0)

    @classmethod
    def from_dict(cls, data) -> "PhysicalScale":
        """From ``{"V0": …, "C0": …, "G0": …}`` (as :meth:`to_dict` writes it)."""
        if not isinstance(data, dict) or set(data) != {"V0", "C0", "G0"}:
            raise InputError(f"a physical scale is a dict with exactly the keys V0, C0, G0, got {data!r}")
        return cls(data["V0"], data["C0"], data["G0"])

    @property
    def is_normalised(self) -> bool:
        return self.V0 == 1.0 and self.C0 == 1.0 and self.G0 == 1.0

    @property
    def time_unit(self) -> float:
        """Seconds per unit of normalised time, ``C0/G0``."""
        return self.C0 / self.G0

    @property
    def current_unit(self) -> float:
        """Amperes per unit of normalised current, ``G0·V0``."""
        return self.G0 * self.V0

    @property
    def charge_unit(self) -> float:
        """Coulombs per unit of normalised charge, ``C0·V0``."""
        return self.C0 * self.V0

    @property
    def energy_unit(self) -> float:
        """Joules per unit of normalised energy, ``C0·V0²``."""
        return self.C0 * self.V0 ** 2

    @property
    def power_unit(self) -> float:
        """Watts per unit of normalised power, ``G0·V0²``."""
        return self.G0 * self.V0 ** 2

    @property
    def resistance_unit(self) -> float:
        """Ohms per unit of normalised resistance, ``1/G0``."""
        return 1.0 / self.G0

    def to_dict(self) -> dict:
        return {"V0": self.V0, "C0": self.C0, "G0": self.G0}

    def describe(self) -> str:
        """One line: the units and the derived time and current units."""
        return (f"V0 = {self.V0:g} V, C0 = {self.C0:g} F, G0 = {self.G0:g} S "
                f"(time unit C0/G0 = {self.time_unit:g} s, current unit G0·V0 = "
                f"{self.current_unit:g} A)")


def check_scale_unit(value, unit: str, label: str) -> float:
    """``value`` as the float of the scale unit ``unit`` ("V0", "C0" or "G0"), or an
    InputError naming ``label`` if it is not a number within :data:`SCALE_RANGES`."""
    number = as_positive(value, label)
    low, high = SCALE_RANGES[unit]
    if not low <= number <= high:
        symbol = _SCALE_SYMBOLS[unit]
        raise InputError(f"{label} = {number:g} {symbol} is outside the physically plausible range "
                         f"{low:g} .. {high:g} {symbol}")
    return number


@lru_cache(maxsize=1)
def _default_scale_values() -> dict:
    """``{"V0", "C0", "G0"}`` read from the shipped default profile (package data).

    Only the three scale entries are read here; :mod:`kirchhoff_sim.technology` reads and
    validates the whole file, from the same place.
    """
    # resources of the top-level package: importing kirchhoff_sim.hardware from here
    # would import the layers above this module
    text = resources.files("kirchhoff_sim").joinpath(*DEFAULT_PROFILE_PATH).read_text("utf-8")
    parameters = json.loads(text)["parameters"]
    return {unit: float(parameters[key]["value"]) for key, unit in SCALE_PARAMETERS.items()}


# ---------------------------------------------------------------- shared physics
def ktc_noise_sigma(capacitance, temperature: float = ROOM_TEMPERATURE_K,
                    scale: PhysicalScale | None = None) -> np.ndarray:
    """RMS kT/C noise ``sqrt(k_B·T / (C0·C_n)) / V0`` in normalised volts.

    The thermal noise a capacitor keeps when its reset switch opens (Johnson–Nyquist
    noise integrated over the switch's bandwidth; e.g. Razavi, *Design of Analog CMOS
    Integrated Circuits*, §7.2).

    Parameters
    ----------
    capacitance : array_like, shape (N,)
        Normalised node capacitances ``C_n``.
    temperature : float
        Kelvin.
    scale : PhysicalScale, optional
        ``C0`` and ``V0`` (default :meth:`PhysicalScale.default`). With
        :meth:`PhysicalScale.normalised` the result is in volts for ``C_n`` in farads.

    Returns
    -------
    ndarray, shape (N,)
        E.g. 100 fF at 300 K: 203 µV, i.e. 2.03e-3 at ``V0 = 0.1 V``.
    """
    scale = PhysicalScale.default() if scale is None else scale
    capacitance = np.asarray(capacitance, dtype=float)
    return np.sqrt(BOLTZMANN * temperature / (scale.C0 * capacitance)) / scale.V0


def thermal_voltage(temperature_c: float = SPICE_NOMINAL_TEMPERATURE_C) -> float:
    """``kT/q`` in volts at ``temperature_c`` °C, with ngspice's own ``k`` and ``q``."""
    return NGSPICE_BOLTZMANN * (temperature_c + CELSIUS_TO_KELVIN) / NGSPICE_CHARGE


def diode_emission_coefficient(thermal_voltage_normalised: float, scale: PhysicalScale,
                               temperature_c: float = SPICE_NOMINAL_TEMPERATURE_C) -> float:
    """ngspice's diode ``N`` for a device whose ``n·Vt`` is ``thermal_voltage_normalised``
    (in units of ``V0``).

    ngspice writes the junction as ``exp(V/(N·kT/q))`` at the circuit temperature, so
    ``N = n·Vt·V0 / (kT/q)`` with ngspice's own ``k`` and ``q``. A real junction has
    ``N`` between 1 and 2; the feasibility report flags diodes outside that range.
    """
    return thermal_voltage_normalised * scale.V0 / thermal_voltage(temperature_c)


def format_si(value: float, unit: str) -> str:
    """``value`` with an SI prefix and three significant digits: ``1.23 fJ``, ``45.6 µW``."""
    if value == 0 or not np.isfinite(value):
        return f"{value:.3g} {unit}"
    exponent = int(np.clip(3 * np.floor(np.log10(abs(value)) / 3), min(_SI_PREFIXES), max(_SI_PREFIXES)))
    return f"{value / 10.0 ** exponent:.3g} {_SI_PREFIXES[exponent]}{unit}"
