"""Feasibility checks: what would break, or need more than passive devices, on a chip.

Each check returns :class:`Finding` s with a severity (``info``, ``warning``, ``error``)
and the edges and nodes concerned. Edges are *global edge indices* (0-based, layer by
layer and group by group — :class:`~.energy.EdgeTable`; the netlist's ``B<e+1>``), nodes
are the net's node numbers (1..N).

===============================  ========  ==================================================
check                            severity  triggered by
===============================  ========  ==================================================
``voltage_rails``                error     a node voltage ``V0·v`` outside the rails (waveforms)
``current_limit``                error     a device current ``G0·V0·|i|`` above the limit
``conductance_range``            warn/err  a conductance-like parameter (its device's role)
                                           with ``|g|·G0`` outside ``[g_min, g_max]`` (error if
                                           above ``g_max``); exact zeros mean "no device"
``precision_floor``              warning   a non-zero ``|g|·G0`` below ``g_max / 2**bits``
``active_devices``               info/warn counts per kind: passive two-terminals, active
                                           two-terminals, transconductor cells, current sources
``current_sources``              warning   an edge to ground with ``i(0,0) ≠ 0``
``zero_bias_current``            warning   any other edge with ``i(0,0) ≠ 0``
``negative_differential_cond.``  warning   ``∂i/∂(vs − vd) < 0`` on the trajectory (branch devices)
``floating_nodes``               warning   a node with no path to ground through a layer's edges
``wiring``                       info/warn fan-in/out and degree, parallel devices per node pair;
                                           warning if a node's degree exceeds the profile's limit
``ktc_noise``                    info/warn ``sqrt(kT/C)`` against the read-out signal (SNR in dB);
                                           warning below :data:`KTC_SNR_WARNING_DB`
``power_budget``                 warn/err  average power (error) or peak power (warning) above
                                           the budget
``diode_ideality``               warning   a diode whose ``n·Vt`` (normalised, times ``V0``)
                                           makes ngspice's emission coefficient ``N`` fall
                                           outside a real junction's :data:`DIODE_N_RANGE`
===============================  ========  ==================================================

A clean net — a passive resistor network inside every limit — gets only the two info
findings ``active_devices`` ("all passive"), ``wiring`` and ``ktc_noise``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..devices import CONDUCTANCE, Diode, rows_with_role
from ..errors import InputError
from ..units import CELSIUS_TO_KELVIN, diode_emission_coefficient, ktc_noise_sigma
from .energy import EdgeSweep, EdgeTable, EnergyReport
from .formatting import format_si, json_float

__all__ = ["Finding", "SEVERITIES", "CHECKS", "check_feasibility", "check_rails", "check_current_limit",
           "check_conductance_range", "check_precision_floor", "check_active_devices",
           "check_negative_differential_conductance", "check_floating_nodes", "check_wiring",
           "check_ktc_noise", "check_power_budget", "check_diode_ideality", "KTC_SNR_WARNING_DB",
           "DIODE_N_RANGE"]

SEVERITIES = ("info", "warning", "error")
CHECKS = ("voltage_rails", "current_limit", "conductance_range", "precision_floor", "active_devices",
          "current_sources", "zero_bias_current", "negative_differential_conductance",
          "floating_nodes", "wiring", "ktc_noise", "power_budget", "diode_ideality")
MAX_LISTED = 50                  # edges/nodes listed in to_dict (all are kept on the Finding)
MAX_NAMED = 3                    # examples named in a message
NDC_ATOL = 1e-12                 # ∂i/∂u below −this (normalised conductance) is negative
KTC_SNR_WARNING_DB = 20.0        # median read-out gap under 10 σ_kT/C: a warning
# a silicon p-n junction's ideality (emission) coefficient lies between 1 (ideal diffusion
# current) and 2 (recombination-dominated)
DIODE_N_RANGE = (1.0, 2.0)
KTC_RISK_SIGMAS = 3.0            # a top-2 gap under 3·√2·σ flips with probability ≥ 0.13 %


@dataclass
class Finding:
    """One result of a feasibility check.

    Attributes
    ----------
    check : str
        Which check (one of :data:`CHECKS`).
    severity : {"info", "warning", "error"}
    message : str
        What was found, with figures and examples, in words.
    edges : ndarray of int
        Global edge indices concerned (see the module docstring).
    nodes : ndarray of int
        Node numbers concerned (1..N).
    value : float or None
        The check's headline figure (its unit is in the message); ``-inf`` for an SNR with
        no signal (``None`` in :meth:`to_dict`).
    counts : dict
        Extra figures (per kind, per layer, ...).
    """

    check: str
    severity: str
    message: str
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    nodes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    value: float | None = None
    counts: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise InputError(f"Finding severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.check not in CHECKS:
            raise InputError(f"unknown feasibility check {self.check!r}; known: {CHECKS}")
        self.edges = np.asarray(self.edges, dtype=np.int64).ravel()
        self.nodes = np.asarray(self.nodes, dtype=np.int64).ravel()

    def to_dict(self, max_listed: int = MAX_LISTED) -> dict:
        """JSON-able; ``edges``/``nodes`` hold at most ``max_listed`` entries, the counts all."""
        return {"check": self.check, "severity": self.severity, "message": self.message,
                "value": json_float(self.value),
                "n_edges": int(self.edges.size), "edges": self.edges[:max_listed].tolist(),
                "n_nodes": int(self.nodes.size), "nodes": self.nodes[:max_listed].tolist(),
                "counts": {k: (v if isinstance(v, (str, list, dict)) else float(v) if isinstance(v, float)
                               else int(v)) for k, v in self.counts.items()}}

    def __str__(self) -> str:
        return f"[{self.severity}] {self.check}: {self.message}"


# ---------------------------------------------------------------- helpers
def _describe_edge(net, table: EdgeTable, e: int) -> str:
    group = net.groups[int(table.group[e])]
    return (f"edge {e} (layer {int(table.layer[e])}, {int(table.src[e])}→{int(table.dst[e])}, "
            f"{type(group.device).__name__})")


def _examples(items) -> str:
    items = list(items)
    more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
    return ", ".join(items[:MAX_NAMED]) + more


def _group_offsets(net) -> np.ndarray:
    """Global index of each group's first edge, in ``net.groups`` order."""
    return np.concatenate([[0], np.cumsum([g.num_edges for g in net.groups])])


