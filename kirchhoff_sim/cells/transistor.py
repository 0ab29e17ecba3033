"""A trained net as sky130 transistors: cells, supplies, biases and clocks; run and compared.

:func:`map_cells` takes each trained device to its cell (DESIGN.md §8), one mapping per
family (:data:`CELL_FAMILIES`):

* a :class:`~kirchhoff_sim.devices.TanhCell` edge with offset ``c`` and amplitude ``A``
  becomes the cell of orientation ``sign(A)`` with reference current
  ``I_ref = |A|·G0·V0 / η`` and a gate offset ``V_off = δ − c·V0`` (``η``, ``δ`` from the
  characterisation), or no cell at all when ``A = 0`` (off);
* a :class:`~kirchhoff_sim.devices.Conductance` edge ``g`` becomes the poly-resistor cell
  whose strip length gives ``R_fixed + ρ·L = 1/(g·G0)``, or no cell when ``g = 0`` (an
  open circuit, realised exactly by building nothing, as an off device of the
  constrained training is);
* a :class:`~kirchhoff_sim.devices.Diode` edge ``i_s`` becomes the DTMOS diode cell whose
  width gives ``j_w·(W + ΔW) = i_s·G0·V0``; its family's normalised thermal voltage must
  be the cell's ``n·U_T/V0`` (:func:`~kirchhoff_sim.cells.diode_device`);
* a :class:`~kirchhoff_sim.devices.ShiftedReLU` edge with threshold ``θ`` and gain ``g``
  becomes the rectifier of orientation ``sign(g)`` made of ``wm = |g|·G0/g_u`` unit cells
  (width multiple; strip ``L_u/wm``, reference current ``wm·I_u``) with a gate offset
  ``V_off = δ − θ·V0``, or no cell when ``g = 0``.

What the cells cannot carry is refused per edge: a family with no cell, a bias outside
the tanh cell's window, an offset beyond the operating range, a negative conductance or
one outside the resistor's window, a diode of another thermal voltage, with a series
resistance, or of a saturation current outside the widths the cell may draw, a rectifier
gain outside the cell's window or a threshold beyond the operating range.

:func:`to_transistor_netlist` writes one sample's circuit: the ``.lib`` card of the
located PDK at the profile's corner, the cell subcircuits, the supply ``vdd`` and the
references ``vcm`` (the net's ground node), ``vcp``/``vcn`` (cascode gates), one bias
reference per cell, one PWL clock per layer driving the cells' tail switches, a sky130
MIM capacitor per node and ``.ic`` on the signal nodes — a real operating point, not
``uic``, which would leave the bias nodes at 0 V. No B, E, F, G or H element appears.

:func:`validate_transistor` runs samples in ngspice (one process each, in parallel) and
compares them with our solver running the cell models on the same capacitances: the
waveform error as a fraction of the swing, the class, the energy the sources deliver
and the latency read from the waveforms.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ..checks import as_int
from ..errors import CellMappingError, InputError
from ..fileio import atomic_write_bytes
from ..spice.runner import run_netlist
from ..spice.validate import plain_record
from ..spice.safety import sanitise_title
from .characterise import CellCharacterisation, netlist_header, supply_lines
from .library import (DIODE_WIDTH_PARAMETER, MIM_CAP, RELU_CELL, RELU_SCALE_PARAMETER, RESISTOR_LENGTH_PARAMETER,
                      ReLUCellDesign, cell_subcircuits, transistor_counts)
from .pdk import PDK

__all__ = ["CELL_FAMILIES", "CellMap", "cell_fit_error", "cell_model_net", "check_cell_parameters", "node_voltages", "delivered_energy", "check_cell_families", "map_cells", "transistor_capacitance", "to_transistor_netlist", "TransistorNetlist",
           "validate_transistor", "TransistorSample", "TransistorReport"]

#: a parameter within this relative distance of a window edge counts as inside (rounding)
_WINDOW_SLACK = 1e-9
#: clock edges: rise and fall time as a fraction of the shortest layer
CLOCK_EDGE_FRACTION = 1e-3
#: read-out settled: within this fraction of the swing of its final value
SETTLING_FRACTION = 0.01
MAX_LISTED_EDGES = 6
#: a Diode's normalised thermal voltage counts as the cell's within this relative distance:
#: an error δ in n·U_T moves the current at the top of the range (0.3 V ≈ 10 n·U_T) by ≈ 10·δ,
#: so 1e-4 keeps it to 0.1 % of full scale
THERMAL_VOLTAGE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CellMap:
    """Every edge's cell: arrays over the net's edges in layer order.

    Attributes
    ----------
    layer, src, dst : ndarray of int, shape (E,)
    family : ndarray of str, shape (E,)
        The device family (a key of :data:`CELL_FAMILIES`).
    on : ndarray of bool, shape (E,)
        False for an off device (``A = 0``, ``g = 0``): no cell is built.
    negative : ndarray of bool, shape (E,)
        The ``ks_tanh_n`` orientation (``A < 0``); False for other families.
    bias_a : ndarray, shape (E,)
        Reference current (A) of a tanh or rectifier cell; 0 when off and for the passive cells.
    offset_v : ndarray, shape (E,)
        Gate offset source (V) of a tanh or rectifier cell; 0 for other families.
    size_um : ndarray, shape (E,)
        The strip length of a resistor cell or the width of a diode cell (µm), the width
        multiple ``wm`` of a rectifier (dimensionless); 0 else.
    """

    layer: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    family: np.ndarray
    on: np.ndarray
    negative: np.ndarray
    bias_a: np.ndarray
    offset_v: np.ndarray
    size_um: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.on.sum())

    def transistors(self) -> int:
        """Transistors of the netlist: every on cell (a tanh cell with its bias diode)."""
        counts = transistor_counts()
        return sum(int(np.sum(self.on & (self.family == name))) * sum(counts[c] for c in family.subcircuits)
                   for name, family in CELL_FAMILIES.items())


def _listed(indices) -> str:
    shown = ", ".join(str(int(e)) for e in indices[:MAX_LISTED_EDGES])
    more = len(indices) - MAX_LISTED_EDGES
    return shown + (f" and {more} more" if more > 0 else "")


def _cell_edges(net):
    """Every edge's layer, src, dst and family in layer order, and per family the groups
    ``(global edge indices, parameters (n_params, n), device)``.

    Raises
    ------
    CellMappingError
        A device family with no cell, naming the families and their edges.
    """
    layers, srcs, dsts, families, groups, foreign = [], [], [], [], {}, {}
    first = 0
    for k, layer in enumerate(net.layers):
        for group in layer.groups:
            n = group.num_edges
            family = type(group.device).__name__
            edges = np.arange(first, first + n)
            if family not in CELL_FAMILIES:
                foreign.setdefault(family, []).extend(edges)
            else:
                groups.setdefault(family, []).append((edges, np.asarray(group.params, dtype=float), group.device))
            layers.append(np.full(n, k))
            srcs.append(group.src)
            dsts.append(group.dst)
            families.append(np.full(n, family, dtype=object))
            first += n
    if foreign:
        described = "; ".join(f"{family}: edges {_listed(edges)}" for family, edges in foreign.items())
        raise CellMappingError(f"no sky130 cell realises the device famil{'y' if len(foreign) == 1 else 'ies'} "
                               f"{', '.join(foreign)} ({described}); the cell library has "
                               f"{', '.join(CELL_FAMILIES)} (train with --profile sky130)")
    return np.concatenate(layers), np.concatenate(srcs), np.concatenate(dsts), np.concatenate(families), groups


def check_cell_families(net) -> None:
    """Raise :class:`~kirchhoff_sim.errors.CellMappingError` unless every device of
    ``net`` has a cell (naming the families and edges that have none)."""
    _cell_edges(net)


def _outside(values, low, high, on=None):
    """Indices (of the edges that are ``on``, default every edge) where ``values`` leave
    ``[low, high]`` by more than the rounding slack."""
    mask = (values < low * (1 - _WINDOW_SLACK)) | (values > high * (1 + _WINDOW_SLACK))
    return np.nonzero(mask if on is None else mask & on)[0]


def _farthest(values, indices, low, high) -> int:
    """The one of ``indices`` whose value lies farthest (in log) from the window's middle:
    the edge an error message names."""
    return int(indices[np.argmax(np.abs(np.log(np.maximum(values[indices], 1e-300) / math.sqrt(low * high))))])


def _map_tanh(edges, p, devices_, characterisation, scale) -> dict:
    """Orientation, reference current and gate offset of tanh cells (module docstring)."""
    design = characterisation.design
    offset, amplitude = p[0], p[1]
    unit = scale.G0 * scale.V0
    on = amplitude != 0
    saturation = np.abs(amplitude) * unit
    eta = characterisation.efficiency(np.where(on, saturation, 1.0))
    bias = np.where(on, saturation / eta, 0.0)
    low, high = design["bias_min_a"], design["bias_max_a"]
    outside = _outside(bias, low, high, on)
    if outside.size:
        worst = _farthest(bias, outside, low, high)
        raise CellMappingError(
            f"{outside.size} cell(s) need a bias current outside the cell's window [{low:.3g}, {high:.3g}] A: "
            f"edges {_listed(edges[outside])} (edge {edges[worst]}: {bias[worst]:.4g} A for amplitude "
            f"{amplitude[worst]:.4g}); train against the sky130 profile, whose window is the cell's")
    negative = amplitude < 0
    delta = np.where(negative, characterisation.offset_v["n"], characterisation.offset_v["p"])
    beyond = np.nonzero(on & (np.abs(offset * scale.V0) > design["half_range_v"] * (1 + _WINDOW_SLACK)))[0]
    if beyond.size:
        worst = beyond[np.argmax(np.abs(offset[beyond]))]
        raise CellMappingError(
            f"{beyond.size} cell(s) have an input offset beyond the operating range ±{design['half_range_v']:g} V: "
            f"edges {_listed(edges[beyond])} (edge {edges[worst]}: {offset[worst] * scale.V0:.4g} V)")
    return {"on": on, "negative": negative, "bias_a": bias, "offset_v": np.where(on, delta - offset * scale.V0, 0.0)}


def _map_conductance(edges, p, devices_, characterisation, scale) -> dict:
    """Strip lengths of resistor cells: ``g·G0 = 1/(R_fixed + ρ·L)``; ``g = 0`` is no cell."""
    d = characterisation.resistor["design"]
    conductance = p[0] * scale.G0
    negative = np.nonzero(conductance < 0)[0]
    if negative.size:
        worst = negative[np.argmin(conductance[negative])]
        raise CellMappingError(
            f"{negative.size} Conductance edge(s) are negative, which a resistor cannot realise: edges "
            f"{_listed(edges[negative])} (edge {edges[worst]}: g = {p[0][worst]:.4g}); a negative slope needs an "
            f"active cell (TanhCell), or train the conductances with gain_sign='positive'")
    on = conductance != 0
    low, high = d["conductance_min_s"], d["conductance_max_s"]
    outside = _outside(conductance, low, high, on)
    if outside.size:
        worst = _farthest(conductance, outside, low, high)
        raise CellMappingError(
            f"{outside.size} Conductance edge(s) lie outside the resistor cell's window [{low:.3g}, {high:.3g}] S: "
            f"edges {_listed(edges[outside])} (edge {edges[worst]}: {conductance[worst]:.4g} S); train against the "
            f"sky130 profile, whose conductance window is the cell's")
    length = np.where(on, characterisation.resistor_length_um(np.where(on, conductance, high)), 0.0)
    too = _outside(length, d["length_min_um"], d["length_max_um"], on)
    if too.size:
        raise CellMappingError(
            f"{too.size} Conductance edge(s) need a strip outside the drawable lengths [{d['length_min_um']:g}, "
            f"{d['length_max_um']:g}] um at this characterisation: edges {_listed(edges[too])} (edge "
            f"{edges[too[0]]}: {length[too[0]]:.4g} um)")
    return {"on": on, "size_um": length}


def _map_diode(edges, p, devices_, characterisation, scale) -> dict:
    """Widths of DTMOS diode cells: ``j_w·(W + ΔW) = i_s·G0·V0``; refused: another thermal
    voltage (per group), a series resistance, a width outside the window."""
    d = characterisation.diode["design"]
    cell_voltage = characterisation.diode["thermal_voltage_v"] / scale.V0
    for group_edges, device in devices_:
        if abs(device.thermal_voltage / cell_voltage - 1) > THERMAL_VOLTAGE_TOLERANCE:
            ideality = device.thermal_voltage * scale.V0 / (characterisation.diode["thermal_voltage_v"]
                                                           / characterisation.diode["ideality"])
            raise CellMappingError(
                f"Diode edges {_listed(group_edges)} have the normalised thermal voltage "
                f"{device.thermal_voltage:.6g}, i.e. n·U_T = {device.thermal_voltage * scale.V0 * 1e3:.4g} mV at "
                f"V0 = {scale.V0:g} V (ideality {ideality:.3g}); the sky130 diode cell's is {cell_voltage:.6g} "
                f"(ideality {characterisation.diode['ideality']:.3f}){'; no junction or channel has an ideality below 1' if ideality < 1 else ''}: "
                f"build the net's diodes with kirchhoff_sim.cells.diode_device")
    series = np.nonzero(p[1] != 0)[0]
    if series.size:
        raise CellMappingError(
            f"{series.size} Diode edge(s) have a series resistance, which the diode cell has none of: edges "
            f"{_listed(edges[series])} (edge {edges[series[0]]}: r_s = {p[1][series[0]]:.4g}); train with r_s = 0 "
            f"or put a Conductance edge in series")
    width = characterisation.diode_width_um(p[0] * scale.G0 * scale.V0)
    outside = _outside(width, d["width_min_um"], d["width_max_um"])
    if outside.size:
        worst = _farthest(width, outside, d["width_min_um"], d["width_max_um"])
        low, high = (characterisation.diode_saturation_a(w) / (scale.G0 * scale.V0)
                     for w in (d["width_min_um"], d["width_max_um"]))
        raise CellMappingError(
            f"{outside.size} Diode edge(s) have a saturation current outside the cell's window i_s in "
            f"[{low:.4g}, {high:.4g}] (widths {d['width_min_um']:g}-{d['width_max_um']:g} um): edges "
            f"{_listed(edges[outside])} (edge {edges[worst]}: i_s = {p[0][worst]:.4g})")
    return {"on": np.ones(len(edges), dtype=bool), "size_um": width}


def _map_relu(edges, p, devices_, characterisation, scale) -> dict:
    """Orientation, width multiple, reference current and gate offset of rectifier cells:
    ``wm = |g|·G0/g_u`` within the gain window, ``V_off = δ − θ·V0`` with ``|θ·V0|`` within
    the operating range; ``g = 0`` is no cell."""
    fit = characterisation.relu
    d = fit["design"]
    _refuse_relu(edges, p, d, scale)
    threshold, gain = p[0], p[1]
    on = gain != 0
    gain_s = np.abs(gain) * scale.G0
    negative = gain < 0
    wm = np.where(on, characterisation.relu_scale(gain_s), 0.0)
    delta = np.where(negative, fit["offset_v"]["n"], fit["offset_v"]["p"])
    return {"on": on, "negative": negative, "bias_a": wm * d["unit_tail_a"], "size_um": wm,
            "offset_v": np.where(on, delta - threshold * scale.V0, 0.0)}


def _refuse_relu(edges, p, d: dict, scale) -> None:
    """Raise :class:`CellMappingError` naming the ShiftedReLU edges whose gain lies
    outside the rectifier's window or whose threshold beyond the operating range (a
    question of the design, not of the characterisation: asked before any work)."""
    threshold, gain = p[0], p[1]
    on = gain != 0
    gain_s = np.abs(gain) * scale.G0
    low, high = d["gain_min_s"], d["gain_max_s"]
    outside = _outside(gain_s, low, high)
    outside = outside[on[outside]]
    if outside.size:
        worst = outside[np.argmax(np.abs(np.log(gain_s[outside] / math.sqrt(low * high))))]
        raise CellMappingError(
            f"{outside.size} ShiftedReLU edge(s) have a gain outside the rectifier cell's window [{low:.3g}, "
            f"{high:.3g}] S: edges {_listed(edges[outside])} (edge {edges[worst]}: |g| = {gain_s[worst]:.4g} S for "
            f"gain {gain[worst]:.4g}); train against the sky130 profile, whose conductance window is the cell's")
    beyond = np.nonzero(on & (np.abs(threshold * scale.V0) > d["half_range_v"] * (1 + _WINDOW_SLACK)))[0]
    if beyond.size:
        worst = beyond[np.argmax(np.abs(threshold[beyond]))]
        raise CellMappingError(
            f"{beyond.size} ShiftedReLU edge(s) have a threshold beyond the operating range ±{d['half_range_v']:g} V: "
            f"edges {_listed(edges[beyond])} (edge {edges[worst]}: {threshold[worst] * scale.V0:.4g} V)")


def check_cell_parameters(net, scale, relu: ReLUCellDesign = RELU_CELL) -> None:
    """The refusals that need no characterisation: ShiftedReLU gains and thresholds
    against the rectifier's design (:func:`_refuse_relu`).

    Raises
    ------
    CellMappingError
    """
    *_, groups = _cell_edges(net)
    if "ShiftedReLU" in groups:
        members = groups["ShiftedReLU"]
        _refuse_relu(np.concatenate([m[0] for m in members]), np.concatenate([m[1] for m in members], axis=1),
                     asdict(relu), scale)


@dataclass(frozen=True)
class CellFamily:
    """How one device family becomes cells: its subcircuits (for the transistor count),
    its mapping ``(edges, params, [(edges, device) per group], characterisation, scale)
    -> {CellMap column: values}`` and its netlist lines."""

    subcircuits: tuple
    map: object
    lines: object


def _tanh_lines(e, s, d, cells):
    gate, lines = s, []
    if cells.offset_v[e] != 0.0:
        gate = f"g{e}"
        lines.append(f"Vo{e} {gate} {s} {float(cells.offset_v[e])!r}")
    return lines + [f"Ib{e} vdd nb{e} {float(cells.bias_a[e])!r}", f"XB{e} nb{e} 0 ks_bias",
                    f"X{e} {s} {gate} {d} vdd 0 nb{e} vcp vcn clk{cells.layer[e]} "
                    f"ks_tanh_{'n' if cells.negative[e] else 'p'}"]


def _relu_lines(e, s, d, cells):
    gate, lines = s, []
    if cells.offset_v[e] != 0.0:
        gate = f"g{e}"
        lines.append(f"Vo{e} {gate} {s} {float(cells.offset_v[e])!r}")
    wm = float(cells.size_um[e])
    return lines + [f"Ib{e} vdd nb{e} {float(cells.bias_a[e])!r}",
                    f"XB{e} nb{e} 0 ks_relu_bias {RELU_SCALE_PARAMETER}={wm!r}",
                    f"X{e} {s} {gate} {d} vdd 0 nb{e} vcp vcn clk{cells.layer[e]} "
                    f"ks_relu_{'n' if cells.negative[e] else 'p'} {RELU_SCALE_PARAMETER}={wm!r}"]


def _passive_lines(subckt, parameter):
    def lines(e, s, d, cells):
        return [f"X{e} {s} {d} vdd 0 clk{cells.layer[e]} {subckt} {parameter}={float(cells.size_um[e])!r}"]
    return lines


#: the families the cell library realises
CELL_FAMILIES = {
    "TanhCell": CellFamily(("ks_tanh_p", "ks_bias"), _map_tanh, _tanh_lines),
    "Conductance": CellFamily(("ks_res",), _map_conductance, _passive_lines("ks_res", RESISTOR_LENGTH_PARAMETER)),
    "Diode": CellFamily(("ks_diode",), _map_diode, _passive_lines("ks_diode", DIODE_WIDTH_PARAMETER)),
    "ShiftedReLU": CellFamily(("ks_relu_p", "ks_relu_bias"), _map_relu, _relu_lines),
}


def cell_fit_error(cells: CellMap, characterisation: CellCharacterisation) -> float:
    """The worst fit error (fraction of full scale) of the cell models ``cells`` uses."""
    errors = {"TanhCell": characterisation.max_error, "Conductance": characterisation.resistor["max_error"],
              "Diode": characterisation.diode["max_error"], "ShiftedReLU": characterisation.relu["max_error"]}
    return float(max((errors[f] for f in set(cells.family[cells.on])), default=0.0))


def map_cells(net, characterisation: CellCharacterisation, scale) -> CellMap:
    """Map each trained device to its cell: orientation, bias and offset of a tanh cell,
    strip length of a resistor cell, width of a diode cell, orientation, width multiple,
    bias and offset of a rectifier (module docstring).

    Parameters
    ----------
    net : KirchhoffNet
        Every device of a family in :data:`CELL_FAMILIES`.
    characterisation : CellCharacterisation
    scale : PhysicalScale

    Returns
    -------
    CellMap

    Raises
    ------
    CellMappingError
        A device family with no cell (naming the families and edges), or parameters a
        cell cannot realise (naming the edges and values): a bias current outside the
        tanh cell's window, an offset beyond its operating range, a negative conductance
        or one outside the resistor's window, a diode of another thermal voltage, with a
        series resistance or a saturation current outside the cell's widths, a rectifier
        gain outside its window or a threshold beyond the operating range.
    """
    layer, src, dst, family, groups = _cell_edges(net)
    n = len(layer)
    columns = {"on": np.zeros(n, dtype=bool), "negative": np.zeros(n, dtype=bool), "bias_a": np.zeros(n),
               "offset_v": np.zeros(n), "size_um": np.zeros(n)}
    for name, members in groups.items():
        edges = np.concatenate([m[0] for m in members])
        params = np.concatenate([m[1] for m in members], axis=1)
        mapped = CELL_FAMILIES[name].map(edges, params, [(m[0], m[2]) for m in members], characterisation, scale)
        for column, values in mapped.items():
            columns[column][edges] = values
    return CellMap(layer, src, dst, family, **columns)


def _node_capacitor_sides(net, characterisation, scale) -> np.ndarray:
    """Side (µm) of each node's square MIM capacitor, realising ``C0·C_n``."""
    return np.array([float(characterisation.mim_side_um(scale.C0 * float(c))) for c in net.capacitance])


