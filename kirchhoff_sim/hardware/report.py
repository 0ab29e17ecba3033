"""The chip report: timing, energy, feasibility and robustness of a net on silicon.

:func:`chip_report` maps a net onto a :class:`~.profile.TechnologyProfile` and answers
the questions of issue 5 in one object:

1. **scale** — ``V0``, ``C0``, ``G0`` and the time, current and energy units they imply;
2. **timing** (:mod:`.timing`) — latency ``T·C0/G0``, when the read-out settles and when
   the class is decided, and the wall-clock time of the same forward pass in our solver
   and in ngspice on this machine;
3. **energy and power** (:mod:`.energy`) — per inference, from a dense waveform, and the
   device energy of one sample checked against an ngspice run of the same netlist;
4. **findings** (:mod:`.feasibility`) — what would break or needs active cells;
5. **robustness** (:mod:`.montecarlo`) — the accuracy at a device mismatch σ (log-normal,
   Monte Carlo) and at ``bits``-bit parameters, with sweeps over σ and bits for the plots.

:class:`ChipReport` prints as text, converts to JSON (:meth:`ChipReport.to_dict`) and
draws its figures (:meth:`ChipReport.plots`, matplotlib's Agg canvas — no display, no
change to the global backend).
"""

from __future__ import annotations

import contextlib
import dataclasses
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

from ..checks import as_int, as_real
from ..errors import InputError
from ..network import as_batch
from ..solvers import default_solver_spec, make_solver
from ..spice import SpiceOptions, to_netlist
from ..spice.roundtrip import DEFAULT_TIMEOUT_SECONDS, run_compiled
from .energy import (
    ENERGY_AGREEMENT_RTOL,
    EnergyReport,
    edge_table,
    energy_report,
    spice_device_energy,
    sweep_edges,
)
from .feasibility import SEVERITIES, check_feasibility
from ..cells.transistor import SETTLING_FRACTION
from .formatting import format_si, format_signed, json_float
from .montecarlo import MonteCarloSpec, mismatch_sweep, quantisation_sweep
from ..technology import TechnologyProfile, default_profile
from .timing import (
    DEFAULT_SETTLE_FRACTION,
    DEFAULT_WAVEFORM_POINTS,
    Settling,
    TimingReport,
    Waveforms,
    dense_waveforms,
    measure_solver_seconds,
    settling,
    timing_report,
)

__all__ = ["ChipReport", "SpiceCheck", "chip_report", "DEFAULT_REPORT_SAMPLES"]

DEFAULT_REPORT_SAMPLES = 100
DEFAULT_MC_SIGMA = 0.05
DEFAULT_MC_TRIALS = 20
DEFAULT_REPORT_BITS = 6
SWEEP_SIGMAS = (0.0, 0.02, 0.05, 0.1, 0.2)
SWEEP_BITS = (2, 3, 4, 5, 6, 8, 10)
MESSAGE_WIDTH = 96               # text wrap of a finding's message