# ---------------------------------------------------------------- waveform checks
def check_rails(net, profile, waveforms) -> list:
    """Node voltages (every node, sample and grid time) outside the supply rails."""
    V = profile.scale.V0 * waveforms.node_voltages                  # (n_t, B, N), volts
    high, low = V.max(axis=(0, 1)), V.min(axis=(0, 1))                    # (N,)
    over = np.maximum(high - profile.rail_high_v, profile.rail_low_v - low)
    bad = np.flatnonzero(over > 0)
    if bad.size == 0:
        return []
    worst = int(bad[np.argmax(over[bad])])
    extreme = high[worst] if high[worst] - profile.rail_high_v >= profile.rail_low_v - low[worst] else low[worst]
    t, b = np.unravel_index(int(np.argmax(np.abs(V[:, :, worst]))), V.shape[:2])
    return [Finding(
        "voltage_rails", "error",
        f"{bad.size} node(s) leave the rails [{profile.rail_low_v:g}, {profile.rail_high_v:g}] V: "
        f"node {worst + 1} reaches {extreme:.4g} V (sample {b}, t = {waveforms.ts[t] * profile.scale.time_unit * 1e9:.4g} ns); "
        f"nodes {_examples(str(n + 1) for n in bad)}. Lower V0 or the inputs, or widen the rails",
        nodes=bad + 1, value=float(extreme), counts={"nodes": int(bad.size)})]


