"""Energy and power of one inference, from the simulated waveforms, in physical units.

Power and energy of a device (DESIGN.md §1, §5). Edge ``e`` carries ``i_e`` from src to
dst, so it *absorbs* the power ``p_e = i_e·(v_src − v_dst)`` (normalised; times
``G0·V0²`` in watts). Energy is power × time, and time is ``C0/G0`` per unit, so one unit
of normalised energy is ``C0·V0²`` joules (1e-15 J at 100 fF and 0.1 V). Per sample:

* **device dissipation** ``∫ Σ_e max(p_e, 0) dt`` — what the devices turn into heat;
  split into passive devices and active cells. A passive device always has ``p_e ≥ 0``.
* **delivered by active cells** ``∫ Σ_e max(−p_e, 0) dt`` — an active cell can push
  energy into the circuit (``p_e < 0``); its supply pays for it.
* **net device energy** ``∫ Σ_e p_e dt``. Because every node has only its capacitor
  besides the devices, ``Σ_e p_e = −d/dt Σ_n ½ C_n v_n²`` (Tellegen / KCL), so the net
  device energy equals the capacitors' initial minus final stored energy. The report
  checks this balance; it tests the integration, not the physics.
* **input charging**: the sample is written onto the input nodes before ``t = 0``. The
  capacitors then store ``Σ ½ C V²``; a driver that charges a capacitor from 0 V through
  a switch from a source at the target voltage draws ``C V²`` (half is lost in the
  switch). The *drawn* energy ``C V²`` is what the total counts (a stepped or adiabatic
  driver could approach ``½ C V²``); both are reported.
* **active-cell supply**: an edge is *active* if its device family is not passive, or it
  is a conductance with ``g < 0``, or it carries a current at zero bias (``i(0,0) ≠ 0``,
  a current source). Model: a transconductor cell that sources or sinks its output
  current from a supply of span ``V_supply`` (the profile's ``supply_voltage_v``) draws
  ``|I_e|·V_supply``; the supply energy is ``∫ Σ_active |I_e|·V_supply dt``. Quiescent
  bias currents of the cells are not modelled (they depend on the cell design) — this is
  the signal current's share only.

The **energy drawn per inference** is input charging (drawn) + active-cell supply; the
device dissipation is where that energy (and the input's) goes, not another source.
Peak powers are maxima over the grid; the average power is the energy drawn per inference
divided by the latency (back-to-back inferences).

Integration: the trapezoidal rule on the dense grid of :func:`~.timing.dense_waveforms`,
layer by layer (a layer's power is evaluated with its own devices on its closed window,
so the jump at a layer boundary is not smeared). The quadrature error is estimated by
comparing with the rule on every other point (Richardson: ``(E_h − E_2h)/3``).

ngspice check (:func:`spice_device_energy`): the same integral from an ngspice run of the
same net (:class:`~kirchhoff_sim.spice.roundtrip.NgspiceRun`, the one round trip, which
also checks that ngspice reached ``T``). If the netlist saved the B sources' branch currents
(``SpiceOptions(save_branch_currents=True)`` writes ``.save @b<k>[i]``, as the chip
report does; the compiler numbers ``B<k>`` in edge order from 1) those are used with ngspice's node
voltages; otherwise the B-source currents are recomputed from ngspice's node voltages
through the device expressions — the current a behavioural B source carries *is* its
expression of the node voltages, so this uses ngspice's waveforms and our device code.
Either way a model-free figure is also given: the capacitors' energy balance from
ngspice's initial and final node voltages alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..sensitivity import trapezoid_weights

from ..devices import Conductance
from ..errors import InputError
from ..spice.roundtrip import END_TIME_RTOL, NgspiceRun
from .formatting import format_si

__all__ = ["EdgeTable", "EdgeSweep", "EnergyReport", "SpiceEnergy", "edge_table", "sweep_edges",
           "energy_report", "spice_device_energy", "trapezoid_weights", "ZERO_BIAS_ATOL",
           "ENERGY_AGREEMENT_RTOL"]

ZERO_BIAS_ATOL = 1e-12            # |i(0,0)| above this (normalised current) is a bias current
BRANCH_RTOL = 1e-12               # w_src = −w_dst within this: a function of vs − vd only
ENERGY_AGREEMENT_RTOL = 1e-3      # solver vs ngspice device energy, relative
RICHARDSON_TRAPEZOID = 3.0        # (E_h − E_2h)/3 estimates the error of E_h (error ∝ h²)
_BRANCH_CURRENT = "@b{k}[i]"      # ngspice's name of B source k's current
SPICE_CHUNK_ELEMENTS = 1 << 22    # edges × time points per step of the ngspice integral


# ---------------------------------------------------------------- edges
@dataclass
class EdgeTable:
    """Every edge of the net, layer by layer and group by group, with what kind it is.

    The global edge index ``e`` (0-based) runs over ``net.layers``, then their groups, in
    order — the order of the netlist's ``B<e+1>`` sources.

    Attributes
    ----------
    layer, group : ndarray of int, shape (E,)
        Layer index and index into ``net.groups`` of each edge.
    src, dst : ndarray of int, shape (E,)
    zero_bias_current : ndarray, shape (E,)
        ``i(0, 0)`` (normalised current).
    branch : ndarray of bool, shape (E,)
        The current is a function of the branch voltage ``vs − vd`` alone (a true
        two-terminal), i.e. the device input has ``w_src = −w_dst``.
    passive_family : ndarray of bool, shape (E,)
        The device family is passive (:attr:`Device.passive`).
    negative_conductance : ndarray of bool, shape (E,)
        A :class:`~kirchhoff_sim.devices.Conductance` with ``g < 0``.
    active : ndarray of bool, shape (E,)
        Needs a supply: not a passive family, or ``g < 0``, or a bias current.
    layer_slices : list of slice
        Per layer, its edges in the global order.
    """

    layer: np.ndarray
    group: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    zero_bias_current: np.ndarray
    branch: np.ndarray
    passive_family: np.ndarray
    negative_conductance: np.ndarray
    active: np.ndarray
    layer_slices: list

    @property
    def num_edges(self) -> int:
        return len(self.src)

    @property
    def has_bias_current(self) -> np.ndarray:
        return np.abs(self.zero_bias_current) > ZERO_BIAS_ATOL

    @property
    def to_ground(self) -> np.ndarray:
        return (self.src == 0) | (self.dst == 0)


def edge_table(net) -> EdgeTable:
    """Classify every edge of ``net`` (vectorised per edge group)."""
    columns = {k: [] for k in ("layer", "group", "src", "dst", "bias", "branch", "passive", "negative")}
    slices, start, g_index = [], 0, 0
    for k, layer in enumerate(net.layers):
        for group in layer.groups:
            E = group.num_edges
            p = group.params[:, :, None]
            zeros = np.zeros((E, 1))
            w_src, w_dst, _ = group.device.input_weights(p)
            w_src = np.broadcast_to(w_src, (E, 1))[:, 0]
            w_dst = np.broadcast_to(w_dst, (E, 1))[:, 0]
            columns["layer"].append(np.full(E, k))
            columns["group"].append(np.full(E, g_index))
            columns["src"].append(group.src)
            columns["dst"].append(group.dst)
            columns["bias"].append(group.device.current(zeros, zeros, p)[:, 0])
            columns["branch"].append(np.isclose(w_src, -w_dst, rtol=BRANCH_RTOL, atol=0.0))
            columns["passive"].append(np.full(E, bool(group.device.passive)))
            columns["negative"].append(group.params[0] < 0 if isinstance(group.device, Conductance)
                                       else np.zeros(E, bool))
            g_index += 1
        slices.append(slice(start, start + layer.num_edges))
        start += layer.num_edges
    c = {k: np.concatenate(v) for k, v in columns.items()}
    bias = np.abs(c["bias"]) > ZERO_BIAS_ATOL
    return EdgeTable(layer=c["layer"], group=c["group"], src=c["src"], dst=c["dst"],
                     zero_bias_current=c["bias"], branch=c["branch"], passive_family=c["passive"],
                     negative_conductance=c["negative"],
                     active=~c["passive"] | c["negative"] | bias, layer_slices=slices)


# ---------------------------------------------------------------- quadrature
def _coarse_weights(t: np.ndarray) -> np.ndarray:
    """Trapezoidal weights on every other point of ``t`` (and the last), zero elsewhere."""
    keep = np.arange(0, len(t), 2)
    if keep[-1] != len(t) - 1:
        keep = np.append(keep, len(t) - 1)
    w = np.zeros(len(t))
    w[keep] = trapezoid_weights(t[keep])
    return w


# ---------------------------------------------------------------- the pass over the waveform
@dataclass
class EdgeSweep:
    """Everything the energy and feasibility figures need from one pass over the waveform.

    Normalised units throughout (power ``G0·V0²``, energy ``C0·V0²``, charge ``C0·V0``).

    Attributes
    ----------
    trace_ts : ndarray, shape (n_trace,)
        Times of the power traces: each layer's window in turn, so a layer boundary
        appears twice (left and right limit).
    dissipation_passive, dissipation_active, delivered_active, supply_current : ndarray, shape (n_trace, B)
        ``Σ max(p_e, 0)`` over passive and over active edges, ``Σ max(−p_e, 0)`` over
        active edges, and ``Σ_active |i_e|``.
    energy : dict of str to ndarray, shape (B,)
        Trapezoidal integrals of the four traces (keys ``dissipation_passive``,
        ``dissipation_active``, ``delivered_active``, ``supply_charge``) and of the net
        power (``net``).
    energy_coarse : dict of str to ndarray, shape (B,)
        The same on every other grid point.
    max_abs_current : ndarray, shape (E,)
        ``max |i_e|`` over time and batch.
    max_current_sample : ndarray of int, shape (E,)
        A sample where that maximum occurs.
    min_branch_slope : ndarray, shape (E,)
        ``min ∂i_e/∂(vs − vd)`` over time and batch for branch edges; ``+inf`` elsewhere.
    min_power : ndarray, shape (E,)
        ``min p_e`` over time and batch: ``≥ 0`` means the device never delivered power.
    """

    trace_ts: np.ndarray
    dissipation_passive: np.ndarray
    dissipation_active: np.ndarray
    delivered_active: np.ndarray
    supply_current: np.ndarray
    energy: dict
    energy_coarse: dict
    max_abs_current: np.ndarray
    max_current_sample: np.ndarray
    min_branch_slope: np.ndarray
    min_power: np.ndarray


_TRACES = ("dissipation_passive", "dissipation_active", "delivered_active", "supply_current")


def sweep_edges(net, waveforms, table: EdgeTable | None = None) -> EdgeSweep:
    """One pass over the dense waveform: power traces, energies and per-edge extremes.

    A Python loop over the grid points (a few hundred) with every edge and sample at once
    in each step (``(E, B)`` arrays per layer).

    Parameters
    ----------
    net : KirchhoffNet
    waveforms : Waveforms
    table : EdgeTable, optional
        :func:`edge_table` of ``net`` (computed if not given).

    Returns
    -------
    EdgeSweep
    """
    table = edge_table(net) if table is None else table
    B = waveforms.batch
    E = table.num_edges
    max_abs = np.zeros(E)
    max_sample = np.zeros(E, dtype=np.int64)
    min_slope = np.full(E, np.inf)
    min_power = np.full(E, np.inf)
    traces = {name: [] for name in _TRACES}
    trace_ts = []
    energy = {name: np.zeros(B) for name in ("dissipation_passive", "dissipation_active",
                                             "delivered_active", "supply_charge", "net")}
    coarse = {name: np.zeros(B) for name in energy}
    for k, (assembly, window) in enumerate(zip(net.assemblies(), waveforms.layer_windows)):
        edges = table.layer_slices[k]
        active = table.active[edges].astype(float)
        passive = 1.0 - active
        branch = table.branch[edges]
        t = waveforms.ts[window]
        weights, weights_coarse = trapezoid_weights(t), _coarse_weights(t)
        for w, w2, j in zip(weights, weights_coarse, window):
            V = waveforms.state(j)
            current, di_dvs, _, _ = assembly.linearise(V, params=False)          # (E_k, B)
            vs, vd = assembly.gather(V)
            power = current * (vs - vd)
            absorbed, delivered = np.maximum(power, 0.0), np.maximum(-power, 0.0)
            magnitude = np.abs(current)
            values = {"dissipation_passive": passive @ absorbed, "dissipation_active": active @ absorbed,
                      "delivered_active": active @ delivered, "supply_current": active @ magnitude}
            for name in _TRACES:
                traces[name].append(values[name])
            values["supply_charge"] = values.pop("supply_current")     # its integral is a charge
            values["net"] = power.sum(axis=0)
            for name, value in values.items():
                energy[name] += w * value
                coarse[name] += w2 * value
            min_power[edges] = np.minimum(min_power[edges], power.min(axis=1))
            peak_sample = magnitude.argmax(axis=1)
            peak = magnitude[np.arange(len(peak_sample)), peak_sample]
            better = peak > max_abs[edges]
            max_abs[edges] = np.where(better, peak, max_abs[edges])
            max_sample[edges] = np.where(better, peak_sample, max_sample[edges])
            if branch.any():
                # for w_src = −w_dst the input is the branch voltage, so ∂i/∂u = ∂i/∂vs
                slope = np.where(branch, di_dvs.min(axis=1), np.inf)
                min_slope[edges] = np.minimum(min_slope[edges], slope)
        trace_ts.append(t)
    return EdgeSweep(trace_ts=np.concatenate(trace_ts),
                     **{name: np.stack(traces[name]) for name in _TRACES},
                     energy=energy, energy_coarse=coarse, max_abs_current=max_abs,
                     max_current_sample=max_sample, min_branch_slope=min_slope, min_power=min_power)


# ---------------------------------------------------------------- the energy report
@dataclass
class EnergyReport:
    """Energy and power of one inference, per sample, in joules and watts.

    Attributes
    ----------
    input_stored_j, input_drawn_j : ndarray, shape (B,)
        ``Σ ½ C V²`` stored on the initial (input) nodes and ``Σ C V²`` drawn from the
        driver that charged them.
    dissipated_passive_j, dissipated_active_j : ndarray, shape (B,)
        Heat in the passive devices and in the active cells (their absorbed share).
    delivered_active_j : ndarray, shape (B,)
        Energy active cells pushed into the circuit.
    device_net_j : ndarray, shape (B,)
        ``∫ Σ_e p_e dt`` (absorbed − delivered).
    supply_active_j : ndarray, shape (B,)
        ``V_supply·∫ Σ_active |I| dt``.
    capacitor_initial_j, capacitor_final_j : ndarray, shape (B,)
        Stored ``Σ ½ C V²`` at 0 and at ``T`` (the latter is lost when the nodes are reset).
    total_drawn_j : ndarray, shape (B,)
        ``input_drawn_j + supply_active_j``: the energy per inference from outside.
    peak_dissipation_w, peak_supply_w, peak_power_w, average_power_w : ndarray, shape (B,)
        Maximum over the grid of the total device dissipation and of the active-cell
        supply power; their larger one; ``total_drawn_j / latency``.
    latency_s : float
    balance_rel_error : float
        ``max |device_net − (capacitor_initial − capacitor_final)|`` over samples, relative
        to the gross device energy (absorbed + delivered): the integration's own check.
    quadrature_rel_error : float
        Richardson estimate of the trapezoidal error of the device dissipation, relative.
    trace_time_s : ndarray, shape (n_trace,)
    dissipation_w, supply_w : ndarray, shape (n_trace, B)
        Power traces for plots.
    counts : dict
        Edges: total, active, passive.
    model : list of str
        The assumptions, in words.
    """

    input_stored_j: np.ndarray
    input_drawn_j: np.ndarray
    dissipated_passive_j: np.ndarray
    dissipated_active_j: np.ndarray
    delivered_active_j: np.ndarray
    device_net_j: np.ndarray
    supply_active_j: np.ndarray
    capacitor_initial_j: np.ndarray
    capacitor_final_j: np.ndarray
    total_drawn_j: np.ndarray
    peak_dissipation_w: np.ndarray
    peak_supply_w: np.ndarray
    peak_power_w: np.ndarray
    average_power_w: np.ndarray
    latency_s: float
    balance_rel_error: float
    quadrature_rel_error: float
    trace_time_s: np.ndarray
    dissipation_w: np.ndarray
    supply_w: np.ndarray
    counts: dict
    model: list = field(default_factory=list)

    @property
    def dissipated_j(self) -> np.ndarray:
        """All device heat, passive + active, ``(B,)``."""
        return self.dissipated_passive_j + self.dissipated_active_j

    @property
    def gross_j(self) -> np.ndarray:
        """``∫ Σ_e |p_e| dt``, absorbed + delivered, ``(B,)``: the scale of the net energy's error."""
        return self.dissipated_j + self.delivered_active_j

    _PER_SAMPLE = ("input_stored_j", "input_drawn_j", "dissipated_passive_j", "dissipated_active_j",
                   "delivered_active_j", "device_net_j", "supply_active_j", "capacitor_initial_j",
                   "capacitor_final_j", "total_drawn_j", "peak_dissipation_w", "peak_supply_w",
                   "peak_power_w", "average_power_w")

    def breakdown(self) -> dict:
        """Mean over samples of each energy (J), in the order of the bar chart."""
        return {
            "input charging, drawn (C·V²)": float(self.input_drawn_j.mean()),
            "input charging, stored (½C·V²)": float(self.input_stored_j.mean()),
            "active-cell supply": float(self.supply_active_j.mean()),
            "dissipated in passive devices": float(self.dissipated_passive_j.mean()),
            "dissipated in active cells": float(self.dissipated_active_j.mean()),
            "delivered by active cells": float(self.delivered_active_j.mean()),
            "left on the capacitors at T": float(self.capacitor_final_j.mean()),
        }

    def to_dict(self) -> dict:
        out = {name: {"mean": float(getattr(self, name).mean()), "max": float(getattr(self, name).max())}
               for name in self._PER_SAMPLE}
        out.update(latency_s=float(self.latency_s), balance_rel_error=float(self.balance_rel_error),
                   quadrature_rel_error=float(self.quadrature_rel_error), counts=dict(self.counts),
                   breakdown_j=self.breakdown(), model=list(self.model))
        return out

    def __str__(self) -> str:
        def pair(name, unit="J"):
            a = getattr(self, name)
            return f"{format_si(float(a.mean()), unit)} (max {format_si(float(a.max()), unit)})"

        c = self.counts
        lines = [
            f"energy drawn per inference: {pair('total_drawn_j')} = input charging {pair('input_drawn_j')} "
            f"+ active-cell supply {pair('supply_active_j')}",
            f"  input nodes store ½CV² = {pair('input_stored_j')}; the driver draws CV² (reported)",
            f"  dissipated in devices: passive {pair('dissipated_passive_j')}, active cells "
            f"{pair('dissipated_active_j')}; delivered by active cells {pair('delivered_active_j')}",
            f"  left on the capacitors at T (lost at reset): {pair('capacitor_final_j')}",
            f"power: peak dissipation {pair('peak_dissipation_w', 'W')}, peak active supply "
            f"{pair('peak_supply_w', 'W')}, average (energy/latency) {pair('average_power_w', 'W')}",
            f"edges: {c['active']} active of {c['total']} ({c['passive']} passive); "
            f"energy balance error {self.balance_rel_error:.1e}, quadrature error estimate "
            f"{self.quadrature_rel_error:.1e} (relative)",
        ]
        return "\n".join(lines)