def transistor_capacitance(net, cells: CellMap, characterisation: CellCharacterisation, scale) -> np.ndarray:
    """Normalised capacitance of every node of the transistor-level circuit, shape (N,):
    its MIM capacitor (as the PDK realises the drawn size) plus the pins of every cell
    on it (both layers' cells load a node whether their layer is on or not)."""
    sides = _node_capacitor_sides(net, characterisation, scale)
    capacitance = np.array([characterisation.mim_capacitance_f(s) for s in sides])
    for pin, nodes in (("src", cells.src), ("dst", cells.dst)):
        loads = cell_pin_capacitances(cells, characterisation, pin)
        counted = cells.on & (nodes > 0)
        capacitance += np.bincount(nodes[counted] - 1, weights=loads[counted], minlength=net.num_nodes)
    return capacitance / scale.C0


def cell_model_net(net, cells: CellMap, characterisation: CellCharacterisation, scale):
    """``net`` on the node capacitances its transistor-level circuit realises: what our
    solver runs as the reference of a transistor-level check (its devices are the cell
    models already)."""
    return net.with_parameters(capacitance=transistor_capacitance(net, cells, characterisation, scale))


def cell_pin_capacitances(cells: CellMap, characterisation: CellCharacterisation, pin: str) -> np.ndarray:
    """Capacitance (F) of every edge's cell at ``pin`` (``"src"``/``"dst"``), shape (E,):
    the tanh cell's measured pin, the passive cells' and the rectifier's fitted linear in
    their size (the rectifier's: its width multiple)."""
    loads = np.where(cells.family == "TanhCell", characterisation.pin_capacitance_f[pin], 0.0)
    for family, cell in (("Conductance", "resistor"), ("Diode", "diode"), ("ShiftedReLU", "relu")):
        ours = cells.family == family
        if ours.any():
            loads[ours] = characterisation.pin_capacitance(cell, pin, cells.size_um[ours])
    return loads