def check_current_limit(net, profile, sweep: EdgeSweep, table: EdgeTable) -> list:
    """Device currents (over the waveform) above the per-device limit."""
    current = profile.scale.current_unit * sweep.max_abs_current
    bad = np.flatnonzero(current > profile.current_limit_a)
    if bad.size == 0:
        return []
    order = bad[np.argsort(-current[bad])]
    worst = int(order[0])
    return [Finding(
        "current_limit", "error",
        f"{bad.size} device(s) carry more than {format_si(profile.current_limit_a, 'A')}: "
        f"{_describe_edge(net, table, worst)} carries {format_si(float(current[worst]), 'A')} "
        f"(sample {int(sweep.max_current_sample[worst])}); "
        f"edges {_examples(str(e) for e in order)}",
        edges=order, value=float(current[worst]), counts={"edges": int(bad.size)})]


def check_negative_differential_conductance(net, profile, sweep: EdgeSweep, table: EdgeTable) -> list:
    """Branch devices whose ``∂i/∂(vs − vd)`` is negative somewhere on the trajectory."""
    bad = np.flatnonzero(table.branch & (sweep.min_branch_slope < -NDC_ATOL))
    if bad.size == 0:
        return []
    slope_s = profile.scale.G0 * sweep.min_branch_slope[bad]
    worst = int(bad[np.argmin(slope_s)])
    families = _family_counts(net, table, bad)
    return [Finding(
        "negative_differential_conductance", "warning",
        f"{bad.size} two-terminal device(s) have a negative differential conductance on the simulated "
        f"trajectory ({families}); most negative {format_si(float(slope_s.min()), 'S')} at "
        f"{_describe_edge(net, table, worst)}. A negative slope needs an active cell (a passive "
        f"two-terminal's slope is ≥ 0) and can make the circuit unstable",
        edges=bad, value=float(slope_s.min()), counts={"edges": int(bad.size)})]


def _family_counts(net, table: EdgeTable, edges) -> str:
    names = np.array([type(g.device).__name__ for g in net.groups])[table.group[edges]]
    kinds, counts = np.unique(names, return_counts=True)
    return ", ".join(f"{c} {k}" for k, c in zip(kinds, counts))


# ---------------------------------------------------------------- parameter checks
def _conductances(net, profile):
    """Global edge index and ``|g|·G0`` (siemens) of every conductance-like parameter."""
    offsets = _group_offsets(net)
    edges, values = [], []
    for g, group in enumerate(net.groups):
        rows = rows_with_role(group.device, CONDUCTANCE)
        if rows:
            v = np.abs(group.params[rows]) * profile.scale.G0                 # (R, E_g)
            edges.append(np.broadcast_to(offsets[g] + np.arange(group.num_edges), v.shape).ravel())
            values.append(v.ravel())
    if not edges:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(edges), np.concatenate(values)


def check_conductance_range(net, profile, table: EdgeTable) -> list:
    """Conductance-like parameters whose ``|g|·G0`` lies outside the realisable window."""
    edges, g = _conductances(net, profile)
    zero = g == 0
    below = ~zero & (g < profile.conductance_min_s)
    above = g > profile.conductance_max_s
    bad = below | above
    if not bad.any():
        return []
    parts = []
    if below.any():
        parts.append(f"{int(below.sum())} below {format_si(profile.conductance_min_s, 'S')} "
                     f"(smallest {format_si(float(g[below].min()), 'S')})")
    if above.any():
        parts.append(f"{int(above.sum())} above {format_si(profile.conductance_max_s, 'S')} "
                     f"(largest {format_si(float(g[above].max()), 'S')}: no device reaches it; a larger "
                     f"G0 scales every conductance together)")
    nonzero = g[~zero]
    spread = float(nonzero.max() / nonzero.min()) if nonzero.size else 1.0
    return [Finding(
        "conductance_range", "error" if above.any() else "warning",
        f"{int(bad.sum())} of {g.size} conductance-like parameters lie outside the "
        f"realisable [{format_si(profile.conductance_min_s, 'S')}, {format_si(profile.conductance_max_s, 'S')}]: "
        f"{'; '.join(parts)}. The non-zero |g| span a ratio of {spread:.3g} against the window's "
        f"{profile.conductance_max_s / profile.conductance_min_s:.3g}; "
        f"{int(zero.sum())} are exactly 0 (no device needed)",
        edges=np.unique(edges[bad]), value=float(bad.mean()),
        counts={"below": int(below.sum()), "above": int(above.sum()), "zero": int(zero.sum()),
                "parameters": int(g.size)})]


