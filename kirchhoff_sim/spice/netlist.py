"""Compile a KirchhoffNet and one input sample to a SPICE netlist (text).

The circuit is the net's ODE (DESIGN.md §1) in physical units (§5)::

    C0·C_n dV_n/dt = Σ_{dst=n} I_e − Σ_{src=n} I_e,     I_e = G0·V0·i_e(V_src/V0, V_dst/V0)

* **behavioural** mode: a capacitor ``C<n> <node> 0 <C0·C_n> IC=<V0·x_n>`` per node and one
  ``B<e> <src> <dst> I=<G0·V0>*(<i_e>)`` per edge, ``i_e`` being the device's own
  :meth:`~kirchhoff_sim.devices.Device.spice_expression` in ``V(node)/V0``. ngspice's
  ``B src dst I=…`` current leaves ``src`` and enters ``dst`` (checked with a one-edge
  circuit in ngspice: ``I=1e-6`` from n1 to n2 ramps n1 down and n2 up), which is the
  sign of §1. A diode with series resistance has no closed form a B source can write
  (its current is a Lambert-W function ngspice lacks), so its junction is a B source
  into an internal node and ``r_s`` a real resistor from there; ngspice's Newton solves
  the same implicit equation the Lambert-W form solves in closed form.
* **primitive** mode: real elements where they exist (``R`` for a positive conductance,
  ``D`` with a ``.model`` for a diode, ``G`` plus a DC ``I`` for a linear
  transconductance); every other edge stays a B source and is listed in
  :attr:`Netlist.unsupported` — nothing is approximated silently.

Multi-layer nets are **one** circuit whose layers are gated to their time windows by a
PWL clock per layer (``Vclk<k> clk<k> 0 PWL(…)``, 0 V off, 1 V on):

* a B source is multiplied by its layer's clock, ``I=V(clk<k>)*…``. The clock edges are
  linear ramps of width ``gate_width`` *centred* on the layer boundary ``t_k``, with a
  PWL corner at ``t_k - w/2``, ``t_k`` and ``t_k + w/2`` — corners are breakpoints, so
  ngspice steps onto the boundary itself. Our solver switches layers exactly at
  ``t_k``; the centred ramp's weight error ``(1 - s(t)) - H(t_k - t)`` is odd about
  ``t_k``, so the charge it moves cancels to first order and the state error is
  ``O(w²)`` (a ramp that starts at ``t_k`` would leave an ``O(w)`` error). Inside the
  ramp the two differ by about ``w·Δi/8``, so ``w`` is tiny (1e-6 of normalised time by
  default; ngspice only merges breakpoints closer than 1e-10·tmax). A time-windowed
  expression (``time >= t_k``) would be a discontinuity ngspice does not know about and
  can only find by rejecting steps.
* a primitive element (R, D) cannot be multiplied by anything, so it sits behind a
  voltage-controlled switch ``S`` driven by the same clock (threshold 0.5 V, so it flips
  exactly at the ``t_k`` breakpoint), as a chip would sequence it; ``RON``/``ROFF`` are
  options. A gated VCCS has no switch-only form and falls back to a gated B source
  (listed in :attr:`Netlist.unsupported`).

The text is built per edge group from a template of the device's expression (the
device is asked once, with placeholder voltages and sentinel parameter values, and the
template is then filled column-wise), so compiling 460k edges takes about a second.
Numbers are written with ``repr(float)``, the shortest decimal that reads back as the same
double (ngspice 39's own number parser is not correctly rounded: it reads about a third
of such numbers one unit in the last place off — measured, and far below any tolerance).

The netlist ends with one ``.meas tran readout_<node> find v(<node>) at=<T>`` per read-out
node: ``ngspice -b NET.cir`` (batch mode without a raw file) simulates only when the
netlist asks for some output, and then prints the read-out at T; ``ngspice -b -r`` (the
runner's subprocess back end) ignores them and writes every node to the raw file.

``.options`` are explicit and scaled to the circuit's units (:class:`SpiceOptions`):
``method=trap``, ``reltol=1e-6`` and absolute tolerances 1e-12 (current), 1e-9
(voltage), 1e-15 (charge) of the normalised units, ``trtol=1``, a maximum step of 1/1000
of the shortest layer and a first step of 1e-3 of that. Nothing a user
supplies reaches the text unchecked (DESIGN.md §6): node names must match
:data:`NODE_NAME_PATTERN`, the title is reduced to one line of printable ASCII, and the
compiler never writes ``.control``, ``shell`` or ``.include``; the finished text is
checked with :func:`~kirchhoff_sim.spice.safety.check_netlist_safe` before it is
returned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from .. import devices as _devices
from ..checks import as_choice, as_real_array
from ..errors import DeviceError, InputError, ParameterError, UnsafeNameError
from ..fileio import atomic_write_bytes
from ..units import PhysicalScale, diode_emission_coefficient, thermal_voltage
from .options import MODES, SpiceOptions
from .safety import check_netlist_safe, check_node_names, sanitise_title

# Moved out in the split of spice/, importable from here for one more release:
# SpiceOptions, MODES, METHODS (spice.options); sanitise_title, NODE_NAME_PATTERN,
# MAX_TITLE_LENGTH, DEFAULT_TITLE (spice.safety); the ngspice constants and
# diode_emission_coefficient (kirchhoff_sim.units).
from ..units import CELSIUS_TO_KELVIN, NGSPICE_BOLTZMANN, NGSPICE_CHARGE  # noqa: F401
from .options import METHODS  # noqa: F401
from .safety import DEFAULT_TITLE, MAX_TITLE_LENGTH, NODE_NAME_PATTERN  # noqa: F401

__all__ = [
    "MODES",
    "NODE_NAME_PATTERN",
    "Netlist",
    "SpiceOptions",
    "UnsupportedEdges",
    "sanitise_title",
    "to_netlist",
    "to_netlists",
]

# ngspice (with XSPICE, as built by distributions) merges breakpoints closer than
# 10·delmin = 1e-10·tmax; the clock corners must stay further apart
MIN_BREAK_FRACTION = 1e-9
SAVES_PER_LINE = 64      # vectors per .save line of save_branch_currents


# ---------------------------------------------------------------- result
@dataclass
class UnsupportedEdges:
    """Edges of one group that primitive mode could not write as real elements.

    Attributes
    ----------
    layer, group : int
        Where the edges are (indices into ``net.layers`` and ``layer.groups``).
    device : str
        The device's repr.
    edges : ndarray of int, shape (n,)
        Edge indices within the group.
    reason : str
        Why, and what was written instead (a B source).
    """

    layer: int
    group: int
    device: str
    edges: np.ndarray
    reason: str

    def to_dict(self) -> dict:
        return {"layer": self.layer, "group": self.group, "device": self.device,
                "num_edges": int(len(self.edges)), "edges": self.edges.tolist(),
                "reason": self.reason}

    def __str__(self) -> str:
        return (f"layer {self.layer}, group {self.group} ({self.device}): "
                f"{len(self.edges)} edge(s) — {self.reason}")


@dataclass
class Netlist:
    """A compiled netlist and what was assumed to write it.

    Attributes
    ----------
    text : str
        The complete netlist, title line first and ``.end`` last.
    node_map : dict of int to str
        Node index of the net (0 = ground) → node name in the netlist.
    assumptions : list of str
        Units, gating, initial conditions, diode temperature, ... in plain words.
    unsupported : list of UnsupportedEdges
        Primitive mode: edge groups (or parts) written as B sources because they have
        no primitive form. Always empty in behavioural mode.
    tstop : float
        End of the transient in seconds (physical) — ``T·C0/G0``.
    scale : PhysicalScale
    mode : str
    options : SpiceOptions
    layer_boundaries : ndarray, shape (n_layers + 1,)
        Layer start/end times in seconds.
    initial_voltages : ndarray, shape (N,)
        The ``IC=`` voltage of nodes 1..N in volts (``V0·x`` on the inputs, 0 elsewhere):
        ngspice's state at t = 0, which a ``uic`` run does not output.
    element_counts : dict of str to int
        How many lines of each kind were written (capacitors, clocks, B, R, D, G, I, S,
        models, measurements, lines).
    sample_index : int or None
        Which sample of a batch this netlist holds (:func:`to_netlists`), else None.
    """

    text: str
    node_map: dict
    assumptions: list
    unsupported: list
    tstop: float
    scale: PhysicalScale
    mode: str
    options: SpiceOptions
    layer_boundaries: np.ndarray
    initial_voltages: np.ndarray
    element_counts: dict = field(default_factory=dict)
    sample_index: int | None = None

    def node_name(self, node: int) -> str:
        """Netlist name of the net's node index ``node``."""
        try:
            return self.node_map[int(node)]
        except KeyError:
            raise InputError(f"node {node} is not in the netlist (nodes 0..{len(self.node_map) - 1})") from None

    @property
    def num_lines(self) -> int:
        return self.text.count("\n")

    def save(self, path) -> str:
        """Write the netlist to ``path`` atomically (temporary file, then rename).

        Returns the path written.
        """
        return os.fspath(atomic_write_bytes(path, self.text.encode("ascii")))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.element_counts.items() if v and k != "lines"}
        return (f"Netlist(mode={self.mode!r}, lines={self.num_lines}, tstop={self.tstop:.6g} s, "
                f"elements={shown}, unsupported={sum(len(u.edges) for u in self.unsupported)}, "
                f"sample_index={self.sample_index})")


