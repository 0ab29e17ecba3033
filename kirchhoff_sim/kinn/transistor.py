"""A KINN's nonlinear drive as the sky130 tanh transconductor cell, simulated in ngspice.

The drive ``φ = tanh`` of every channel and window is the cell library's subthreshold
differential pair (:mod:`kirchhoff_sim.cells.library`, ``ks_tanh_n``), used as the
voltage-controlled current source it is: its ``g`` gate reads the window's summing node
``z`` (through the characterised offset ``δ``), its other gate and ``dst`` pin sit on
the reference ``vcm`` (the net's ground), and its ``src`` pin — the output that *gains*
``I1 − I2 = η·I_ref·tanh(β·(V_g − V_dst − δ))`` in this orientation — is stage 0 of the
channel. The layer clock drives the cell's tail switch, so a window's cells are off
outside it, as on a chip. The mapping, at the profile's scale (``V0``, ``G0``):

* the saturation current is one unit of current, ``η·I_ref = G0·V0`` (``η`` and the
  slope ``β`` are the characterisation's at that current), so the cell's amplitude is
  the model's ``φ`` amplitude 1;
* the summing node's resistor is ``1/(β·V0·G0)`` instead of ``1/G0``, so that
  ``V(z) − vcm = (W u + b)/β`` and the pair computes ``tanh(W u + b)`` exactly in the
  cell model;
* the gate offset source is ``δ`` (per orientation, measured).

Everything else — the cells' capacitors and leaks, the inter-stage and output
transconductances, the window weights — stays as in :mod:`.netlist` (ideal ``C``, ``R``
and ``G`` elements, referenced to ``vcm``): the library has no linear transconductor
cell (an OTA) yet, so this is the transistor-level *drive*, and the report says so.
Our reference is the same net with the cell's measured ``src`` pin capacitance added to
stage 0 (every window's cell loads it); the two differ by the cell's fit error
(:attr:`~kirchhoff_sim.cells.characterise.CellCharacterisation.max_error`) and its
internal delay, which this check measures.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..checks import as_int, as_real_array
from ..errors import CellMappingError, InputError
from ..spice.runner import run_netlist
from ..spice.safety import check_netlist_safe, sanitise_title
from ..cells.characterise import netlist_header, supply_lines
from ..cells.library import cell_subcircuits
from ..cells.transistor import CLOCK_EDGE_FRACTION, layer_clock_lines
from .netlist import element_values
from .transient import simulate

__all__ = ["DriveMapping", "map_drive", "to_transistor_netlist", "validate_transistor", "TransistorCheck"]


@dataclass(frozen=True)
class DriveMapping:
    """The drive cell's bias and the summing node it reads (module docstring).

    Attributes
    ----------
    reference_a : float
        ``I_ref`` of every drive cell (A).
    slope_per_v : float
        ``β`` (1/V) at the saturation current ``G0·V0``.
    offset_v : float
        ``δ`` of the ``n`` orientation (V).
    summing_ohm : float
        The summing node's resistor ``1/(β·V0·G0)`` (Ω).
    pin_capacitance_f : float
        The cell's ``src`` pin capacitance (F), added to stage 0 once per window.
    """

    reference_a: float
    slope_per_v: float
    offset_v: float
    summing_ohm: float
    pin_capacitance_f: float


def map_drive(net, characterisation, scale) -> DriveMapping:
    """The drive mapping of ``net`` at ``scale``.

    Raises
    ------
    CellMappingError
        φ is not tanh, or the unit current ``G0·V0`` lies outside the cell's bias window.
    """
    if net.activation.name != "tanh":
        raise CellMappingError(f"the sky130 drive cell is a tanh transconductor; this KINN's φ is "
                               f"{net.activation.name!r}")
    design = characterisation.design
    unit = scale.G0 * scale.V0
    if not design["bias_min_a"] <= unit <= design["bias_max_a"]:
        raise CellMappingError(f"the drive's saturation current G0·V0 = {unit:.3g} A lies outside the tanh cell's "
                               f"bias window [{design['bias_min_a']:.3g}, {design['bias_max_a']:.3g}] A; "
                               f"use the sky130 profile's scale")
    beta = float(characterisation.slope(unit))
    return DriveMapping(reference_a=unit / float(characterisation.efficiency(unit)), slope_per_v=beta,
                        offset_v=float(characterisation.offset_v["n"]),
                        summing_ohm=1.0 / (beta * scale.V0 * scale.G0),
                        pin_capacitance_f=float(characterisation.pin_capacitance_f["src"]))


def _r(x) -> str:
    return repr(float(x))


def to_transistor_netlist(net, x, profile, characterisation, pdk, *, points: int = 400,
                          reltol: float = 1e-5, title: str | None = None):
    """The netlist of ``net`` with one input ``x`` ``(d,)``, the drives as sky130 cells.

    Returns
    -------
    text : str
    stage_nodes, output_nodes : list of str

    Raises
    ------
    CellMappingError
        As :func:`map_drive`.
    InputError
        A batch instead of one sample, an input that is not finite real numbers, or an
        input beyond the cells' operating range.
    ParameterError
        An element value that is not finite, or a capacitor or resistor that is not > 0
        (:func:`~.netlist.element_values`).
    """
    x = as_real_array(x, "x (one sample of input voltages)", finite=False)
    if x.ndim != 1:
        raise InputError(f"to_transistor_netlist compiles ONE sample: x must have shape (d,), got {x.shape}")
    points = as_int(points, "points", minimum=10)
    scale = profile.scale
    design = characterisation.design
    drive = map_drive(net, characterisation, scale)
    v0 = net.stage_voltages(net.initial_state(x))[:, :, 0]
    if np.any(np.abs(v0) * scale.V0 > design["half_range_v"]):
        raise InputError(f"an input is {np.abs(v0).max() * scale.V0:.3g} V from vcm, beyond the cells' "
                         f"operating range ±{design['half_range_v']:g} V")
    n, M, L = net.stages, net.width, net.num_windows
    V0, C0, G0 = scale.V0, scale.C0, scale.G0
    vcm, vdd = design["vcm"], design["vdd"]
    time_unit = scale.time_unit
    boundaries = net.layer_boundaries * time_unit
    t_stop = float(boundaries[-1])
    stage = [[f"s{j}_{m}" for m in range(M)] for j in range(n)]
    lines = netlist_header(pdk, profile.corner, characterisation.temperature_c,
                           f"* {sanitise_title(title or 'KINN')} - sky130 drive cells")
    lines += [f"* KINN {M} channels x {n} stages, {L} window(s); V0={V0:g} V, C0={C0:g} F, G0={G0:g} S; "
              f"drive cells: I_ref={drive.reference_a:.4g} A, beta={drive.slope_per_v:.4g}/V",
              f".options reltol={reltol:g} abstol=1e-15 vntol=1e-7 method=gear"]
    lines += cell_subcircuits(characterisation.cell_design, characterisation.resistor_design,
                              characterisation.diode_design, characterisation.relu_design)
    lines += supply_lines(characterisation.cell_design, common_mode=True)
    lines += layer_clock_lines(boundaries, vdd, CLOCK_EDGE_FRACTION * float(np.min(np.diff(boundaries))))
    values = element_values(net, scale)
    for j in range(n):
        for m in range(M):
            lines += [f"C{j}_{m} {stage[j][m]} 0 {_r(values['C'][j, m])}",
                      f"R{j}_{m} {stage[j][m]} vcm {_r(values['R'][j, m])}"]
            if j > 0 and net.k[j - 1, m] != 0.0:
                lines.append(f"Gk{j}_{m} vcm {stage[j][m]} {stage[j - 1][m]} vcm {_r(values['Gk'][j - 1, m])}")
    for m in range(M):
        lines += [f"Ga{j}_{m} vcm u{m} {stage[j][m]} vcm {_r(values['Ga'][j, m])}"
                  for j in range(n) if net.alpha[j, m] != 0.0]
        lines.append(f"Ru{m} u{m} vcm {_r(1.0 / G0)}")
    for l in range(L):
        for m in range(M):
            z = f"z{l}_{m}"
            lines += [f"Gw{l}_{m}_{k} vcm {z} u{k} vcm {_r(values['Gw'][l, m, k])}"
                      for k in np.flatnonzero(net.W[l, m]).tolist()]
            if net.b[l, m] != 0.0:
                lines.append(f"Ib{l}_{m} vcm {z} DC {_r(values['Ib'][l, m])}")
            lines += [f"Rz{l}_{m} {z} vcm {_r(drive.summing_ohm)}",
                      f"Vo{l}_{m} g{l}_{m} {z} {_r(drive.offset_v)}",
                      f"Ir{l}_{m} vdd nb{l}_{m} {_r(drive.reference_a)}",
                      f"XB{l}_{m} nb{l}_{m} 0 ks_bias",
                      f"Xd{l}_{m} {stage[0][m]} g{l}_{m} vcm vdd 0 nb{l}_{m} vcp vcn clk{l} ks_tanh_n"]
    lines.append(".ic " + " ".join(f"v({stage[j][m]})={_r(vcm + V0 * v0[j, m])}" for j in range(n) for m in range(M)))
    outputs = [f"u{m}" for m in range(net.num_outputs)]
    saved = [name for row in stage for name in row] + outputs
    lines += [f".tran {_r(t_stop / points)} {t_stop!r} 0 {_r(t_stop / points)}",
              ".save " + " ".join(f"v({name})" for name in saved), ".end"]
    text = "\n".join(lines) + "\n"
    check_netlist_safe(text, (str(pdk.library),))
    return text, [name for row in stage for name in row], outputs


@dataclass
class TransistorCheck:
    """ngspice with sky130 drive cells against our solver, per sample.

    Attributes
    ----------
    max_waveform_error : ndarray, shape (B,)
        Largest ``|v_spice − v_ours|`` over time, stages and outputs, over the swing.
    max_readout_error : ndarray, shape (B,)
        The same for the read-out at ``T``.
    decisions_agree : ndarray of bool, shape (B,)
        The read-out's argmax is the same.
    spice_seconds : float
    mapping : DriveMapping
    cell_fit_error : float
        The characterisation's worst cell error (fraction of the saturation current).
    transistors : int
        Transistors in one netlist (the drive cells and their bias diodes).
    gate_excursion_v : float
        Largest ``|V(z) − vcm| = |W u + b|/β`` of any drive on our reference trajectories
        (V): beyond the cell's operating range (``half_range_v``, 0.15 V) its body effect
        bends the tanh away from the fit, so the error grows.
    node_excursion_v : float
        Largest stage or output voltage from ``vcm`` (V), against the same range.
    """

    max_waveform_error: np.ndarray
    max_readout_error: np.ndarray
    decisions_agree: np.ndarray
    spice_seconds: float
    mapping: DriveMapping
    cell_fit_error: float
    transistors: int
    gate_excursion_v: float
    node_excursion_v: float


def reference_net(net, mapping: DriveMapping, scale):
    """``net`` with the drive cells' ``src`` pin capacitance on stage 0 (our reference)."""
    reference = copy.deepcopy(net)
    reference._assemblies = None
    reference.log_c[0] = np.log(net.capacitance[0] + net.num_windows * mapping.pin_capacitance_f / scale.C0)
    return reference


