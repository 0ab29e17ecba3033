"""The chip report of a KINN: what it is made of, how fast it is, what it costs.

A KINN's circuit (:mod:`.netlist`) is passive where a cell is passive — the stage
capacitors and leak resistors, the summing resistors — and active exactly where it has
a voltage-controlled current source: the inter-stage transconductances ``K``, the
output weights ``α`` (into the output summing nodes), the window weights ``W`` (into
the drive summing nodes), the bias currents ``b`` and the nonlinear drives ``φ``. The
report answers, on a :class:`~kirchhoff_sim.technology.TechnologyProfile`:

* **inventory** — the elements by kind, and the active ones by role;
* **timing** — the latency ``T·C0/G0`` of one forward pass, whatever the width;
* **energy** — per inference on a batch of inputs, with the package's energy model
  (:mod:`kirchhoff_sim.hardware.energy`): the supply energy of every active element is
  ``V_supply·∫|I| dt`` of its output current (signal current only: the quiescent bias
  of a transconductor depends on its design and is not modelled), the resistors'
  dissipation ``∫ G·v² dt``, and the input charging ``½ C V²``;
* **feasibility** — node voltages against the rails, leak conductances and
  transconductance magnitudes against the profile's programmable window, the largest
  element current against the current limit, and the power against the budget;
* **robustness** — the task metric with every conductance, capacitance and
  transconductance perturbed by log-normal mismatch ``σ`` (Monte Carlo; the bias currents
  ``b`` are programmed references and are not perturbed, as the KirchhoffNet report
  leaves bias-role parameters alone), and with the programmable parameters ``K``, ``α``,
  ``W``, ``b`` rounded to the profile's ``precision_bits``.

The summing networks of every window (``W``, ``b`` into the ``z`` nodes) are not
switched in the netlist, so they conduct — and count in the energy and the rails — at
every time; only the drives ``φ`` are gated to their windows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ..checks import as_int
from ..technology import as_profile, default_profile
from ..units import format_si
from ..sensitivity import trapezoid_weights
from .fit import checked_labels
from .network import require_kinn
from .transient import simulate

__all__ = ["KinnChipReport", "chip_report"]

#: samples simulated at once for the waveforms (memory ∝ this × time points × nodes)
REPORT_CHUNK = 64
#: the mismatch levels of the robustness sweep (relative σ of a log-normal factor)
MISMATCH_SIGMAS = (0.01, 0.05)


@dataclass
class KinnChipReport:
    """What :func:`chip_report` found; ``str(report)`` is the text, :meth:`to_dict` JSON."""

    summary: str
    inventory: dict
    active: dict
    latency_s: float
    energy: dict
    findings: list
    node_range_v: tuple = (0.0, 0.0)
    robustness: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"summary": self.summary, "inventory": self.inventory, "active": self.active,
                "latency_s": self.latency_s, "energy": self.energy, "findings": self.findings,
                "node_range_v": list(self.node_range_v),
                "robustness": self.robustness}

    def __str__(self) -> str:
        lines = [self.summary, "",
                 "elements: " + ", ".join(f"{v} {k}" for k, v in self.inventory.items()),
                 "active (a transconductor each): " + ", ".join(f"{v} {k}" for k, v in self.active.items()),
                 f"latency: {format_si(self.latency_s, 's')} (T·C0/G0)",
                 "energy per inference (mean over the batch): " + ", ".join(
                     f"{k.replace('_j', '')} {format_si(v, 'J')}" for k, v in self.energy.items()
                     if k.endswith("_j")),
                 f"average power: {format_si(self.energy['average_power_w'], 'W')}"]
        lines += ["findings:"] + [f"  - {f}" for f in self.findings]
        if self.robustness:
            lines += ["robustness:"] + [f"  - {k}: {v:.4f}" for k, v in self.robustness.items()]
        return "\n".join(lines)


def _inventory(net) -> tuple[dict, dict]:
    n, M, L = net.stages, net.width, net.num_windows
    active = {"inter-stage K": int(np.count_nonzero(net.k)),
              "output weights alpha": int(np.count_nonzero(net.alpha)),
              "window weights W": int(np.count_nonzero(net.W)),
              "bias currents b": int(np.count_nonzero(net.b)),
              "nonlinear drives phi": L * M}
    inventory = {"capacitors": n * M, "leak resistors": n * M, "summing resistors": M + L * M,
                 "transconductors": sum(active.values())}
    return inventory, active


def chip_report(net, X, y=None, *, profile=None, metric=None, trials: int = 8, seed: int = 0,
                solver=None, n_points: int = 401) -> KinnChipReport:
    """The chip report of ``net`` on inputs ``X`` ``(B, d)`` (module docstring).

    Parameters
    ----------
    net : KinnNet
    X : array_like, shape (B, d)
        Inputs the energy and the voltage ranges are measured on: finite real numbers
        (checked as by :func:`~.transient.simulate` and :func:`~.fit.fit`).
    y : array_like, optional
        Targets for the robustness section: class labels ``(B,)`` (the metric is the
        accuracy of the read-out's argmax; the labels are checked as
        :func:`~.fit.fit` checks them) or, with ``metric``, anything ``metric`` takes.
    profile : TechnologyProfile or str, optional
        A profile, a built-in profile's name or a profile file
        (:func:`~kirchhoff_sim.technology.as_profile`); default
        :func:`~kirchhoff_sim.technology.default_profile`.
    metric : callable, optional
        ``metric(readout, y) -> float`` (higher is better); default accuracy.
    trials : int
        Monte Carlo trials per mismatch level.
    seed : int
        Seeds the mismatch draws (≥ 0).
    n_points : int
        Time points of the waveforms the energy is integrated over.

    Raises
    ------
    InputError
        ``net`` not a KinnNet; ``X`` not a non-empty ``(B, d)`` array of finite real
        numbers of the net's width (the row is named); labels ``y`` that are not ``B``
        class indices of the read-out (the row is named); a bad profile, count or seed.
    SimulationError
        A simulation failed.
    """
    # everything is checked before the first simulation, as simulate and fit check it
    require_kinn(net, "kinn.report.chip_report", "kirchhoff_sim.hardware.chip_report")
    profile = default_profile() if profile is None else as_profile(profile)
    trials = as_int(trials, "trials", minimum=1)
    n_points = as_int(n_points, "n_points", minimum=3)
    seed = as_int(seed, "seed", minimum=0)
    X = net.checked_inputs(X)
    if y is not None and metric is None:
        y = checked_labels(y, len(X), net.num_outputs, name="y")
    scale = profile.scale
    V0, C0, G0 = scale.V0, scale.C0, scale.G0
    I0 = scale.current_unit
    ts = np.linspace(0.0, net.T, n_points)
    weights = trapezoid_weights(ts)
    window = np.searchsorted(net.layer_boundaries[1:-1], ts, side="right")     # the window of each time
    # per unit |u_k|, the current of every window's W into its summing nodes (all are live)
    w_column = np.abs(net.W).sum(axis=(0, 1))                                  # (M,)
    supply, dissipation, low, high, peak_z = [], [], np.inf, -np.inf, 0.0
    for a in range(0, len(X), REPORT_CHUNK):                                   # bounded memory in B
        sol = simulate(net, X[a:a + REPORT_CHUNK], solver=solver, save_at=ts)
        t_n, B_c, _ = sol.node_voltages.shape
        v = sol.node_voltages.transpose(0, 2, 1).reshape(t_n, net.stages, net.width, B_c)
        u = np.einsum("jm,tjmb->tmb", net.alpha, v)
        z = np.einsum("lmk,tkb->tlmb", net.W, u) + net.b[None, :, :, None]      # (t, L, M, B_c)
        drive = net.activation.value(z[np.arange(t_n), window])                 # only the window's φ is on
        active = (np.abs(net.k[None, :, :, None] * v[:, :-1]).sum(axis=(1, 2))
                  + np.abs(net.alpha[None, :, :, None] * v).sum(axis=(1, 2))
                  + np.einsum("k,tkb->tb", w_column, np.abs(u))
                  + np.abs(net.b).sum()
                  + np.abs(drive).sum(axis=1))                                  # (t, B_c), normalised
        resistors = ((net.conductance[None, :, :, None] * v ** 2).sum(axis=(1, 2))
                     + (u ** 2).sum(axis=1) + (z ** 2).sum(axis=(1, 2)))       # leaks; summing nodes, G0
        supply.append(weights @ active)
        dissipation.append(weights @ resistors)
        low = min(low, float(v.min()), float(u.min()), float(z.min()))
        high = max(high, float(v.max()), float(u.max()), float(z.max()))
        peak_z = max(peak_z, float(np.abs(z).max()))
    time_unit = scale.time_unit
    supply_j = profile.supply_voltage_v * I0 * time_unit * np.concatenate(supply)       # (B,)
    dissipation_j = V0 * I0 * time_unit * np.concatenate(dissipation)
    x0 = net.stage_voltages(net.initial_state(X))
    input_j = 0.5 * C0 * V0 ** 2 * (net.capacitance[:, :, None] * x0 ** 2).sum(axis=(0, 1))
    latency = net.T * time_unit
    energy = {"supply_j": float(supply_j.mean()), "resistor_dissipation_j": float(dissipation_j.mean()),
              "input_charging_j": float(input_j.mean()),
              "total_drawn_j": float((supply_j + input_j).mean())}
    energy["average_power_w"] = energy["total_drawn_j"] / latency
    findings = _findings(net, profile, (V0 * low, V0 * high), I0 * peak_z, energy)
    inventory, active = _inventory(net)
    robustness = {}
    if y is not None:
        robustness = _robustness(net, X, y, profile, metric, trials, seed, solver)
    summary = (f"KINN chip report on '{profile.name}': {net.width} channels × {net.stages} stages, "
               f"{net.num_windows} window(s), {net.num_params} parameters; V0 = {format_si(V0, 'V')}, "
               f"C0 = {format_si(C0, 'F')}, G0 = {format_si(G0, 'S')}; {X.shape[0]} input(s)")
    return KinnChipReport(summary, inventory, active, latency, energy, findings, (V0 * low, V0 * high), robustness)


def _findings(net, profile, node_range_v, peak_summing_a, energy) -> list[str]:
    G0 = profile.scale.G0
    low, high = node_range_v
    out = []
    inside = profile.rail_low_v <= low and high <= profile.rail_high_v
    out.append(f"node voltages span [{low:.3g}, {high:.3g}] V: "
               + ("inside" if inside else "OUTSIDE") + f" the rails [{profile.rail_low_v:g}, {profile.rail_high_v:g}] V")
    g = net.conductance.ravel() * G0
    outside = int(np.count_nonzero((g < profile.conductance_min_s) | (g > profile.conductance_max_s)))
    out.append(f"leak conductances {format_si(g.min(), 'S')} .. {format_si(g.max(), 'S')}: {outside} of {g.size} "
               f"outside the programmable window {format_si(profile.conductance_min_s, 'S')} .. "
               f"{format_si(profile.conductance_max_s, 'S')}")
    gm = np.abs(np.concatenate([net.k.ravel(), net.alpha.ravel(), net.W.ravel()])) * G0
    gm = gm[gm > 0]
    floor = profile.precision_floor_s
    if gm.size == 0:
        out.append("no transconductance is on (every K, α and W is 0)")
    else:
        out.append(f"transconductances {format_si(gm.min(), 'S')} .. {format_si(gm.max(), 'S')}; "
                   f"{int(np.count_nonzero(gm < floor))} of {gm.size} below the precision floor "
                   f"{format_si(floor, 'S')} of the profile's conductance window (g_max/2^bits; the "
                   f"robustness line for 8-bit weights quantises every array to its own full scale)")
    # a summing node's unit conductance carries V(z)·G0
    out.append(f"largest summing-node current {format_si(peak_summing_a, 'A')} against the limit "
               f"{format_si(profile.current_limit_a, 'A')}")
    out.append(f"average power {format_si(energy['average_power_w'], 'W')} against the budget "
               f"{format_si(profile.power_budget_w, 'W')}")
    return out


def _accuracy(readout, y) -> float:
    return float(np.mean(np.argmax(readout, axis=1) == np.asarray(y)))


def _robustness(net, X, y, profile, metric, trials, seed, solver) -> dict:
    metric = _accuracy if metric is None else metric
    out = {"nominal": metric(net.outputs(simulate(net, X, solver=solver).final_state), y)}
    rng = np.random.default_rng(seed)
    for sigma in MISMATCH_SIGMAS:
        scores = []
        for _ in range(trials):
            trial = copy.deepcopy(net)
            trial._assemblies = None
            # every physical value gets a log-normal factor: C, G (in their logs), K, α, W
            trial.log_c += rng.normal(0, sigma, trial.log_c.shape)
            trial.log_g += rng.normal(0, sigma, trial.log_g.shape)
            for name in ("k", "alpha", "W"):
                arr = getattr(trial, name)
                arr *= np.exp(rng.normal(0, sigma, arr.shape))
            scores.append(metric(trial.outputs(simulate(trial, X, solver=solver).final_state), y))
        out[f"mismatch sigma {sigma:g} (mean of {trials})"] = float(np.mean(scores))
        out[f"mismatch sigma {sigma:g} (worst of {trials})"] = float(np.min(scores))
    bits = int(profile.precision_bits)
    quantised = copy.deepcopy(net)
    quantised._assemblies = None
    for name in ("k", "alpha", "W", "b"):
        arr = getattr(quantised, name)
        levels = max(2 ** (bits - 1) - 1, 1)            # signed: 2^(bits−1) − 1 steps each side
        step = np.max(np.abs(arr)) / levels if np.any(arr) else 1.0
        arr[...] = np.round(arr / step) * step
    out[f"{bits}-bit weights"] = metric(quantised.outputs(simulate(quantised, X, solver=solver).final_state), y)
    return out