# ---------------------------------------------------------------- node names
def _node_names(net, node_names) -> list[str]:
    """Names of nodes 0..N: ``0`` for ground, then ours (``n1``...) or checked user names."""
    if node_names is None:
        return ["0"] + [f"n{n}" for n in range(1, net.num_nodes + 1)]
    return ["0"] + check_node_names(node_names, net.num_nodes)


# ---------------------------------------------------------------- expression templates
_VS_TOKEN, _VD_TOKEN = "\x01S\x01", "\x01D\x01"
# sentinel parameter values: their reprs are long and cannot occur in a device's own text
_SENTINELS = tuple(float(f"1.{k + 1}234567890123457e+299") for k in range(16))


@dataclass(frozen=True)
class _Template:
    """A printf-style line format and which column fills each ``%s``.

    Columns: ``"s"``/``"d"`` (source/destination voltage expression) or ``k`` (an int,
    parameter row ``k`` as repr).
    """

    format: str
    slots: tuple


def _expression_template(device, params_override: dict | None = None) -> _Template:
    """The device's B-source expression with placeholders for voltages and parameters.

    ``params_override`` fixes some parameters to constants (the diode's ``r_s = 0``).
    """
    fixed = params_override or {}
    sentinels = [fixed.get(k, _SENTINELS[k]) for k in range(device.n_params)]
    try:
        expression = device.spice_expression(_VS_TOKEN, _VD_TOKEN, sentinels)
    except NotImplementedError:
        raise DeviceError(f"{device!r} has no SPICE expression (spice_expression)") from None
    tokens = {_VS_TOKEN: "s", _VD_TOKEN: "d"}
    tokens.update({repr(_SENTINELS[k]): k for k in range(device.n_params) if k not in fixed})
    pattern = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
    pieces, slots, start = [], [], 0
    for match in pattern.finditer(expression):
        pieces.append(expression[start:match.start()].replace("%", "%%"))
        slots.append(tokens[match.group(0)])
        start = match.end()
    pieces.append(expression[start:].replace("%", "%%"))
    return _Template("%s".join(pieces), tuple(slots))


