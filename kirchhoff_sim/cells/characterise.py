"""Characterisation: ngspice sweeps of the cells give the fitted cell models.

One DC sweep per (bias current, orientation) runs the tanh cell at every destination
voltage of the operating range at once: each instance has its own bias reference, its
own ``dst`` source and an ideal copy of the swept branch voltage ``z = vs − vd`` on its
``src`` (a VCVS of the test bench, not of the cell), with ammeters on both terminals;
the runs go :data:`PARALLEL_RUNS` at a time. The fit (:func:`fit_tanh_cell`):

    i = η(I)·I_b·tanh(β(I)·(z − δ)),   β(I) = b0 + b1·ln I,   η(I) = e0 + e1·ln I

with ``I = η·I_b`` the saturation current, least squares per bias and then lines in
``ln I`` across the bias window; ``δ`` per orientation. The fit error is the worst
distance of either terminal's measured current from the *final* model (the lines, not
the per-bias fits), over every bias, destination voltage and branch voltage with both
terminals inside the operating range, as a fraction of the saturation current.

A second run measures the pins' small-signal capacitances at the operating point: a
1 mV, 1 MHz sine on a pin, and the out-of-phase part of its current, ``C = I_q/(2πf·A)``.

The passive cells (the poly resistor of ``Conductance``, the DTMOS diode of ``Diode``) are
swept the same way, one DC run each, at three sizes (strip lengths, diode widths) and the
three destination voltages, and fitted across the sizes (:func:`fit_resistor_cell`,
:func:`fit_diode_cell`):

    resistor:  i = z / (R_fixed + ρ·L)                         (L the strip length, µm)
    diode:     i = j_w·(W + ΔW)·(exp(z / nU_T) − 1)           (W the width, µm)

with the error, again, the worst distance of either terminal's current from the fitted
model over the operating range, as a fraction of the cell's full scale (its current at
the largest branch voltage of the range, 0.3 V). Their pin capacitances are measured as
the tanh cell's, switched off, at the smallest and largest size, and fitted linear in the
size.

The rectifier (``ShiftedReLU``'s cell) is swept in one more DC run: both orientations,
width multiples 1 and 10 (the gain window's ends), the three destination voltages, the
gate difference ``u`` over ±0.45 V in 3.75 mV steps (src halfway between vcm and the gate,
as a threshold offset would put it), and fitted as the *ideal* rectifier
(:func:`fit_relu_cell`):

    rectifier: i = ±wm·g_u·relu(u − δ)                        (wm the width multiple)

with the error the worst distance of either terminal from it, over the gates within
vcm ± 0.3 V, as a fraction of ``wm·g_u·0.45 V``. Its pins are measured switched off at
both width multiples and fitted linear in ``wm``.

Results are cached as JSON (written atomically) per PDK fingerprint, corner, temperature
and cell designs, under :func:`cache_directory`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize

from ..errors import InputError, ModelFileError
from ..fileio import atomic_write_text
from ..spice.runner import run_netlist
from .library import (DIODE_CELL, DIODE_WIDTH_PARAMETER, MIM_CAP, RELU_CELL, RELU_SCALE_PARAMETER, RESISTOR_CELL, RESISTOR_LENGTH_PARAMETER, TANH_CELL, DiodeCellDesign,
                      ReLUCellDesign, ResistorCellDesign, TanhCellDesign, cell_subcircuits)
from .pdk import PDK, check_corner, locate_pdk

__all__ = ["CellCharacterisation", "characterise", "cache_directory", "CACHE_VARIABLE"]

CACHE_VARIABLE = "KIRCHHOFF_SIM_CACHE"
CACHE_FORMAT = "kirchhoff_sim.cell_characterisation"
CACHE_VERSION = 5
#: bias currents of the sweep (A), log-spaced over the cell's window (TanhCellDesign)
SWEEP_BIASES = (10e-9, 21.5e-9, 46.4e-9, 100e-9)
#: node voltages the sweep holds dst at, as fractions of the operating half-range
SWEEP_DST_FRACTIONS = (-1.0, 0.0, 1.0)
#: the swept branch voltage z = vs − vd, in half-ranges, and the number of points
SWEEP_Z_SPAN, SWEEP_POINTS = 2.0, 61
#: the sine of the capacitance measurement: amplitude (V) and frequency (Hz)
CAP_AMPLITUDE_V, CAP_FREQUENCY_HZ = 1e-3, 1e6
#: sides (µm) of the two square MIM capacitors measured to fit C = c_a·(side + dw)²
MIM_TEST_SIDES_UM = (20.0, 40.0)
#: ngspice processes run at once (one per core of the 2-core machines this targets)
PARALLEL_RUNS = 2
#: strip lengths (µm) of the resistor sweep: about the window's ends (5 MΩ, 0.5 MΩ) and between
RESISTOR_SWEEP_LENGTHS_UM = (65.0, 220.0, 680.0)
#: widths (µm) of the diode sweep: the window's ends and between
DIODE_SWEEP_WIDTHS_UM = (1.0, 7.0, 50.0)
#: width multiples ``wm`` (unit cells in parallel) of the rectifier sweep: the gain window's ends
RELU_SWEEP_SCALES = (1.0, 10.0)
#: the rectifier's swept gate difference spans ± this many half-ranges (the branch voltage's
#: ±2 plus a threshold of ±1), in steps of a fortieth of a half-range (3.75 mV)
RELU_SWEEP_SPAN, RELU_SWEEP_STEPS_PER_HALF_RANGE = 3.0, 40
#: Boltzmann constant over the elementary charge (V/K), CODATA 2018 (exact)
K_OVER_Q = 1.380649e-23 / 1.602176634e-19


@dataclass(frozen=True)
class CellCharacterisation:
    """What the sweeps measured of the cells at one corner and temperature (the tanh
    cell's fields first, then the passive cells' ``resistor`` and ``diode``).

    Attributes
    ----------
    slope_per_v, slope_per_v_per_log_a : float
        ``b0`` (1/V) and ``b1`` of ``β(I) = b0 + b1·ln(I / 1 A)``.
    eta, eta_per_log_a : float
        ``e0`` and ``e1`` of ``η(I)``: saturation current over the reference current.
    offset_v : dict
        ``δ`` per orientation ``"p"``/``"n"`` (V).
    max_error : float
        Worst |measured − model| of either terminal over the operating range, as a
        fraction of the saturation current.
    imbalance : float
        Worst |i_src − i_dst| (current left in the cell's supplies), same units.
    per_bias : list of dict
        The per-(orientation, bias) least-squares fits (``bias_a``, ``eta``,
        ``beta_per_v``, ``delta_v``).
    pin_capacitance_f : dict
        Capacitance of the ``src`` and ``dst`` pins at vcm (F), the cell switched off.
    mim_capacitor : dict
        ``c_per_um2`` (F/µm²) and ``dw_um`` of the node capacitor's fit
        ``C = c_a·(side + dw)²`` (square sky130 MIM capacitors).
    delay_s : float
        The cell's internal delay (its mirror poles) at the bottom of the bias window:
        seconds from a 0.1 V branch-voltage step to half of the output's change. It
        scales as 1/bias, like the node time constant ``C/(β·I)``.
    resistor : dict
        The conductance cell (``ks_res``): ``design`` (:class:`ResistorCellDesign` as a
        dict), ``r_fixed_ohm`` and ``ohm_per_um`` of ``R(L) = R_fixed + ρ·L``,
        ``ohm_per_square`` (ρ times the drawn width), ``max_error`` (fraction of full
        scale), ``linearity_error`` (each length against its own best line, same units),
        ``off_leakage`` (the switched-off cell's current over the on cell's full scale),
        ``per_length`` and ``pin_capacitance_f`` (per pin, ``[c0, c1]`` of ``C = c0 + c1·L``).
    diode : dict
        The diode cell (``ks_diode``): ``design``, ``thermal_voltage_v`` (``n·U_T``, V),
        ``ideality``, ``is_per_um`` and ``width_offset_um`` of ``I_s = j_w·(W + ΔW)``,
        ``max_error`` (fraction of full scale), ``off_leakage``, ``per_width`` and
        ``pin_capacitance_f`` (``C = c0 + c1·W``).
    relu : dict
        The rectifier cell (``ks_relu_p``/``_n``): ``design`` (:class:`ReLUCellDesign`),
        ``gain_per_unit_s`` (``g_u``, the gain of one unit cell: ``i = wm·g_u·relu(u − δ)``,
        ``u`` the gate difference), ``offset_v`` (``δ`` per orientation), ``max_error``
        (fraction of full scale, the current at the largest gate difference of the
        operating range), ``error_below_two_half_ranges`` (the same for ``u − δ`` ≤ 0.3 V),
        ``imbalance``, ``off_leakage``, ``per_scale`` and ``pin_capacitance_f``
        (``C = c0 + c1·wm``).
    """

    pdk: str
    pdk_fingerprint: str
    corner: str
    temperature_c: float
    design: dict
    slope_per_v: float
    slope_per_v_per_log_a: float
    eta: float
    eta_per_log_a: float
    offset_v: dict
    max_error: float
    imbalance: float
    per_bias: list = field(default_factory=list)
    pin_capacitance_f: dict = field(default_factory=dict)
    mim_capacitor: dict = field(default_factory=dict)
    delay_s: float = 0.0
    resistor: dict = field(default_factory=dict)
    diode: dict = field(default_factory=dict)
    relu: dict = field(default_factory=dict)
    sweep_seconds: float = 0.0

    @property
    def cell_design(self) -> TanhCellDesign:
        """The design that was characterised, as a :class:`TanhCellDesign`."""
        return TanhCellDesign(**self.design)

    def slope(self, saturation_a):
        """``β`` (1/V) at saturation current(s) ``saturation_a`` (A)."""
        return self.slope_per_v + self.slope_per_v_per_log_a * np.log(saturation_a)

    def efficiency(self, saturation_a):
        """``η``: saturation current per unit reference current at ``saturation_a`` (A)."""
        return self.eta + self.eta_per_log_a * np.log(saturation_a)

    def mim_side_um(self, capacitance_f: float) -> float:
        """Side (µm) of the square MIM capacitor of ``capacitance_f`` farads."""
        fit = self.mim_capacitor
        return math.sqrt(capacitance_f / fit["c_per_um2"]) - fit["dw_um"]

    def mim_capacitance_f(self, side_um: float) -> float:
        """Capacitance (F) of a square MIM capacitor of side ``side_um``."""
        fit = self.mim_capacitor
        return fit["c_per_um2"] * (side_um + fit["dw_um"]) ** 2

    @property
    def resistor_design(self) -> ResistorCellDesign:
        return ResistorCellDesign(**self.resistor["design"])

    @property
    def diode_design(self) -> DiodeCellDesign:
        return DiodeCellDesign(**self.diode["design"])

    def resistance_ohm(self, length_um):
        """Resistance (Ω) of the conductance cell with a strip of ``length_um``."""
        return self.resistor["r_fixed_ohm"] + self.resistor["ohm_per_um"] * np.asarray(length_um)

    def resistor_length_um(self, conductance_s):
        """Strip length (µm) whose cell has conductance ``conductance_s`` (S)."""
        return (1.0 / np.asarray(conductance_s) - self.resistor["r_fixed_ohm"]) / self.resistor["ohm_per_um"]

    def diode_saturation_a(self, width_um):
        """Saturation current (A) of the diode cell of width ``width_um``."""
        return self.diode["is_per_um"] * (np.asarray(width_um) + self.diode["width_offset_um"])

    def diode_width_um(self, saturation_a):
        """Width (µm) of the diode cell whose saturation current is ``saturation_a`` (A)."""
        return np.asarray(saturation_a) / self.diode["is_per_um"] - self.diode["width_offset_um"]

    @property
    def relu_design(self) -> ReLUCellDesign:
        return ReLUCellDesign(**self.relu["design"])

    def relu_scale(self, gain_s):
        """Width multiple ``wm`` of the rectifier cell of gain ``gain_s`` (S)."""
        return np.asarray(gain_s) / self.relu["gain_per_unit_s"]

    def pin_capacitance(self, cell: str, pin: str, size):
        """Capacitance (F) of ``pin`` (``"src"``/``"dst"``) of a passive ``cell``
        (``"resistor"``: size a length, ``"diode"``: a width, µm) or of the rectifier
        (``"relu"``: size its width multiple)."""
        c0, c1 = getattr(self, cell)["pin_capacitance_f"][pin]
        return c0 + c1 * np.asarray(size)

    def to_json(self) -> str:
        return json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> "CellCharacterisation":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:     # RecursionError: nested too deeply
            raise ModelFileError(f"{where}: not a cell characterisation ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
            raise ModelFileError(f"{where}: not a cell characterisation of version {CACHE_VERSION}")
        data.pop("format"), data.pop("version")
        try:
            result = cls(**data)
        except TypeError as exc:
            raise ModelFileError(f"{where}: malformed cell characterisation ({exc})") from None
        problem = result._problem()
        if problem:
            raise ModelFileError(f"{where}: not a usable cell characterisation ({problem})")
        return result

    def _problem(self) -> str | None:
        """What makes the (read) numbers unusable — a hand-edited or damaged cache entry:
        the design is not a :class:`TanhCellDesign`, a number is not finite, or the
        model's slope, efficiency or capacitances leave their physical signs."""
        numbers = {name: getattr(self, name) for name in ("temperature_c", "slope_per_v", "slope_per_v_per_log_a",
                                                          "eta", "eta_per_log_a", "max_error", "imbalance",
                                                          "delay_s", "sweep_seconds")}
        for group in ("offset_v", "pin_capacitance_f", "mim_capacitor"):
            value = getattr(self, group)
            if not isinstance(value, dict):
                return f"{group} is not a mapping"
            numbers.update({f"{group}.{k}": v for k, v in value.items()})
        bad = [k for k, v in numbers.items() if isinstance(v, bool) or not isinstance(v, (int, float))
               or not math.isfinite(v)]
        if bad:
            return f"{', '.join(bad)} not finite numbers"
        try:
            design = self.cell_design
        except TypeError as exc:
            return f"design: {exc}"
        if {"p", "n"} - set(self.offset_v) or {"src", "dst"} - set(self.pin_capacitance_f) \
                or {"c_per_um2", "dw_um"} - set(self.mim_capacitor):
            return "offset_v, pin_capacitance_f or mim_capacitor lacks an entry"
        relu = self.relu
        if not isinstance(relu, dict) or not isinstance(relu.get("design"), dict) \
                or not isinstance(relu.get("gain_per_unit_s"), (int, float)) \
                or not math.isfinite(relu["gain_per_unit_s"]) or relu["gain_per_unit_s"] <= 0 \
                or not isinstance(relu.get("offset_v"), dict) or {"p", "n"} - set(relu["offset_v"]):
            return "relu lacks a design, a positive unit gain or its offsets"
        window = np.array([design.bias_min_a, design.bias_max_a])
        if not (np.all(self.slope(window) > 0) and np.all(self.efficiency(window) > 0)
                and self.mim_capacitor["c_per_um2"] > 0 and min(self.pin_capacitance_f.values()) >= 0
                and max(abs(v) for v in self.offset_v.values()) <= design.half_range_v and 0 <= self.max_error < 1):
            return "a slope, efficiency, capacitance, offset or fit error outside its physical range"
        return None


def cache_directory() -> Path:
    """Where characterisations are cached: ``$KIRCHHOFF_SIM_CACHE`` or
    ``~/.cache/kirchhoff_sim`` (``$XDG_CACHE_HOME`` if set), subfolder ``cells``."""
    base = os.environ.get(CACHE_VARIABLE)
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kirchhoff_sim")
    return Path(base) / "cells"


def netlist_header(pdk: PDK, corner: str, temperature_c: float, title: str,
                   mismatch_seed: int | None = None) -> list[str]:
    """Title, the PDK's ``.lib`` card, µm sizes and the temperature; with
    ``mismatch_seed``, the corner's mismatch section and ngspice's random seed."""
    lines = [title, pdk.lib_card(corner, mismatch=mismatch_seed is not None), ".option scale=1.0u",
             f".temp {temperature_c:g}"]
    return lines + ([] if mismatch_seed is None else [f".options seed={int(mismatch_seed)}"])


def supply_lines(d: TanhCellDesign, common_mode: bool = False) -> list[str]:
    """The supply and the cascode bias references (ideal sources, counted as such), with
    ``common_mode`` also ``vcm``, a net's ground node."""
    return [f"Vdd vdd 0 {d.vdd:g}", f"Vcp vcp 0 {d.vcp:g}", f"Vcn vcn 0 {d.vcn:g}"] + \
        ([f"Vcm vcm 0 {d.vcm:g}"] if common_mode else [])


def sweep_z(d: TanhCellDesign = TANH_CELL) -> np.ndarray:
    return np.linspace(-SWEEP_Z_SPAN * d.half_range_v, SWEEP_Z_SPAN * d.half_range_v, SWEEP_POINTS)


def sweep_netlist(pdk: PDK, corner: str, temperature_c: float, bias_a: float, orientation: str,
                  d: TanhCellDesign = TANH_CELL) -> str:
    """The DC sweep of one (bias, orientation) of the tanh cell at every dst voltage."""
    z = sweep_z(d)
    lines = netlist_header(pdk, corner, temperature_c, "* kirchhoff_sim tanh cell DC characterisation")
    lines += cell_subcircuits(d) + supply_lines(d) + [f"Ven en 0 {d.vdd:g}", "Vz z 0 0"]
    for k, fraction in enumerate(SWEEP_DST_FRACTIONS):
        lines += [f"I{k} vdd nb{k} {bias_a:g}", f"XB{k} nb{k} 0 ks_bias",
                  f"Vd{k} d{k} 0 {d.vcm + fraction * d.half_range_v:g}",
                  f"E{k} sq{k} d{k} z 0 1",
                  f"Vms{k} sq{k} s{k} 0", f"Vmd{k} d{k} dc{k} 0",
                  f"X{k} s{k} s{k} dc{k} vdd 0 nb{k} vcp vcn en ks_tanh_{orientation}"]
    step = (z[-1] - z[0]) / (len(z) - 1)
    lines += [f".dc Vz {float(z[0])!r} {float(z[-1] + step / 2)!r} {float(step)!r}", ".end"]
    return "\n".join(lines) + "\n"


def capacitance_netlist(pdk: PDK, corner: str, temperature_c: float, d: TanhCellDesign = TANH_CELL,
                        bias_a: float = 31.6e-9, relu: ReLUCellDesign = RELU_CELL) -> str:
    """A transient with a small sine on one pin at a time (src, then dst) of a cell at vcm,
    with the cell's tail switched off: biased on, the cell's delayed transconductance
    adds a quadrature current ``−g·τ·dv/dt`` (a negative "capacitance", measured −5 fF
    at 31.6 nA) that is its internal delay, not a capacitance; the delay is measured on
    its own (:func:`step_netlist`)."""
    lines = netlist_header(pdk, corner, temperature_c, "* kirchhoff_sim tanh cell pin capacitance")
    lines += cell_subcircuits(d, relu=relu) + supply_lines(d) + ["Ven en 0 0"]
    period = 1.0 / CAP_FREQUENCY_HZ
    for pin in ("src", "dst"):
        sine = f"SIN({d.vcm:g} {CAP_AMPLITUDE_V:g} {CAP_FREQUENCY_HZ:g})"
        vs = sine if pin == "src" else f"{d.vcm:g}"
        vd = sine if pin == "dst" else f"{d.vcm:g}"
        lines += [f"I{pin} vdd nb{pin} {bias_a:g}", f"XB{pin} nb{pin} 0 ks_bias",
                  f"Vs{pin} s{pin} 0 {vs}", f"Vd{pin} d{pin} 0 {vd}",
                  f"X{pin} s{pin} s{pin} d{pin} vdd 0 nb{pin} vcp vcn en ks_tanh_p"]
    for cell, (subckt, parameter, sizes) in PASSIVE_CELLS.items():
        for size in (min(sizes), max(sizes)):
            for pin in ("src", "dst"):
                name = f"{cell[0]}{pin}{sizes.index(size)}"
                sine = f"SIN({d.vcm:g} {CAP_AMPLITUDE_V:g} {CAP_FREQUENCY_HZ:g})"
                lines += [f"Vs{name} s{name} 0 {sine if pin == 'src' else f'{d.vcm:g}'}",
                          f"Vd{name} d{name} 0 {sine if pin == 'dst' else f'{d.vcm:g}'}",
                          f"X{name} s{name} d{name} vdd 0 0 {subckt} {parameter}={float(size)!r}"]
    for index, scale in enumerate((min(RELU_SWEEP_SCALES), max(RELU_SWEEP_SCALES))):
        for pin in ("src", "dst"):
            name = f"u{pin}{index}"  # "u": the resistor is "r"
            sine = f"SIN({d.vcm:g} {CAP_AMPLITUDE_V:g} {CAP_FREQUENCY_HZ:g})"
            lines += [f"I{name} vdd nb{name} {relu.unit_tail_a * scale!r}",
                      f"XB{name} nb{name} 0 ks_relu_bias {RELU_SCALE_PARAMETER}={scale!r}",
                      f"Vs{name} s{name} 0 {sine if pin == 'src' else f'{d.vcm:g}'}",
                      f"Vd{name} d{name} 0 {sine if pin == 'dst' else f'{d.vcm:g}'}",
                      f"X{name} s{name} s{name} d{name} vdd 0 nb{name} vcp vcn 0 ks_relu_p "
                      f"{RELU_SCALE_PARAMETER}={scale!r}"]
    for k, side in enumerate(MIM_TEST_SIDES_UM):
        lines += [f"Vmim{k} mim{k} 0 SIN({d.vcm:g} {CAP_AMPLITUDE_V:g} {CAP_FREQUENCY_HZ:g})",
                  f"XMIM{k} mim{k} 0 {MIM_CAP} W={side:g} L={side:g}"]
    lines += [f".tran {period / 200:g} {3 * period:g} 0 {period / 200:g}", ".end"]
    return "\n".join(lines) + "\n"


#: the step of the delay measurement: branch-voltage step (V), time of the step and run length (s)
STEP_V, STEP_AT_S, STEP_RUN_S = 0.1, 1e-6, 11e-6


def step_netlist(pdk: PDK, corner: str, temperature_c: float, d: TanhCellDesign = TANH_CELL) -> str:
    """A step of the branch voltage across a cell at the bottom of its bias window (its
    slowest): the current into dst follows with the cell's internal delay."""
    lines = netlist_header(pdk, corner, temperature_c, "* kirchhoff_sim tanh cell step response")
    lines += cell_subcircuits(d) + supply_lines(d) + [f"Ven en 0 {d.vdd:g}"]
    low, high = d.vcm - STEP_V / 2, d.vcm + STEP_V / 2
    lines += [f"I1 vdd nb1 {d.bias_min_a:g}", "XB1 nb1 0 ks_bias",
              f"Vs1 s1 0 PWL(0 {low:g} {STEP_AT_S:g} {low:g} {STEP_AT_S + 1e-9:g} {high:g})",
              f"Vd1 d1 0 {d.vcm:g}", "X1 s1 s1 d1 vdd 0 nb1 vcp vcn en ks_tanh_p",
              f".tran 20n {STEP_RUN_S:g} 0 20n", ".end"]
    return "\n".join(lines) + "\n"


def step_delay(result) -> float:
    """Seconds from the step to half of the dst current's change (50 % delay), taken at
    the last crossing of the half-way level (the gates' feed-through of the ideal step
    is a brief spike at the step itself)."""
    t = np.asarray(result.time)
    current = result.vectors["i(vd1)"]
    before = current[t < STEP_AT_S][-1]
    progress = (current - before) / (current[-1] - before)
    below = np.nonzero((t > STEP_AT_S) & (progress < 0.5))[0]
    return float(t[below[-1] + 1] - STEP_AT_S) if below.size else 0.0


#: the passive cells: subcircuit, its size parameter, the sizes swept and the design's field
PASSIVE_CELLS = {"resistor": ("ks_res", RESISTOR_LENGTH_PARAMETER, RESISTOR_SWEEP_LENGTHS_UM),
                 "diode": ("ks_diode", DIODE_WIDTH_PARAMETER, DIODE_SWEEP_WIDTHS_UM)}


def passive_sweep_netlist(pdk: PDK, corner: str, temperature_c: float, cell: str,
                          d: ResistorCellDesign | DiodeCellDesign, tanh: TanhCellDesign = TANH_CELL,
                          sizes=None) -> str:
    """The DC sweep of a passive cell (``"resistor"`` or ``"diode"``) at every size of
    its sweep and every dst voltage: instance ``k = size_index·3 + dst_index`` has the
    ammeters ``vms{k}`` (into src) and ``vmd{k}`` (out of dst); one more instance, the
    largest size switched off (``en`` at 0 V), has ``vmsoff``/``vmdoff`` at dst = vcm."""
    subckt, parameter, default_sizes = PASSIVE_CELLS[cell]
    sizes = default_sizes if sizes is None else sizes
    z = sweep_z(tanh)
    lines = netlist_header(pdk, corner, temperature_c, f"* kirchhoff_sim {cell} cell DC characterisation")
    lines += cell_subcircuits(tanh, **({cell: d})) + supply_lines(tanh) + [f"Ven en 0 {d.vdd:g}", "Voff off 0 0",
                                                                             "Vz z 0 0"]
    instances = [(f"{i * len(SWEEP_DST_FRACTIONS) + j}", size, fraction, "en")
                 for i, size in enumerate(sizes) for j, fraction in enumerate(SWEEP_DST_FRACTIONS)]
    instances.append(("off", max(sizes), 0.0, "off"))
    for k, size, fraction, enable in instances:
        lines += [f"Vd{k} d{k} 0 {d.vcm + fraction * d.half_range_v:g}", f"E{k} sq{k} d{k} z 0 1",
                  f"Vms{k} sq{k} s{k} 0", f"Vmd{k} d{k} dc{k} 0",
                  f"X{k} s{k} dc{k} vdd 0 {enable} {subckt} {parameter}={float(size)!r}"]
    step = (z[-1] - z[0]) / (len(z) - 1)
    lines += [f".dc Vz {float(z[0])!r} {float(z[-1] + step / 2)!r} {float(step)!r}", ".end"]
    return "\n".join(lines) + "\n"


def passive_sweeps(result, sizes) -> dict:
    """``{size: (z, i_src, i_dst)}`` of a passive sweep (terminal currents as
    :func:`_terminal_currents`), and ``"off"``: the switched-off instance's."""
    z = np.asarray(result.time)
    n = len(SWEEP_DST_FRACTIONS)
    out = {}
    for i, size in enumerate(sizes):
        keys = [i * n + j for j in range(n)]
        out[float(size)] = (z, np.stack([result.vectors[f"i(vms{k})"] for k in keys]),
                            np.stack([-result.vectors[f"i(vmd{k})"] for k in keys]))
    out["off"] = (z, result.vectors["i(vmsoff)"][None, :], -result.vectors["i(vmdoff)"][None, :])
    return out


def _full_scale_z(d) -> float:
    """The largest branch voltage of the operating range (both terminals within vcm ± h)."""
    return 2.0 * d.half_range_v


def fit_resistor_cell(sweeps: dict, d: ResistorCellDesign = RESISTOR_CELL) -> dict:
    """``R(L) = R_fixed + ρ·L`` from :func:`passive_sweeps` of the resistor cell: each
    length's conductance by least squares through the origin (both terminals, every dst
    voltage, the operating range), then a line through the lengths' resistances."""
    per_length, lengths, resistances = [], [], []
    full = _full_scale_z(d)
    for length, (z, src, dst) in sweeps.items():
        if length == "off":
            continue
        ok = _in_range(z, d)
        zz = np.broadcast_to(z, src.shape)[ok]
        current = 0.5 * (src + dst)[ok]
        g = float(np.sum(zz * current) / np.sum(zz * zz))
        linear = float(np.max(np.abs(np.stack([src, dst]) - g * z)[:, ok]) / (g * full))
        per_length.append({"length_um": float(length), "conductance_s": g, "linearity_error": linear})
        lengths.append(float(length))
        resistances.append(1.0 / g)
    rho, r_fixed = np.polyfit(lengths, resistances, 1)
    worst = 0.0
    for length, (z, src, dst) in sweeps.items():
        if length == "off":
            continue
        g = 1.0 / (r_fixed + rho * length)
        ok = _in_range(z, d)
        worst = max(worst, float(np.max(np.abs(np.stack([src, dst]) - g * z)[:, ok]) / (g * full)))
    z, src, dst = sweeps["off"]
    g_on = 1.0 / (r_fixed + rho * max(lengths))
    off = float(np.max(np.abs(np.stack([src, dst]))[..., np.abs(z) <= d.half_range_v * (1 + 1e-9)]) / (g_on * full))
    return {"design": asdict(d), "r_fixed_ohm": float(r_fixed), "ohm_per_um": float(rho),
            "ohm_per_square": float(rho * d.width), "max_error": worst,
            "linearity_error": max(f["linearity_error"] for f in per_length), "off_leakage": off,
            "per_length": per_length}


def fit_diode_cell(sweeps: dict, temperature_c: float, d: DiodeCellDesign = DIODE_CELL) -> dict:
    """``I = j_w·(W + ΔW)·(exp(z/nU_T) − 1)`` from :func:`passive_sweeps` of the diode cell,
    by least squares over every width, dst voltage and branch voltage of the operating
    range, each width's residual divided by its full scale (the measured current at the
    largest branch voltage): the fit minimises the error it reports."""
    widths = [w for w in sweeps if w != "off"]
    full = _full_scale_z(d)
    data = []
    for w in widths:
        z, src, dst = sweeps[w]
        ok = _in_range(z, d)
        scale = float(np.max(0.5 * (src + dst)[:, np.isclose(z, full)]))
        data.append((w, np.broadcast_to(z, src.shape)[ok], 0.5 * (src + dst)[ok], scale))
    u_t = K_OVER_Q * (temperature_c + 273.15)

    def model(theta, w, z):
        log_j, dw, nvt = theta
        return np.exp(log_j) * (w + dw) * np.expm1(z / nvt)

    def residual(theta):
        return np.concatenate([(model(theta, w, z) - i) / scale for w, z, i, scale in data])

    first = data[0]
    guess_nvt = 1.07 * u_t
    guess_j = first[3] / np.expm1(full / guess_nvt) / first[0]
    log_j, dw, nvt = optimize.least_squares(residual, x0=[math.log(guess_j), 0.0, guess_nvt], method="lm").x
    theta = (log_j, dw, nvt)
    worst, per_width = 0.0, []
    for w in widths:
        z, src, dst = sweeps[w]
        ok = _in_range(z, d)
        fs = float(model(theta, w, full))
        error = float(np.max(np.abs(np.stack([src, dst]) - model(theta, w, z))[:, ok]) / fs)
        per_width.append({"width_um": float(w), "full_scale_a": fs, "error": error})
        worst = max(worst, error)
    z, src, dst = sweeps["off"]
    fs_max = float(model(theta, max(widths), full))
    off = float(np.max(np.abs(np.stack([src, dst]))[..., np.abs(z) <= d.half_range_v * (1 + 1e-9)]) / fs_max)
    return {"design": asdict(d), "thermal_voltage_v": float(nvt), "ideality": float(nvt / u_t),
            "is_per_um": float(math.exp(log_j)), "width_offset_um": float(dw), "max_error": worst,
            "off_leakage": off, "per_width": per_width}


def relu_sweep_z(d: ReLUCellDesign = RELU_CELL) -> np.ndarray:
    """The rectifier's swept gate difference (V): ±3 half-ranges in 3.75 mV steps."""
    n = int(round(2 * RELU_SWEEP_SPAN * RELU_SWEEP_STEPS_PER_HALF_RANGE))
    return np.linspace(-RELU_SWEEP_SPAN * d.half_range_v, RELU_SWEEP_SPAN * d.half_range_v, n + 1)


def relu_sweep_netlist(pdk: PDK, corner: str, temperature_c: float, d: ReLUCellDesign = RELU_CELL,
                       tanh: TanhCellDesign = TANH_CELL, scales=RELU_SWEEP_SCALES) -> str:
    """The DC sweep of the rectifier: both orientations, every width multiple of ``scales``
    and every dst voltage, the gate difference ``u`` swept (an ideal copy on the gate, as
    the tanh cell's) and src halfway between vcm and the gate (within its range wherever
    the gate is within vcm ± 2 half-ranges, as a threshold offset puts it). Instance ``{o}{k}``, ``k = scale_index·3 + dst_index``, has the
    ammeters ``vms{o}{k}`` (into src) and ``vmd{o}{k}`` (out of dst); ``off`` is the
    largest positive cell switched off at dst = vcm."""
    z = relu_sweep_z(d)
    lines = netlist_header(pdk, corner, temperature_c, "* kirchhoff_sim rectifier cell DC characterisation")
    lines += cell_subcircuits(tanh, relu=d) + supply_lines(tanh, common_mode=True) + [f"Ven en 0 {d.vdd:g}", "Voff off 0 0", "Vz z 0 0"]
    instances = [(f"{o}{i * len(SWEEP_DST_FRACTIONS) + j}", o, scale, fraction, "en")
                 for o in "pn" for i, scale in enumerate(scales) for j, fraction in enumerate(SWEEP_DST_FRACTIONS)]
    instances.append(("off", "p", max(scales), 0.0, "off"))
    for k, o, scale, fraction, enable in instances:
        lines += [f"I{k} vdd nb{k} {d.unit_tail_a * scale!r}", f"XB{k} nb{k} 0 ks_relu_bias {RELU_SCALE_PARAMETER}={scale!r}",
                  f"Vd{k} d{k} 0 {d.vcm + fraction * d.half_range_v:g}", f"E{k} g{k} d{k} z 0 1",
                  f"Es{k} sq{k} vcm g{k} vcm 0.5", f"Vms{k} sq{k} s{k} 0", f"Vmd{k} d{k} dc{k} 0",
                  f"X{k} s{k} g{k} dc{k} vdd 0 nb{k} vcp vcn {enable} ks_relu_{o} {RELU_SCALE_PARAMETER}={scale!r}"]
    step = (z[-1] - z[0]) / (len(z) - 1)
    lines += [f".dc Vz {float(z[0])!r} {float(z[-1] + step / 2)!r} {float(step)!r}", ".end"]
    return "\n".join(lines) + "\n"


def relu_sweeps(result, scales=RELU_SWEEP_SCALES) -> dict:
    """``{(orientation, wm): (u, i_src, i_dst)}`` of :func:`relu_sweep_netlist` (each
    current ``(3, n_u)``, leaving src and entering dst), and ``"off"``."""
    u = np.asarray(result.time)
    n = len(SWEEP_DST_FRACTIONS)
    out = {}
    for o in "pn":
        for i, scale in enumerate(scales):
            keys = [f"{o}{i * n + j}" for j in range(n)]
            out[(o, float(scale))] = (u, np.stack([result.vectors[f"i(vms{k})"] for k in keys]),
                                      np.stack([-result.vectors[f"i(vmd{k})"] for k in keys]))
    out["off"] = (u, result.vectors["i(vmsoff)"][None, :], -result.vectors["i(vmdoff)"][None, :])
    return out


def _relu_in_range(u, d: ReLUCellDesign):
    """Mask ``(3, n_u)``: the gate ``vd + u`` within vcm ± 2 half-ranges (src within its
    range and a threshold within ± one half-range)."""
    vd = np.asarray(SWEEP_DST_FRACTIONS)[:, None] * d.half_range_v
    return np.abs(vd + u[None, :]) <= 2 * d.half_range_v * (1 + 1e-9)


def fit_relu_cell(sweeps: dict, d: ReLUCellDesign = RELU_CELL) -> dict:
    """``i = ±wm·g_u·relu(u − δ_o)`` from :func:`relu_sweeps`: the ideal rectifier, one
    unit gain ``g_u`` and one offset per orientation, by least squares over every width
    multiple, dst voltage and gate difference of the operating range, each residual
    divided by its full scale ``wm·g_u·3h`` (the current at the largest gate difference);
    the fit error is the worst distance of either terminal from the fitted ideal relu."""
    keys = [k for k in sweeps if k != "off"]
    full_u = RELU_SWEEP_SPAN * d.half_range_v

    def model(theta, o, scale, u):
        g, dp, dn = theta
        return (1.0 if o == "p" else -1.0) * scale * g * 1e-6 * np.maximum(u - (dp if o == "p" else dn), 0.0)

    data = []
    for o, scale in keys:
        u, src, dst = sweeps[(o, scale)]
        ok = _relu_in_range(u, d)
        data.append((o, scale, np.broadcast_to(u, src.shape)[ok], 0.5 * (src + dst)[ok]))

    def residual(theta):
        return np.concatenate([(model(theta, o, scale, u) - i) / (scale * theta[0] * 1e-6 * full_u)
                               for o, scale, u, i in data])

    g, dp, dn = optimize.least_squares(residual, x0=[0.2, 0.0, 0.0]).x
    theta = (g, dp, dn)
    worst = inner = imbalance = 0.0
    per_scale = []
    for o, scale in keys:
        u, src, dst = sweeps[(o, scale)]
        ok = _relu_in_range(u, d)
        full = scale * g * 1e-6 * full_u
        error = np.abs(np.stack([src, dst]) - model(theta, o, scale, u))
        e = float(np.max(error[:, ok]) / full)
        near = ok & (u[None, :] - (dp if o == "p" else dn) <= 2 * d.half_range_v)
        e2 = float(np.max(error[:, near]) / (full * 2 / 3))
        imb = float(np.max(np.abs(src - dst)[ok]) / full)
        per_scale.append({"orientation": o, "scale": float(scale), "full_scale_a": float(full), "error": e,
                          "error_below_two_half_ranges": e2, "imbalance": imb})
        worst, inner, imbalance = max(worst, e), max(inner, e2), max(imbalance, imb)
    u, src, dst = sweeps["off"]
    off = float(np.max(np.abs(np.stack([src, dst]))) / (max(RELU_SWEEP_SCALES) * g * 1e-6 * full_u))
    return {"design": asdict(d), "gain_per_unit_s": float(g * 1e-6), "offset_v": {"p": float(dp), "n": float(dn)},
            "max_error": worst, "error_below_two_half_ranges": inner, "imbalance": imbalance, "off_leakage": off,
            "per_scale": per_scale}


def _terminal_currents(result):
    """``(i_src, i_dst)`` of every instance, each ``(len(SWEEP_DST_FRACTIONS), n_z)``:
    the current leaving src and the current entering dst."""
    src = np.stack([result.vectors[f"i(vms{k})"] for k in range(len(SWEEP_DST_FRACTIONS))])
    dst = np.stack([-result.vectors[f"i(vmd{k})"] for k in range(len(SWEEP_DST_FRACTIONS))])
    return src, dst


def _in_range(z, d: TanhCellDesign):
    """Mask, shape (len(SWEEP_DST_FRACTIONS), len(z)): the sweep points whose src voltage
    ``vd + z`` is inside the operating range too (dst always is)."""
    vd = d.vcm + np.asarray(SWEEP_DST_FRACTIONS)[:, None] * d.half_range_v
    return np.abs(vd + z[None, :] - d.vcm) <= d.half_range_v * (1 + 1e-9)


def fit_tanh_cell(sweeps: dict, d: TanhCellDesign = TANH_CELL) -> dict:
    """The fit of :class:`CellCharacterisation` (its numeric fields) from
    ``sweeps[(orientation, bias)] = (z, i_src, i_dst)``."""
    per_bias = []
    for (o, bias), (z, src, dst) in sorted(sweeps.items()):
        ok = _in_range(z, d)
        zz = np.broadcast_to(z, src.shape)[ok]
        mean = 0.5 * (src + dst)[ok] / bias

        def residual(theta):
            eta, beta, delta = theta
            return eta * np.tanh(beta * (zz - delta)) - mean

        eta, beta, delta = optimize.least_squares(residual, x0=[1.0 if o == "p" else -1.0, 13.0, 0.0],
                                                  method="lm").x
        per_bias.append({"orientation": o, "bias_a": float(bias), "eta": float(eta), "beta_per_v": float(beta),
                         "delta_v": float(delta)})
    saturation = np.array([abs(f["eta"]) * f["bias_a"] for f in per_bias])
    log_i = np.log(saturation)
    b1, b0 = np.polyfit(log_i, [f["beta_per_v"] for f in per_bias], 1)
    e1, e0 = np.polyfit(log_i, [abs(f["eta"]) for f in per_bias], 1)
    offsets = {o: float(np.mean([f["delta_v"] for f in per_bias if f["orientation"] == o])) for o in "pn"}
    worst_error = worst_imbalance = 0.0
    for (o, bias), (z, src, dst) in sweeps.items():
        ok = _in_range(z, d)
        sign = 1.0 if o == "p" else -1.0
        eta = e0 + e1 * np.log(_saturation_of_bias(bias, e0, e1))
        i_sat = eta * bias
        model = sign * i_sat * np.tanh((b0 + b1 * np.log(i_sat)) * (z - offsets[o]))
        worst_error = max(worst_error, float(np.max(np.abs(np.stack([src - model, dst - model]))[:, ok]) / i_sat))
        worst_imbalance = max(worst_imbalance, float(np.max(np.abs(src - dst)[ok]) / i_sat))
    return {"slope_per_v": float(b0), "slope_per_v_per_log_a": float(b1), "eta": float(e0),
            "eta_per_log_a": float(e1), "offset_v": offsets, "max_error": worst_error,
            "imbalance": worst_imbalance, "per_bias": per_bias}


def _saturation_of_bias(bias, e0, e1, iterations: int = 20):
    """The saturation current ``I`` with ``I = η(I)·bias`` (a fixed point; η ≈ 1)."""
    current = bias
    for _ in range(iterations):
        current = (e0 + e1 * np.log(current)) * bias
    return current


def _driven_capacitance(result, source: str) -> float:
    """Capacitance (F) on the node the sine source ``source`` drives: the quadrature part
    of its current over the last two periods, ``C = I_q/(2πf·A)``."""
    t = np.asarray(result.time)
    omega = 2 * math.pi * CAP_FREQUENCY_HZ
    last = t >= t[-1] - 2.0 / CAP_FREQUENCY_HZ
    # the current into the node from its source is −i(V): ngspice's i(V) flows + → − inside
    current = -result.vectors[f"i({source})"]
    cos = np.cos(omega * t[last])
    quadrature = np.trapezoid(current[last] * cos, t[last]) / np.trapezoid(cos ** 2, t[last])
    return float(quadrature / (omega * CAP_AMPLITUDE_V))


def pin_capacitances(result) -> dict:
    """``{"src": C, "dst": C}`` (F) of a cell's pins, from the capacitance run."""
    return {"src": _driven_capacitance(result, "vssrc"), "dst": _driven_capacitance(result, "vddst")}


def passive_pin_capacitances(result) -> dict:
    """``{cell: {pin: [c0, c1]}}`` of ``C = c0 + c1·size`` (F, size in µm) for each
    passive cell, from its smallest and largest size in the capacitance run, and for the
    rectifier (``"relu"``, switched off; size its width multiple)."""
    out = {}
    for cell, (_, _, sizes) in PASSIVE_CELLS.items():
        small, large = min(sizes), max(sizes)
        out[cell] = {}
        for pin in ("src", "dst"):
            source = f"v{pin[0]}{cell[0]}{pin}"
            c_small = _driven_capacitance(result, f"{source}{sizes.index(small)}")
            c_large = _driven_capacitance(result, f"{source}{sizes.index(large)}")
            slope = (c_large - c_small) / (large - small)
            out[cell][pin] = [float(c_small - slope * small), float(slope)]
    small, large = min(RELU_SWEEP_SCALES), max(RELU_SWEEP_SCALES)
    out["relu"] = {}
    for pin in ("src", "dst"):
        c_small, c_large = (_driven_capacitance(result, f"v{pin[0]}u{pin}{k}") for k in range(2))
        slope = (c_large - c_small) / (large - small)
        out["relu"][pin] = [float(c_small - slope * small), float(slope)]
    return out


def mim_capacitor_fit(result) -> dict:
    """``{"c_per_um2": c_a, "dw_um": dw}`` of ``C = c_a·(side + dw)²`` from the two
    measured MIM capacitors."""
    (s1, s2) = MIM_TEST_SIDES_UM
    r1, r2 = (math.sqrt(_driven_capacitance(result, f"vmim{k}")) for k in range(2))
    k = (r2 - r1) / (s2 - s1)
    return {"c_per_um2": k * k, "dw_um": r1 / k - s1}


def characterise(corner: str = "tt", temperature_c: float = 27.0, *, pdk: PDK | None = None,
                 design: TanhCellDesign = TANH_CELL, use_cache: bool = True, timeout: float = 900.0,
                 resistor: ResistorCellDesign = RESISTOR_CELL, diode: DiodeCellDesign = DIODE_CELL,
                 relu: ReLUCellDesign = RELU_CELL) -> CellCharacterisation:
    """Characterise the cells in ngspice (or read the cached result): the tanh cell, the
    conductance cell, the diode cell and the rectifier.

    Parameters
    ----------
    corner : {"tt", "ss", "ff", "sf", "fs"}
    temperature_c : float
        Temperature in °C (ngspice's ``.temp``), -60..175.
    pdk : PDK, optional
        Default :func:`~kirchhoff_sim.cells.pdk.locate_pdk`.
    design : TanhCellDesign
    resistor : ResistorCellDesign
    diode : DiodeCellDesign
    relu : ReLUCellDesign
    use_cache : bool
        Read and write the cache (:func:`cache_directory`).
    timeout : float
        Seconds per ngspice run.

    Returns
    -------
    CellCharacterisation

    Raises
    ------
    PDKNotFoundError
        The sky130 models are not installed.
    InputError
        Unknown corner or a temperature out of range.
    SpiceError
        An ngspice run failed.
    """
    corner = check_corner(corner)
    if isinstance(temperature_c, bool) or not isinstance(temperature_c, (int, float)) \
            or not math.isfinite(temperature_c) or not -60 <= temperature_c <= 175:
        raise InputError(f"temperature {temperature_c!r} °C is outside -60..175 °C")
    pdk = pdk or locate_pdk()
    path = cache_directory() / (f"{pdk.name}-{pdk.fingerprint}-{corner}-{temperature_c:g}C-"
                                f"{_design_key(design, resistor, diode, relu)}-v{CACHE_VERSION}.json")
    if use_cache and path.is_file():
        try:
            cached = CellCharacterisation.from_json(path.read_text(encoding="utf-8"), str(path))
            # the entry must be what its name says: this PDK, corner, temperature and design
            if (cached.pdk, cached.pdk_fingerprint, cached.corner, cached.temperature_c, cached.design) == \
                    (pdk.name, pdk.fingerprint, corner, float(temperature_c), asdict(design)) \
                    and cached.relu.get("design") == asdict(relu):
                return cached
        except (ModelFileError, OSError, UnicodeDecodeError):
            pass    # a damaged cache entry is measured again and replaced
    trusted = (str(pdk.library),)
    jobs = {(o, bias): sweep_netlist(pdk, corner, temperature_c, bias, o, design)
            for o in "pn" for bias in SWEEP_BIASES}
    jobs["caps"] = capacitance_netlist(pdk, corner, temperature_c, design, relu=relu)
    jobs["relu"] = relu_sweep_netlist(pdk, corner, temperature_c, relu, design)
    jobs["step"] = step_netlist(pdk, corner, temperature_c, design)
    jobs["resistor"] = passive_sweep_netlist(pdk, corner, temperature_c, "resistor", resistor, design)
    jobs["diode"] = passive_sweep_netlist(pdk, corner, temperature_c, "diode", diode, design)

    def run(key):
        return run_netlist(jobs[key], analysis="tran" if key in ("caps", "step") else "dc", timeout=timeout,
                           trusted_libraries=trusted)

    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:     # each run is its own ngspice process
        results = dict(zip(jobs, pool.map(run, jobs)))
    elapsed = sum(r.elapsed for r in results.values())
    caps, step = results.pop("caps"), results.pop("step")
    passive = {cell: results.pop(cell) for cell in PASSIVE_CELLS}
    relu_fit = fit_relu_cell(relu_sweeps(results.pop("relu")), relu)
    sweeps = {key: (np.asarray(r.time), *_terminal_currents(r)) for key, r in results.items()}
    pins = passive_pin_capacitances(caps)
    resistor_fit = fit_resistor_cell(passive_sweeps(passive["resistor"], RESISTOR_SWEEP_LENGTHS_UM), resistor)
    diode_fit = fit_diode_cell(passive_sweeps(passive["diode"], DIODE_SWEEP_WIDTHS_UM), temperature_c, diode)
    result = CellCharacterisation(
        pdk=pdk.name, pdk_fingerprint=pdk.fingerprint, corner=corner, temperature_c=float(temperature_c),
        design=asdict(design), **fit_tanh_cell(sweeps, design), pin_capacitance_f=pin_capacitances(caps),
        mim_capacitor=mim_capacitor_fit(caps), delay_s=step_delay(step),
        resistor={**resistor_fit, "pin_capacitance_f": pins["resistor"]},
        diode={**diode_fit, "pin_capacitance_f": pins["diode"]},
        relu={**relu_fit, "pin_capacitance_f": pins["relu"]}, sweep_seconds=elapsed)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, result.to_json())
    return result


def _design_key(design: TanhCellDesign, resistor: ResistorCellDesign = RESISTOR_CELL,
                diode: DiodeCellDesign = DIODE_CELL, relu: ReLUCellDesign = RELU_CELL) -> str:
    designs = {"tanh": asdict(design), "resistor": asdict(resistor), "diode": asdict(diode), "relu": asdict(relu)}
    return hashlib.sha256(json.dumps(designs, sort_keys=True).encode()).hexdigest()[:10]