def check_precision_floor(net, profile, table: EdgeTable) -> list:
    """Non-zero conductance-like parameters below the precision floor ``g_max / 2**bits``."""
    edges, g = _conductances(net, profile)
    floor = profile.precision_floor_s
    bad = (g > 0) & (g < floor)
    if not bad.any():
        return []
    return [Finding(
        "precision_floor", "warning",
        f"{int(bad.sum())} of {g.size} conductance-like parameters are below the {profile.precision_bits}-bit "
        f"precision floor g_max/2^bits = {format_si(floor, 'S')} (smallest {format_si(float(g[bad].min()), 'S')}): "
        f"programming rounds them to 0 or to the floor",
        edges=np.unique(edges[bad]), value=float(bad.mean()),
        counts={"below_floor": int(bad.sum()), "parameters": int(g.size)})]


def check_active_devices(net, profile, table: EdgeTable, sweep: EdgeSweep | None = None) -> list:
    """What the devices are physically: passive two-terminals, or cells that need a supply.

    Kinds (each edge in exactly one): a *current source* (an edge to ground with
    ``i(0,0) ≠ 0``), a *transconductor cell* (its current depends on ``vs`` and ``vd``
    separately, ``w_src ≠ −w_dst`` — a non-reciprocal VCCS), an *active two-terminal*
    (a function of ``vs − vd`` that is not a passive family, or a negative conductance, or
    carries a bias current), and a *passive two-terminal* (resistor, diode). DESIGN.md §1:
    the reference devices are mostly active; the report says so. With a ``sweep``, the
    active two-terminals that never delivered power on the simulated trajectory
    (``i·u ≥ 0`` throughout) are counted too: in principle a passive nonlinear element with
    that I–V curve (diode-like) could replace them on these inputs.
    """
    bias = table.has_bias_current
    source = table.active & table.to_ground & bias
    transconductor = table.active & ~table.branch & ~source
    two_terminal = table.active & table.branch & ~source
    passive = ~table.active
    counts = {"passive_two_terminal": int(passive.sum()), "active_two_terminal": int(two_terminal.sum()),
              "transconductor_cell": int(transconductor.sum()), "current_source": int(source.sum()),
              "total": int(table.num_edges)}
    absorbing = ""
    if sweep is not None:
        never = two_terminal & ~table.has_bias_current & (sweep.min_power >= 0)
        counts["active_two_terminal_never_delivering"] = int(never.sum())
        absorbing = (f" ({int(never.sum())} of the active two-terminals never delivered power on the simulated "
                     f"trajectory: a diode-like passive element with the same I–V could replace them there)")
    findings = []
    active = np.flatnonzero(table.active)
    if active.size == 0:
        findings.append(Finding("active_devices", "info",
                                f"all {table.num_edges} devices are passive two-terminals "
                                f"({_family_counts(net, table, np.arange(table.num_edges))}): no supply needed",
                                value=0.0, counts=counts))
    else:
        findings.append(Finding(
            "active_devices", "warning",
            f"{active.size} of {table.num_edges} devices need a supply (active): "
            f"{counts['active_two_terminal']} active two-terminal(s), {counts['transconductor_cell']} "
            f"transconductor cell(s) (non-reciprocal VCCS), {counts['current_source']} current source(s) "
            f"to ground; {counts['passive_two_terminal']} passive{absorbing}. Active families: "
            f"{_family_counts(net, table, active)} — a relu/tanh/softplus branch or an affine input is "
            f"a transconductor cell, not a passive device",
            edges=active, value=float(active.size / max(table.num_edges, 1)), counts=counts))
    if source.any():
        findings.append(_zero_bias_finding(
            net, profile, table, "current_sources", source,
            "{n} edge(s) to ground carry a current at zero bias: they are current sources (largest {largest})"))
    offset = bias & ~table.to_ground
    if offset.any():
        findings.append(_zero_bias_finding(
            net, profile, table, "zero_bias_current", offset,
            "{n} edge(s) between two nodes carry a current at zero bias, i(0,0) ≠ 0 (largest {largest}): "
            "a built-in offset current that only an active cell can supply"))
    return findings