def _repr_column(values: np.ndarray, what: str, index) -> list[str]:
    """Each value as SPICE text (``repr(float)``, see the module docstring).

    Raises
    ------
    ParameterError
        A value that is not finite — e.g. the resistance ``1/g`` of a conductance that
        underflows, or a parameter times the physical scale that overflows — naming it
        (``what`` formatted with its number in ``index``, e.g. ``"element R{}"``):
        ngspice would reject the deck.
    """
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ParameterError(f"{what.format(np.asarray(index).ravel()[k])} would get the value "
                             f"{float(values[k])!r}: a netlist holds finite numbers only (a parameter or "
                             f"the physical scale is out of range; {int(bad.sum())} such value(s))")
    return list(map(repr, values.tolist()))


def _fill(line_format: str, columns: list) -> list[str]:
    """``line_format % row`` for every row of the equally long ``columns``."""
    return list(map(line_format.__mod__, zip(*columns)))


# ---------------------------------------------------------------- compiler
class _Writer:
    """Accumulates the netlist's element lines and bookkeeping for one compile."""

    def __init__(self, net, names, scale, options, mode):
        self.net, self.scale, self.options, self.mode = net, scale, options, mode
        self.names = np.array(names, dtype=object)
        self.voltage = np.array(["0"] + [self._voltage_expression(n) for n in names[1:]], dtype=object)
        self.lines: list[str] = []
        self.models: list[str] = []
        self.counts = {"B": 0, "R": 0, "D": 0, "G": 0, "I": 0, "S": 0}
        self.unsupported: list[UnsupportedEdges] = []
        self.internal_nodes: list[str] = []
        self.diode_models: dict = {}
        self.b_numbers: list[np.ndarray] = []      # element numbers of the B sources written

    def _voltage_expression(self, name: str) -> str:
        """The node's voltage in normalised units, as a device expression reads it."""
        return f"V({name})" if self.scale.V0 == 1.0 else f"(V({name})/{self.scale.V0!r})"

    # -- B sources ---------------------------------------------------------------
    def behavioural(self, device, src, dst, params, index, gate, inner_nodes=None,
                    params_override=None):
        """One B source per edge; ``index`` are global element numbers, ``gate`` the
        clock prefix (``"V(clk1)*"`` or ``""``). ``inner_nodes`` (names) replace ``dst``
        as the source's second terminal and as the voltage the device reads there."""
        if len(src) == 0:
            return
        template = _expression_template(device, params_override)
        unit = self.scale.current_unit
        prefix = f"{gate}{unit!r}*" if unit != 1.0 else gate
        line_format = "B%s %s %s I=" + prefix + "(" + template.format + ")"
        vs = self.voltage[src].tolist()
        if inner_nodes is None:
            second, vd = self.names[dst].tolist(), self.voltage[dst].tolist()
        else:
            second, vd = inner_nodes, [self._voltage_expression(n) for n in inner_nodes]
        columns = [list(map(str, index.tolist())), self.names[src].tolist(), second]
        params_text = {}
        for slot in template.slots:
            if slot == "s":
                columns.append(vs)
            elif slot == "d":
                columns.append(vd)
            else:
                if slot not in params_text:
                    params_text[slot] = _repr_column(params[slot], "element B{}", index)
                columns.append(params_text[slot])
        lines = _fill(line_format, columns)
        # the template must render exactly what the device itself writes
        p0 = [params_override.get(k, params[k, 0]) if params_override else params[k, 0]
              for k in range(device.n_params)]
        own = device.spice_expression(vs[0], vd[0], p0)
        if not lines[0].endswith("(" + own + ")"):
            raise DeviceError(f"{device!r}: its SPICE expression could not be turned into a "
                              f"template (it transforms its parameters); got {own!r}")
        self.lines.extend(lines)
        self.counts["B"] += len(lines)
        self.b_numbers.append(np.asarray(index))

    # -- primitive elements --------------------------------------------------------
    def _gated(self, src, index, clock):
        """Switches ``S<e> src m<e> clk 0 swgate`` in front of gated primitive elements;
        returns the internal node names that replace ``src``."""
        mids = [f"m{k}" for k in index.tolist()]
        self.internal_nodes.extend(mids)
        columns = [list(map(str, index.tolist())), self.names[src].tolist(), mids]
        self.lines.extend(_fill("S%s %s %s " + clock + " 0 swgate", columns))
        self.counts["S"] += len(mids)
        return mids

    def resistors(self, src, dst, conductance, index, clock):
        if len(src) == 0:
            return
        first = self.names[src].tolist() if clock is None else self._gated(src, index, clock)
        with np.errstate(all="ignore"):      # a value out of range is named by _repr_column
            resistance = 1.0 / (self.scale.G0 * conductance)
        columns = [list(map(str, index.tolist())), first, self.names[dst].tolist(),
                   _repr_column(resistance, "element R{}", index)]
        self.lines.extend(_fill("R%s %s %s %s", columns))
        self.counts["R"] += len(src)

    def diodes(self, device, src, dst, params, index, clock):
        if len(src) == 0:
            return
        n = diode_emission_coefficient(device.thermal_voltage, self.scale, self.options.temperature)
        saturation = self.scale.current_unit * params[0]
        resistance = params[1] / self.scale.G0
        keys = np.stack([saturation, resistance, np.full(len(src), n)], axis=1)
        model_names = []
        for key in map(tuple, keys.tolist()):
            if key not in self.diode_models:
                name = f"dmod{len(self.diode_models)}"
                self.diode_models[key] = name
                self.models.append(f".model {name} D(IS={key[0]!r} RS={key[1]!r} N={key[2]!r})")
            model_names.append(self.diode_models[key])
        first = self.names[src].tolist() if clock is None else self._gated(src, index, clock)
        columns = [list(map(str, index.tolist())), first, self.names[dst].tolist(), model_names]
        self.lines.extend(_fill("D%s %s %s %s", columns))
        self.counts["D"] += len(src)

    def transconductance(self, kind, src, dst, params, index):
        """``G`` elements and a DC bias source for a linear transconductance.

        ``kind="affine"``: ``i = p0·vs + p1·vd + p2``; ``kind="difference"``:
        ``i = p1·(vs − vd) + p0``.
        """
        if len(src) == 0:
            return
        g0, unit = self.scale.G0, self.scale.current_unit
        number = list(map(str, index.tolist()))
        s_names, d_names = self.names[src].tolist(), self.names[dst].tolist()
        if kind == "affine":
            terms = (("s", src, params[0]), ("d", dst, params[1]))
            bias = params[2]
            for suffix, control, gain in terms:
                keep = np.flatnonzero(control != 0)    # V(0) = 0: no element for a ground-controlled term
                with np.errstate(over="ignore"):      # a value out of range is named by _repr_column
                    values = _repr_column(g0 * gain[keep], "element G{}", [number[i] + suffix for i in keep])
                cols = [[c[i] for i in keep] for c in (number, s_names, d_names, self.names[control].tolist())]
                self.lines.extend(_fill("G%s" + suffix + " %s %s %s 0 %s", cols + [values]))
                self.counts["G"] += len(keep)
        else:
            with np.errstate(over="ignore"):
                values = _repr_column(g0 * params[1], "element G{}", number)
            self.lines.extend(_fill("G%s %s %s %s %s %s", [number, s_names, d_names, s_names, d_names, values]))
            self.counts["G"] += len(src)
            bias = params[0]
        with np.errstate(over="ignore"):
            bias_text = _repr_column(unit * bias, "element I{}", number)
        columns = [number, s_names, d_names, bias_text]
        self.lines.extend(_fill("I%s %s %s DC %s", columns))
        self.counts["I"] += len(src)


