"""Figures of the chip report, as PNG files.

Drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), so they
need no display and do not change the global pyplot backend of a notebook that calls
them. Each ``plot_*`` function returns a ``Figure``; :func:`write_plots` saves them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..fileio import atomic_write

__all__ = ["plot_readout_waveforms", "plot_power", "plot_energy_breakdown", "plot_accuracy_vs_sigma",
           "plot_accuracy_vs_bits", "write_plots"]

PLOTTED_SAMPLES = 4          # read-out waveforms drawn
PLOT_DPI = 110
NANOSECONDS = 1e9
MICROWATTS = 1e6
FEMTOJOULES = 1e15
SOURCE_COLOUR, SINK_COLOUR = "tab:orange", "tab:blue"
_SOURCES = ("input charging, drawn (C·V²)", "active-cell supply")   # energy drawn from outside


def _figure(width, height) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_readout_waveforms(report, samples: int = PLOTTED_SAMPLES) -> Figure:
    """Read-out voltages (V) over time (ns) of the first ``samples`` samples, each node's
    settle point (dot), the sample's settle time (dashed) and decision time (dotted)."""
    unit = report.profile.scale.time_unit * NANOSECONDS
    ts = report.waveforms.ts * unit
    nodes = report.readout_nodes
    readout = report.profile.scale.V0 * report.waveforms.node_voltages[:, :, nodes - 1]
    settle = report.settle
    shown = min(samples, readout.shape[1])
    fig = _figure(9, 2.6 * shown)
    for b in range(shown):
        ax = fig.add_subplot(shown, 1, b + 1)
        for r in range(readout.shape[2]):
            line, = ax.plot(ts, readout[:, b, r], lw=1.2, label=f"node {int(nodes[r])}")
            t = settle.settle_time[b, r] * unit
            ax.plot([t], [np.interp(t, ts, readout[:, b, r])], "o", color=line.get_color(), ms=5)
        ax.axvline(settle.sample_settle_time[b] * unit, color="k", ls="--", lw=0.8,
                   label=f"settled (±{settle.fraction:.0%} of swing)")
        ax.axvline(settle.decision_time[b] * unit, color="tab:red", ls=":", lw=1.0, label="class decided")
        ax.set_ylabel("V")
        ax.set_title(f"sample {b}: read-out voltages", fontsize=9)
        if b == 0:
            ax.legend(fontsize=7, ncol=min(6, readout.shape[2] + 2), loc="best")
    ax.set_xlabel("time (ns)")
    return fig


def plot_power(report) -> Figure:
    """Mean device dissipation and active-cell supply power (µW) over time (ns)."""
    energy = report.energy
    t = energy.trace_time_s * NANOSECONDS
    fig = _figure(8, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(t, energy.dissipation_w.mean(axis=1) * MICROWATTS, label="device dissipation (mean over samples)")
    if energy.counts["active"]:
        ax.plot(t, energy.supply_w.mean(axis=1) * MICROWATTS, label="active-cell supply (mean over samples)")
    ax.set_xlabel("time (ns)")
    ax.set_ylabel("power (µW)")
    ax.legend(fontsize=8)
    return fig


def plot_energy_breakdown(report) -> Figure:
    """Energy per inference (fJ, mean over samples): what is drawn from outside (orange)
    and where it goes (blue)."""
    breakdown = report.energy.breakdown()
    labels = list(breakdown)[::-1]
    values = np.array([breakdown[k] for k in labels]) * FEMTOJOULES
    colours = [SOURCE_COLOUR if k in _SOURCES else SINK_COLOUR for k in labels]
    fig = _figure(8, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(labels, values, color=colours)
    ax.set_xlabel("energy per inference (fJ, mean over samples); orange: drawn from outside")
    return fig


def plot_accuracy_vs_sigma(report) -> Figure:
    """Monte Carlo accuracy (mean, p5–p95) against device mismatch σ (%)."""
    rows = report.robustness["mismatch_sweep"]
    sigma = np.array([row["sigma"] for row in rows]) * 100
    mean = np.array([row["mean"] for row in rows])
    # p5 ≤ mean ≤ p95 only up to rounding when every trial scores the same
    low = np.maximum(mean - np.array([row["p5"] for row in rows]), 0.0)
    high = np.maximum(np.array([row["p95"] for row in rows]) - mean, 0.0)
    fig = _figure(6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.errorbar(sigma, mean, yerr=[low, high], marker="o", capsize=3, label="mean (p5–p95)")
    ax.axhline(report.robustness["nominal_accuracy"], color="k", ls="--", lw=0.8, label="nominal")
    ax.set_xlabel("device mismatch σ (%)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return fig


def plot_accuracy_vs_bits(report) -> Figure:
    """Accuracy of the quantised net against parameter precision (bits)."""
    rows = report.robustness["quantisation_sweep"]
    fig = _figure(6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([row["bits"] for row in rows], [row["accuracy"] for row in rows], marker="o", label="quantised")
    ax.axhline(report.robustness["nominal_accuracy"], color="k", ls="--", lw=0.8, label="nominal")
    ax.set_xlabel("parameter precision (bits)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return fig


def write_plots(report, directory) -> list:
    """Save the report's figures into ``directory`` (created if needed), each atomically.

    Files: ``readout_waveforms.png``, ``power.png``, ``energy_breakdown.png`` and, when
    the report has a robustness section, ``accuracy_vs_sigma.png`` and
    ``accuracy_vs_bits.png``.

    Returns
    -------
    list of Path
        The files written, in that order.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = [("readout_waveforms.png", plot_readout_waveforms), ("power.png", plot_power),
               ("energy_breakdown.png", plot_energy_breakdown)]
    if report.robustness is not None:
        figures += [("accuracy_vs_sigma.png", plot_accuracy_vs_sigma), ("accuracy_vs_bits.png", plot_accuracy_vs_bits)]
    written = []
    for name, draw in figures:
        fig = draw(report)
        fig.tight_layout()
        written.append(atomic_write(directory / name,
                                    lambda handle, fig=fig: fig.savefig(handle, dpi=PLOT_DPI, format="png")))
    return written
