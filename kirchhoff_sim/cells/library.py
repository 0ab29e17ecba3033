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

Conductance — ``ks_res``
    A sky130 extra-high-sheet poly resistor, ``sky130_fd_pr__res_xhigh_po`` (pins ``r0 r1
    sub``, parameters ``w``, ``l`` in µm; about 2 kΩ/□), in series with the layer clock's
    transmission gate. Why this resistor: the profile's conductance window is 0.2–2 µS,
    i.e. 0.5–5 MΩ. At the narrowest drawn width (0.35 µm, 7.4 kΩ per µm of length with
    the model's current-crowding term) that is a 68–680 µm strip; the 300 Ω/□ ``res_high_po``
    would need about seven times the length (4.5 mm for 5 MΩ), and an nfet in triode is
    10–100 % nonlinear (first study). The model's voltage coefficient,
    ``√(1 + (1.3·|V|/L)²)``, is below 10⁻⁵ for |V| ≤ 0.3 V over ≥ 50 µm, and its substrate
    term moves R by about 6·10⁻⁴ per volt of the strip's potential (0.01 % over the
    operating range), so the cell is linear to well inside the 2 % target; its body
    resistor ignores temperature coefficients in ngspice (the PDK writes it as a
    voltage-dependent R), so at another temperature only the heads and the switch move.
    The mapping (:func:`~kirchhoff_sim.cells.transistor.map_cells`) chooses the length at
    the fixed width from the characterised ``R(L) = R_fixed + ρ·L`` (heads, switch and
    ``ρ`` fitted in ngspice), within :attr:`ResistorCellDesign.length_min_um` ..
    ``length_max_um``.
    The switch is a transmission gate (nfet and pfet W/L = 4/0.15 µm, the complement of the
    clock from an inverter in the cell): at vcm = 0.9 V with a 1.8 V gate both devices run
    with little overdrive (the nfet's body effect, the pfet's |Vth| ≈ 1 V), so the pair is
    made wide enough that its on-resistance is a small fraction of the smallest resistor
    and its variation over vcm ± 0.15 V — the cell's only real nonlinearity — a small
    part of the fit error. Measured in ngspice (sky130 tt, 27 °C): ``R_fixed`` = 2.23 kΩ
    (the switch ≈ 2.0 kΩ and the two heads), 0.4 % of the 0.5 MΩ end of the window;
    ρ = 7.37 kΩ/µm (2.58 kΩ per drawn square at 0.35 µm: the model's narrow-width
    current crowding); fit error 0.40 % of full scale (at 65 µm, falling to 0.05 % at
    680 µm; with a 2 µm switch it was 0.75 %). Off, the gate leaves the strip floating on
    ``dst`` (leakage 5·10⁻⁶ of full scale): no current flows outside the layer. The
    strip's parasitic capacitance to the substrate loads the pins (measured off at
    1 MHz: ``src`` 2.4 fF, the switch; ``dst`` 2.7 fF + 0.028 fF/µm, 22 fF at 680 µm); it
    is added to the node capacitances, and the strip's distributed RC (≤ 0.1 µs at 5 MΩ)
    is far below the node time constant C0/G (≥ 10 µs).