def _linear_kind(device) -> str | None:
    if isinstance(device, _devices.AffineActivation) and device.activation.name == "identity":
        return "affine"
    if isinstance(device, _devices.DifferenceActivation) and device.activation.name == "identity":
        return "difference"
    return None


def _clock_lines(boundaries_phys: np.ndarray, half_width: float) -> list[str]:
    """PWL clocks ``clk<k>``: 1 V inside layer k's window, ramps of width 2·half_width
    centred on each boundary, corners (breakpoints) at ``t ± half_width`` and ``t``."""
    n_layers = len(boundaries_phys) - 1
    lines = []
    for k in range(n_layers):
        start, end = boundaries_phys[k], boundaries_phys[k + 1]
        points = [(0.0, 1.0)] if k == 0 else \
            [(0.0, 0.0), (start - half_width, 0.0), (start, 0.5), (start + half_width, 1.0)]
        if k < n_layers - 1:
            points += [(end - half_width, 1.0), (end, 0.5), (end + half_width, 0.0)]
        pwl = " ".join(f"{float(t)!r} {float(v)!r}" for t, v in points)
        lines.append(f"Vclk{k} clk{k} 0 PWL({pwl})")
    return lines


def scale_and_options(scale, options) -> tuple[PhysicalScale, SpiceOptions]:
    """A compiler's ``scale`` and ``options`` arguments, defaults filled in and checked.

    Raises
    ------
    InputError
        Not a :class:`PhysicalScale` or a :class:`SpiceOptions` (or None).
    """
    scale = PhysicalScale.default() if scale is None else scale
    if not isinstance(scale, PhysicalScale):
        raise InputError(f"scale must be a PhysicalScale, got {type(scale).__name__}")
    options = SpiceOptions() if options is None else options
    if not isinstance(options, SpiceOptions):
        raise InputError(f"options must be a SpiceOptions, got {type(options).__name__}")
    return scale, options