def _zero_bias_finding(net, profile, table: EdgeTable, check: str, mask, text: str) -> Finding:
    """A warning about the edges of ``mask`` that carry a current at zero bias; ``text``
    names their count ``{n}`` and their largest such current ``{largest}``."""
    e = np.flatnonzero(mask)
    largest = float(np.abs(table.zero_bias_current[e]).max() * profile.scale.current_unit)
    return Finding(check, "warning",
                   text.format(n=e.size, largest=format_si(largest, "A"))
                   + f"; {_examples(_describe_edge(net, table, int(k)) for k in e)}",
                   edges=e, value=largest, counts={"edges": int(e.size)})


# ---------------------------------------------------------------- structure
def check_floating_nodes(net, table: EdgeTable) -> list:
    """Nodes with no path to ground through the edges of some layer.

    Every node has its capacitor to ground, so the transient is defined; but in that
    layer the node's group keeps its charge with no DC path to ground (no defined
    operating point, leakage accumulates). Connected components of each layer's
    undirected edge graph (scipy.sparse.csgraph).
    """
    n = net.num_nodes + 1
    floating_any = np.zeros(n, bool)
    per_layer = {}
    for k, edges in enumerate(table.layer_slices):
        src, dst = table.src[edges], table.dst[edges]
        graph = sp.coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        floating = labels != labels[0]
        if floating.any():
            per_layer[f"layer_{k}"] = int(floating.sum())
            floating_any |= floating
    nodes = np.flatnonzero(floating_any)
    if nodes.size == 0:
        return []
    layers = ", ".join(f"layer {k[len('layer_'):]}: {v}" for k, v in per_layer.items())
    return [Finding(
        "floating_nodes", "warning",
        f"{nodes.size} node(s) have no path to ground through the edges of at least one layer "
        f"({layers}); nodes "
        f"{_examples(str(v) for v in nodes)}. Only their capacitors tie them to ground there: no DC "
        f"operating point, and leakage drifts them",
        nodes=nodes, value=float(nodes.size), counts=per_layer)]