Diode — ``ks_diode``
    A diode-connected nfet with its body tied to its gate and drain (a "DTMOS" diode, in
    an isolated p-well: sky130's deep n-well), the anode all three (``src``) and the
    cathode the source (``dst``), in series with the clock's transmission gate. In weak
    inversion, with all voltages taken from the body, the channel current is
    ``I_spec·e^{(V_gb − V_T0)/nU_T}·(e^{−V_sb/U_T} − e^{−V_db/U_T})`` (EKV; Enz, Krummenacher
    & Vittoz 1995); tying gate, drain and body together makes ``V_gb = V_db = 0`` and
    ``V_sb = −(vs − vd)``, so ``I = I_s·(e^{(vs−vd)/U_T} − 1)``, the Shockley law with
    ideality 1 in both directions (reverse, it saturates at ``−I_s``). Measured in ngspice
    (sky130 tt, 27 °C, L = 1 µm): ideality 1.05–1.09 over 0.05–0.3 V (DIBL and the onset of
    moderate inversion), the current the same to 0.1 % at vd = 0.75, 0.9 and 1.05 V (a
    true two-terminal). Why not the others: ``diode_pw2nd`` has the substrate as its
    anode (it cannot float between two signal nodes); ``diode_pd2nw`` floats but carries
    under 4 fA at 0.3 V forward (ideality 1.36 and the PDK's small saturation density) and
    on silicon is the emitter of the vertical p+/n-well/substrate PNP, which would take
    most of its current to the substrate; a diode-connected NPN carries about 0.35 pA at
    0.3 V and its base recombination (NE = 1.79) adds a second exponential; a
    diode-connected nfet with its body on ``vss`` depends on ``vd`` by a factor 2.3 per
    0.15 V (body effect), and with its body on the source it conducts backwards through
    the body-biased channel (−80 pA at −0.3 V against +160 pA forward). The profile's
    ±0.15 V range limits the forward bias to 0.3 V, which is why only a subthreshold
    channel (not a junction) carries currents of the net's scale (nA) in a few µm².
    The cell's fit over the operating range (|vs − vd| ≤ 0.3 V, three widths, three
    cathode voltages, tt, 27 °C): ideality n = 1.13 (n·U_T = 29.2 mV), ``j_w`` =
    0.090 pA/µm, ΔW = −0.29 µm, error 0.98 % of full scale at W = 1 and 7 µm and 1.57 % at
    50 µm (the switch's drop at 0.13 µA; 8/0.15 µm devices); off, 2·10⁻⁶ of full scale.
    The mapping takes ``i_s`` to the width at L = 1 µm from the characterised
    ``I_s(W) = j_w·(W + ΔW)``; the fitted ideality fixes the Diode family's normalised
    thermal voltage ``n·U_T/V0`` (0.584 at V0 = 50 mV): a net whose Diode devices have
    another one (the family's default 0.025852 means ideality 0.05 at V0 = 50 mV, which no
    junction or channel has: an ideality is ≥ 1) is refused, as is a series resistance
    ``r_s > 0`` (the cell has no programmable one; the switch's ≈ 2 kΩ is part of the fit).
    The switch sits on the cathode side, so the p-well stays at the anode's potential;
    the well's junction to the deep n-well (on ``vdd``) is reverse-biased by ≥ 0.6 V and
    its leakage (fA) is not in the netlist. The largest current, at 0.3 V forward and the
    widest device (50 µm), is 0.13 µA, so that the switch drops < 1 % of U_T. The DTMOS
    diode's ``I_s`` (a subthreshold current) and ``n·U_T`` move with temperature: the fit
    is per characterisation temperature, like the others. And with the process corner:
    ``j_w`` is 0.057 pA/µm at ss and 0.143 at ff (tt 0.090; n 1.12 and 1.14, fit errors
    1.40 % and 1.55 %), so a net mapped at tt and run at ss/ff sees its diode currents
    −36 %/+60 % — much more than the resistor cell, whose strip does not change with the
    corner in this PDK (ρ identical; only the switch: ``R_fixed`` 4.05 kΩ at ss, 1.27 kΩ
    at ff, fit errors 0.74 % and 0.26 %).

Rectifier — ``ks_relu_p`` / ``ks_relu_n`` (the ShiftedReLU family itself)
    ``i = g·relu((vs − vd) − θ)``: a transconductor with a rectifying mirror, the threshold
    a gate offset. The input is the same nfet pair as the tanh cell's (W/L = 4/1), its
    gates ``src`` (through the offset source ``V_off``) and ``dst``, but with *split*
    tails (two 2/16 sinks of ``I_t`` each) and an xhigh_po strip of resistance ``R``
    between the two sources (source degeneration): the strip carries
    ``I_R = (u − (V_gs1 − V_gs2))/R`` and the drains ``I1, I2 = I_t ± I_R``, so
    ``I1 − I2 = 2·I_R`` is linear in the gate difference ``u`` while ``|I_R| < I_t`` and
    the pair's own ``V_gs`` difference, ``(U_T/κ)·ln(I1/I2)``, is small against ``I_R·R``
    (Gray, Hurst, Lewis & Meyer, 5th ed., §8.5 on degenerated pairs). ``I1`` and ``I2``
    are mirrored (the tanh cell's pfet/nfet wide-swing cascode mirrors) into one node
    ``r``: ``I1`` sourced, ``I2`` sunk. ``r`` drives the diode-connected nfet ``N1``: a
    diode only takes current in, so an excess ``I1 − I2 > 0`` flows into it and is
    copied out, while a deficit pulls ``r`` down until the ``I2`` sink leaves saturation
    and carries only ``I1`` — ``N1`` and its copies carry nothing (the rectifying
    mirror). Two copies of ``N1`` sink the rectified current from ``src`` and (through a
    pfet mirror) source it into ``dst``; ``ks_relu_n`` swaps them (a negative gain).
    Why this works where a subthreshold corner would not: the rectification is in the
    current domain, at a diode that conducts any positive current, and the
    voltage-to-current conversion before it is the strip's, linear; the corner is not an
    exponential of the input (measured: the fitted ideal relu is within 1.6 % of full
    scale, its corner included, in 3.75 mV steps).
    Scaling: an instance is ``wm`` unit cells in parallel — every transistor ``wm`` times
    wider, the tails ``wm·I_u`` (``I_u`` = 60 nA per side), the strip ``L_u/wm``
    (``L_u`` = 1000 µm, about 7.4 MΩ) — so current densities, and therefore the shape of
    the response, are the unit cell's for every gain; the mapping takes ``|g|`` to
    ``wm = |g|·G0/g_u`` (``g_u`` the fitted unit gain, 0.194 µS at tt; ``wm`` ≈ 1–10 over
    the profile's 0.2–2 µS window, strips 100–1000 µm). The unit tail is chosen so that
    the output, which saturates at ``2·I_t``, has reached only 72 % of it at the largest
    gate difference (0.45 V: the branch voltage's 0.3 V plus a threshold of 0.15 V):
    measured compression about 1.3 % there. Why not the alternatives (first study): a single
    tail with a tail copy subtracted at ``r`` leaves the tails' mismatch and its
    common-mode dependence (~2 % of full scale over vcm ± 0.15 V) in the output; subtracting
    the mirrored ``I2`` cancels it (both tails move together). Simple mirrors leave a
    5–12 % src/dst imbalance; with the cascodes it is ≤ 0.33 % of full scale. The mirrors
    are small (1/0.5 µm, cascodes 1/0.5) for speed, as the tanh cell's.
    The threshold: the output is ``g·relu(u − δ)`` with ``δ`` the pair's fitted offset
    (about −2 mV); ``u = (vs − vd) + V_off``, so ``V_off = δ − θ·V0`` realises ``θ``
    (``|θ·V0|`` ≤ 0.15 V; the gate then stays within vcm ± 0.3 V, where the fit holds).
    On a chip the offset is a trimmed reference, like the tanh cell's; its mismatch (σ of
    the pair's ``V_gs``, ≈ 16 mV in the first study, smaller at these wider devices) is
    the cell's weak point and is what the sky130 mismatch run shows.
    Measured in ngspice (sky130 tt, 27 °C; wm = 1 and 10, both orientations, dst at vcm
    and ± 0.15 V, gate within vcm ± 0.3 V): fit error vs the ideal relu 1.61 % of full
    scale (``wm·g_u·0.45 V``), 1.48 % of ``wm·g_u·0.3 V`` for ``u − δ`` ≤ 0.3 V;
    src/dst imbalance ≤ 0.33 %; off (tail switch open), 1·10⁻⁵ of full scale; pins
    7.7–7.9 fF per unit cell (``wm``); 27 transistors and a bias diode. So the cell
    realises :class:`~kirchhoff_sim.devices.ShiftedReLU` directly (within the 2 % target),
    and no separate fitted model family is needed.
    What is still weak, measured on a trained net (``train --task moons --profile sky130
    --device ShiftedReLU``, 2 epochs, 60 cells; one sample): transistor level and solver
    agree on the class but differ by 7.3 % of the swing at T (the tanh moons net: 2.3 %).
    Measured on one cell: the turn-on from deep off takes 0.47 µs to 50 % (the rectifier
    node ``r`` falls to ``vss`` below threshold and is recharged by the small current just
    above it; 0.06 µs on to on, independent of ``wm``), against node time constants of a
    few µs when a dozen cells share a 20 pF node. With 2/1 mirrors it was 1.40 and
    0.22 µs and the net 8.6 %; the static compression alone (the ideal relu against one
    with the measured compression, in our solver) moves that net's read-out by only
    0.6–1.3 % of the swing, so the rest is not yet explained. A clamp on ``r`` (an nfet
    follower from a 0.75 V line, switched by ``en``) cut the 2/1 cell's turn-on to 0.60 µs
    but rounded the corner (1.1 nA at threshold per unit cell, summed over the many
    cells below threshold) and made the net worse, 11.3 %; it is not in the cell. Open:
    where the remaining net-level error comes from (a per-node current budget at
    transistor level), and a fitted compression term.

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

__all__ = ["TanhCellDesign", "TANH_CELL", "ResistorCellDesign", "RESISTOR_CELL", "DiodeCellDesign", "DIODE_CELL",
           "ReLUCellDesign", "RELU_CELL",
           "cell_subcircuits", "NFET", "PFET", "MIM_CAP", "XHIGH_PO"]

NFET = "sky130_fd_pr__nfet_01v8"
PFET = "sky130_fd_pr__pfet_01v8"
MIM_CAP = "sky130_fd_pr__cap_mim_m3_1"
XHIGH_PO = "sky130_fd_pr__res_xhigh_po"
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


@dataclass(frozen=True)
class ResistorCellDesign:
    """Sizes (µm), window and levels (V) of the poly-resistor conductance cell."""

    #: drawn width of the xhigh_po strip (the PDK's narrowest, 0.35 µm)
    width: float = 0.35
    #: the lengths the mapping may draw: the PDK's minimum 0.5 µm is far below the window;
    #: 1 mm is our limit on one strip (a folded 2 µm-pitch serpentine of 1 mm is 45 µm square)
    length_min_um: float = 0.5
    length_max_um: float = 1000.0
    #: the conductance window (S): the sky130 profile's, 0.5–5 MΩ
    conductance_min_s: float = 0.2e-6
    conductance_max_s: float = 2e-6
    switch_w: float = 4.0
    switch_l: float = 0.15
    inverter_w: float = 1.0
    inverter_l: float = 0.15
    vdd: float = 1.8
    vcm: float = 0.9
    half_range_v: float = 0.15


RESISTOR_CELL = ResistorCellDesign()


@dataclass(frozen=True)
class DiodeCellDesign:
    """Sizes (µm), window and levels (V) of the DTMOS diode cell."""

    length: float = 1.0
    #: widths the mapping may draw (the saturation current scales with W)
    width_min_um: float = 1.0
    width_max_um: float = 50.0
    switch_w: float = 8.0
    switch_l: float = 0.15
    inverter_w: float = 1.0
    inverter_l: float = 0.15
    vdd: float = 1.8
    vcm: float = 0.9
    half_range_v: float = 0.15


DIODE_CELL = DiodeCellDesign()


@dataclass(frozen=True)
class ReLUCellDesign:
    """Sizes (µm) of the unit rectifier cell, its unit bias (A) and levels (V).

    An instance is ``wm`` unit cells in parallel (every transistor ``wm`` times as wide,
    the tail ``wm`` times the unit current) with a strip ``unit_strip_um / wm`` long: the
    current densities, and so the shape of the response, are those of the unit cell.
    """

    pair_w: float = 4.0
    pair_l: float = 1.0
    #: small mirrors for speed: 1/0.5 turns the cell on from deep off in 0.47 µs and on to
    #: on in 0.06 µs, where 2/1 took 1.40 and 0.22 µs (fit error 1.61 % against 1.33 %)
    mirror_w: float = 1.0
    mirror_l: float = 0.5
    cascode_w: float = 1.0
    cascode_l: float = 0.5
    tail_w: float = 2.0
    tail_l: float = 16.0
    switch_w: float = 6.0
    switch_l: float = 0.15
    #: degeneration strip (xhigh_po) of the unit cell: width and length (µm)
    strip_w: float = 0.35
    unit_strip_um: float = 1000.0
    #: tail current per side of the unit cell (A); the output saturates at twice it
    unit_tail_a: float = 60e-9
    #: the gain window (S): the sky130 profile's conductance window
    gain_min_s: float = 0.2e-6
    gain_max_s: float = 2e-6
    vdd: float = 1.8
    vcm: float = 0.9
    vcp: float = 0.8
    vcn: float = 0.8
    #: operating range of both terminals: vcm ± this (V); the threshold too is within ± this
    half_range_v: float = 0.15


RELU_CELL = ReLUCellDesign()


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


def _switch(a: str, b: str, d) -> list[str]:
    """The layer switch between ``a`` and ``b``: a transmission gate driven by ``en`` and,
    from the cell's inverter, its complement ``enb``."""
    return [_fet("MSN", a, "en", b, "vss", NFET, d.switch_w, d.switch_l),
            _fet("MSP", a, "enb", b, "vdd", PFET, d.switch_w, d.switch_l),
            _fet("MIN", "enb", "en", "vss", "vss", NFET, d.inverter_w, d.inverter_l),
            _fet("MIP", "enb", "en", "vdd", "vdd", PFET, d.inverter_w, d.inverter_l)]


#: the instance parameter of ``ks_res`` (strip length, µm) and ``ks_diode`` (width, µm)
RESISTOR_LENGTH_PARAMETER, DIODE_WIDTH_PARAMETER = "lres", "wdio"


def _resistor_subcircuit(d: ResistorCellDesign) -> list[str]:
    """``.subckt ks_res src dst vdd vss en lres=…``: switch from src to m, strip from m to dst."""
    return [f".subckt ks_res src dst vdd vss en {RESISTOR_LENGTH_PARAMETER}=100",
            *_switch("src", "m", d),
            f"XR m dst vss {XHIGH_PO} w={d.width:g} l={{{RESISTOR_LENGTH_PARAMETER}}}", ".ends"]


def _diode_subcircuit(d: DiodeCellDesign) -> list[str]:
    """``.subckt ks_diode src dst vdd vss en wdio=…``: the DTMOS diode from src to m
    (drain, gate and body on src), the switch from m to dst."""
    return [f".subckt ks_diode src dst vdd vss en {DIODE_WIDTH_PARAMETER}=1",
            f"XD src src m src {NFET} W={{{DIODE_WIDTH_PARAMETER}}} L={d.length:g}",
            *_switch("m", "dst", d), ".ends"]


#: the instance parameter of ``ks_relu_p``/``_n`` and ``ks_relu_bias``: the width multiple
#: ``wm`` (unit cells in parallel; the strip is ``unit_strip_um / wm`` long)
RELU_SCALE_PARAMETER = "wm"


def _relu_subcircuit(name: str, d: ReLUCellDesign, negative: bool) -> list[str]:
    """``.subckt name src g dst vdd vss nb vcp vcn en wm=…`` of the rectifier."""
    wm = RELU_SCALE_PARAMETER
    # outputs: ``oa`` gains relu(I1 − I2), ``ob`` loses it; positive: oa = dst, ob = src
    oa, ob = ("src", "dst") if negative else ("dst", "src")

    def fet(name, drain, gate, source, body, model, w, l):
        return f"X{name} {drain} {gate} {source} {body} {model} W={{{w:g}*{wm}}} L={l:g}"

    m, c = (d.mirror_w, d.mirror_l), (d.cascode_w, d.cascode_l)
    return [f".subckt {name} src g dst vdd vss nb vcp vcn en {wm}=1",
            "* g: the src-side gate (src through the threshold offset); split tails, strip between the sources",
            fet("M1", "a1", "g", "t1", "vss", NFET, d.pair_w, d.pair_l),
            fet("M2", "a2", "dst", "t2", "vss", NFET, d.pair_w, d.pair_l),
            f"XR t1 t2 vss {XHIGH_PO} w={d.strip_w:g} l={{{d.unit_strip_um:g}/{wm}}}",
            fet("MT1", "t1", "nb", "x", "vss", NFET, d.tail_w, d.tail_l),
            fet("MT2", "t2", "nb", "x", "vss", NFET, d.tail_w, d.tail_l),
            fet("MS", "x", "en", "vss", "vss", NFET, d.switch_w, d.switch_l),
            "* I1 (a1): pfet wide-swing cascode mirror into the rectifier node r",
            fet("P1", "c1", "a1", "vdd", "vdd", PFET, *m), fet("P1c", "a1", "vcp", "c1", "vdd", PFET, *c),
            fet("P2", "c2", "a1", "vdd", "vdd", PFET, *m), fet("P2c", "r", "vcp", "c2", "vdd", PFET, *c),
            "* I2 (a2): pfet mirror into the nfet diode b2, whose copy N5 sinks I2 from r",
            fet("P3", "c5", "a2", "vdd", "vdd", PFET, *m), fet("P3c", "a2", "vcp", "c5", "vdd", PFET, *c),
            fet("P4", "c6", "a2", "vdd", "vdd", PFET, *m), fet("P4c", "b2", "vcp", "c6", "vdd", PFET, *c),
            fet("N4c", "b2", "vcn", "y4", "vss", NFET, *c), fet("N4", "y4", "b2", "vss", "vss", NFET, *m),
            fet("N5c", "r", "vcn", "y5", "vss", NFET, *c), fet("N5", "y5", "b2", "vss", "vss", NFET, *m),
            "* r carries I1 - I2: only an excess enters the nfet diode N1 (the rectifier); a deficit",
            "* pulls r down and N5 into triode, and N1 and its copies carry nothing",
            fet("N1c", "r", "vcn", "y1", "vss", NFET, *c), fet("N1", "y1", "r", "vss", "vss", NFET, *m),
            "* copies of the rectified current: sunk from ob, and through the pfet mirror Q into oa",
            fet("N2c", ob, "vcn", "y2", "vss", NFET, *c), fet("N2", "y2", "r", "vss", "vss", NFET, *m),
            fet("N3c", "q", "vcn", "y3", "vss", NFET, *c), fet("N3", "y3", "r", "vss", "vss", NFET, *m),
            fet("Q1", "c3", "q", "vdd", "vdd", PFET, *m), fet("Q1c", "q", "vcp", "c3", "vdd", PFET, *c),
            fet("Q2", "c4", "q", "vdd", "vdd", PFET, *m), fet("Q2c", oa, "vcp", "c4", "vdd", PFET, *c),
            ".ends"]


def _relu_bias_subcircuit(d: ReLUCellDesign) -> list[str]:
    """``.subckt ks_relu_bias nb vss wm=…``: the reference diode matching ``wm`` tails."""
    wm = RELU_SCALE_PARAMETER
    return [f".subckt ks_relu_bias nb vss {wm}=1",
            f"XMB nb nb vss vss {NFET} W={{{d.tail_w:g}*{wm}}} L={d.tail_l:g}", ".ends"]


def cell_subcircuits(design: TanhCellDesign = TANH_CELL, resistor: ResistorCellDesign = RESISTOR_CELL,
                     diode: DiodeCellDesign = DIODE_CELL, relu: ReLUCellDesign = RELU_CELL) -> list[str]:
    """The ``.subckt`` definitions of the cell library, as netlist lines."""
    return (_tanh_subcircuit("ks_tanh_p", design, negative=False)
            + _tanh_subcircuit("ks_tanh_n", design, negative=True) + _bias_subcircuit(design)
            + _resistor_subcircuit(resistor) + _diode_subcircuit(diode)
            + _relu_subcircuit("ks_relu_p", relu, negative=False) + _relu_subcircuit("ks_relu_n", relu, negative=True)
            + _relu_bias_subcircuit(relu))


def transistor_counts(design: TanhCellDesign = TANH_CELL) -> dict:
    """``{subcircuit name: transistors per instance}``, counted from the definitions (a
    resistor is not a transistor; the diode cell's DTMOS is)."""
    counts, name = {}, None
    for line in cell_subcircuits(design):
        if line.startswith(".subckt"):
            name = line.split()[1]
            counts[name] = 0
        elif line.startswith("X") and (NFET in line or PFET in line):
            counts[name] += 1
    return counts
