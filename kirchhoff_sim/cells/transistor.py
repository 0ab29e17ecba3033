"""A trained net as sky130 transistors: cells, supplies, biases and clocks; run and compared.

:func:`map_cells` takes each trained device to its cell (DESIGN.md §8): a
:class:`~kirchhoff_sim.devices.TanhCell` edge with offset ``c`` and amplitude ``A``
becomes the cell of orientation ``sign(A)`` with reference current
``I_ref = |A|·G0·V0 / η`` and a gate offset ``V_off = δ − c·V0`` (``η``, ``δ`` from the
characterisation), or no cell at all when ``A = 0`` (off). What the cells cannot carry is
refused per edge: another family, a bias outside the cell's window, an offset beyond the
operating range.

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
from ..devices import TanhCell
from ..errors import CellMappingError, InputError
from ..fileio import atomic_write_bytes
from ..spice.runner import run_netlist
from ..spice.validate import plain_record
from ..spice.safety import sanitise_title
from .characterise import CellCharacterisation, netlist_header, supply_lines
from .library import MIM_CAP, cell_subcircuits, transistor_counts
from .pdk import PDK

__all__ = ["CellMap", "check_cell_families", "node_voltages", "delivered_energy", "cell_model_net", "map_cells", "transistor_capacitance", "to_transistor_netlist", "TransistorNetlist",
           "validate_transistor", "TransistorSample", "TransistorReport"]

#: a parameter within this relative distance of a window edge counts as inside (rounding)
_WINDOW_SLACK = 1e-9
#: clock edges: rise and fall time as a fraction of the shortest layer
CLOCK_EDGE_FRACTION = 1e-3
#: read-out settled: within this fraction of the swing of its final value
SETTLING_FRACTION = 0.01
MAX_LISTED_EDGES = 6


@dataclass(frozen=True)
class CellMap:
    """Every edge's cell: arrays over the net's edges in layer order.

    Attributes
    ----------
    layer, src, dst : ndarray of int, shape (E,)
    on : ndarray of bool, shape (E,)
        False for an off device (``A = 0``): no cell is built.
    negative : ndarray of bool, shape (E,)
        The ``ks_tanh_n`` orientation (``A < 0``).
    bias_a : ndarray, shape (E,)
        Reference current (A); 0 when off.
    offset_v : ndarray, shape (E,)
        Gate offset source (V).
    """

    layer: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    on: np.ndarray
    negative: np.ndarray
    bias_a: np.ndarray
    offset_v: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.on.sum())

    def transistors(self) -> int:
        """Transistors of the netlist: every on cell with its bias diode."""
        counts = transistor_counts()
        return self.n_cells * (counts["ks_tanh_p"] + counts["ks_bias"])


def _listed(indices) -> str:
    shown = ", ".join(str(int(e)) for e in indices[:MAX_LISTED_EDGES])
    more = len(indices) - MAX_LISTED_EDGES
    return shown + (f" and {more} more" if more > 0 else "")


def _cell_edges(net):
    """Per group: layer index, src, dst and parameters of every edge, in layer order.

    Raises
    ------
    CellMappingError
        A device family with no cell, naming the families and their edges.
    """
    layers, srcs, dsts, params, foreign = [], [], [], [], {}
    first = 0
    for k, layer in enumerate(net.layers):
        for group in layer.groups:
            n = group.num_edges
            if not isinstance(group.device, TanhCell):
                foreign.setdefault(type(group.device).__name__, []).extend(range(first, first + n))
            else:
                params.append(np.asarray(group.params))
            layers.append(np.full(n, k))
            srcs.append(group.src)
            dsts.append(group.dst)
            first += n
    if foreign:
        described = "; ".join(f"{family}: edges {_listed(edges)}" for family, edges in foreign.items())
        raise CellMappingError(f"no sky130 cell realises the device famil{'y' if len(foreign) == 1 else 'ies'} "
                               f"{', '.join(foreign)} ({described}); the cell library has TanhCell only "
                               f"(train with --profile sky130)")
    return layers, srcs, dsts, params


def check_cell_families(net) -> None:
    """Raise :class:`~kirchhoff_sim.errors.CellMappingError` unless every device of
    ``net`` has a cell (naming the families and edges that have none)."""
    _cell_edges(net)


def map_cells(net, characterisation: CellCharacterisation, scale) -> CellMap:
    """Map each trained device to its cell's orientation, bias and offset.

    Parameters
    ----------
    net : KirchhoffNet
        Every device a :class:`~kirchhoff_sim.devices.TanhCell`.
    characterisation : CellCharacterisation
    scale : PhysicalScale

    Returns
    -------
    CellMap

    Raises
    ------
    CellMappingError
        A device family with no cell (naming the families and edges), or parameters a
        cell cannot realise: a bias current outside the cell's window, an offset beyond
        its operating range (naming the edges and values).
    """
    design = characterisation.design
    layers, srcs, dsts, params = _cell_edges(net)
    p = np.concatenate(params, axis=1)
    offset, amplitude = p[0], p[1]
    unit = scale.G0 * scale.V0
    on = amplitude != 0
    saturation = np.abs(amplitude) * unit
    eta = characterisation.efficiency(np.where(on, saturation, 1.0))
    bias = np.where(on, saturation / eta, 0.0)
    low, high = design["bias_min_a"], design["bias_max_a"]
    outside = np.nonzero(on & ((bias < low * (1 - _WINDOW_SLACK)) | (bias > high * (1 + _WINDOW_SLACK))))[0]
    if outside.size:
        worst = outside[np.argmax(np.abs(np.log(bias[outside] / math.sqrt(low * high))))]
        raise CellMappingError(
            f"{outside.size} cell(s) need a bias current outside the cell's window [{low:.3g}, {high:.3g}] A: "
            f"edges {_listed(outside)} (edge {worst}: {bias[worst]:.4g} A for amplitude {amplitude[worst]:.4g}); "
            f"train against the sky130 profile, whose window is the cell's")
    negative = amplitude < 0
    delta = np.where(negative, characterisation.offset_v["n"], characterisation.offset_v["p"])
    offset_v = np.where(on, delta - offset * scale.V0, 0.0)
    beyond = np.nonzero(on & (np.abs(offset * scale.V0) > design["half_range_v"] * (1 + _WINDOW_SLACK)))[0]
    if beyond.size:
        worst = beyond[np.argmax(np.abs(offset[beyond]))]
        raise CellMappingError(
            f"{beyond.size} cell(s) have an input offset beyond the operating range ±{design['half_range_v']:g} V: "
            f"edges {_listed(beyond)} (edge {worst}: {offset[worst] * scale.V0:.4g} V)")
    return CellMap(np.concatenate(layers), np.concatenate(srcs), np.concatenate(dsts), on, negative, bias, offset_v)


def _node_capacitor_sides(net, characterisation, scale) -> np.ndarray:
    """Side (µm) of each node's square MIM capacitor, realising ``C0·C_n``."""
    return np.array([float(characterisation.mim_side_um(scale.C0 * float(c))) for c in net.capacitance])