def check_wiring(net, profile, table: EdgeTable) -> list:
    """Fan-in, fan-out, degree per node and parallel devices per node pair (all layers).

    Every layer's devices are physically present on the chip (switched in and out by the
    layer clocks), so the counts are over all layers. Ground is a rail, not a node, and is
    left out of the degree figures.
    """
    n = net.num_nodes + 1
    fan_in = np.bincount(table.dst, minlength=n)[1:]
    fan_out = np.bincount(table.src, minlength=n)[1:]
    degree = fan_in + fan_out
    low, high = np.minimum(table.src, table.dst), np.maximum(table.src, table.dst)
    _, per_pair = np.unique(low * n + high, return_counts=True)
    to_ground = int(table.to_ground.sum())
    layer_degree = max(int((np.bincount(table.src[s], minlength=n) + np.bincount(table.dst[s], minlength=n))[1:].max(initial=0))
                       for s in table.layer_slices)
    counts = {"edges": int(table.num_edges), "edges_to_ground": to_ground,
              "max_fan_in": int(fan_in.max()), "mean_fan_in": float(fan_in.mean()),
              "max_fan_out": int(fan_out.max()), "mean_fan_out": float(fan_out.mean()),
              "max_degree": int(degree.max()), "mean_degree": float(degree.mean()),
              "max_degree_one_layer": layer_degree, "node_pairs": int(per_pair.size),
              "max_edges_per_pair": int(per_pair.max(initial=0)),
              "mean_edges_per_pair": float(per_pair.mean()) if per_pair.size else 0.0}
    over = np.flatnonzero(degree > profile.max_node_degree) + 1
    text = (f"{counts['edges']} devices over {len(table.layer_slices)} layer(s), {to_ground} to ground; "
            f"fan-in max {counts['max_fan_in']} (mean {counts['mean_fan_in']:.3g}), fan-out max "
            f"{counts['max_fan_out']} (mean {counts['mean_fan_out']:.3g}); devices per node max "
            f"{counts['max_degree']} (mean {counts['mean_degree']:.3g}; {layer_degree} within one layer); "
            f"{counts['node_pairs']} connected node pairs with up to {counts['max_edges_per_pair']} parallel "
            f"devices (mean {counts['mean_edges_per_pair']:.3g})")
    if over.size:
        return [Finding("wiring", "warning",
                        f"{over.size} node(s) join more than {profile.max_node_degree} devices (nodes "
                        f"{_examples(str(v) for v in over)}): one crossbar line cannot hold them. " + text,
                        nodes=over, value=float(degree.max()), counts=counts)]
    return [Finding("wiring", "info", text, value=float(degree.max()), counts=counts)]


# ---------------------------------------------------------------- noise and power
def check_ktc_noise(net, profile, waveforms) -> list:
    """kT/C noise ``sqrt(k_B·T/C)`` of the read-out nodes against the read-out signal.

    The signal is the gap between the two highest read-out voltages at ``T`` (what the
    argmax decides on); with one read-out node, its voltage. The SNR is that of the
    median gap to the median read-out ``σ``; samples whose gap is under
    ``KTC_RISK_SIGMAS·√2·σ`` (the difference of two noisy nodes) are *at risk*. Noise on
    the initial state and its propagation are in the Monte Carlo (``ktc=True``).
    """
    volts = profile.scale.V0
    sigma_v = volts * ktc_noise_sigma(net.capacitance[net.readout - 1], profile.temperature_k, profile.scale)
    sigma = float(np.median(sigma_v))                                      # volts
    final = volts * waveforms.node_voltages[-1][:, net.readout - 1]        # (B, R)
    if final.shape[1] >= 2:
        top = np.sort(final, axis=1)
        gap = top[:, -1] - top[:, -2]
        signal_name = "median gap between the two highest read-out voltages"
    else:
        gap = np.abs(final[:, 0])
        signal_name = "median |read-out voltage|"
    signal = float(np.median(gap))
    snr_db = float(20 * np.log10(signal / sigma)) if signal > 0 else -np.inf
    at_risk = float(np.mean(gap < KTC_RISK_SIGMAS * np.sqrt(2.0) * sigma))
    severity = "warning" if snr_db < KTC_SNR_WARNING_DB else "info"
    return [Finding(
        "ktc_noise", severity,
        f"kT/C noise at {profile.temperature_k:g} K on the read-out capacitors: σ = {format_si(sigma, 'V')} "
        f"rms; {signal_name} {format_si(signal, 'V')} → SNR {snr_db:.1f} dB "
        f"({'below' if severity == 'warning' else 'above'} {KTC_SNR_WARNING_DB:g} dB); "
        f"{at_risk:.1%} of samples have a gap under {KTC_RISK_SIGMAS:g}·√2·σ",
        nodes=net.readout, value=snr_db,
        counts={"sigma_v": sigma, "signal_v": signal, "at_risk_fraction": at_risk})]


