"""Physical scale: how a normalised KirchhoffNet maps onto volts, farads and seconds.

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
=====================  =============================  ============================

The physical ODE ``C0·C_n dV/dt_phys = Σ ±I`` is then exactly ``G0·V0`` times the
normalised one, so a circuit built at any scale reproduces the normalised waveform
``V(t_phys)/V0 = v(t)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["PhysicalScale"]


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
        If a unit is not a positive finite real number.
    """

    V0: float
    C0: float
    G0: float

    def __post_init__(self):
        for name in ("V0", "C0", "G0"):
            value = getattr(self, name)
            if isinstance(value, (bool, str, bytes)):
                raise InputError(f"PhysicalScale.{name} must be a number, got {value!r}")
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(f"PhysicalScale.{name} must be a number, got {value!r}") from None
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"PhysicalScale.{name} must be positive and finite, got {value!r}")
            object.__setattr__(self, name, value)

    @classmethod
    def default(cls) -> "PhysicalScale":
        """The default technology profile's scale (``hardware/default_profile.json``:
        V0 = 0.1 V, C0 = 100 fF, G0 = 1 µS)."""
        from ..hardware.profile import default_profile   # the profile imports this module

        return default_profile().scale()

    @classmethod
    def normalised(cls) -> "PhysicalScale":
        """All units 1: the netlist is written in the net's own normalised units."""
        return cls(1.0, 1.0, 1.0)

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