@dataclass(frozen=True)
class TransistorNetlist:
    """One sample's transistor-level netlist.

    Attributes
    ----------
    text : str
    node_names : list of str
        SPICE name of nodes 1..N.
    t_stop : float
        Physical read-out time T·C0/G0 (s).
    corner : str
    cells, transistors : int
    library : str
        The PDK library the netlist loads (the runner trusts it and nothing else).
    """

    text: str
    node_names: list
    t_stop: float
    corner: str
    cells: int
    transistors: int
    library: str

    def save(self, path) -> str:
        """Write the netlist to ``path`` atomically; returns the path written."""
        return os.fspath(atomic_write_bytes(path, self.text.encode("ascii")))

    def __repr__(self) -> str:
        return (f"TransistorNetlist(corner={self.corner!r}, cells={self.cells}, transistors={self.transistors}, "
                f"lines={self.text.count(chr(10))}, tstop={self.t_stop:.6g} s)")


def _node(n: int) -> str:
    return "vcm" if n == 0 else f"n{n}"


def to_transistor_netlist(net, x, profile, characterisation: CellCharacterisation, pdk: PDK, *,
                          corner: str | None = None, cells: CellMap | None = None, reltol: float = 1e-4,
                          points: int = 250, title: str | None = None,
                          mismatch_seed: int | None = None) -> TransistorNetlist:
    """The transistor-level netlist of ``net`` with input ``x`` (normalised volts).

    Parameters
    ----------
    net : KirchhoffNet
        Devices of the families in :data:`CELL_FAMILIES`.
    x : array_like, shape (d,)
    profile : TechnologyProfile
        Its scale (V0, C0, G0) and, unless ``corner`` is given, its corner.
    characterisation : CellCharacterisation
        The fit that maps parameters to biases and offsets (normally of the same corner:
        at another corner the mapping stays that of the design corner, as on a chip).
    pdk : PDK
    corner : str, optional
        The process corner the netlist loads.
    cells : CellMap, optional
        :func:`map_cells`'s result, to reuse over samples.
    reltol : float
        ngspice reltol.
    points : int
        Output time step ``T/points`` (ngspice steps adaptively below it).
    title : str, optional
        Sanitised into the title line.
    mismatch_seed : int, optional
        Load the corner's mismatch section (:data:`~kirchhoff_sim.cells.pdk.MISMATCH_CORNERS`)
        with ngspice's random generator seeded by it: one seed is one chip, every
        transistor with its own deviations (the same for every input, since ngspice draws
        them per instance in netlist order, before any analysis).

    Returns
    -------
    TransistorNetlist

    Raises
    ------
    CellMappingError, InputError
    """
    scale = profile.scale
    design = characterisation.design
    cells = cells or map_cells(net, characterisation, scale)
    corner = corner or profile.corner
    initial = net.initial_state(np.atleast_2d(np.asarray(x, dtype=float)))[1:, 0]   # nodes 1..N
    if np.any(np.abs(initial) * scale.V0 > design["half_range_v"] * (1 + _WINDOW_SLACK)):
        worst = int(np.argmax(np.abs(initial)))
        raise InputError(f"input on node {worst + 1} is {initial[worst] * scale.V0:.4g} V from vcm, beyond the "
                         f"cells' operating range ±{design['half_range_v']:g} V")
    time_unit = scale.C0 / scale.G0
    boundaries = np.concatenate([[0.0], np.cumsum([layer.duration for layer in net.layers])]) * time_unit
    t_stop = float(boundaries[-1])
    edge = CLOCK_EDGE_FRACTION * float(np.min(np.diff(boundaries)))
    if mismatch_seed is not None:
        mismatch_seed = as_int(mismatch_seed, "mismatch_seed", minimum=1)
    lines = netlist_header(pdk, corner, characterisation.temperature_c,
                           f"* {sanitise_title(title or 'KirchhoffNet')} - sky130 transistor level",
                           mismatch_seed=mismatch_seed)
    lines += ["* run: ngspice -n -D ngbehavior=hsa -b NET.cir (hsa: the PDK parses in seconds, not minutes)",
              f"* {cells.n_cells} cells, {cells.transistors()} transistors; corner {corner}"
              f"{'' if mismatch_seed is None else f' with mismatch (seed {mismatch_seed})'}; "
              f"V0={scale.V0:g} V, C0={scale.C0:g} F, G0={scale.G0:g} S",
              f".options reltol={reltol:g} abstol=1e-15 vntol=1e-7 method=gear"]
    lines += cell_subcircuits(characterisation.cell_design, characterisation.resistor_design,
                              characterisation.diode_design, characterisation.relu_design) + supply_lines(characterisation.cell_design, common_mode=True)
    lines += layer_clock_lines(boundaries, design["vdd"], edge)
    for n, side in enumerate(_node_capacitor_sides(net, characterisation, scale), start=1):
        lines.append(f"XC{n} {_node(n)} 0 {MIM_CAP} W={float(side)!r} L={float(side)!r}")
    for e in np.nonzero(cells.on)[0]:
        lines += CELL_FAMILIES[cells.family[e]].lines(e, _node(int(cells.src[e])), _node(int(cells.dst[e])), cells)
    vcm = design["vcm"]
    lines.append(".ic " + " ".join(f"v({_node(n)})={float(vcm + scale.V0 * v)!r}"
                                   for n, v in enumerate(initial, start=1)))
    # the read-out at T for a plain 'ngspice -n -D ngbehavior=hsa -b NET.cir' (volts, vcm included)
    lines += [f".tran {t_stop / points!r} {t_stop!r} 0 {t_stop / points!r}",
              ".save " + " ".join(f"v({_node(n)})" for n in range(1, net.num_nodes + 1)) + " i(vdd) i(vcm)",
              *(f".meas tran readout_{_node(int(n))} find v({_node(int(n))}) at={t_stop!r}" for n in net.readout),
              ".end"]
    return TransistorNetlist("\n".join(lines) + "\n", [_node(n) for n in range(1, net.num_nodes + 1)], t_stop,
                             corner, cells.n_cells, cells.transistors(), str(pdk.library))


