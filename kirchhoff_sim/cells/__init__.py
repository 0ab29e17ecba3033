"""Transistor-level cells in the SkyWater sky130 open PDK (DESIGN.md §8).

The pipeline: :mod:`~kirchhoff_sim.cells.pdk` finds the PDK's SPICE models;
:mod:`~kirchhoff_sim.cells.library` holds the cells (transistor-level subcircuits);
:mod:`~kirchhoff_sim.cells.characterise` sweeps them in ngspice and fits the cell models;
:func:`cell_device` and :func:`diode_device` turn a fit into an ordinary device of our
library (:class:`~kirchhoff_sim.devices.TanhCell`, :class:`~kirchhoff_sim.devices.Diode`)
at a profile's physical scale, so the solver, the adjoint and the report need no special
case (:func:`cell_model` picks the one of a family; the conductance cell's model is
:class:`~kirchhoff_sim.devices.Conductance` itself and the rectifier's
:class:`~kirchhoff_sim.devices.ShiftedReLU` itself, their fit errors the cells' deviation); :mod:`~kirchhoff_sim.cells.transistor`
writes a trained net as cells, supplies, biases and clocks.

Importing this package runs nothing and needs no PDK; the functions that do say so.
"""

from __future__ import annotations

import math

__all__ = ["cell_device", "cell_model", "characterisation_of", "check_realisable", "diode_device", "prepare"]


def _check_pdk(profile) -> None:
    from ..errors import InputError

    if profile.pdk == "none":
        raise InputError(f"profile {profile.name!r} names no process design kit (pdk 'none'); "
                         f"use --profile sky130 or a profile with \"pdk\": \"sky130\"")


def check_realisable(net, profile) -> None:
    """Before any work: every device of ``net`` has a cell, the parameters that the cell
    designs alone bound (rectifier gains and thresholds) are inside them, and ``profile``
    names a PDK.

    Raises
    ------
    CellMappingError
        A device family with no cell, or a parameter beyond its cell (naming the edges).
    InputError
        The profile names no PDK.
    """
    from .transistor import check_cell_families, check_cell_parameters

    check_cell_families(net)
    _check_pdk(profile)
    check_cell_parameters(net, profile.scale)


def prepare(net, profile, pdk_root=None):
    """What a transistor-level run of ``net`` needs: ``(characterisation, pdk)`` at the
    profile's design corner, after :func:`check_realisable`.

    Raises
    ------
    CellMappingError, InputError, PDKNotFoundError, SpiceError
    """
    from .pdk import locate_pdk

    check_realisable(net, profile)
    return characterisation_of(profile, pdk_root), locate_pdk(pdk_root)


def characterisation_of(profile, pdk_root=None):
    """The cell characterisation at ``profile``'s corner and temperature (cached; the
    first call runs ngspice for one to two minutes).

    Raises
    ------
    InputError
        The profile names no PDK (``pdk`` is "none").
    PDKNotFoundError, SpiceError
    """
    from .characterise import characterise
    from .pdk import locate_pdk

    _check_pdk(profile)
    return characterise(profile.corner, profile.temperature_k - 273.15, pdk=locate_pdk(pdk_root))


def cell_device(characterisation, scale):
    """The :class:`~kirchhoff_sim.devices.TanhCell` of a characterisation at a physical scale.

    In normalised units (``z = Z/V0``, ``A = I/(G0·V0)``) the fitted slope
    ``β(I) = b0 + b1·ln I`` becomes ``β'(A) = V0·(b0 + b1·ln(G0·V0)) + V0·b1·ln A``, and
    the bias window ``[I_min, I_max]`` the amplitude window ``[I_min, I_max]/(G0·V0)``.

    Parameters
    ----------
    characterisation : CellCharacterisation
    scale : PhysicalScale

    Returns
    -------
    TanhCell
    """
    from ..devices import TanhCell

    unit_current = scale.G0 * scale.V0
    design = characterisation.design
    return TanhCell(
        slope=scale.V0 * (characterisation.slope_per_v + characterisation.slope_per_v_per_log_a * math.log(unit_current)),
        slope_per_log_amplitude=scale.V0 * characterisation.slope_per_v_per_log_a,
        amplitude_min=design["bias_min_a"] / unit_current, amplitude_max=design["bias_max_a"] / unit_current,
        cell=f"{characterisation.pdk} tanh cell, {characterisation.corner}, {characterisation.temperature_c:g} C")


def diode_device(characterisation, scale):
    """The :class:`~kirchhoff_sim.devices.Diode` of a characterisation's diode cell at a
    physical scale: normalised thermal voltage ``n·U_T/V0`` (the fitted ideality at the
    characterisation's temperature), the saturation-current window of the cell's widths
    (``i_s_min``/``i_s_max``, which constrained training keeps ``i_s`` inside), default
    ``i_s`` the window's geometric middle and no series resistance (the cell has none to
    program).

    Parameters
    ----------
    characterisation : CellCharacterisation
    scale : PhysicalScale

    Returns
    -------
    Diode
    """
    from ..devices import Diode

    design = characterisation.diode["design"]
    unit = scale.G0 * scale.V0
    low, high = (float(characterisation.diode_saturation_a(design[k])) / unit for k in ("width_min_um", "width_max_um"))
    return Diode(thermal_voltage=characterisation.diode["thermal_voltage_v"] / scale.V0,
                 default_i_s=math.sqrt(low * high), default_r_s=0.0, i_s_min=low, i_s_max=high)


def cell_model(family: str, characterisation, scale):
    """The device a net of ``family`` is trained with on the cells: the characterised
    :class:`~kirchhoff_sim.devices.TanhCell` (:func:`cell_device`), the diode cell's
    :class:`~kirchhoff_sim.devices.Diode` (:func:`diode_device`), or
    :class:`~kirchhoff_sim.devices.Conductance` or :class:`~kirchhoff_sim.devices.ShiftedReLU`
    (whose cells realise the family itself, within their fit errors).

    Raises
    ------
    CellMappingError
        A family with no cell.
    """
    from ..devices import Conductance, ShiftedReLU
    from ..errors import CellMappingError

    makers = {"TanhCell": cell_device, "Diode": diode_device,
              "Conductance": lambda characterisation, scale: Conductance(),
              "ShiftedReLU": lambda characterisation, scale: ShiftedReLU()}
    if family not in makers:
        raise CellMappingError(f"no sky130 cell realises the device family {family}; the cell library has "
                               f"{', '.join(makers)}")
    return makers[family](characterisation, scale)
