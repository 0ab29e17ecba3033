"""Run a netlist's transient in ngspice (:func:`run_netlist`) and classify what ngspice's log says.

Two back ends run the same netlist text and return the same :class:`SpiceResult`:

``"subprocess"``
    ``ngspice -b -r out.raw in.cir`` in a fresh temporary directory; the binary raw file
    is parsed by :mod:`~kirchhoff_sim.spice.rawfile`. Every run is a new process, so runs
    are isolated from each other and can go in parallel; the timeout kills the process.
``"shared"``
    libngspice through PySpice (:mod:`~kirchhoff_sim.spice.shared`, the only module that
    touches PySpice): no process start-up and no raw file, but one ngspice per Python
    process, so runs are serialised by a lock. The analysis runs in ngspice's background
    thread so the timeout can halt it; loading (parsing) the netlist happens before and
    is not interruptible, but its duration is counted against the timeout.

Vector names are canonical and lower case in both back ends: ``v(node)`` for a node
voltage (``v(x1.mid)`` inside a subcircuit), ``i(vname)`` for the branch current of a
voltage source or inductor, ``@dev[param]`` for a saved device quantity. Time is kept
apart in :attr:`SpiceResult.time`.

Safety (DESIGN.md section 6): every netlist is checked by
:func:`~kirchhoff_sim.spice.safety.check_netlist_safe` (a whitelist) before ngspice sees
it, and ngspice is started so that it reads no init file, which could hold any command:

* subprocess: ``ngspice -n`` (no ``.spiceinit``/``spice.rc`` from the working or home
  folder), ``SPICE_SCRIPTS`` pointing at an empty folder (no system ``spinit``, so no
  XSPICE code models or OSDI libraries are loaded either), in a fresh temporary working
  directory;
* shared: libngspice 39 always reads ``spinit`` (the distribution's, from ``SPICE_SCRIPTS``
  or its install folder: it loads the code models) and then a ``.spiceinit`` from the
  working folder, else from the home folder; its API has no switch against either
  (``ngSpice_nospinit``/``ngSpice_nospiceinit`` came later). So the shared back end
  refuses to start while such a ``.spiceinit`` exists
  (:class:`~kirchhoff_sim.errors.UnsafeInitFileError`), and cannot keep out a ``spinit``
  that ``SPICE_SCRIPTS`` points at.

Failures raise typed errors (all :class:`~kirchhoff_sim.errors.SpiceError`) that quote
the relevant lines of ngspice's log, not the whole log:

* :class:`~kirchhoff_sim.errors.NgspiceNotFoundError` -- no binary / shared library, or
  a binary that cannot start (exit status 127: a shared library of its own is missing);
* :class:`~kirchhoff_sim.errors.NgspiceCrashedError` -- the ngspice process died from a
  signal (SIGSEGV, SIGKILL ...);
* :class:`~kirchhoff_sim.errors.NetlistRejectedError` -- parse errors, unknown models,
  a structurally singular circuit matrix, no transient output;
* :class:`~kirchhoff_sim.errors.SpiceConvergenceError` -- "Timestep too small", an
  expression outside its domain, a numerically singular matrix at t = 0 (a node with a
  capacitor to ground, so not structural) and other aborted transients;
* :class:`~kirchhoff_sim.errors.SpiceTimeoutError` -- the run exceeded ``timeout``;
* :class:`~kirchhoff_sim.errors.UnsafeNameError` -- the netlist could run commands or
  read files;
* :class:`~kirchhoff_sim.errors.UnsafeInitFileError` -- the shared back end would source
  a ``.spiceinit``.

A run that succeeds may still have ngspice warnings (gmin stepping, "singular matrix"
on the way to a solution, "unrecognized variable" for a bad ``.save``); they are kept in
:attr:`SpiceResult.log` and not logged. In the shared back end PySpice would echo every
ngspice stderr line at ERROR level, and warn "Unsupported Ngspice version" (PySpice 1.5
knows ngspice up to 34): both are muted, nothing else PySpice logs is.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time as wallclock
from dataclasses import dataclass

import numpy as np

from ..checks import as_choice, as_positive, as_real_array
from ..errors import (
    InputError,
    NetlistRejectedError,
    NgspiceCrashedError,
    NgspiceNotFoundError,
    SpiceConvergenceError,
    SpiceError,
    SpiceTimeoutError,
)
from . import shared
from .rawfile import RawPlot, parse_raw
from .safety import check_netlist_safe
from .shared import INSTALL_COMMAND

# check_netlist_safe (spice.safety), parse_raw and RawPlot (spice.rawfile) moved out in the
# split of spice/; they stay importable from here for one release (and are in __all__).

__all__ = [
    "RawPlot",
    "SpiceResult",
    "check_netlist_safe",
    "ngspice_available",
    "parse_raw",
    "run_netlist",
]

BACKENDS = ("subprocess", "shared")
MAX_QUOTED_LOG_LINES = 15
MAX_LISTED_NAMES = 8  # vector names shown when a lookup fails
#: ngspice's last time point can be a rounding error off ``tstop``: times this close
#: (relative) count as the end of the run, here in :meth:`SpiceResult.resample` and in the
#: round trip's end-time check (:data:`kirchhoff_sim.spice.roundtrip.END_TIME_RTOL`)
END_TIME_RTOL = 1e-9

# ---------------------------------------------------------------- result
@dataclass
class SpiceResult:
    """Waveforms of one ngspice transient analysis.

    Attributes
    ----------
    time : np.ndarray, shape (n_points,)
        Time points in seconds, as ngspice chose them (adaptive, not uniform). With
        ``.tran ... uic`` ngspice 39 does not output t = 0: the first point is the end of
        the first step (e.g. 1e-8 s for ``.tran 1u ...``). Without ``uic`` (initial
        state from ``.ic`` and the operating point) t = 0 is the first point.
    vectors : dict of str to np.ndarray, each of shape (n_points,)
        Canonical lower-case vector name (``'v(n1)'``, ``'i(v1)'``, ``'@b3[i]'``) to
        values in volts or amperes.
    log : str
        ngspice's own messages: stdout then stderr (subprocess) or the messages in the
        order they came (shared).
    elapsed : float
        Wall-clock seconds of the ngspice run.
    backend : str
        ``"subprocess"`` or ``"shared"``.
    """

    time: np.ndarray
    vectors: dict[str, np.ndarray]
    log: str
    elapsed: float
    backend: str

    def voltage(self, node: str) -> np.ndarray:
        """Voltage of ``node`` in volts, shape (n_points,); the name is case-insensitive.

        ``node`` may be given bare (``'n1'``) or wrapped (``'V(n1)'``).

        Raises
        ------
        InputError
            If there is no such node voltage; the message lists some available names.
        """
        key = node.strip().lower()
        if not (key.startswith("v(") and key.endswith(")")):
            key = f"v({key})"
        try:
            return self.vectors[key]
        except KeyError:
            voltages = [name for name in self.vectors if name.startswith("v(")]
            shown = ", ".join(voltages[:MAX_LISTED_NAMES]) or "none"
            hidden = len(voltages) - MAX_LISTED_NAMES
            more = f" and {hidden} more" if hidden > 0 else ""
            raise InputError(
                f"no voltage vector {key!r} in the ngspice result; available: {shown}{more}"
            ) from None

    def resample(self, t_grid) -> SpiceResult:
        """Linear interpolation of every vector onto ``t_grid``.

        Parameters
        ----------
        t_grid : array_like, shape (n_grid,)
            Non-decreasing times in seconds inside ``[time[0], time[-1]]`` (up to a
            relative tolerance of the span, for rounding in ngspice's last time point).

        Returns
        -------
        SpiceResult
            Same log, elapsed time and back end; ``time`` is a copy of ``t_grid``.

        Raises
        ------
        InputError
            If ``t_grid`` is not 1-D, not finite, decreasing or outside the simulated span
            (``np.interp`` would silently hold the end values there).
        """
        grid = as_real_array(t_grid, "t_grid (seconds)", ndim=1).copy()
        if np.any(np.diff(grid) < 0):
            raise InputError("t_grid must be non-decreasing")
        start, stop = float(self.time[0]), float(self.time[-1])
        slack = END_TIME_RTOL * max(stop - start, abs(stop), np.finfo(float).tiny)
        if grid.size and (grid[0] < start - slack or grid[-1] > stop + slack):
            raise InputError(
                f"t_grid spans [{grid[0]:.6g}, {grid[-1]:.6g}] s but the simulation covers "
                f"[{start:.6g}, {stop:.6g}] s (a '.tran ... uic' run has no t=0 point: "
                f"its first point is the first time step)"
            )
        vectors = {name: np.interp(grid, self.time, values) for name, values in self.vectors.items()}
        return SpiceResult(grid, vectors, self.log, self.elapsed, self.backend)


# ---------------------------------------------------------------- public entry points
def run_netlist(
    netlist: str,
    *,
    backend: str = "subprocess",
    timeout: float = 600.0,
    ngspice_path: str | None = None,
    analysis: str = "tran",
    trusted_libraries=(),
) -> SpiceResult:
    """Run the transient analysis of a SPICE netlist in ngspice.

    Parameters
    ----------
    netlist : str
        Complete netlist text (title line first, one ``.tran`` line). Checked by
        :func:`check_netlist_safe` before ngspice sees it.
    backend : {"subprocess", "shared"}
        ``"subprocess"`` runs ``ngspice -b`` in a new process; ``"shared"`` uses libngspice
        through PySpice in this process (runs are serialised by a lock).
    timeout : float
        Wall-clock limit in seconds. The subprocess is killed; the shared analysis is
        halted with ``bg_halt`` (netlist loading counts against the limit but cannot be
        interrupted itself).
    ngspice_path : str, optional
        ngspice binary (subprocess back end only); default ``shutil.which("ngspice")``.
    analysis : {"tran", "dc", "op"}
        Which analysis's plot to return (the last one of that kind). ``"dc"`` and
        ``"op"`` are for cell characterisation and need the subprocess back end.
    trusted_libraries : sequence of str
        Model libraries the netlist may load with ``.lib PATH CORNER`` (the located PDK;
        see :func:`~kirchhoff_sim.spice.safety.check_netlist_safe`). Subprocess back end.

    Returns
    -------
    SpiceResult
        The plot of ``analysis``; other plots in the same run are ignored. For ``"dc"``
        :attr:`SpiceResult.time` holds the swept value, for ``"op"`` the single 0.

    Raises
    ------
    UnsafeNameError
        The netlist could run commands or read files (``.control``, ``*#`` comments,
        ``.include``, XSPICE ``A`` elements ...; see :func:`check_netlist_safe`).
    UnsafeInitFileError
        Shared back end: libngspice would source a ``.spiceinit``.
    NgspiceNotFoundError
        ngspice or libngspice is not installed, or the binary cannot start (exit status
        127); the message has the install command.
    NgspiceCrashedError
        The ngspice process died from a signal.
    NetlistRejectedError
        ngspice refused the netlist or produced no transient output.
    SpiceConvergenceError
        The transient stopped ("Timestep too small", aborted analysis).
    SpiceTimeoutError
        The run took longer than ``timeout``.
    InputError
        Unknown back end, non-positive timeout or a netlist that is not a string.
    """
    if not isinstance(netlist, str):
        raise InputError(f"netlist must be str, got {type(netlist).__name__}")
    as_choice(backend, "SPICE backend", BACKENDS)
    timeout = as_positive(timeout, "timeout (seconds)")
    as_choice(analysis, "analysis", tuple(_PLOT_PREFIXES))
    if backend != "subprocess" and (ngspice_path is not None or analysis != "tran" or trusted_libraries):
        raise InputError("ngspice_path, analysis other than 'tran' and trusted_libraries need the subprocess backend")
    check_netlist_safe(netlist, trusted_libraries)
    if backend == "subprocess":
        return _run_subprocess(netlist, timeout, _find_ngspice(ngspice_path), analysis,
                               pdk_compatibility=bool(trusted_libraries))
    return _run_shared(netlist, timeout)


def ngspice_available(backend: str = "subprocess") -> bool:
    """Whether ngspice can be used with ``backend``, without running anything.

    ``"subprocess"``: the ``ngspice`` binary is on ``PATH``. ``"shared"``: PySpice is
    importable and libngspice can be found by the dynamic loader (or through
    ``NGSPICE_LIBRARY_PATH``); the library is not loaded.
    """
    as_choice(backend, "SPICE backend", BACKENDS)
    if backend == "subprocess":
        return shutil.which("ngspice") is not None
    return shared.shared_library_available()


# ---------------------------------------------------------------- vector names
_WRAPPED_DEVICE_QUANTITY = re.compile(r"^[vi]\((@.*)\)$")
_WRAPPED_NAME = re.compile(r"^[vi]\(.*\)$")
_BRANCH_SUFFIX = "#branch"


def _canonical_vector_name(name: str) -> str:
    """One spelling for a vector in both back ends.

    The raw file writes ``v(n1)``, ``i(v1)``, ``i(@r1[i])``; libngspice names the same
    vectors ``n1`` (but ``V(1)`` for a numeric node), ``v1#branch`` and ``@r1[i]``.
    Canonical: ``v(n1)``, ``i(v1)``, ``@r1[i]``.
    """
    name = name.strip().lower()
    wrapped_device = _WRAPPED_DEVICE_QUANTITY.match(name)
    if wrapped_device:
        return wrapped_device.group(1)
    if name.startswith("@") or name == "time" or _WRAPPED_NAME.match(name):
        return name
    if name.endswith(_BRANCH_SUFFIX):
        return f"i({name[: -len(_BRANCH_SUFFIX)]})"
    return f"v({name})"


# ngspice 39: "Warning: unrecognized variable - @r9[i]" for a .save it cannot resolve
_UNRECOGNIZED_VECTOR = re.compile(r"unrecognized variable\s*-\s*(\S+)", re.IGNORECASE)


def _result_from_arrays(named_arrays, log, elapsed, backend, scale_name: str = "time") -> SpiceResult:
    """Build a SpiceResult from (raw name, array) pairs, one of them the scale
    (``time``; the sweep of a DC analysis; none for an operating point)."""
    time = None
    vectors = {}
    for name, values in named_arrays:
        canonical = _canonical_vector_name(name)
        if scale_name == "op" and time is None:
            time = np.zeros(1)
        if canonical == scale_name or (scale_name == "sweep" and time is None):
            time = values
        else:
            vectors[canonical] = values
    if time is None:
        raise NetlistRejectedError("ngspice's transient output has no time vector")
    # A .save that ngspice cannot resolve comes back as a column of zeros in the raw
    # file but as an empty vector from libngspice; drop it in both so they agree.
    unrecognized = {_canonical_vector_name(name) for name in _UNRECOGNIZED_VECTOR.findall(log)}
    vectors = {
        name: values
        for name, values in vectors.items()
        if values.shape == time.shape and name not in unrecognized
    }
    return SpiceResult(time, vectors, log, elapsed, backend)


# ---------------------------------------------------------------- log classification
# A run failed if any line of its log matches one of these (ngspice 39 wording).
_FATAL_LINE = re.compile(
    r"^\s*error\b"  # "Error on line 4 ...", "Error: circuit not parsed."
    r"|simulation\(s\) aborted"
    r"|doanalyses:"
    r"|timestep too small"
    r"|no circuit loaded"
    r"|there aren't any circuits loaded"
    r"|simulation not started"  # "No job (tran, ac, op etc.) defined"
    r"|simulation interrupted",
    re.IGNORECASE,
)
_CONVERGENCE_LINE = re.compile(
    r"timestep too small|doanalyses:|transient solution failed|iteration limit reached"
    r"|simulation\(s\) aborted",
    re.IGNORECASE,
)
_NO_ANALYSIS_LINE = re.compile(r"no job \(tran", re.IGNORECASE)
_SINGULAR_LINE = re.compile(r"singular matrix", re.IGNORECASE)
# "Warning: singular matrix:  check node n1" (or "check nodes a and b")
_SINGULAR_NODES = re.compile(r"singular matrix:\s*check nodes?\s+(\S+)(?:\s+and\s+(\S+))?", re.IGNORECASE)
# "Timestep too small; time = 0.999663, ..." names a time after the start; a failure at
# the "initial timepoint" is the operating point (or, with uic, the first step).
_FAILED_AT = re.compile(r"timestep too small;\s*time\s*=\s*([^\s,]+)", re.IGNORECASE)
_INITIAL_TIMEPOINT = re.compile(r"initial timepoint", re.IGNORECASE)
# "Error: -1 out of range for ln" then "    in line b1": an expression outside its domain;
# "Error: inf, 0 out of range for -": one that overflowed
_OUT_OF_RANGE = re.compile(r"error:\s*(.+?)\s+out of range for\s+(\S+)", re.IGNORECASE)
_NOT_FINITE = re.compile(r"\b(inf|nan)\b", re.IGNORECASE)
_DOMAIN_ELEMENT = re.compile(r"^\s*in line (\S+)", re.IGNORECASE | re.MULTILINE)
_GROUND_NODES = frozenset({"0", "gnd"})
_NOTEWORTHY_LINE = re.compile(
    r"error|warning|fatal|fail|abort|too small|singular|could not|can't|cannot|unknown"
    r"|invalid|not found|no circuit|not started|interrupted|trouble|unrecognized",
    re.IGNORECASE,
)
# after these, ngspice echoes the offending netlist line on the next line
_ECHOES_NEXT_LINE = re.compile(r"error on line|from line\s*$|not enough parameters", re.IGNORECASE)
# gmin stepping prefixes its warnings with the gmin value tried; stripped so they dedupe
_GMIN_PREFIX = re.compile(r"^trying gmin\s*=\s*\S+\s*", re.IGNORECASE)
_TITLE_ECHO = "Circuit:"  # the netlist's own title line, user text


def _is_failed(log: str) -> bool:
    return any(_FATAL_LINE.search(line) for line in log.splitlines())


def _quoted_log_lines(log: str, limit: int = MAX_QUOTED_LOG_LINES) -> str:
    """The error/warning lines of ``log`` (deduplicated, in order, at most ``limit``).

    Lines saying what failed come first when there are too many; gmin-stepping chatter
    repeats the same warnings dozens of times, hence the deduplication.
    """
    lines = [_GMIN_PREFIX.sub("", line.strip()) for line in log.splitlines()]
    picked = []
    for index, line in enumerate(lines):
        if _NOTEWORTHY_LINE.search(line) and not line.startswith(_TITLE_ECHO):
            picked.append(line)
            if _ECHOES_NEXT_LINE.search(line) and index + 1 < len(lines):
                picked.append(lines[index + 1])
    unique = list(dict.fromkeys(line for line in picked if line))
    if len(unique) > limit:
        fatal = [line for line in unique if _FATAL_LINE.search(line) or _CONVERGENCE_LINE.search(line)]
        keep = set(fatal[:limit])
        keep.update([line for line in unique if line not in keep][: limit - len(keep)])
        unique = [line for line in unique if line in keep]
    return "\n".join(f"    {line}" for line in unique) or "    (ngspice printed no error lines)"


def _failure(log: str, context: str, netlist: str) -> SpiceError:
    """The typed error for a failed run, from what ngspice's log says.

    * no analysis: :class:`NetlistRejectedError` (the netlist needs a ``.tran``);
    * an expression that overflowed (``inf``) or was evaluated outside its domain (``ln``
      of a negative number, ...): :class:`SpiceConvergenceError` — a numerical failure
      while solving, not a bad netlist;
    * "singular matrix" before the transient got going: structural
      (:class:`NetlistRejectedError`: a node with no DC path to ground, a loop of voltage
      sources) unless every node ngspice names has a capacitor to ground in a
      ``.tran … uic`` run — then ``C/h`` keeps the matrix regular and it is only
      *numerically* singular: some device's current or conductance there is far beyond
      the rest (a diode driven deep into forward bias, whose ``exp`` ngspice caps near
      ``e^228``), which is :class:`SpiceConvergenceError`;
    * "Timestep too small", an iteration limit or an aborted transient:
      :class:`SpiceConvergenceError`, naming the time ngspice stopped at;
    * anything else: :class:`NetlistRejectedError`.
    """
    if _NO_ANALYSIS_LINE.search(log):
        return _no_transient(log)
    quoted = _quoted_log_lines(log)
    stopped_at = _FAILED_AT.search(log)
    when = f" (it stopped at t = {stopped_at.group(1)} s)" if stopped_at else \
        " at its first time point" if _INITIAL_TIMEPOINT.search(log) else ""
    out_of_range = _OUT_OF_RANGE.search(log)
    if out_of_range:
        arguments, operation = out_of_range.groups()
        element = _DOMAIN_ELEMENT.search(log[out_of_range.end():])
        where = f" in element {element.group(1)}" if element else ""
        what = (f"overflowed ({operation!r} of {arguments}{where}): a node voltage or device "
                f"current grew beyond the range of a double"
                if _NOT_FINITE.search(arguments) else
                f"was evaluated outside its domain ({operation} of {arguments}{where})")
        return SpiceConvergenceError(
            f"ngspice {context}: the transient did not converge{when}: a behavioural expression "
            f"{what}:\n{quoted}"
        )
    if _SINGULAR_LINE.search(log) and not stopped_at:
        nodes = sorted({node.lower() for pair in _SINGULAR_NODES.findall(log) for node in pair if node})
        grounded = _capacitor_grounded_nodes(netlist)
        named = ", ".join(nodes) or "unnamed"
        if nodes and all(node in grounded for node in nodes):
            return SpiceConvergenceError(
                f"ngspice {context}: the transient did not converge at its first time point: "
                f"ngspice reports a singular matrix at node {named}, but every such node has a "
                f"capacitor to ground in this '.tran ... uic' run, so the matrix is not "
                f"structurally singular: a device's current or conductance there is far beyond "
                f"the rest of the circuit's (e.g. a diode driven deep into forward bias by the "
                f"initial voltages):\n{quoted}"
            )
        return NetlistRejectedError(
            f"ngspice {context}: the circuit matrix is singular at node {named} (a node with no "
            f"DC path to ground, or a loop of voltage sources):\n{quoted}"
        )
    if _CONVERGENCE_LINE.search(log):
        return SpiceConvergenceError(f"ngspice {context}: the transient did not converge{when}:\n{quoted}")
    return NetlistRejectedError(f"ngspice {context}: it rejected the netlist:\n{quoted}")


def _capacitor_grounded_nodes(netlist: str) -> frozenset:
    """Top-level nodes with a capacitor to ground, if the transient is ``uic`` (lower case).

    Without ``uic`` ngspice first solves the DC operating point, where a capacitor is an
    open circuit, so then no node counts.
    """
    lines = [line.split() for line in netlist.lower().splitlines()[1:]]
    if not any(words and words[0] == ".tran" and "uic" in words for words in lines):
        return frozenset()
    nodes = set()
    for words in lines:
        if len(words) >= 3 and words[0].startswith("c"):
            plus, minus = words[1], words[2]
            if minus in _GROUND_NODES:
                nodes.add(plus)
            elif plus in _GROUND_NODES:
                nodes.add(minus)
    return frozenset(nodes)


def _no_transient(log: str) -> NetlistRejectedError:
    return NetlistRejectedError(
        "ngspice produced no transient analysis output; the netlist needs a .tran line:\n"
        + _quoted_log_lines(log)
    )


# ---------------------------------------------------------------- subprocess back end
_NETLIST_FILE = "circuit.cir"
_RAW_FILE = "circuit.raw"
_TRANSIENT_PLOT_PREFIX = "transient"  # raw file "Plotname: Transient Analysis"
#: analysis → (raw file plot-name prefix, scale vector: a name, the first vector, or none)
_PLOT_PREFIXES = {"tran": (_TRANSIENT_PLOT_PREFIX, "time"), "dc": ("dc transfer", "sweep"),
                  "op": ("operating point", "op")}
_NO_INIT_DIR = "no_init"  # empty SPICE_SCRIPTS folder: no spinit to read
# what ngspice says on stderr when it finds no spinit (wanted here, so not logged)
_NO_SPINIT_NOTE = re.compile(r"^Note: can't find the initialization file spinit\.\r?\n?", re.MULTILINE)
_EXIT_CANNOT_START = 127


def _find_ngspice(ngspice_path: str | None) -> str:
    """Absolute path of an executable ngspice binary, or NgspiceNotFoundError."""
    candidate = ngspice_path if ngspice_path is not None else shutil.which("ngspice")
    if candidate is None:
        raise NgspiceNotFoundError(f"ngspice is not on PATH; install it with: {INSTALL_COMMAND}")
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise NgspiceNotFoundError(
            f"ngspice binary {candidate!r} does not exist or is not executable; "
            f"install ngspice with: {INSTALL_COMMAND}"
        )
    return candidate


def _child_environment(no_init_dir: str) -> dict:
    env = dict(os.environ)
    # the parser reads binary raw files; this variable would switch ngspice to ASCII
    env.pop("SPICE_ASCIIRAWFILE", None)
    # ngspice reads its system init file (spinit, which loads the XSPICE code models and
    # can hold any command) from SPICE_SCRIPTS: an empty folder means none is read
    env["SPICE_SCRIPTS"] = no_init_dir
    return env


def _exit_failure(returncode: int, log: str, ngspice: str) -> SpiceError | None:
    """The error for an ngspice process that did not end by itself, or None.

    A negative status is the signal that killed the process (``subprocess`` convention);
    127 is the dynamic loader's (or a shell's) "could not start": a missing shared
    library of the binary, not anything about the netlist.
    """
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        why = {"SIGSEGV": "it crashed (segmentation fault)", "SIGABRT": "it aborted",
               "SIGKILL": "it was killed (often by the out-of-memory killer)",
               "SIGBUS": "it crashed (bus error)", "SIGFPE": "it crashed (arithmetic exception)"}
        return NgspiceCrashedError(
            f"ngspice {ngspice!r} died from {name} ({number}): {why.get(name, 'it was killed')}; "
            f"the netlist may be fine. Its last output:\n{_last_log_lines(log)}"
        )
    if returncode == _EXIT_CANNOT_START:
        return NgspiceNotFoundError(
            f"ngspice {ngspice!r} could not start (exit status 127: a shared library it needs, "
            f"or its interpreter, is missing):\n{_last_log_lines(log)}\n"
            f"reinstall ngspice with: {INSTALL_COMMAND}"
        )
    return None


def _last_log_lines(log: str, limit: int = MAX_QUOTED_LOG_LINES) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return "\n".join(f"    {line}" for line in lines[-limit:]) or "    (nothing)"


#: ngspice's HSPICE-compatible parsing for a netlist that loads a PDK library. The sky130
#: models are thousands of subcircuits with long .param expressions; without it ngspice 39
#: expands them in time quadratic in the instances (measured: 30 tanh cells, 720
#: transistors, 70 s to parse; with it 60 cells in 12 s). The PDK's documentation asks
#: for the same setting (``set ngbehavior=hsa`` in .spiceinit, which we never read).
_PDK_COMPATIBILITY = ["-D", "ngbehavior=hsa"]


def _run_subprocess(netlist: str, timeout: float, ngspice: str, analysis: str = "tran",
                    pdk_compatibility: bool = False) -> SpiceResult:
    with tempfile.TemporaryDirectory(prefix="kirchhoff_spice_") as workdir:
        netlist_path = os.path.join(workdir, _NETLIST_FILE)
        raw_path = os.path.join(workdir, _RAW_FILE)
        no_init_dir = os.path.join(workdir, _NO_INIT_DIR)
        os.mkdir(no_init_dir)
        with open(netlist_path, "w", encoding="utf-8") as handle:
            handle.write(netlist)
        started = wallclock.perf_counter()
        try:
            completed = subprocess.run(
                # -n: no user init file (.spiceinit / spice.rc in the working or home folder)
                [ngspice, "-n", *(_PDK_COMPATIBILITY if pdk_compatibility else []), "-b", "-r", raw_path,
                 netlist_path],
                timeout=timeout,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=_child_environment(no_init_dir),
            )
        except subprocess.TimeoutExpired:
            # subprocess.run has killed and reaped ngspice before re-raising
            raise SpiceTimeoutError(
                f"ngspice did not finish within {timeout:g} s and was killed"
            ) from None
        except OSError as exc:
            raise NgspiceNotFoundError(
                f"could not start ngspice {ngspice!r} ({exc}); install it with: {INSTALL_COMMAND}"
            ) from exc
        elapsed = wallclock.perf_counter() - started
        log = completed.stdout + _NO_SPINIT_NOTE.sub("", completed.stderr)
        crashed = _exit_failure(completed.returncode, log, ngspice)
        if crashed is not None:
            raise crashed
        if completed.returncode != 0 or _is_failed(log):
            raise _failure(log, f"exited with status {completed.returncode}", netlist)
        if not os.path.exists(raw_path):
            raise _no_transient(log)
        with open(raw_path, "rb") as handle:
            plots = parse_raw(handle.read())
    prefix, scale_name = _PLOT_PREFIXES[analysis]
    wanted = [plot for plot in plots if plot.name.lower().startswith(prefix)]
    if not wanted:
        if analysis != "tran":
            raise NetlistRejectedError(f"ngspice produced no {analysis} analysis output:\n" + _quoted_log_lines(log))
        raise _no_transient(log)
    plot = wanted[-1]
    named = zip((name for name, _ in plot.variables), plot.values)
    return _result_from_arrays(named, log, elapsed, "subprocess", scale_name)


# ---------------------------------------------------------------- shared back end
def _run_shared(netlist: str, timeout: float) -> SpiceResult:
    """Load, run and read one netlist on libngspice (:mod:`~kirchhoff_sim.spice.shared`)."""
    with shared.session() as ngspice:
        started = wallclock.perf_counter()
        ngspice.load(netlist)
        if _is_failed(ngspice.log()):
            raise _failure(ngspice.log(), "could not load the netlist", netlist)
        ngspice.run(timeout - (wallclock.perf_counter() - started), timeout)
        elapsed = wallclock.perf_counter() - started
        log = ngspice.log()
        if _is_failed(log):
            raise _failure(log, "stopped", netlist)
        pairs = ngspice.transient_vectors()
        if pairs is None:
            raise _no_transient(log)
        return _result_from_arrays(pairs, log, elapsed, "shared")
