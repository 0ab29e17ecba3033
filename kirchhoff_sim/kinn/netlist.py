"""A KINN as a SPICE netlist, and its check against ngspice.

The circuit is the net of :mod:`.network` in physical units (DESIGN.md §5: volts ``V0``,
farads ``C0``, siemens ``G0``, amperes ``G0·V0``, seconds ``C0/G0``)::

    stage j of channel m   C  s<j>_<m> 0 C0·C_jm  IC=V0·v_jm(0)     the cell capacitor
                           R  s<j>_<m> 0 1/(G0·G_jm)                 its leak
                           G  0 s<j>_<m> s<j-1>_<m> 0 G0·K           stage j−1 drives stage j
    output of channel m    G  0 u<m> s<j>_<m> 0 G0·α_jm  (each j)    u = Σ_j α_j v_j
                           R  u<m> 0 1/G0                            (a summing node, no C)
    window l, channel m    G  0 z<l>_<m> u<k> 0 G0·W_mk  (each k)    z = W u + b
                           I  0 z<l>_<m> DC G0·V0·b_m
                           R  z<l>_<m> 0 1/G0
                           B  0 s0_<m> I=G0·V0·V(clk<l>)·φ(V(z<l>_<m>)/V0)

``G`` elements are ideal VCCSs: they sense their control voltage without loading it,
which is what lets a summing node (a node with only a resistor to ground) hold
``Σ`` exactly, and the cells keep their state between windows. A ``G n+ n- c+ c- g``
drives ``g·V(c+, c−)`` from ``n+`` through itself into ``n−`` (so ``0 s`` injects into
``s``). The only nonlinear element is the drive ``φ``, a B source (behavioural) gated
to its window by a PWL clock as a KirchhoffNet layer's B sources are
(:func:`kirchhoff_sim.spice.netlist._clock_lines`: linear ramps centred on the window
boundary, an ``O(w²)`` error). Everything else is a primitive ``C``, ``R``, ``G`` or
``I``. With ``φ`` the identity and one window, ``primitive=True`` writes the drive as a
``G`` element too, so the whole circuit is primitive.

:func:`validate` runs each sample's netlist in ngspice and compares every stage voltage
and every read-out with our solver on a common time grid, relative to the swing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import as_int, as_real_array
from ..errors import InputError, ParameterError
from ..solvers import Dopri5
from ..spice.netlist import _clock_lines, options_line, scale_and_options
from ..spice.options import SpiceOptions
from ..spice.roundtrip import NgspiceRun
from ..spice.runner import run_netlist
from ..spice.safety import check_netlist_safe, sanitise_title
from ..units import PhysicalScale
from .network import require_kinn
from .transient import simulate

__all__ = ["KinnNetlist", "KinnValidation", "to_netlist", "validate", "element_values", "SPICE_SWING_RTOL"]

#: the acceptance bound of issue #11: ngspice within 1e-4 of the swing of our solver
SPICE_SWING_RTOL = 1e-4


def _r(x) -> str:
    return repr(float(x))


#: the cell and summing elements: (unit, must be > 0, parameter, name of element ``index``)
_ELEMENTS = {
    "C": ("F", True, "log_c", lambda j, m: f"C{j}_{m}"),
    "R": ("Ω", True, "log_g", lambda j, m: f"R{j}_{m}"),
    "Gk": ("S", False, "k", lambda j, m: f"Gk{j + 1}_{m}"),
    "Ga": ("S", False, "alpha", lambda j, m: f"Ga{j}_{m}"),
    "Gw": ("S", False, "W", lambda l, m, k: f"Gw{l}_{m}_{k}"),
    "Ib": ("A", False, "b", lambda l, m: f"Ib{l}_{m}"),
}


def element_values(net, scale: PhysicalScale) -> dict:
    """The SI values of the cells' and summing networks' elements, each shaped like its
    parameter: ``C`` and ``R`` ``(n, M)`` (farads, ohms), ``Gk`` ``(n−1, M)``, ``Ga``
    ``(n, M)``, ``Gw`` ``(L, M, M)`` (siemens) and ``Ib`` ``(L, M)`` (amperes).

    Checked before a line is written, so that a finite parameter whose element is not
    (``log_g = −800`` is a resistor of ``inf`` Ω) is refused here, by name, rather than
    by ngspice later: every value finite, and capacitors and resistors > 0.

    Raises
    ------
    ParameterError
        Naming the first bad element, its value and the parameter it comes from.
    """
    G0 = scale.G0
    with np.errstate(over="ignore", under="ignore", divide="ignore"):     # judged below, element by element
        values = {"C": scale.C0 * np.exp(net.log_c), "R": 1.0 / (G0 * np.exp(net.log_g)),
                  "Gk": G0 * net.k, "Ga": G0 * net.alpha, "Gw": G0 * net.W, "Ib": scale.current_unit * net.b}
    for kind, (unit, positive, parameter, element) in _ELEMENTS.items():
        value = values[kind]
        bad = ~np.isfinite(value) | (value <= 0 if positive else False)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            need = "finite and > 0" if positive else "finite"
            raise ParameterError(f"element {element(*index)} would be {float(value[index])!r} {unit} (from "
                                 f"{parameter}{list(index)} = {getattr(net, parameter)[index]:g}): it must be {need}")
    return values


@dataclass
class KinnNetlist:
    """A compiled KINN sample.

    Attributes
    ----------
    text : str
        The netlist.
    stage_nodes : list of str
        Node names of the stages, in the order of the net's nodes ``1..N``.
    output_nodes : list of str
        The read-out channels' summing nodes ``u<m>``.
    counts : dict
        Elements by kind (``C``, ``R``, ``G``, ``I``, ``B``).
    behavioural : int
        How many elements are behavioural (B sources); 0 for a fully primitive circuit.
    scale : PhysicalScale
    tstop : float
        ``T`` in seconds.
    node_map : dict
        ``{0: "0", 1..N: stage nodes, N+1..N+n_out: output nodes}``, the layout
        :class:`~kirchhoff_sim.spice.roundtrip.NgspiceRun` reads a run back in.
    initial_voltages : ndarray, shape (N + n_out,)
        Volts at ``t = 0`` of the nodes of ``node_map`` (``uic`` writes no t = 0 point).
    layer_boundaries : ndarray, shape (L + 1,)
        Window boundaries in seconds.
    """

    text: str
    stage_nodes: list
    output_nodes: list
    counts: dict
    behavioural: int
    scale: PhysicalScale
    tstop: float
    node_map: dict
    initial_voltages: np.ndarray
    layer_boundaries: np.ndarray

    def __str__(self) -> str:
        return self.text


def to_netlist(net, x, scale: PhysicalScale | None = None, options: SpiceOptions | None = None,
               primitive: bool = False, title: str | None = None) -> KinnNetlist:
    """Compile ``net`` with one input sample ``x`` ``(d,)`` to an ngspice netlist.

    Parameters
    ----------
    net : KinnNet
    x : array_like, shape (d,)
        One input sample (normalised volts), the initial voltage of the input stages.
    scale : PhysicalScale, optional
        Default :meth:`PhysicalScale.default` (0.1 V, 100 fF, 1 µS).
    options : SpiceOptions, optional
        Method, tolerances, maximum step and gate width (normalised; scaled here).
    primitive : bool
        Write the drive as a ``G`` element where it is one (identity φ, one window);
        elsewhere it stays a B source, counted in :attr:`KinnNetlist.behavioural`.
    title : str, optional
        Sanitised into one safe line.

    Returns
    -------
    KinnNetlist

    Raises
    ------
    InputError
        ``net`` not a KinnNet, a batch instead of one sample, bad inputs, scale or options.
    ParameterError
        An element value that is not finite, or a capacitor or resistor that is not > 0
        (:func:`element_values`), or an initial voltage beyond the float range.
    """
    require_kinn(net, "kinn.netlist.to_netlist", "kirchhoff_sim.spice.netlist.to_netlist")
    scale, options = scale_and_options(scale, options)
    x = as_real_array(x, "x (one sample of input voltages)", finite=False)
    if x.ndim != 1:
        raise InputError(f"to_netlist compiles ONE sample: x must have shape (d,), got {x.shape}")
    v0 = net.stage_voltages(net.initial_state(x))[:, :, 0]          # (n, M); checks width, finiteness
    values = element_values(net, scale)
    with np.errstate(over="ignore"):
        ic = scale.V0 * v0
    if not np.isfinite(ic).all():
        raise ParameterError(f"an initial voltage V0·x is beyond the float range (V0 = {scale.V0:g} V, "
                             f"largest |x| = {np.abs(v0).max():g})")
    n, M, L = net.stages, net.width, net.num_windows
    V0, C0, G0 = scale.V0, scale.C0, scale.G0
    unit = scale.current_unit
    stage = [[f"s{j}_{m}" for m in range(M)] for j in range(n)]
    lines, counts = [], dict.fromkeys("CRGIB", 0)

    def add(kind, line):
        lines.append(line)
        counts[kind] += 1

    lines.append("* cells: capacitor, leak, inter-stage transconductance")
    for j in range(n):
        for m in range(M):
            add("C", f"C{j}_{m} {stage[j][m]} 0 {_r(values['C'][j, m])} IC={_r(ic[j, m])}")
            add("R", f"R{j}_{m} {stage[j][m]} 0 {_r(values['R'][j, m])}")
            if j > 0 and net.k[j - 1, m] != 0.0:
                add("G", f"Gk{j}_{m} 0 {stage[j][m]} {stage[j - 1][m]} 0 {_r(values['Gk'][j - 1, m])}")
    lines.append("* channel outputs u = sum_j alpha_j v_j (summing nodes)")
    for m in range(M):
        for j in range(n):
            if net.alpha[j, m] != 0.0:
                add("G", f"Ga{j}_{m} 0 u{m} {stage[j][m]} 0 {_r(values['Ga'][j, m])}")
        add("R", f"Ru{m} u{m} 0 {_r(1.0 / G0)}")
    boundaries = net.layer_boundaries
    durations = np.diff(boundaries)
    max_step = min(options.max_step if options.max_step is not None
                   else options.max_step_fraction * float(durations.min()), net.T)
    half_width = 0.5 * options.gate_width
    if L > 1 and not half_width < 0.25 * durations.min():
        raise InputError(f"SpiceOptions.gate_width={options.gate_width:g} is too wide for the "
                         f"shortest window ({durations.min():g}); it must be < half of it")
    linear_drive = primitive and L == 1 and net.activation.name == "identity"
    for l in range(L):
        lines.append(f"* window {l}: z = W u + b, drive phi(z) into stage 0")
        for m in range(M):
            z = f"z{l}_{m}"
            for k in np.flatnonzero(net.W[l, m]).tolist():
                add("G", f"Gw{l}_{m}_{k} 0 {z} u{k} 0 {_r(values['Gw'][l, m, k])}")
            if net.b[l, m] != 0.0:
                add("I", f"Ib{l}_{m} 0 {z} DC {_r(values['Ib'][l, m])}")
            add("R", f"Rz{l}_{m} {z} 0 {_r(1.0 / G0)}")
            if linear_drive:
                add("G", f"Gd{l}_{m} 0 {stage[0][m]} {z} 0 {_r(G0)}")
            else:
                gate = f"V(clk{l})*" if L > 1 else ""
                drive = net.activation.spice(f"V({z})/{_r(V0)}")
                add("B", f"Bd{l}_{m} 0 {stage[0][m]} I={_r(unit)}*{gate}{drive}")
    time_unit = scale.time_unit
    clocks = _clock_lines(boundaries * time_unit, half_width * time_unit) if L > 1 else []
    tstop = float(boundaries[-1] * time_unit)
    tmax = max_step * time_unit
    first = options.first_step if options.first_step is not None else options.first_step_fraction * max_step
    header = [sanitise_title(title or "KINN"),
              f"* KINN: {M} channels x {n} stages, {L} window(s), T = {net.T!r} (normalised) = {tstop!r} s",
              f"* units: V0 = {V0!r} V, C0 = {C0!r} F, G0 = {G0!r} S",
              options_line(options, scale)]
    outputs = [f"u{m}" for m in range(net.num_outputs)]
    footer = [f".tran {_r(min(first * time_unit, tmax))} {tstop!r} 0 {_r(tmax)} uic",
              *[f".meas tran readout_{u} find v({u}) at={tstop!r}" for u in outputs], ".end"]
    text = "\n".join(header + (["* window clocks"] + clocks if clocks else []) + lines + footer) + "\n"
    check_netlist_safe(text)
    stage_nodes = [stage[j][m] for j in range(n) for m in range(M)]
    initial = np.concatenate([v0.ravel(), net.channel_outputs(v0[:, :, None])[:net.num_outputs, 0]])
    return KinnNetlist(text=text, stage_nodes=stage_nodes, output_nodes=outputs, counts=counts,
                       behavioural=counts["B"], scale=scale, tstop=tstop,
                       node_map=dict(enumerate(["0"] + stage_nodes + outputs)),
                       initial_voltages=V0 * initial, layer_boundaries=boundaries * time_unit)


@dataclass
class KinnValidation:
    """ngspice against our solver, per sample.

    Attributes
    ----------
    max_waveform_error : ndarray, shape (B,)
        Largest ``|v_spice − v_ours|`` over the grid, the stage nodes and the outputs,
        divided by the sample's swing (the range of our waveforms over all of them).
    max_readout_error : ndarray, shape (B,)
        The same for the read-out at ``T`` alone.
    swing : ndarray, shape (B,)
        Normalised volts.
    spice_seconds : float
        ngspice's total wall time.
    netlists : list of KinnNetlist
    """

    max_waveform_error: np.ndarray
    max_readout_error: np.ndarray
    swing: np.ndarray
    spice_seconds: float
    netlists: list = field(repr=False)

    @property
    def worst(self) -> float:
        """The largest relative error of any waveform of any sample."""
        return float(np.max(self.max_waveform_error))

    @property
    def agrees(self) -> bool:
        """Every waveform within :data:`SPICE_SWING_RTOL` of its swing."""
        return self.worst <= SPICE_SWING_RTOL


def validate(net, X, *, solver=None, scale: PhysicalScale | None = None,
             options: SpiceOptions | None = None, primitive: bool = False, n_points: int = 201,
             timeout: float = 600.0) -> KinnValidation:
    """Run each sample of ``X`` ``(B, d)`` in ngspice and compare with our solver.

    Our reference is ``Dopri5(rtol=1e-10, atol=1e-12)`` by default, so that its own error
    is far below what is measured. ``n_points`` grid points over ``[0, T]``.

    Raises
    ------
    InputError
        ``net`` not a KinnNet, bad inputs (checked whole, the row named) or options.
    ParameterError
        As :func:`to_netlist`.
    SpiceError
        ngspice is missing or failed (:func:`kirchhoff_sim.spice.runner.run_netlist`).
    """
    require_kinn(net, "kinn.netlist.validate", "kirchhoff_sim.spice.validate.validate")
    X = net.checked_inputs(X)
    n_points = as_int(n_points, "n_points", minimum=2)
    solver = Dopri5(rtol=1e-10, atol=1e-12) if solver is None else solver
    grid = np.linspace(0.0, net.T, n_points)
    ours = simulate(net, X, solver=solver, save_at=grid).node_voltages        # (n_points, B, N)
    waveform_error, readout_error, swings, seconds, netlists = [], [], [], 0.0, []
    for b in range(X.shape[0]):
        netlist = to_netlist(net, X[b], scale=scale, options=options, primitive=primitive)
        run = NgspiceRun.from_result(netlist, run_netlist(netlist.text, timeout=timeout))
        seconds += run.elapsed
        spice = run.on_grid(grid)                                       # normalised, (n_points, N + n_out)
        spice_stages, spice_out = spice[:, :net.num_nodes], spice[:, net.num_nodes:]
        our_stages = ours[:, b, :]
        our_out = net.outputs(our_stages)
        both = np.concatenate([our_stages, our_out], axis=1)
        swing = float(both.max() - both.min()) or 1.0
        diff = np.concatenate([spice_stages - our_stages, spice_out - our_out], axis=1)
        waveform_error.append(float(np.abs(diff).max()) / swing)
        readout_error.append(float(np.abs(spice_out[-1] - our_out[-1]).max()) / swing)
        swings.append(swing)
        netlists.append(netlist)
    return KinnValidation(np.array(waveform_error), np.array(readout_error), np.array(swings), seconds, netlists)