@dataclass
class SpiceCheck:
    """Device energy of some samples from our solver against ngspice's run of the same net.

    Attributes
    ----------
    samples : list of int
        Rows of the report's batch that ran in ngspice.
    solver_dissipated_j, spice_dissipated_j : list of float
        ``∫ Σ max(p_e, 0) dt`` from our dense waveform and from ngspice's.
    solver_net_j, spice_net_j, spice_balance_j : list of float
        ``∫ Σ p_e dt`` from each, and ngspice's capacitor energy balance (no device model).
    solver_gross_j : list of float
        ``∫ Σ |p_e| dt`` (absorbed + delivered) from our solver.
    dissipated_rel_error, net_rel_error, balance_rel_error : float
        Worst difference to our solver over the samples: the dissipation relative to
        itself; the net energy and ngspice's balance relative to the gross energy — the
        net is a difference of the absorbed and delivered flows, and can be far smaller
        than either, so its error is measured against them.
    tolerance : float
        What "agrees" means (relative).
    method : str
        How ngspice's device currents were obtained (see :func:`~.energy.spice_device_energy`).
    spice_seconds, compile_seconds : list of float
        ngspice's run time and the netlist compile time per sample (wall clock).
    spice_points : list of int
    """

    samples: list
    solver_dissipated_j: list
    spice_dissipated_j: list
    solver_net_j: list
    solver_gross_j: list
    spice_net_j: list
    spice_balance_j: list
    dissipated_rel_error: float
    net_rel_error: float
    balance_rel_error: float
    tolerance: float
    method: str
    spice_seconds: list
    compile_seconds: list
    spice_points: list

    @property
    def agrees(self) -> bool:
        return max(self.dissipated_rel_error, self.net_rel_error, self.balance_rel_error) <= self.tolerance

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out["agrees"] = self.agrees
        return out

    def __str__(self) -> str:
        how = ("ngspice's saved B-source branch currents" if self.method == "branch currents" else
               "ngspice's node voltages, B-source currents recomputed from them through the device expressions")
        rows = [f"sample {s}: dissipated {format_si(a, 'J')} (solver) vs {format_si(b, 'J')} (ngspice); net {format_si(c, 'J')} vs "
                f"{format_si(d, 'J')}; capacitor balance in ngspice {format_si(e, 'J')}"
                for s, a, b, c, d, e in zip(self.samples, self.solver_dissipated_j, self.spice_dissipated_j,
                                            self.solver_net_j, self.spice_net_j, self.spice_balance_j)]
        verdict = "agree" if self.agrees else "DO NOT agree"
        return "\n".join([f"device energy from {how}:", *[f"  {r}" for r in rows],
                          f"  worst relative difference: dissipated {self.dissipated_rel_error:.2e}, net "
                          f"{self.net_rel_error:.2e}, balance {self.balance_rel_error:.2e} (net and balance "
                          f"relative to the gross energy absorbed + delivered) — {verdict} within {self.tolerance:g}"])