def to_netlist(net, x, scale: PhysicalScale | None = None, mode: str = "behavioral",
               options: SpiceOptions | None = None, title: str | None = None,
               node_names=None) -> Netlist:
    """Compile ``net`` with input ``x`` (one sample) to a SPICE netlist.

    Parameters
    ----------
    net : KirchhoffNet
    x : array_like, shape (d,)
        One input sample in normalised volts (written as ``IC=V0·x`` on the input nodes;
        every other node starts at 0 V). For a batch use :func:`to_netlists`.
    scale : PhysicalScale, optional
        Units of the circuit (default :meth:`PhysicalScale.default`, the default
        technology profile's 0.1 V, 100 fF, 1 µS);
        :meth:`PhysicalScale.normalised` writes the net in its own units.
    mode : {"behavioral", "primitive"}
        ``"behavioral"``: one B source per edge. ``"primitive"``: R, D, G(+I) where the
        device is one, B sources elsewhere (listed in :attr:`Netlist.unsupported`).
    options : SpiceOptions, optional
        Integration method and tolerances (normalised; scaled here).
    title : str, optional
        Title line; sanitised by :func:`sanitise_title`.
    node_names : sequence of str, optional
        Names of nodes ``1..N``; each must match :data:`NODE_NAME_PATTERN` (default
        ``n1..nN``).

    Returns
    -------
    Netlist

    Raises
    ------
    InputError
        A batch instead of one sample, non-finite inputs, a wrong mode or options.
    UnsafeNameError
        A node name that does not match :data:`NODE_NAME_PATTERN`, is a ground alias,
        repeats another (ngspice ignores case) or clashes with an internal node.
    DeviceError
        A device without a SPICE form.
    """
    scale, options = scale_and_options(scale, options)
    as_choice(mode, "netlist mode", MODES)
    # non-finite entries are refused by net.initial_state, which names the node
    x = as_real_array(x, "x (one sample of input voltages)", finite=False)
    if x.ndim != 1:
        raise InputError(
            f"to_netlist compiles ONE sample: x must have shape (d,), got {x.shape}; "
            f"use to_netlists(net, X) for a batch (one netlist per sample)"
        )
    initial = net.initial_state(x)[1:, 0]   # checks d and finiteness
    names = _node_names(net, node_names)

    boundaries = net.layer_boundaries
    n_layers = len(net.layers)
    durations = np.diff(boundaries)
    time_unit = scale.time_unit
    half_width = 0.5 * options.gate_width
    max_step = min(options.max_step if options.max_step is not None
                   else options.max_step_fraction * float(durations.min()), net.T)
    if n_layers > 1 and not half_width < 0.25 * durations.min():
        raise InputError(f"SpiceOptions.gate_width={options.gate_width:g} is too wide for the "
                         f"shortest layer ({durations.min():g}); it must be < half of it")
    if n_layers > 1 and not half_width > MIN_BREAK_FRACTION * max_step:
        raise InputError(f"SpiceOptions.gate_width={options.gate_width:g} is too narrow: ngspice "
                         f"merges breakpoints closer than {MIN_BREAK_FRACTION:g}·max_step")
    writer = _Writer(net, names, scale, options, mode)
    assumptions = _assumptions(net, scale, options, mode, n_layers, x.shape[0])
    element = 1
    for k, layer in enumerate(net.layers):
        gate = f"V(clk{k})*" if n_layers > 1 else ""
        clock = f"clk{k}" if n_layers > 1 else None
        writer.lines.append(f"* layer {k}: t = [{float(boundaries[k] * time_unit)!r}, "
                            f"{float(boundaries[k + 1] * time_unit)!r}] s, {layer.num_edges} edges")
        for g, group in enumerate(layer.groups):
            count = group.num_edges
            index = np.arange(element, element + count)
            element += count
            _compile_group(writer, k, g, group, index, gate, clock, mode)
    _check_internal_names(names, writer.internal_nodes, n_layers)
    if any(isinstance(g.device, _devices.Diode) for g in net.groups):
        vt = thermal_voltage(options.temperature)
        assumptions.append(
            f"diodes: temperature {options.temperature:g} °C (temp = tnom), kT/q = {vt!r} V with "
            f"ngspice's constants; D elements get N = thermal_voltage·V0/(kT/q); ngspice adds "
            f"gmin (1e-12 S) across each junction and uses its own reverse-bias formula below "
            f"-3·N·kT/q (B sources write the device's own Shockley law, continued linearly above "
            f"80 nVt as the solver does, but get no junction limiting: a stiff junction start "
            f"needs primitive mode)"
        )
    if mode == "behavioral" and any(name.startswith("dj") for name in writer.internal_nodes):
        assumptions.append(
            "diodes with series resistance: the junction is a B source (the device's Shockley law) into "
            "an internal node dj<e>, and r_s/G0 a resistor from there to the cathode; ngspice "
            "solves the implicit diode equation by Newton instead of the solver's Lambert-W form"
        )
    if writer.counts["S"]:
        assumptions.append(
            f"primitive elements of a gated layer sit behind a switch S (VT = 0.5 V on the "
            f"layer clock, RON = {options.switch_ron / scale.G0!r} Ω, ROFF = "
            f"{options.switch_roff / scale.G0!r} Ω) that flips exactly at the layer boundary"
        )
    text, counts = _assemble(net, initial, names, scale, options, writer, title,
                             boundaries * time_unit, half_width * time_unit, max_step)
    check_netlist_safe(text)   # belt and braces: the compiler never writes such lines
    node_map = dict(enumerate(names))
    return Netlist(text=text, node_map=node_map, assumptions=assumptions,
                   unsupported=writer.unsupported, tstop=float(boundaries[-1] * time_unit),
                   scale=scale, mode=mode, options=options,
                   layer_boundaries=boundaries * time_unit,
                   initial_voltages=scale.V0 * initial, element_counts=counts)