def layer_clock_lines(boundaries: np.ndarray, vdd: float, edge: float) -> list[str]:
    """PWL clocks ``clk<k>`` (0 V off, ``vdd`` on) of the windows between ``boundaries``
    (seconds): each rises at its start and falls at its end over ``edge`` seconds, the
    enable of the cells' tail switches."""
    lines = []
    n_layers = len(boundaries) - 1
    for k in range(n_layers):
        points_k = [(0.0, vdd if k == 0 else 0.0)]
        if k > 0:
            points_k += [(boundaries[k], 0.0), (boundaries[k] + edge, vdd)]
        if k < n_layers - 1:
            points_k += [(boundaries[k + 1], vdd), (boundaries[k + 1] + edge, 0.0)]
        lines.append(f"Vclk{k} clk{k} 0 PWL({' '.join(f'{float(t)!r} {float(v)!r}' for t, v in points_k)})")
    return lines


def node_voltages(result, netlist: TransistorNetlist, vcm: float) -> np.ndarray:
    """Node voltages of an ngspice run from ``vcm`` (V), shape (n_t, N)."""
    return np.stack([result.voltage(name) - vcm for name in netlist.node_names], axis=1)


def delivered_energy(result, design: dict) -> float:
    """Energy (J) the sources deliver over the run: the supply ``vdd`` and ``vcm`` (the
    other references drive gates only), ``−∫(V_dd·i_dd + V_cm·i_cm) dt``."""
    power = -(design["vdd"] * result.vectors["i(vdd)"] + design["vcm"] * result.vectors["i(vcm)"])
    return float(np.trapezoid(power, np.asarray(result.time)))