def _stored(capacitance: np.ndarray, state: np.ndarray) -> np.ndarray:
    """``Σ_n ½ C_n v_n²`` per sample for a state ``(N, B)`` (normalised)."""
    return 0.5 * capacitance @ (state * state)


def energy_report(net, profile, waveforms, sweep: EdgeSweep, table: EdgeTable) -> EnergyReport:
    """Physical energies and powers from an :class:`EdgeSweep` (see the module docstring)."""
    scale = profile.scale
    unit_j, unit_w, charge_c = scale.energy_unit, scale.power_unit, scale.charge_unit
    latency = net.T * scale.time_unit
    initial = waveforms.initial_state[1:]                        # (N, B)
    final = waveforms.node_voltages[-1].T                        # (N, B)
    cap = net.capacitance
    e = sweep.energy
    stored0, storedT = _stored(cap, initial), _stored(cap, final)
    supply_j = profile.supply_voltage_v * charge_c * e["supply_charge"]
    drawn_input = 2.0 * stored0 * unit_j
    dissipation_trace = sweep.dissipation_passive + sweep.dissipation_active
    supply_trace = profile.supply_voltage_v * scale.current_unit * sweep.supply_current
    peak_diss = dissipation_trace.max(axis=0) * unit_w
    peak_supply = supply_trace.max(axis=0)
    total = drawn_input + supply_j
    gross = e["dissipation_passive"] + e["dissipation_active"] + e["delivered_active"]
    # the net energy is a difference of the absorbed and delivered flows: its error is
    # measured against their sum, not against the (possibly much smaller) difference
    balance_scale = np.maximum(np.maximum(gross, np.abs(stored0 - storedT)), np.finfo(float).tiny)
    balance = float(np.max(np.abs(e["net"] - (stored0 - storedT)) / balance_scale))
    dissipated = e["dissipation_passive"] + e["dissipation_active"]
    dissipated_coarse = sweep.energy_coarse["dissipation_passive"] + sweep.energy_coarse["dissipation_active"]
    quadrature = float(np.max(np.abs(dissipated - dissipated_coarse) / RICHARDSON_TRAPEZOID
                              / np.maximum(dissipated, np.finfo(float).tiny)))
    counts = {"total": int(table.num_edges), "active": int(table.active.sum()),
              "passive": int((~table.active).sum())}
    model = [
        f"device power p_e = I_e·(V_src − V_dst) (absorbed); units: energy C0·V0² = {unit_j:.3g} J, "
        f"power G0·V0² = {unit_w:.3g} W",
        "device dissipation = ∫ Σ max(p_e, 0) dt; active cells may deliver energy (p_e < 0), counted apart",
        "input charging: ½CV² stored, CV² drawn from a driver charging through a switch (the total counts CV²)",
        f"active cells (not a passive family, g < 0, or i(0,0) ≠ 0) draw |I_e|·V_supply from a supply of "
        f"span {profile.supply_voltage_v:g} V; quiescent bias currents of the cells are not modelled",
        "energy drawn per inference = input charging (drawn) + active-cell supply",
        f"trapezoidal rule on {len(waveforms.ts)} grid points, layer by layer; peak power = the larger "
        f"of the peak device dissipation and the peak active supply power; average = energy drawn / latency",
    ]
    return EnergyReport(
        input_stored_j=stored0 * unit_j, input_drawn_j=drawn_input,
        dissipated_passive_j=e["dissipation_passive"] * unit_j,
        dissipated_active_j=e["dissipation_active"] * unit_j,
        delivered_active_j=e["delivered_active"] * unit_j, device_net_j=e["net"] * unit_j,
        supply_active_j=supply_j, capacitor_initial_j=stored0 * unit_j, capacitor_final_j=storedT * unit_j,
        total_drawn_j=total, peak_dissipation_w=peak_diss, peak_supply_w=peak_supply,
        peak_power_w=np.maximum(peak_diss, peak_supply), average_power_w=total / latency,
        latency_s=latency, balance_rel_error=balance, quadrature_rel_error=quadrature,
        trace_time_s=sweep.trace_ts * scale.time_unit, dissipation_w=dissipation_trace * unit_w,
        supply_w=supply_trace, counts=counts, model=model)