def _relative(a, b, scale=None) -> float:
    """``max |a − b| / scale`` (default scale: the larger of ``|a|``, ``|b|``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(a), np.abs(b)) if scale is None else np.asarray(scale, float)
    return float(np.max(np.abs(a - b) / np.maximum(scale, np.finfo(float).tiny)))


def run_spice_check(net, X, profile, energy: EnergyReport, samples, options=None,
                    backend: str = "subprocess", table=None,
                    timeout: float = DEFAULT_TIMEOUT_SECONDS) -> SpiceCheck:
    """Run ``samples`` (rows of ``X``) in ngspice and compare their device energy with
    ``energy``; each run is killed after ``timeout`` seconds (``SpiceTimeoutError``)."""
    table = edge_table(net) if table is None else table
    # the device energy comes from ngspice's own B-source currents, not from ours
    options = dataclasses.replace(SpiceOptions() if options is None else options, save_branch_currents=True)
    fields = {k: [] for k in ("spice_dissipated_j", "spice_net_j", "spice_balance_j", "spice_seconds",
                              "compile_seconds", "spice_points")}
    method = ""
    for b in samples:
        start = time.perf_counter()
        netlist = to_netlist(net, X[b], scale=profile.scale, options=options,
                             title=f"kirchhoff_sim chip report, sample {b}")
        netlist.sample_index = int(b)
        fields["compile_seconds"].append(time.perf_counter() - start)
        run = run_compiled(netlist, backend=backend, timeout=timeout)
        spice = spice_device_energy(net, run, profile, table)
        fields["spice_dissipated_j"].append(spice.dissipated_j)
        fields["spice_net_j"].append(spice.device_net_j)
        fields["spice_balance_j"].append(spice.balance_j)
        fields["spice_seconds"].append(run.elapsed)
        fields["spice_points"].append(int(spice.points))
        method = spice.method
    samples = [int(b) for b in samples]
    ours_diss = [float(energy.dissipated_j[b]) for b in samples]
    ours_net = [float(energy.device_net_j[b]) for b in samples]
    gross = [float(energy.gross_j[b]) for b in samples]
    return SpiceCheck(samples=samples, solver_dissipated_j=ours_diss, solver_net_j=ours_net, solver_gross_j=gross,
                      dissipated_rel_error=_relative(ours_diss, fields["spice_dissipated_j"]),
                      net_rel_error=_relative(ours_net, fields["spice_net_j"], gross),
                      balance_rel_error=_relative(ours_net, fields["spice_balance_j"], gross),
                      tolerance=ENERGY_AGREEMENT_RTOL, method=method, **fields)


@dataclass
class TransistorCheck:
    """The net as sky130 transistor cells in ngspice, at each corner asked (issue #16).

    Attributes
    ----------
    reports : list of TransistorReport
        One per corner (:func:`~kirchhoff_sim.cells.transistor.validate_transistor`), the
        design corner first.
    accuracy : dict
        Corner → accuracy of the transistor-level classes against the labels (empty
        without labels).
    solver_accuracy : float or None
        The cell-model solver's accuracy on the same samples.
    bias_power_w : float
        The bias references' power, ``V_dd·Σ I_ref``, drawn whether or not a layer is on.
    fit_error : float
        The worst fit error of the cell models the net uses, as a fraction of full scale
        (the characterisation's, :func:`~kirchhoff_sim.cells.transistor.cell_fit_error`).
    """

    reports: list
    accuracy: dict
    solver_accuracy: float | None
    bias_power_w: float
    fit_error: float
    mismatch: object = None

    def to_dict(self) -> dict:
        return {"corners": [r.to_dict() for r in self.reports], "accuracy": dict(self.accuracy),
                "solver_accuracy": self.solver_accuracy, "bias_power_w": self.bias_power_w,
                "fit_error": self.fit_error, "mismatch": None if self.mismatch is None else self.mismatch.to_dict()}

    def __str__(self) -> str:
        first = self.reports[0]
        rows = [f"{first.cells} cells, {first.transistors} sky130 transistors (every device current through "
                f"sky130_fd_pr devices; ideal sources only as supplies and bias references); cell model fit "
                f"{self.fit_error:.2%} of full scale; bias references {format_si(self.bias_power_w, 'W')}"]
        for r in self.reports:
            n = len(r.samples)
            energy = float(np.mean([s.energy_j for s in r.samples]))
            bias = float(np.mean([s.bias_energy_j for s in r.samples]))
            settle = max(s.settling_s for s in r.samples)
            final = max(s.final_abs_error / s.swing for s in r.samples)
            accuracy = f", accuracy {self.accuracy[r.corner]:.3f}" if r.corner in self.accuracy else ""
            rows.append(f"{r.corner}: classes agree with the cell-model solver on {r.class_agreement}/{n}{accuracy}; "
                        f"read-out at T within {final:.2%} of the swing (waveform {r.max_rel_error:.2%}); "
                        f"energy {format_si(energy, 'J')} per inference from the supplies (bias references "
                        f"{format_si(bias, 'J')} of it); read-out settled to {SETTLING_FRACTION:.0%} by "
                        f"{format_si(settle, 's')} of T = {format_si(r.t_stop, 's')}; ngspice "
                        f"{np.mean([s.spice_seconds for s in r.samples]):.1f} s per sample")
        if self.solver_accuracy is not None:
            rows.append(f"cell-model solver on the same samples: accuracy {self.solver_accuracy:.3f}")
        if self.mismatch is not None:
            rows.append(str(self.mismatch))
        return "\n".join(rows)


def run_transistor_check(net, X, y, profile, samples: int, corners, *, pdk_root=None,
                         workers: int = 2, mismatch_instances: int = 0, seed: int = 0,
                         executor=None) -> TransistorCheck:
    """Run the first ``samples`` rows of ``X`` as sky130 transistors at each of ``corners``,
    and with ``mismatch_instances`` > 0 as that many chips under the PDK's mismatch models
    (:func:`~kirchhoff_sim.cells.mismatch.transistor_monte_carlo`, seeded by ``seed``) on
    ``executor``, by default a local Dask cluster of ``workers`` single-threaded workers
    (one ngspice process each).

    Raises
    ------
    InputError
        The profile names no PDK, or an unknown corner.
    CellMappingError, PDKNotFoundError, SpiceError, SchedulerConnectionError, ClusterLostError
    """
    from ..cells import prepare
    from ..cells.mismatch import transistor_monte_carlo
    from ..cells.transistor import cell_fit_error, map_cells, validate_transistor

    characterisation, pdk = prepare(net, profile, pdk_root)
    corners = [profile.corner] + [c for c in dict.fromkeys(corners) if c != profile.corner]
    X = X[:samples]
    reports = [validate_transistor(net, X, profile, characterisation, pdk, corner=c, workers=workers)
               for c in corners]
    accuracy, solver_accuracy = {}, None
    if y is not None:
        labels = np.asarray(y)[:len(X)]
        accuracy = {r.corner: float(np.mean([s.spice_class for s in r.samples] == labels)) for r in reports}
        solver_accuracy = float(np.mean([s.solver_class for s in reports[0].samples] == labels))
    cells = map_cells(net, characterisation, profile.scale)
    bias = cells.bias_a.sum() * characterisation.design["vdd"]
    mismatch = None
    if mismatch_instances:
        labels = None if y is None else np.asarray(y)[:len(X)]
        with contextlib.ExitStack() as stack:
            if executor is None:
                from .distributed import DaskRunner

                executor = stack.enter_context(DaskRunner(n_workers=workers))
            mismatch = transistor_monte_carlo(net, X, labels, profile, characterisation, pdk,
                                              instances=mismatch_instances, seed=seed, executor=executor)
    return TransistorCheck(reports, accuracy, solver_accuracy, float(bias), cell_fit_error(cells, characterisation),
                           mismatch)


# ---------------------------------------------------------------- the report
@dataclass
class ChipReport:
    """What :func:`chip_report` found. Print it, :meth:`to_dict` it, or draw :meth:`plots`.

    Attributes
    ----------
    net_summary : dict
    profile : TechnologyProfile
    samples : int
    timing : TimingReport
    energy : EnergyReport
    spice : SpiceCheck or None
    transistor : TransistorCheck or None
        The transistor-level section (a net on a PDK profile's cells, when asked).
    findings : list of Finding
    robustness : dict or None
        ``nominal_accuracy``, ``sigma``, ``accuracy_at_sigma`` (mean, std, p5, p95 ...),
        ``bits``, ``accuracy_at_bits``, ``mismatch_sweep`` and ``quantisation_sweep`` rows.
    notes : list of str
    waveforms : Waveforms
        The dense forward pass (kept for the plots; not in :meth:`to_dict`).
    settle : Settling
    seconds : float
        Wall-clock time to make the report.
    readout_nodes : ndarray of int
        The net's read-out nodes (for the plots).
    """

    net_summary: dict
    profile: TechnologyProfile
    samples: int
    timing: TimingReport
    energy: EnergyReport
    spice: SpiceCheck | None
    findings: list
    robustness: dict | None
    transistor: TransistorCheck | None = None
    notes: list = field(default_factory=list)
    waveforms: Waveforms | None = None
    settle: Settling | None = None
    seconds: float = 0.0
    readout_nodes: np.ndarray | None = None

    def severity_counts(self) -> dict:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def to_dict(self) -> dict:
        """Everything as JSON-able Python values (no arrays)."""
        scale = self.profile.scale
        return {
            "net": dict(self.net_summary),
            "samples": int(self.samples),
            "profile": self.profile.to_dict(),
            "scale": {**scale.to_dict(), "time_unit_s": scale.time_unit, "current_unit_a": scale.current_unit,
                      "energy_unit_j": scale.energy_unit},
            "timing": self.timing.to_dict(),
            "energy": self.energy.to_dict(),
            "spice_check": None if self.spice is None else self.spice.to_dict(),
            "findings_summary": self.severity_counts(),
            "findings": [f.to_dict() for f in self.findings],
            "robustness": self.robustness,
            "transistor_level": None if self.transistor is None else self.transistor.to_dict(),
            "notes": list(self.notes),
            "seconds": float(self.seconds),
        }

    # ------------------------------------------------------------------ text
    def __str__(self) -> str:
        n = self.net_summary
        p, scale = self.profile, self.profile.scale
        out = [f"KirchhoffNet chip report — {n['nodes']} nodes, {n['edges']} devices in {n['layers']} layer(s), "
               f"{n['parameters']} parameters, T = {n['T']:g}; {self.samples} samples"]
        out += _section("scale and profile", [
            f"{p.name}: V0 = {scale.V0:g} V, C0 = {format_si(scale.C0, 'F')}, G0 = "
            f"{format_si(scale.G0, 'S')} → time unit C0/G0 = {format_si(scale.time_unit, 's')}, current unit "
            f"{format_si(scale.current_unit, 'A')}, energy unit C0·V0² = {format_si(scale.energy_unit, 'J')}",
            f"rails [{p.rail_low_v:g}, {p.rail_high_v:g}] V, conductances {format_si(p.conductance_min_s, 'S')}–"
            f"{format_si(p.conductance_max_s, 'S')} at {p.precision_bits} bits, ≤ {format_si(p.current_limit_a, 'A')} per "
            f"device, ≤ {p.max_node_degree} devices per node, budget {format_si(p.power_budget_w, 'W')}, "
            f"active-cell supply {p.supply_voltage_v:g} V, {p.temperature_k:g} K",
            _overrides(p),
        ])
        out += _section("timing", str(self.timing).splitlines())
        out += _section("energy and power (per inference)", str(self.energy).splitlines())
        if self.spice is not None:
            out += _section("ngspice check", str(self.spice).splitlines())
        counts = self.severity_counts()
        rows = [f"{len(self.findings)} findings: {counts['error']} error(s), {counts['warning']} warning(s), "
                f"{counts['info']} info"]
        for f in self.findings:
            where = []
            if f.edges.size:
                where.append(f"{f.edges.size} edges")
            if f.nodes.size:
                where.append(f"{f.nodes.size} nodes")
            head = f"{f.severity.upper():<8} {f.check:<36} {', '.join(where)}"
            rows.append(head.rstrip())
            rows += textwrap.wrap(f.message, MESSAGE_WIDTH, initial_indent="         ", subsequent_indent="         ")
        out += _section("feasibility", rows)
        if self.robustness is None:
            out += _section("robustness", ["not run (" + next((x for x in self.notes if x.startswith("robustness")),
                                                              "robustness: disabled") + ")"])
        else:
            r = self.robustness
            a, q = r["accuracy_at_sigma"], r["accuracy_at_bits"]
            out += _section("robustness", [
                f"nominal accuracy {r['nominal_accuracy']:.4f} on {self.samples} samples"
                f"{_ran_away(r['nominal_diverged'], self.samples)}",
                f"device mismatch σ = {r['sigma']:.0%} (log-normal on conductance-like parameters, "
                f"{a['trials']} trials): accuracy {a['mean']:.4f} ± {a['std']:.4f} (p5 {a['p5']:.4f}, "
                f"p95 {a['p95']:.4f}), drop {format_signed(a['drop'])}",
                f"{r['bits']}-bit parameters (symmetric per-group quantisation): accuracy {q['accuracy']:.4f}"
                f"{_ran_away(q['diverged'], self.samples)}",
                "accuracy vs σ: " + ", ".join(f"{row['sigma']:.0%} {row['mean']:.3f}"
                                              f"{_ran_away(row['diverged'], self.samples * row['trials'])}"
                                              for row in r["mismatch_sweep"]),
                "accuracy vs bits: " + ", ".join(f"{row['bits']} {row['accuracy']:.3f}"
                                                 f"{_ran_away(row['diverged'], self.samples)}"
                                                 for row in r["quantisation_sweep"]),
                *(["(ran away: the perturbed or quantised circuit is unstable on that input — its node "
                   "voltages grow without bound, as the chip's would until they hit the rails; counted wrong)"]
                  if _any_ran_away(r) else []),
            ])
        if self.transistor is not None:
            out += _section(f"transistor level ({self.profile.pdk})", str(self.transistor).splitlines())
        if self.notes:
            out += _section("notes", [f"- {x}" for x in self.notes])
        out.append(f"(report made in {self.seconds:.1f} s)")
        return "\n".join(out)

    # ------------------------------------------------------------------ plots
    def plots(self, directory) -> list:
        """Write the report's figures as PNG files into ``directory`` (created if needed).

        See :func:`~.plots.write_plots`; returns the list of paths written.
        """
        from .plots import write_plots

        return write_plots(self, directory)


def _ran_away(count: int, of: int) -> str:
    """`` (k of n ran away)`` for a sweep point with runaway samples, else nothing."""
    return f" ({count} of {of} ran away)" if count else ""


def _any_ran_away(robustness: dict) -> bool:
    rows = [*robustness["mismatch_sweep"], *robustness["quantisation_sweep"]]
    return any(row["diverged"] for row in rows)


def _overrides(profile: TechnologyProfile) -> str:
    """Which values differ from the shipped defaults, or a pointer to how to change them."""
    defaults = default_profile()
    values, default_values = profile.parameters(), defaults.parameters()
    changed = [name for name in values
               if values[name] != default_values[name] or profile.sources[name] != defaults.sources[name]]
    if not changed:
        return "(the shipped representative values; 'kirchhoff-sim report --profile FILE' overrides any of them)"
    return "changed from the shipped defaults: " + "; ".join(f"{name} = {_shown(values[name])} ({profile.sources[name]})"
                                                              for name in changed)


def _shown(value) -> str:
    """A profile value as text: numbers with ``g``, families as a comma-separated list."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _section(title: str, lines) -> list:
    return ["", f"== {title} ==", *lines]


def _net_summary(net) -> dict:
    return {"nodes": int(net.num_nodes), "edges": int(net.num_edges), "layers": len(net.layers),
            "parameters": int(net.num_params), "T": float(net.T), "readout": net.readout.tolist(),
            "devices": sorted({repr(g.device) for g in net.groups})}


def _check_batch(net, X, y, samples):
    X = as_batch(X)
    if samples is not None:
        X = X[:as_int(samples, "samples", minimum=1)]
    if y is not None:
        y = np.asarray(y)
        if len(y) < len(X):
            raise InputError(f"y has {len(y)} labels for {len(X)} samples")
        y = y[:len(X)]
    return X, y


def chip_report(net, X, y=None, profile: TechnologyProfile | None = None, *, spice_check: bool = True,
                robustness: bool = True, mc_sigma: float = DEFAULT_MC_SIGMA, mc_trials: int = DEFAULT_MC_TRIALS,
                bits: int = DEFAULT_REPORT_BITS, samples: int | None = DEFAULT_REPORT_SAMPLES,
                solver: dict | None = None, n_points: int = DEFAULT_WAVEFORM_POINTS,
                settle_fraction: float = DEFAULT_SETTLE_FRACTION, spice_samples: int = 1,
                sweep_sigmas=SWEEP_SIGMAS, sweep_bits=SWEEP_BITS, seed: int = 0, executor=None,
                spice_options=None, spice_backend: str = "subprocess", transistor_samples: int = 0,
                corners=(), pdk_root=None, workers: int = 2, transistor_mismatch: int = 0,
                spice_timeout: float = DEFAULT_TIMEOUT_SECONDS) -> ChipReport:
    """The chip report of ``net`` on a batch of inputs.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d)
        Input samples (normalised volts); the first ``samples`` rows are used.
    y : array_like of int, shape (B,), optional
        Class labels; without them the robustness section is skipped.
    profile : TechnologyProfile, optional
        Default :func:`~.profile.default_profile`.
    spice_check : bool
        Run ``spice_samples`` samples in ngspice: device energy check and ngspice's
        wall-clock time.
    robustness : bool
        Accuracy under mismatch and quantisation (needs ``y``).
    mc_sigma : float
        Device mismatch σ of the headline Monte Carlo (log-normal; 0.05 = 5 %).
    mc_trials : int
        Monte Carlo trials per σ.
    bits : int
        Parameter precision of the headline quantisation figure.
    samples : int or None
        Use the first ``samples`` rows of ``X`` (None: all).
    solver : dict, optional
        :func:`~kirchhoff_sim.solvers.make_solver` keywords of the inference solver (timed,
        and used by the robustness runs); default the trainer's dopri5 (rtol 1e-4). The
        dense waveform for timing, energy and feasibility always runs tight
        (:func:`~.timing.dense_waveforms`).
    n_points : int
        Equally spaced points of the dense waveform (the solver's steps are added).
    settle_fraction : float
        ``ε`` of the settling analysis as a fraction of the read-out swing.
    spice_samples : int
        How many samples to run in ngspice (one netlist each).
    sweep_sigmas, sweep_bits : sequence
        Points of the accuracy-vs-σ and accuracy-vs-bits curves (``mc_sigma``, ``bits``
        and the profile's precision are added).
    seed : int
        Monte Carlo seed.
    executor : Runner, optional
        Where the robustness trials run (:class:`~.executors.SerialRunner` by default, or a
        :class:`~.distributed.DaskRunner`).
    spice_options : SpiceOptions, optional
        ngspice's options for the energy check (default the tight :class:`SpiceOptions`).
    spice_backend : {"subprocess", "shared"}
    spice_timeout : float
        Seconds each ngspice run of the energy check may take (default 600; a
        460,136-source net needs tens of minutes).
    transistor_samples : int
        Run this many samples as the profile's transistor cells in ngspice (0: no
        transistor-level section; the profile must name a PDK).
    corners : sequence of str
        Corners run beside the profile's design corner (e.g. ``("ss", "ff")``).
    pdk_root : path, optional
        The PDK (default: located as :func:`~kirchhoff_sim.cells.pdk.locate_pdk` does).
    workers : int
        ngspice processes at once for the transistor-level runs (and the workers of the
        local Dask cluster of the mismatch runs, when no ``executor`` is given).
    transistor_mismatch : int
        Also run the ``transistor_samples`` samples on this many chips under sky130's
        mismatch models (:func:`~kirchhoff_sim.cells.mismatch.transistor_monte_carlo`,
        seeded by ``seed``, on ``executor`` or a local Dask cluster); 0: none.

    Returns
    -------
    ChipReport

    Raises
    ------
    InputError
        Bad batch, labels or options; transistor samples on a profile with no PDK.
    CellMappingError, PDKNotFoundError, SpiceError
        From the transistor-level section.
    """
    started = time.perf_counter()
    spice_timeout = as_real(spice_timeout, "spice_timeout", minimum=0.0, exclusive_minimum=True)
    profile = default_profile() if profile is None else profile
    if not isinstance(profile, TechnologyProfile):
        raise InputError(f"profile must be a TechnologyProfile, got {type(profile).__name__}")
    X, y = _check_batch(net, X, y, samples)
    transistor_samples = as_int(transistor_samples, "transistor_samples", minimum=0)
    transistor_mismatch = as_int(transistor_mismatch, "transistor_mismatch", minimum=0)
    if transistor_mismatch and not transistor_samples:
        raise InputError("transistor_mismatch runs the transistor-level samples on mismatched chips: "
                         "give transistor_samples too")
    corners = tuple(corners)
    if (corners or pdk_root is not None) and not transistor_samples:
        raise InputError(f"{'corners' if corners else 'pdk_root'} appl{'y' if corners else 'ies'} only to the "
                         f"transistor-level section: give transistor_samples too")
    if transistor_samples > len(X):
        raise InputError(f"transistor_samples {transistor_samples} exceeds the {len(X)} samples of the report "
                         f"(samples)")
    if transistor_samples:
        from ..cells import check_realisable
        from ..cells.pdk import check_corner

        for corner in corners:
            check_corner(corner)
        check_realisable(net, profile)
    solver = default_solver_spec() if solver is None else dict(solver)
    solver_object = make_solver(**solver)
    notes = []

    table = edge_table(net)
    waveforms = dense_waveforms(net, X, n_points)
    settle = settling(net, waveforms, settle_fraction)
    sweep = sweep_edges(net, waveforms, table)
    energy = energy_report(net, profile, waveforms, sweep, table)
    findings = check_feasibility(net, profile, waveforms, sweep, table, energy)
    notes.append(f"dense waveform: {len(waveforms.ts)} time points (uniform {n_points} plus the solver's steps), "
                 f"{waveforms.solver!r}, {waveforms.seconds:.2f} s")

    batch_s = measure_solver_seconds(net, X, solver_object)
    single_s = measure_solver_seconds(net, X[:1], solver_object)
    spice = None
    if spice_check:
        count = min(as_int(spice_samples, "spice_samples", minimum=1), len(X))
        spice = run_spice_check(net, X, profile, energy, range(count), spice_options, spice_backend, table,
                                timeout=spice_timeout)
    solver_text = ", ".join(f"{k}={v}" for k, v in solver.items())
    timing = timing_report(
        net, profile, settle, wallclock_solver_batch_s=batch_s, samples=len(X), wallclock_solver_single_s=single_s,
        wallclock_spice_per_sample_s=None if spice is None else float(np.mean(spice.spice_seconds)),
        wallclock_spice_compile_s=None if spice is None else float(np.mean(spice.compile_seconds)),
        solver=solver_text)

    robust = None
    if robustness and y is None:
        notes.append("robustness: skipped, no labels were given")
    elif robustness:
        spec = MonteCarloSpec(trials=mc_trials, seed=seed, solver=solver, temperature=profile.temperature_k,
                              scale=profile.scale)
        sigmas = sorted({float(s) for s in sweep_sigmas} | {float(mc_sigma)})
        bit_list = sorted({int(b) for b in sweep_bits} | {int(bits), int(profile.precision_bits)})
        mismatch = mismatch_sweep(net, X, y, sigmas, trials=mc_trials, spec=spec, executor=executor)
        quantised = quantisation_sweep(net, X, y, bit_list, spec=spec, executor=executor)
        at_sigma = next(row for row in mismatch if row["sigma"] == float(mc_sigma))
        at_bits = next(row for row in quantised if row["bits"] == int(bits))
        robust = {
            "nominal_accuracy": float(mismatch[0]["nominal"]), "nominal_diverged": int(mismatch[0]["nominal_diverged"]),
            "sigma": float(mc_sigma), "bits": int(bits),
            "accuracy_at_sigma": {k: v for k, v in at_sigma.items() if k != "accuracies"},
            "accuracy_at_bits": {k: int(v) if k in ("bits", "diverged") else json_float(v) for k, v in at_bits.items()},
            "mismatch_sweep": [{k: v for k, v in row.items() if k != "accuracies"} for row in mismatch],
            "quantisation_sweep": [{"bits": int(r["bits"]), "accuracy": float(r["accuracy"]),
                                    "loss": json_float(r["loss"]), "diverged": int(r["diverged"])} for r in quantised],
            "solver": dict(solver), "seed": int(seed), "trials": int(mc_trials),
        }
    transistor = None
    if transistor_samples:
        transistor = run_transistor_check(net, X, y, profile, transistor_samples, corners, pdk_root=pdk_root,
                                          workers=workers, mismatch_instances=transistor_mismatch, seed=seed,
                                          executor=executor)
    return ChipReport(net_summary=_net_summary(net), profile=profile, samples=len(X), timing=timing, energy=energy,
                      spice=spice, findings=findings, robustness=robust, transistor=transistor, notes=notes,
                      waveforms=waveforms,
                      settle=settle, seconds=time.perf_counter() - started, readout_nodes=net.readout.copy())