def validate_transistor(net, X, profile, characterisation, pdk, *, n_points: int = 201,
                        timeout: float = 1800.0, solver=None) -> TransistorCheck:
    """Run each sample of ``X`` with sky130 drive cells in ngspice and compare.

    Raises
    ------
    CellMappingError, InputError, ParameterError, SpiceError
    """
    from ..cells.library import transistor_counts

    X = net.checked_inputs(X)          # whole, before any netlist: a bad row is named
    scale = profile.scale
    mapping = map_drive(net, characterisation, scale)
    reference = reference_net(net, mapping, scale)
    grid = np.linspace(0.0, net.T, n_points)
    ours = simulate(reference, X, solver=solver, save_at=grid).node_voltages
    vcm = characterisation.design["vcm"]
    stages_all = reference.stages_of(ours.reshape(-1, net.num_nodes))              # (n, M, t·B)
    u_all = reference.channel_outputs(stages_all)
    z_all = reference.drive_inputs(u_all)
    gate_excursion = float(np.abs(z_all).max()) / mapping.slope_per_v
    node_excursion = float(max(np.abs(stages_all).max(), np.abs(u_all[:net.num_outputs]).max())) * scale.V0
    wave, final, agree, seconds = [], [], [], 0.0
    for b in range(X.shape[0]):
        text, stages, outputs = to_transistor_netlist(net, X[b], profile, characterisation, pdk, title=f"sample {b}")
        result = run_netlist(text, timeout=timeout, trusted_libraries=(str(pdk.library),))
        seconds += result.elapsed
        t = np.asarray(result.time) / scale.time_unit
        spice = np.stack([np.interp(grid, t, (result.voltage(name) - vcm) / scale.V0) for name in stages + outputs],
                         axis=1)
        our = np.concatenate([ours[:, b, :], reference.outputs(ours[:, b, :])], axis=1)
        swing = float(our.max() - our.min()) or 1.0
        wave.append(float(np.abs(spice - our).max()) / swing)
        k = net.num_nodes
        final.append(float(np.abs(spice[-1, k:] - our[-1, k:]).max()) / swing)
        agree.append(bool(np.argmax(spice[-1, k:]) == np.argmax(our[-1, k:])))
    per_cell = transistor_counts(characterisation.cell_design)
    transistors = net.width * net.num_windows * (per_cell.get("ks_tanh_n", 0) + per_cell.get("ks_bias", 0))
    return TransistorCheck(np.array(wave), np.array(final), np.array(agree), seconds, mapping,
                           float(characterisation.max_error), transistors, gate_excursion, node_excursion)