# ---------------------------------------------------------------- ngspice
@dataclass
class SpiceEnergy:
    """Device energy of one sample computed from an ngspice run (joules).

    Attributes
    ----------
    dissipated_j : float
        ``∫ Σ_e max(p_e, 0) dt``.
    device_net_j : float
        ``∫ Σ_e p_e dt``.
    balance_j : float
        Capacitors' initial minus final stored energy from ngspice's node voltages alone
        (no device model): equals ``device_net_j`` by KCL.
    method : str
        ``"branch currents"`` (ngspice's saved ``@b<k>[i]``) or ``"recomputed"`` (B-source
        currents from ngspice's node voltages through the device expressions).
    points : int
        ngspice time points used.
    """

    dissipated_j: float
    device_net_j: float
    balance_j: float
    method: str
    points: int


def _time_chunks(n_times: int, n_edges: int):
    """Slices of ``range(n_times)`` that keep ``(n_edges, chunk)`` temporaries near 32 MiB."""
    size = max(1, SPICE_CHUNK_ELEMENTS // max(n_edges, 1))
    return [slice(a, min(a + size, n_times)) for a in range(0, n_times, size)]


def spice_device_energy(net, run: NgspiceRun, profile, table: EdgeTable | None = None) -> SpiceEnergy:
    """Device energy of one ngspice run of ``net`` (a behavioural netlist of one sample).

    Parameters
    ----------
    net : KirchhoffNet
    run : NgspiceRun
        The round trip of the netlist (:func:`~kirchhoff_sim.spice.roundtrip.run_compiled`
        or :func:`~kirchhoff_sim.spice.roundtrip.simulate_in_ngspice`), compiled in
        behavioural mode at the profile's scale; it reached ``T``.
    profile : TechnologyProfile
    table : EdgeTable, optional

    Returns
    -------
    SpiceEnergy
        Integrated with the trapezoidal rule on ngspice's own time points.

    Raises
    ------
    InputError
        A primitive-mode netlist or one compiled at another scale.
    """
    netlist, scale = run.netlist, profile.scale
    if netlist.mode != "behavioral":
        raise InputError("the ngspice energy check needs a behavioural netlist (one B source per edge)")
    if netlist.scale != scale:
        raise InputError(f"the netlist was compiled at {netlist.scale} but the profile's scale is {scale}")
    table = edge_table(net) if table is None else table
    raw = run.result
    names = [_BRANCH_CURRENT.format(k=e + 1) for e in range(table.num_edges)]
    dissipated = device_net = 0.0
    if all(name in raw.vectors for name in names):
        # ngspice's own B-source currents (gated by the layer clocks already) with its node
        # voltages, in amperes, volts and seconds from its first time point on: the
        # interval before it (1e-5 of a step) is left out
        t_run = np.asarray(raw.time, dtype=float)
        v_run = np.stack([np.zeros(len(t_run))] + [raw.voltage(netlist.node_name(n))
                                                   for n in range(1, net.num_nodes + 1)])
        w = trapezoid_weights(t_run)
        for cols in _time_chunks(len(t_run), table.num_edges):
            current = np.stack([raw.vectors[name][cols] for name in names])     # (E, n), A
            power = current * (v_run[table.src][:, cols] - v_run[table.dst][:, cols])
            dissipated += float(np.maximum(power, 0.0).sum(axis=0) @ w[cols])
            device_net += float(power.sum(axis=0) @ w[cols])
        method, points = "branch currents", len(t_run)
    else:
        # the round trip's normalised waveform (t = 0 from the initial condition) through
        # our device expressions, layer by layer on ngspice's points inside each window
        time = run.time
        states = np.concatenate([np.zeros((1, len(time))), run.node_voltages.T])   # (N+1, n_t), ground in row 0
        slack = END_TIME_RTOL * run.T
        bounds = net.layer_boundaries
        for assembly, a, b in zip(net.assemblies(), bounds[:-1], bounds[1:]):
            inside = np.flatnonzero((time >= a - slack) & (time <= b + slack))
            if len(inside) < 2:
                continue
            w = trapezoid_weights(time[inside])
            for cols in _time_chunks(len(inside), assembly.num_edges):
                Vk = states[:, inside[cols]]                 # ngspice's time points as the batch
                vs, vd = assembly.gather(Vk)
                power = assembly.edge_currents(Vk) * (vs - vd)
                dissipated += float(np.maximum(power, 0.0).sum(axis=0) @ w[cols]) * scale.energy_unit
                device_net += float(power.sum(axis=0) @ w[cols]) * scale.energy_unit
        method, points = "recomputed", len(time)
    start, end = run.node_voltages[0], run.node_voltages[-1]
    balance = float(0.5 * net.capacitance @ (start ** 2 - end ** 2)) * scale.energy_unit
    return SpiceEnergy(dissipated_j=dissipated, device_net_j=device_net, balance_j=balance,
                       method=method, points=points)