def _compile_group(writer, k, g, group, index, gate, clock, mode):
    device, src, dst, params = group.device, group.src, group.dst, group.params
    device_name = repr(device)

    def fallback(mask, reason):
        if mask.any():
            writer.unsupported.append(UnsupportedEdges(k, g, device_name, np.flatnonzero(mask), reason))
            writer.behavioural(device, src[mask], dst[mask], params[:, mask], index[mask], gate)

    if isinstance(device, _devices.Diode):
        if mode == "primitive":      # D element with IS, RS and N in a .model
            writer.diodes(device, src, dst, params, index, clock)
            return
        series = params[1] > 0
        ideal = ~series
        writer.behavioural(device, src[ideal], dst[ideal], params[:, ideal], index[ideal], gate,
                           params_override={1: 0.0})
        if series.any():
            # junction B source into an internal node, r_s as a real resistor after it
            number = index[series]
            inner = [f"dj{e}" for e in number.tolist()]
            writer.internal_nodes.extend(inner)
            writer.behavioural(device, src[series], dst[series], params[:, series], number, gate,
                               inner_nodes=inner, params_override={1: 0.0})
            columns = [list(map(str, number.tolist())), inner, writer.names[dst[series]].tolist(),
                       _repr_column(params[1, series] / writer.scale.G0, "element Rs{}", number)]
            writer.lines.extend(_fill("Rs%s %s %s %s", columns))
            writer.counts["R"] += len(number)
        return
    if mode == "behavioral":
        writer.behavioural(device, src, dst, params, index, gate)
        return
    if isinstance(device, _devices.Conductance):
        positive = params[0] > 0
        writer.resistors(src[positive], dst[positive], params[0, positive], index[positive], clock)
        fallback(params[0] < 0, "negative conductance: an active element with no resistor form; "
                                "written as a B source")
        fallback(params[0] == 0, "zero conductance: an open circuit with no finite resistor; "
                                 "written as a B source carrying zero current")
        return
    kind = _linear_kind(device)
    if kind is not None:
        if clock is None:
            writer.transconductance(kind, src, dst, params, index)
        else:
            fallback(np.ones(len(src), bool),
                     "linear transconductance in a gated layer: a VCCS cannot be switched off by "
                     "a series switch; written as a clock-gated B source")
        return
    fallback(np.ones(len(src), bool),
             f"{type(device).__name__} has no primitive SPICE element (a nonlinear "
             f"transconductor cell); written as a B source")