def transistor_capacitance(net, cells: CellMap, characterisation: CellCharacterisation, scale) -> np.ndarray:
    """Normalised capacitance of every node of the transistor-level circuit, shape (N,):
    its MIM capacitor (as the PDK realises the drawn size) plus the pins of every cell
    on it (both layers' cells load a node whether their layer is on or not)."""
    sides = _node_capacitor_sides(net, characterisation, scale)
    capacitance = np.array([characterisation.mim_capacitance_f(s) for s in sides])
    pins = characterisation.pin_capacitance_f
    for pin, nodes in (("src", cells.src), ("dst", cells.dst)):
        on_nodes = nodes[cells.on & (nodes > 0)]
        capacitance += pins[pin] * np.bincount(on_nodes - 1, minlength=net.num_nodes)
    return capacitance / scale.C0


def cell_model_net(net, cells: CellMap, characterisation: CellCharacterisation, scale):
    """``net`` on the node capacitances its transistor-level circuit realises: what our
    solver runs as the reference of a transistor-level check (its devices are the cell
    models already)."""
    return net.with_parameters(capacitance=transistor_capacitance(net, cells, characterisation, scale))


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
        TanhCell devices only.
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
    lines += cell_subcircuits(characterisation.cell_design) + supply_lines(characterisation.cell_design, common_mode=True)
    for k in range(len(net.layers)):
        points_k = [(0.0, design["vdd"] if k == 0 else 0.0)]
        if k > 0:
            points_k += [(boundaries[k], 0.0), (boundaries[k] + edge, design["vdd"])]
        if k < len(net.layers) - 1:
            points_k += [(boundaries[k + 1], design["vdd"]), (boundaries[k + 1] + edge, 0.0)]
        lines.append(f"Vclk{k} clk{k} 0 PWL({' '.join(f'{float(t)!r} {float(v)!r}' for t, v in points_k)})")
    for n, side in enumerate(_node_capacitor_sides(net, characterisation, scale), start=1):
        lines.append(f"XC{n} {_node(n)} 0 {MIM_CAP} W={float(side)!r} L={float(side)!r}")
    for e in np.nonzero(cells.on)[0]:
        s, d = _node(int(cells.src[e])), _node(int(cells.dst[e]))
        gate = s
        if cells.offset_v[e] != 0.0:
            gate = f"g{e}"
            lines.append(f"Vo{e} {gate} {s} {float(cells.offset_v[e])!r}")
        lines += [f"Ib{e} vdd nb{e} {float(cells.bias_a[e])!r}", f"XB{e} nb{e} 0 ks_bias",
                  f"X{e} {s} {gate} {d} vdd 0 nb{e} vcp vcn clk{cells.layer[e]} "
                  f"ks_tanh_{'n' if cells.negative[e] else 'p'}"]
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
        TanhCell devices (trained against the sky130 profile).
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
    notes = [f"solver reference: the cell models (TanhCell) on the realised node capacitances (MIM + cell pins)",
             f"waveforms compared at ngspice's {int(np.median([len(r.time) for r in results]))} time points (median)"]
    return TransistorReport(samples, netlists[0].corner, cells.n_cells, cells.transistors(), netlists[0].t_stop,
                            scale, notes, waveforms)