def check_power_budget(net, profile, energy: EnergyReport) -> list:
    """Average power (energy drawn / latency) and peak power against the budget."""
    average, peak = float(energy.average_power_w.max()), float(energy.peak_power_w.max())
    budget = profile.power_budget_w
    if average <= budget and peak <= budget:
        return []
    severity = "error" if average > budget else "warning"
    return [Finding(
        "power_budget", severity,
        f"power above the {format_si(budget, 'W')} budget: average (energy drawn per inference / latency, "
        f"worst sample) {format_si(average, 'W')}, peak {format_si(peak, 'W')}"
        + ("" if average > budget else " (the average fits; only the peak exceeds it)"),
        value=average if average > budget else peak,
        counts={"average_power_w": average, "peak_power_w": peak})]


def check_diode_ideality(net, profile, table: EdgeTable) -> list:
    """Diodes that no real junction can be at this scale.

    A :class:`~kirchhoff_sim.devices.Diode`'s ``thermal_voltage`` is ``n·Vt`` in units of
    ``V0``, so its physical ideality factor ``N = thermal_voltage·V0/(kT/q)`` depends on the
    profile's voltage unit (the default ``thermal_voltage`` is a silicon junction at
    ``V0 = 1 V``; at 0.1 V it is ``N ≈ 0.1``). ngspice simulates any ``N``; silicon does not.
    """
    offsets = _group_offsets(net)
    temperature_c = profile.temperature_k - CELSIUS_TO_KELVIN
    low, high = DIODE_N_RANGE
    edges, parts, worst = [], [], None
    for g, group in enumerate(net.groups):
        if not isinstance(group.device, Diode):
            continue
        nvt = group.device.thermal_voltage
        n = diode_emission_coefficient(nvt, profile.scale, temperature_c)
        if low <= n <= high:
            continue
        edges.append(np.arange(offsets[g], offsets[g + 1]))
        parts.append(f"{group.num_edges} in layer {int(table.layer[offsets[g]])} with n·Vt = {nvt:g} V0 = "
                     f"{format_si(nvt * profile.scale.V0, 'V')}: N = {n:.3g} (a real junction needs "
                     f"thermal_voltage in [{low / n * nvt:.3g}, {high / n * nvt:.3g}])")
        worst = n if worst is None or abs(np.log(n)) > abs(np.log(worst)) else worst
    if not parts:
        return []
    return [Finding(
        "diode_ideality", "warning",
        f"diodes whose ideality factor at {profile.temperature_k:g} K lies outside a real junction's "
        f"[{low:g}, {high:g}]: " + "; ".join(parts) + ". Retrain with that thermal_voltage or choose V0 "
        "accordingly", edges=np.concatenate(edges), value=float(worst))]


def check_feasibility(net, profile, waveforms, sweep: EdgeSweep, table: EdgeTable,
                      energy: EnergyReport | None = None) -> list:
    """Every check, most severe first.

    Parameters
    ----------
    net : KirchhoffNet
    profile : TechnologyProfile
    waveforms : Waveforms
        The dense forward pass (:func:`~.timing.dense_waveforms`).
    sweep : EdgeSweep
        :func:`~.energy.sweep_edges` of it.
    table : EdgeTable
    energy : EnergyReport, optional
        For the power budget (skipped without it).

    Returns
    -------
    list of Finding
    """
    findings = (check_rails(net, profile, waveforms) + check_current_limit(net, profile, sweep, table)
                + check_conductance_range(net, profile, table) + check_precision_floor(net, profile, table)
                + check_active_devices(net, profile, table, sweep)
                + check_negative_differential_conductance(net, profile, sweep, table)
                + check_floating_nodes(net, table) + check_wiring(net, profile, table)
                + check_ktc_noise(net, profile, waveforms) + check_diode_ideality(net, profile, table))
    if energy is not None:
        findings += check_power_budget(net, profile, energy)
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return sorted(findings, key=lambda f: rank[f.severity])