def _check_internal_names(names, internal, n_layers):
    taken = {n.lower(): i for i, n in enumerate(names)}
    for name in internal + [f"clk{k}" for k in range(n_layers if n_layers > 1 else 0)]:
        if name in taken:
            raise UnsafeNameError(f"node name {names[taken[name]]!r} of node {taken[name]} clashes with "
                                  f"the compiler's internal node {name!r}; choose another name")


def _assumptions(net, scale, options, mode, n_layers, d) -> list[str]:
    out = []
    if scale.is_normalised:
        out.append("units: normalised (V0 = C0 = G0 = 1): volts, farads, siemens and seconds "
                   "in the netlist are the net's normalised units")
    else:
        out.append(f"units: {scale.describe()}; node voltage V = V0·v, device current "
                   f"I = G0·V0·i(V/V0), capacitor C0·C_n, time t = (C0/G0)·t_normalised")
    inputs = "nodes 1.." + str(d) if net.input_nodes is None else f"the net's {d} input nodes"
    out.append(f"initial condition: the input sample on {inputs} (IC = V0·x), every other node "
               f"at 0 V; '.tran ... uic' starts from these without an operating point")
    out.append("node 0 is ground; edges touching ground are kept as sources to/from ground")
    out.append("a capacitor C0·C_n from every node to ground; device current from src to dst "
               "(B/G/I 'src dst' sign), as in DESIGN.md section 1")
    if n_layers > 1:
        out.append(
            f"{n_layers} layers in one circuit: layer k is gated by a PWL clock clk<k> (1 V in "
            f"its window, 0 V outside) with linear ramps of width {options.gate_width:g} "
            f"(normalised time) centred on each layer boundary; B sources are multiplied by "
            f"the clock. The solver switches exactly at the boundary; the centred ramp's error "
            f"is second order in the ramp width"
        )
    out.append(
        f"ngspice options (normalised → physical): method={options.method}, maxord={options.maxord}, "
        f"reltol={options.reltol:g}, abstol={options.abstol:g}·G0·V0, vntol={options.vntol:g}·V0, "
        f"chgtol={options.chgtol:g}·C0·V0, trtol={options.trtol:g}"
    )
    out.append("read-out: one '.meas tran readout_<node> find v(<node>) at=T' per read-out node, "
               "printed when the netlist runs as 'ngspice -b NET.cir'; 'ngspice -b -r' ignores them "
               "and writes every node voltage to the raw file")
    if mode == "primitive":
        out.append("primitive mode: R for g > 0 conductances, D (with .model) for diodes, G + DC I "
                   "for identity transconductances; everything else is a B source listed in "
                   "'unsupported'")
    return out