@dataclass
class TransistorSample:
    """One sample at transistor level against the solver on the cell models.

    Voltages are physical, relative to ``vcm``; relative errors divide by ``swing``.
    """

    index: int
    max_abs_error: float
    final_abs_error: float
    swing: float
    max_rel_error: float
    solver_class: int
    spice_class: int
    class_agrees: bool
    readout_solver: list
    readout_spice: list
    energy_j: float
    bias_energy_j: float
    settling_s: float
    spice_seconds: float
    spice_points: int


@dataclass
class TransistorReport:
    """:func:`validate_transistor`'s result."""

    samples: list
    corner: str
    cells: int
    transistors: int
    t_stop: float
    scale: object
    notes: list = field(default_factory=list)
    waveforms: list = field(default_factory=list)

    @property
    def class_agreement(self) -> int:
        return sum(s.class_agrees for s in self.samples)

    @property
    def max_rel_error(self) -> float:
        return max(s.max_rel_error for s in self.samples)

    def to_dict(self) -> dict:
        """JSON-serialisable: the aggregates and every sample."""
        return {"mode": "transistor", "corner": self.corner, "cells": self.cells, "transistors": self.transistors,
                "t_stop_s": self.t_stop, "scale": self.scale.to_dict(), "num_samples": len(self.samples),
                "aggregate": {"class_agreement": self.class_agreement, "max_rel_error": self.max_rel_error,
                              "energy_j": float(np.mean([s.energy_j for s in self.samples])),
                              "bias_energy_j": float(np.mean([s.bias_energy_j for s in self.samples])),
                              "settling_s": max(s.settling_s for s in self.samples),
                              "spice_seconds": float(np.mean([s.spice_seconds for s in self.samples]))},
                "samples": [plain_record(asdict(s)) for s in self.samples], "notes": list(self.notes)}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        rows = [f"{'sample':>6}  {'rel.swing':>10}  {'at T rel.':>10}  {'class solver/ngspice':>20}  {'energy (J)':>10}  "
                f"{'ngspice s':>9}"]
        for s in self.samples:
            rows.append(f"{s.index:>6}  {s.max_rel_error:>10.3e}  {s.final_abs_error / s.swing:>10.3e}  "
                        f"{s.solver_class:>10}/{s.spice_class:<9}  {s.energy_j:>10.3e}  {s.spice_seconds:>9.1f}")
        return "\n".join([*rows, self.summary()])

    def summary(self) -> str:
        n = len(self.samples)
        energy = np.mean([s.energy_j for s in self.samples])
        settle = max(s.settling_s for s in self.samples)
        seconds = np.mean([s.spice_seconds for s in self.samples])
        return (f"transistor level (sky130 {self.corner}): {self.cells} cells, {self.transistors} transistors; "
                f"classes agree on {self.class_agreement}/{n}; worst waveform error "
                f"{self.max_rel_error:.3%} of the swing; energy {energy:.4g} J per inference; "
                f"read-out settled (to {SETTLING_FRACTION:.0%}) by {settle:.4g} s of T = {self.t_stop:.4g} s; "
                f"ngspice {seconds:.1f} s per sample")


