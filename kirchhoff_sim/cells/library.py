"""The sky130 cell library: one transistor-level subcircuit per realisable device family.

Every cell is a two-terminal between an edge's ``src`` and ``dst`` nodes whose current
leaves ``src`` and enters ``dst`` (DESIGN.md §1), plus the chip-wide pins it needs:
the supplies ``vdd``/``vss``, its own bias line and the layer clock that switches it.
All signal voltages sit around a mid-rail reference ``vcm`` (the net's ground node, 0 V
normalised), ``V = vcm + V0·v``.

Tanh transconductor — ``ks_tanh_p`` / ``ks_tanh_n``
    A subthreshold nfet differential pair ``M1``/``M2`` (W/L = 10/1 µm) with tail current
    ``I_b`` splits it as ``I1 − I2 = I_b·tanh(κ·ΔV / 2U_T)`` (the subthreshold
    exponential, e.g. Mead, *Analog VLSI and Neural Systems*, 1989, ch. 5), ``ΔV`` the
    gate difference. The pair's gates are ``src`` (through the offset) and ``dst``, so
    the input is the branch voltage ``vs − vd``. Mirrors take the two drain currents to
    the terminals: ``I1`` is copied into ``dst`` and sunk from ``src``, ``I2`` copied into
    ``src`` and sunk from ``dst``, so ``dst`` gains exactly ``I1 − I2`` and ``src`` loses
    it. ``ks_tanh_n`` swaps the two outputs (a negative transconductance).
    The hard part is that the net current of a node is the *difference* of two mirror
    copies of about ``I_b/2``: a simple mirror's copy error (channel-length modulation at
    a different drain voltage) is a leak of several per cent of ``I_b`` into every node
    (measured: 7 % with L = 2 µm, 2.6 % with L = 8 µm). Every mirror here is therefore a
    wide-swing cascode (the low-voltage cascode of Gray, Hurst, Lewis & Meyer, *Analysis
    and Design of Analog Integrated Circuits*, 5th ed., §4.4.6): the mirror devices keep
    equal drain voltages, set by the cascode bias lines ``vcp``/``vcn``, and the copy no
    longer depends on the node voltage. Measured in ngspice (sky130 tt, 100 nA):
    src/dst imbalance ≤ 0.45 % of ``I_b`` over 0.5–1.3 V.
    The mirrors are small (W/L = 1/1, cascodes 1/0.5) because the cell's speed is their
    gate capacitance over their transconductance: the mirror pole is the cell's internal
    delay, 0.18 µs at 10 nA with these sizes against 1.0 µs with W/L = 2/4 mirrors, and the
    cell model is memoryless only while that delay is small against the node time
    constant (the profile's C0 is chosen for it). The price is mismatch: the mirrors'
    σ(ΔI/I) grows as 1/√(WL) (Pelgrom), which the sky130 mismatch models report. The operating range is
    narrower, ``vcm ± 0.15 V``: the pair's sources follow the common mode, so its body
    effect changes κ (and the tanh's slope) by about 1 % per 0.1 V of common mode.
    The tail (W/L = 2/16, long against channel-length modulation: the tail node follows
    the input common mode) mirrors the cell's bias line; an nfet switch below it, driven by
    the layer clock, turns the whole cell off outside its layer (every mirror then
    carries no current). The offset of the trained device is a DC voltage in series with
    the ``src`` gate (a gate draws no current, so it delivers no energy); on a chip it
    is a trimmed reference (a floating-gate or sample-and-hold voltage).

Bias generation
    Each cell has its own reference current (an ideal current source from ``vdd`` into a
    diode-connected nfet matching the tail) — on a chip the output of a current DAC.
    The reference is part of the supply current the energy report counts. The cascode
    bias lines ``vcp``/``vcn`` and ``vcm`` are ideal voltage references shared by all
    cells; they drive gates and the capacitor-less reference node only.

Node capacitors
    sky130's MIM capacitor (``sky130_fd_pr__cap_mim_m3_1``, about 2 fF/µm²), one per node
    to ``vss``.

Conventions: W and L in µm (the library sets ``.option scale=1.0u``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TanhCellDesign", "TANH_CELL", "cell_subcircuits", "NFET", "PFET", "MIM_CAP"]

NFET = "sky130_fd_pr__nfet_01v8"
PFET = "sky130_fd_pr__pfet_01v8"
MIM_CAP = "sky130_fd_pr__cap_mim_m3_1"
#: MIM capacitance per area, F/µm² (sky130 documentation: cap_mim_m3_1, 2 fF/µm²)
MIM_CAP_PER_AREA = 2e-15


@dataclass(frozen=True)
class TanhCellDesign:
    """Sizes (µm) and bias levels (V) of the tanh transconductor cell."""

    pair_w: float = 10.0
    pair_l: float = 1.0
    mirror_w: float = 1.0
    mirror_l: float = 1.0
    cascode_w: float = 1.0
    cascode_l: float = 0.5
    tail_w: float = 2.0
    tail_l: float = 16.0
    switch_w: float = 2.0
    switch_l: float = 0.15
    vdd: float = 1.8
    vcm: float = 0.9
    vcp: float = 0.8
    vcn: float = 0.8
    #: bias currents the cell is characterised and used over (A): deep subthreshold for the
    #: pair, and within what the cascodes' headroom carries (at 316 nA the mirrors leave
    #: saturation at these cascode biases)
    bias_min_a: float = 10e-9
    bias_max_a: float = 100e-9
    #: operating range of both terminals: vcm ± this (V). Beyond it the pair's body effect
    #: changes κ with the common mode by more than the 2 % fit target
    half_range_v: float = 0.15


TANH_CELL = TanhCellDesign()


def _fet(name, drain, gate, source, body, model, w, l):
    return f"X{name} {drain} {gate} {source} {body} {model} W={w:g} L={l:g}"


def _tanh_subcircuit(name: str, d: TanhCellDesign, negative: bool) -> list[str]:
    """``.subckt name src dst vdd vss nb vcp vcn en`` of the tanh cell."""
    # outputs: ``oa`` gains I1 − I2, ``ob`` loses it; positive: oa = dst, ob = src
    oa, ob = ("src", "dst") if negative else ("dst", "src")
    m, c = (d.mirror_w, d.mirror_l), (d.cascode_w, d.cascode_l)
    lines = [f".subckt {name} src g dst vdd vss nb vcp vcn en",
             "* g: the src-side gate (src through the offset), the pair input",
             _fet("M1", "a1", "g", "t", "vss", NFET, d.pair_w, d.pair_l),
             _fet("M2", "a2", "dst", "t", "vss", NFET, d.pair_w, d.pair_l),
             _fet("MT", "t", "nb", "x", "vss", NFET, d.tail_w, d.tail_l),
             _fet("MS", "x", "en", "vss", "vss", NFET, d.switch_w, d.switch_l),
             "* pfet wide-swing cascode mirrors of I1 (a1) and I2 (a2): diode side"]
    for k in ("1", "2"):
        lines += [_fet(f"P{k}", f"c{k}", f"a{k}", "vdd", "vdd", PFET, *m),
                  _fet(f"P{k}c", f"a{k}", "vcp", f"c{k}", "vdd", PFET, *c)]
    # copies: I1 into oa and into the nfet diode b1; I2 into ob and into b2
    for k, out in (("1", oa), ("2", ob)):
        for tag, drain in (("a", out), ("b", f"b{k}")):
            lines += [_fet(f"P{k}{tag}", f"x{k}{tag}", f"a{k}", "vdd", "vdd", PFET, *m),
                      _fet(f"P{k}{tag}c", drain, "vcp", f"x{k}{tag}", "vdd", PFET, *c)]
    lines.append("* nfet wide-swing cascode mirrors: sink I1 from ob, I2 from oa")
    for k, out in (("1", ob), ("2", oa)):
        lines += [_fet(f"N{k}c", f"b{k}", "vcn", f"y{k}", "vss", NFET, *c),
                  _fet(f"N{k}", f"y{k}", f"b{k}", "vss", "vss", NFET, *m),
                  _fet(f"N{k}oc", out, "vcn", f"z{k}", "vss", NFET, *c),
                  _fet(f"N{k}o", f"z{k}", f"b{k}", "vss", "vss", NFET, *m)]
    lines.append(".ends")
    return lines


def _bias_subcircuit(d: TanhCellDesign) -> list[str]:
    """``.subckt ks_bias nb vss``: the diode-connected nfet a reference current flows into."""
    return [".subckt ks_bias nb vss", _fet("MB", "nb", "nb", "vss", "vss", NFET, d.tail_w, d.tail_l), ".ends"]


def cell_subcircuits(design: TanhCellDesign = TANH_CELL) -> list[str]:
    """The ``.subckt`` definitions of the cell library, as netlist lines."""
    return (_tanh_subcircuit("ks_tanh_p", design, negative=False)
            + _tanh_subcircuit("ks_tanh_n", design, negative=True) + _bias_subcircuit(design))


def transistor_counts(design: TanhCellDesign = TANH_CELL) -> dict:
    """``{subcircuit name: transistors per instance}``, counted from the definitions."""
    counts, name = {}, None
    for line in cell_subcircuits(design):
        if line.startswith(".subckt"):
            name = line.split()[1]
            counts[name] = 0
        elif line.startswith("X") and (NFET in line or PFET in line):
            counts[name] += 1
    return counts