def options_line(options: SpiceOptions, scale: PhysicalScale) -> str:
    """The ``.options`` line of ``options`` (normalised tolerances) in the units of ``scale``."""
    return (
        f".options method={options.method} maxord={options.maxord} reltol={options.reltol!r} "
        f"abstol={options.abstol * scale.current_unit!r} vntol={options.vntol * scale.V0!r} "
        f"chgtol={options.chgtol * scale.charge_unit!r} trtol={options.trtol!r} "
        f"temp={float(options.temperature)!r} tnom={float(options.temperature)!r}"
    )


def _assemble(net, initial, names, scale, options, writer, title, boundaries_phys,
              half_width_phys, max_step):
    """Put the whole netlist text together; returns (text, element counts)."""
    n = net.num_nodes
    capacitance = scale.C0 * net.capacitance
    voltage = scale.V0 * initial
    cap_lines = _fill("C%s %s 0 %s IC=%s", [list(map(str, range(1, n + 1))), names[1:],
                                              _repr_column(capacitance, "element C{}", np.arange(1, n + 1)),
                                              _repr_column(voltage, "the initial voltage (IC) of C{}", np.arange(1, n + 1))])
    n_layers = len(net.layers)
    clock_lines = _clock_lines(boundaries_phys, half_width_phys) if n_layers > 1 else []
    boundaries_phys = [float(t) for t in boundaries_phys]
    tstop = boundaries_phys[-1]
    tmax = max_step * scale.time_unit
    option_line = options_line(options, scale)
    models = list(writer.models)
    if writer.counts["S"]:
        models.append(f".model swgate SW(VT=0.5 VH=0 RON={options.switch_ron / scale.G0!r} "
                      f"ROFF={options.switch_roff / scale.G0!r})")
    header = [
        sanitise_title(title),
        f"* KirchhoffNet: {n} nodes, {n_layers} layer(s), {net.num_edges} edges; "
        f"T = {net.T!r} (normalised) = {tstop!r} s",
        f"* units: V0 = {scale.V0!r} V, C0 = {scale.C0!r} F, G0 = {scale.G0!r} S",
        option_line,
    ]
    first_step = (options.first_step if options.first_step is not None
                  else options.first_step_fraction * max_step)
    tstep = min(first_step * scale.time_unit, tmax)
    # the read-out at T for 'ngspice -b NET.cir', which needs a .meas/.print to simulate at
    # all; 'ngspice -b -r' and libngspice's raw vectors are unaffected. 'at' is written as
    # the very text of .tran's tstop, so ngspice parses both to the same double and its
    # last time point is exactly there (one ulp beyond it is "out of interval").
    readout_names = [names[n] for n in np.asarray(net.readout).tolist()]
    measurements = [f".meas tran readout_{name} find v({name}) at={tstop!r}" for name in readout_names]
    footer = [f".tran {tstep!r} {tstop!r} 0 {tmax!r} uic",
              "* read-out at T, printed by 'ngspice -b' (with -b -r the raw file holds every node)",
              *measurements, ".end"]
    if options.save_branch_currents and writer.b_numbers:
        numbers = np.sort(np.concatenate(writer.b_numbers)).tolist()
        footer[:0] = [".save all"] + [" ".join([".save"] + [f"@b{k}[i]" for k in numbers[i:i + SAVES_PER_LINE]])
                                      for i in range(0, len(numbers), SAVES_PER_LINE)]
    sections = [header, ["* node capacitors and initial voltages"], cap_lines]
    if clock_lines:
        sections += [["* layer clocks"], clock_lines]
    if models:
        sections += [["* models"], models]
    sections += [writer.lines, footer]
    text = "\n".join(line for section in sections for line in section) + "\n"
    counts = dict(writer.counts)
    counts.update(capacitors=len(cap_lines), clocks=len(clock_lines), models=len(models),
                  measurements=len(measurements), lines=text.count("\n"))
    return text, counts


def to_netlists(net, X, **kwargs) -> list[Netlist]:
    """One :class:`Netlist` per row of ``X`` (shape ``(B, d)``), with ``sample_index`` set.

    Keyword arguments are those of :func:`to_netlist`.
    """
    X = as_real_array(X, "X (a batch of input samples)", finite=False)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InputError(f"to_netlists takes a non-empty batch of shape (B, d) with B >= 1, got {X.shape}")
    netlists = []
    for b, x in enumerate(X):
        netlist = to_netlist(net, x, **kwargs)
        netlist.sample_index = b
        netlists.append(netlist)
    return netlists