def validate_transistor(net, X, profile, characterisation: CellCharacterisation, pdk: PDK, *,
                        corner: str | None = None, solver=None, workers: int = 2, timeout: float = 1800.0,
                        reltol: float = 1e-4, points: int = 250, keep_waveforms: bool = False) -> TransistorReport:
    """Run samples at transistor level in ngspice and compare with the cell-model solver.

    Parameters
    ----------
    net : KirchhoffNet
        Devices of the families in :data:`CELL_FAMILIES` (trained against the sky130 profile).
    X : array_like, shape (B, d)
    profile : TechnologyProfile
    characterisation : CellCharacterisation
        Of the design corner (the mapping); the solver's reference uses it too.
    pdk : PDK
    corner : str, optional
        Corner the netlists load (default the profile's): ss/ff runs show how far the
        circuit strays from the design corner's model.
    solver : solver object, optional
        Default Dopri5 at rtol 1e-8.
    workers : int
        ngspice processes at once.
    timeout : float
        Seconds per ngspice run.
    reltol, points : float, int
        ngspice's reltol and the output step ``T/points`` (see :func:`to_transistor_netlist`).
    keep_waveforms : bool
        Keep each sample's read-out waveforms in :attr:`TransistorReport.waveforms` as
        ``(t, v_spice, v_solver)``: times (s), shape (n_t,), and read-out voltages from
        ``vcm`` (V), shape (n_t, n_readout) — for plots; not in :meth:`~TransistorReport.to_dict`.

    Returns
    -------
    TransistorReport

    Raises
    ------
    CellMappingError, InputError, SpiceError
    """
    from ..solvers import Dopri5, simulate

    X = np.atleast_2d(np.asarray(X, dtype=float))
    scale = profile.scale
    cells = map_cells(net, characterisation, scale)
    reference = cell_model_net(net, cells, characterisation, scale)
    netlists = [to_transistor_netlist(net, x, profile, characterisation, pdk, corner=corner, cells=cells,
                                      reltol=reltol, points=points, title=f"sample {i}") for i, x in enumerate(X)]

    def run(netlist):
        return run_netlist(netlist.text, timeout=timeout, trusted_libraries=(netlist.library,))

    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        results = list(pool.map(run, netlists))
    time_unit = scale.C0 / scale.G0
    vcm, vdd = characterisation.design["vcm"], characterisation.design["vdd"]
    readout = np.asarray(net.readout) - 1
    samples, waveforms = [], []
    solver = solver or Dopri5(rtol=1e-8, atol=1e-10)
    for i, (x, result) in enumerate(zip(X, results)):
        t = np.asarray(result.time)
        t_norm = np.clip(t / time_unit, 0.0, net.T)
        solution = simulate(reference, x[None, :], solver=solver, save_at=t_norm)
        v_solver = np.asarray(solution.node_voltages)[:, 0, :] * scale.V0            # (n_t, N), V from vcm
        v_spice = node_voltages(result, netlists[i], vcm)
        difference = np.abs(v_spice - v_solver)
        swing = float(v_solver.max() - v_solver.min()) or 1.0
        final_solver, final_spice = v_solver[-1, readout], v_spice[-1, readout]
        energy = delivered_energy(result, characterisation.design)
        # the reference currents flow for the whole run, through their bias diodes
        bias_energy = float(vdd * cells.bias_a.sum() * t[-1])
        out = v_spice[:, readout]
        if keep_waveforms:
            waveforms.append((t, out, v_solver[:, readout]))
        settled = np.abs(out - out[-1]) <= SETTLING_FRACTION * swing
        last_unsettled = np.nonzero(~settled.all(axis=1))[0]
        settling = float(t[last_unsettled[-1] + 1]) if last_unsettled.size and last_unsettled[-1] + 1 < len(t) \
            else float(t[0])
        samples.append(TransistorSample(
            index=i, max_abs_error=float(difference.max()), final_abs_error=float(np.abs(final_spice - final_solver).max()),
            swing=swing, max_rel_error=float(difference.max()) / swing,
            solver_class=int(np.argmax(final_solver)), spice_class=int(np.argmax(final_spice)),
            class_agrees=bool(np.argmax(final_solver) == np.argmax(final_spice)),
            readout_solver=final_solver.tolist(), readout_spice=final_spice.tolist(), energy_j=energy,
            bias_energy_j=bias_energy, settling_s=settling, spice_seconds=float(result.elapsed),
            spice_points=int(len(t))))
    notes = [f"solver reference: the cell models ({', '.join(sorted(set(cells.family)))}) on the realised node "
             f"capacitances (MIM + cell pins)",
             f"waveforms compared at ngspice's {int(np.median([len(r.time) for r in results]))} time points (median)"]
    return TransistorReport(samples, netlists[0].corner, cells.n_cells, cells.transistors(), netlists[0].t_stop,
                            scale, notes, waveforms)

