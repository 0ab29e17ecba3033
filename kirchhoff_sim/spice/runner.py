"""Run a SPICE netlist's transient analysis in ngspice and return the waveforms as arrays.

Two back ends run the same netlist text and return the same :class:`SpiceResult`:

``"subprocess"``
    ``ngspice -b -r out.raw in.cir`` in a fresh temporary directory; the binary raw file
    is parsed here (:func:`parse_raw`). Every run is a new process, so runs are isolated
    from each other and can go in parallel; the timeout kills the process.
``"shared"``
    libngspice through PySpice's ``NgSpiceShared``: no process start-up and no raw file,
    but one ngspice per Python process. It is a process-wide singleton and not
    thread-safe, so runs are serialised by a module lock. The analysis runs in ngspice's
    background thread (``bg_run``) so the timeout can stop it (``bg_halt``); loading
    (parsing) the netlist happens before and is not interruptible, but its duration is
    counted against the timeout.

Vector names are canonical and lower case in both back ends: ``v(node)`` for a node
voltage (``v(x1.mid)`` inside a subcircuit), ``i(vname)`` for the branch current of a
voltage source or inductor, ``@dev[param]`` for a saved device quantity. Time is kept
apart in :attr:`SpiceResult.time`.

Safety (DESIGN.md section 6): ngspice can run commands from a netlist -- ``.control``
blocks, the ``shell`` command, a file whose first line is ``*ng_script``, and anything in a
file pulled in by ``.include``/``.lib`` (checked by running ngspice 39 by hand: all four
execute ``shell touch ...``). :func:`check_netlist_safe` refuses all of these before
ngspice sees the text. The subprocess back end also runs ngspice with the temporary
directory as working directory, so a stray ``.spiceinit`` in the caller's directory is
not sourced; libngspice (shared back end) sources ``.spiceinit`` from the Python
process's working directory when it starts, which this module cannot prevent.

Failures raise typed errors (all :class:`~kirchhoff_sim.errors.SpiceError`) that quote
the relevant lines of ngspice's log, not the whole log:

* :class:`~kirchhoff_sim.errors.NgspiceNotFoundError` -- no binary / shared library;
* :class:`~kirchhoff_sim.errors.NetlistRejectedError` -- parse errors, unknown models,
  a singular circuit matrix at the operating point, no transient output;
* :class:`~kirchhoff_sim.errors.SpiceConvergenceError` -- "Timestep too small" and
  other aborted transients;
* :class:`~kirchhoff_sim.errors.SpiceTimeoutError` -- the run exceeded ``timeout``;
* :class:`~kirchhoff_sim.errors.UnsafeNameError` -- the netlist could run commands.

A run that succeeds may still have ngspice warnings (gmin stepping, "singular matrix"
on the way to a solution, "unrecognized variable" for a bad ``.save``); they are kept in
:attr:`SpiceResult.log` and not logged. In the shared back end PySpice would echo every
ngspice stderr line at ERROR level, and warn "Unsupported Ngspice version" (PySpice 1.5
knows ngspice up to 34): both are muted, nothing else PySpice logs is.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time as wallclock
from dataclasses import dataclass

import numpy as np

from ..errors import (
    InputError,
    NetlistRejectedError,
    NgspiceNotFoundError,
    SpiceConvergenceError,
    SpiceError,
    SpiceTimeoutError,
    UnsafeNameError,
)

__all__ = [
    "RawPlot",
    "SpiceResult",
    "check_netlist_safe",
    "ngspice_available",
    "parse_raw",
    "run_netlist",
]

BACKENDS = ("subprocess", "shared")
INSTALL_COMMAND = "sudo apt-get install -y ngspice libngspice0-dev"
MAX_QUOTED_LOG_LINES = 15
MAX_LISTED_NAMES = 8  # vector names shown when a lookup fails
# resample() accepts grid points this far (relative to the span) outside the run
RESAMPLE_SPAN_TOLERANCE = 1e-9

# ---------------------------------------------------------------- netlist safety
# Patterns match at the start of a line, after leading whitespace, case-insensitively.
# ngspice recognises these by prefix (".controlx" still opens a control block), so no
# word boundary is required after them.
_UNSAFE_LINE_PATTERNS = (
    (re.compile(r"\s*\.control", re.IGNORECASE), "a .control block"),
    (re.compile(r"\s*\.?shell(\s|$)", re.IGNORECASE), "a shell command"),
    (re.compile(r"\s*\*\s*ng_script", re.IGNORECASE), "an *ng_script header (runs as a script)"),
    (re.compile(r"\s*\.(inc|lib)", re.IGNORECASE), "a file inclusion (.include/.lib)"),
    (re.compile(r"\s*\.osdi", re.IGNORECASE), "loading of a compiled model (.osdi)"),
)


def check_netlist_safe(netlist: str) -> None:
    """Refuse netlist text that could make ngspice run commands or read other files.

    Refused: ``.control`` blocks, ``shell``/``.shell`` lines, ``*ng_script`` script
    headers, ``.include``/``.inc``/``.lib`` (an included file is not checked and may hold
    a control block; inline its text instead) and ``.osdi``. ``.tran``, ``.options``,
    ``.ic``, ``.save``, ``.model``, ``.param``, ``.subckt`` etc. are fine.

    Lines are split with :meth:`str.splitlines`, which splits on more characters than
    ngspice does (``\\r``, form feed, ...), so nothing ngspice reads as a line start can
    hide in the middle of a line here.

    Raises
    ------
    UnsafeNameError
        Naming the first offending line (1-based) and what it would do.
    """
    for number, line in enumerate(netlist.splitlines(), start=1):
        for pattern, what in _UNSAFE_LINE_PATTERNS:
            if pattern.match(line):
                raise UnsafeNameError(
                    f"netlist line {number} is refused: it is {what}, which ngspice could "
                    f"use to run commands ({line.strip()[:60]!r})"
                )


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
        grid = np.array(t_grid, dtype=np.float64)
        if grid.ndim != 1 or not np.all(np.isfinite(grid)):
            raise InputError(f"t_grid must be a 1-D array of finite times, got shape {grid.shape}")
        if np.any(np.diff(grid) < 0):
            raise InputError("t_grid must be non-decreasing")
        start, stop = float(self.time[0]), float(self.time[-1])
        slack = RESAMPLE_SPAN_TOLERANCE * max(stop - start, abs(stop), np.finfo(float).tiny)
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

    Returns
    -------
    SpiceResult
        The transient plot; other plots (``.op``, ...) in the same run are ignored.

    Raises
    ------
    UnsafeNameError
        The netlist could run commands (``.control``, ``shell``, ``.include`` ...).
    NgspiceNotFoundError
        ngspice or libngspice is not installed (the message has the install command).
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
    if backend not in BACKENDS:
        raise InputError(f"unknown SPICE backend {backend!r}; choose one of {BACKENDS}")
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise InputError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    if ngspice_path is not None and backend != "subprocess":
        raise InputError("ngspice_path applies to the subprocess backend only")
    check_netlist_safe(netlist)
    if backend == "subprocess":
        return _run_subprocess(netlist, timeout, _find_ngspice(ngspice_path))
    return _run_shared(netlist, timeout)


def ngspice_available(backend: str = "subprocess") -> bool:
    """Whether ngspice can be used with ``backend``, without running anything.

    ``"subprocess"``: the ``ngspice`` binary is on ``PATH``. ``"shared"``: PySpice is
    importable and libngspice can be found by the dynamic loader (or through
    ``NGSPICE_LIBRARY_PATH``); the library is not loaded.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown SPICE backend {backend!r}; choose one of {BACKENDS}")
    if backend == "subprocess":
        return shutil.which("ngspice") is not None
    import ctypes.util
    import importlib.util

    if importlib.util.find_spec("PySpice") is None:
        return False
    library = os.environ.get("NGSPICE_LIBRARY_PATH")
    return os.path.isfile(library) if library else ctypes.util.find_library("ngspice") is not None


# ---------------------------------------------------------------- raw files
@dataclass
class RawPlot:
    """One plot of an ngspice raw file.

    Attributes
    ----------
    name : str
        ``Plotname:`` header, e.g. ``'Transient Analysis'``.
    variables : list of (str, str)
        (name, type) per variable as written, e.g. ``('v(n1)', 'voltage')``; the first is
        the scale (``time`` for a transient).
    values : np.ndarray, shape (n_vars, n_points)
        Data, one contiguous row per variable (float64).
    """

    name: str
    variables: list[tuple[str, str]]
    values: np.ndarray


# The data section starts after a line "Binary:" (or "Values:" in ASCII raw files).
_RAW_DATA_MARKER = re.compile(rb"^(Binary|Values):[ \t]*\r?\n", re.MULTILINE)
_RAW_FLOAT = np.dtype("<f8")  # ngspice writes little-endian IEEE doubles


def parse_raw(raw: bytes) -> list[RawPlot]:
    """Parse every plot of a binary ngspice raw file (``ngspice -b -r file``).

    The layout per plot: text header lines (``Title:``, ``Date:``, ``Plotname:``,
    ``Flags:``, ``No. Variables:``, ``No. Points:``, ``Variables:`` then one
    ``index name type`` line per variable), a ``Binary:`` line, then point-major
    little-endian float64 data: ``n_points`` rows of ``n_vars`` values.

    An aborted run (e.g. "Timestep too small") leaves ``No. Points: 0`` in the header
    because ngspice only patches the count at the end; the data then runs to the end of
    the file and is read as far as whole rows go.

    Parameters
    ----------
    raw : bytes
        Whole file contents.

    Returns
    -------
    list of RawPlot
        In file order.

    Raises
    ------
    SpiceError
        Complex data (never produced by a transient), an ASCII raw file, or a header that
        does not fit the data.
    """
    plots = []
    position = 0
    while position < len(raw):
        marker = _RAW_DATA_MARKER.search(raw, position)
        if marker is None:
            raise SpiceError(f"ngspice raw file: no 'Binary:' line after byte {position}")
        if marker.group(1) == b"Values":
            raise SpiceError(
                "ngspice wrote an ASCII raw file (filetype=ascii in a .spiceinit or "
                "SPICE_ASCIIRAWFILE set); only binary raw files are read"
            )
        header = _parse_raw_header(raw[position : marker.start()].decode("latin-1"))
        plot, position = _read_raw_block(raw, marker.end(), header)
        plots.append(plot)
    return plots


def _parse_raw_header(text: str) -> dict:
    """Fields of one raw-file header: name, flags, n_vars, n_points, variables."""
    fields = {}
    variables = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        key, _, value = line.partition(":")
        if key.strip() == "Variables":
            # one "index name type [extra]" line per variable, possibly empty first line
            for variable_line in lines[index + 1 :]:
                parts = variable_line.split()
                if len(parts) >= 3:
                    variables.append((parts[1], parts[2]))
            break
        fields[key.strip().lower()] = value.strip()
    try:
        n_vars = int(fields["no. variables"])
        n_points = int(fields["no. points"])
    except (KeyError, ValueError) as exc:
        raise SpiceError(f"ngspice raw file: bad header ({exc!r})") from None
    if len(variables) != n_vars:
        raise SpiceError(f"ngspice raw file: header lists {len(variables)} variables, says {n_vars}")
    flags = fields.get("flags", "real").lower().split()
    if "complex" in flags:
        raise SpiceError(
            "ngspice raw file holds complex data (an AC/noise plot); a transient analysis "
            "is always real"
        )
    return {
        "name": fields.get("plotname", ""),
        "n_points": n_points,
        "variables": variables,
    }


def _read_raw_block(raw: bytes, start: int, header: dict) -> tuple[RawPlot, int]:
    """Read one plot's data from ``raw[start:]``; return it and where the next plot starts."""
    n_vars = len(header["variables"])
    row_bytes = n_vars * _RAW_FLOAT.itemsize
    n_points = header["n_points"]
    end = start + n_points * row_bytes
    next_is_plot = end == len(raw) or raw.startswith(b"Title:", end)
    if end > len(raw) or not next_is_plot:
        # stale point count of an aborted run: the data runs to the end of the file
        n_points = (len(raw) - start) // row_bytes
        end = len(raw)
    data = np.frombuffer(raw, dtype=_RAW_FLOAT, count=n_points * n_vars, offset=start)
    # point-major on disk; one transposed copy gives contiguous per-variable rows
    values = np.ascontiguousarray(data.reshape(n_points, n_vars).T, dtype=np.float64)
    return RawPlot(header["name"], header["variables"], values), end


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


def _result_from_arrays(named_arrays, log, elapsed, backend) -> SpiceResult:
    """Build a SpiceResult from (raw name, array) pairs, one of them the time scale."""
    time = None
    vectors = {}
    for name, values in named_arrays:
        canonical = _canonical_vector_name(name)
        if canonical == "time":
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
# "Timestep too small; time = 0.999663, ..." names a time after the start; a failure at
# the "initial timepoint" is the operating point, where a singular matrix is structural.
_FAILED_DURING_TRANSIENT = re.compile(r"timestep too small;\s*time\s*=", re.IGNORECASE)
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


def _failure(log: str, context: str) -> SpiceError:
    """The typed error for a failed run, quoting the relevant ngspice lines."""
    if _NO_ANALYSIS_LINE.search(log):
        return _no_transient(log)
    quoted = _quoted_log_lines(log)
    singular = _SINGULAR_LINE.search(log) and not _FAILED_DURING_TRANSIENT.search(log)
    if singular:
        return NetlistRejectedError(
            f"ngspice {context}: the circuit matrix is singular (a node with no DC path to "
            f"ground, or a loop of voltage sources):\n{quoted}"
        )
    if _CONVERGENCE_LINE.search(log):
        return SpiceConvergenceError(f"ngspice {context}: the transient did not converge:\n{quoted}")
    return NetlistRejectedError(f"ngspice {context}: it rejected the netlist:\n{quoted}")


def _no_transient(log: str) -> NetlistRejectedError:
    return NetlistRejectedError(
        "ngspice produced no transient analysis output; the netlist needs a .tran line:\n"
        + _quoted_log_lines(log)
    )


# ---------------------------------------------------------------- subprocess back end
_NETLIST_FILE = "circuit.cir"
_RAW_FILE = "circuit.raw"
_TRANSIENT_PLOT_PREFIX = "transient"  # raw file "Plotname: Transient Analysis"


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


def _child_environment() -> dict:
    env = dict(os.environ)
    # the parser reads binary raw files; this variable would switch ngspice to ASCII
    env.pop("SPICE_ASCIIRAWFILE", None)
    return env


def _run_subprocess(netlist: str, timeout: float, ngspice: str) -> SpiceResult:
    with tempfile.TemporaryDirectory(prefix="kirchhoff_spice_") as workdir:
        netlist_path = os.path.join(workdir, _NETLIST_FILE)
        raw_path = os.path.join(workdir, _RAW_FILE)
        with open(netlist_path, "w", encoding="utf-8") as handle:
            handle.write(netlist)
        started = wallclock.perf_counter()
        try:
            completed = subprocess.run(
                [ngspice, "-b", "-r", raw_path, netlist_path],
                timeout=timeout,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                stdin=subprocess.DEVNULL,
                cwd=workdir,  # keeps a .spiceinit in the caller's directory out
                env=_child_environment(),
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
        log = completed.stdout + completed.stderr
        if completed.returncode != 0 or _is_failed(log):
            raise _failure(log, f"exited with status {completed.returncode}")
        if not os.path.exists(raw_path):
            raise _no_transient(log)
        with open(raw_path, "rb") as handle:
            plots = parse_raw(handle.read())
    transient = [plot for plot in plots if plot.name.lower().startswith(_TRANSIENT_PLOT_PREFIX)]
    if not transient:
        raise _no_transient(log)
    plot = transient[-1]
    named = zip((name for name, _ in plot.variables), plot.values)
    return _result_from_arrays(named, log, elapsed, "subprocess")


# ---------------------------------------------------------------- shared back end
_SHARED_LOCK = threading.Lock()  # libngspice is one global simulator per process
_shared_instance = None
_shared_load_error = None  # why libngspice could not be loaded (PySpice cannot retry)
_shared_broken_reason = None  # set if a halted analysis could not be stopped
_shared_run_active = threading.Event()  # while set, PySpice's echo of ngspice output is muted

_PYSPICE_LOGGER = "PySpice.Spice.NgSpice.Shared.NgSpiceShared"
# PySpice 1.5 knows ngspice up to 34 and warns about any newer one; harmless.
_PYSPICE_VERSION_WARNING = "Unsupported Ngspice version"
# PySpice logs every ngspice stderr line (even "Note: ...") at ERROR level from these;
# during our runs the same lines go into SpiceResult.log and the typed errors instead.
_PYSPICE_ECHO_FUNCTIONS = frozenset({"_send_char", "load_circuit"})
_SHARED_TRANSIENT_PLOT_PREFIX = "tran"  # libngspice plot names: tran1, tran2, ...
_PROGRESS_MESSAGE = re.compile(r"^\s*Reference value")  # "% done" updates, not log text
_HALT_GRACE_SECONDS = 2.0  # ngspice's bg_halt itself waits up to 1 s for the thread


class _PySpiceNoiseFilter(logging.Filter):
    """Mute PySpice's outdated version warning, and its echo of ngspice during our runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(_PYSPICE_VERSION_WARNING):
            return False
        return not (_shared_run_active.is_set() and record.funcName in _PYSPICE_ECHO_FUNCTIONS)


_PYSPICE_NOISE_FILTER = _PySpiceNoiseFilter()


def _shared_ngspice():
    """The process-wide collecting NgSpiceShared instance (created on first use).

    Must be called with ``_SHARED_LOCK`` held and ``_shared_run_active`` set.
    """
    global _shared_instance, _shared_load_error
    if _shared_instance is not None:
        return _shared_instance
    if _shared_load_error is not None:
        raise NgspiceNotFoundError(_shared_load_error)
    try:
        from PySpice.Spice.NgSpice import Shared as pyspice_shared
    except ImportError as exc:
        raise NgspiceNotFoundError(
            f"the shared backend needs PySpice (pip install PySpice) and libngspice "
            f"({INSTALL_COMMAND}): {exc}"
        ) from exc
    logging.getLogger(_PYSPICE_LOGGER).addFilter(_PYSPICE_NOISE_FILTER)  # idempotent
    collecting_class = _collecting_ngspice_class(pyspice_shared)
    try:
        instance = collecting_class.new_instance()
    except OSError as exc:  # cffi's dlopen failure
        # PySpice has already declared its C API on its module-level FFI, and a second
        # attempt would fail on the repeated declarations: remember the reason instead
        _shared_load_error = (
            f"libngspice could not be loaded ({exc}); install it with: {INSTALL_COMMAND}"
        )
        raise NgspiceNotFoundError(_shared_load_error) from exc
    if not isinstance(instance, collecting_class):
        raise SpiceError(
            "PySpice's shared ngspice was already started by other code in this process; "
            "use backend='subprocess'"
        )
    _shared_instance = instance
    return instance


def _collecting_ngspice_class(pyspice_shared):
    """NgSpiceShared that keeps ngspice's messages and signals the end of a bg_run."""

    class CollectingNgSpice(pyspice_shared.NgSpiceShared):
        def __init__(self, *args, **kwargs):
            # set before the base __init__, which already runs "version -f"
            self.messages = []
            self.background_done = threading.Event()
            super().__init__(*args, **kwargs)

        def send_char(self, message, ngspice_id):
            # the documented hook for ngspice's output; called from ngspice's threads
            self.messages.append(message)
            return 0

        @staticmethod
        def _background_thread_running(is_exited, ngspice_id, user_data):
            # Replaces PySpice's callback, which returns None to a C int (cffi prints a
            # TypeError on every bg_run). ngspice calls it with "not running" = False
            # when its background thread starts and True when it ends.
            self = pyspice_shared.ffi.from_handle(user_data)
            if is_exited:
                self.background_done.set()
            return 0

    return CollectingNgSpice


def _command(ngspice, command: str) -> None:
    """Send one ngspice command, leaving success to the log classification.

    PySpice raises NgSpiceCommandError whenever ngspice printed anything on stderr that
    does not start with "Warning:" -- including harmless "Note:" lines, and racing with
    the background thread's output -- so its verdict is not used.
    """
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    try:
        ngspice.exec_command(command)
    except NgSpiceCommandError:
        pass


def _collected_log(ngspice) -> str:
    lines = []
    for message in list(ngspice.messages):
        stream, _, text = message.partition(" ")
        if stream not in ("stdout", "stderr"):
            text = message
        if not _PROGRESS_MESSAGE.match(text):
            lines.append(text.rstrip("\r\n"))
    return "\n".join(lines)


def _run_shared(netlist: str, timeout: float) -> SpiceResult:
    with _SHARED_LOCK:
        if _shared_broken_reason is not None:
            raise SpiceError(_shared_broken_reason)
        _shared_run_active.set()
        try:
            ngspice = _shared_ngspice()
            try:
                return _run_loaded(ngspice, netlist, timeout)
            finally:
                # drop the circuit and every plot so the next run starts clean
                _command(ngspice, "remcirc")
                _command(ngspice, "destroy all")
                ngspice.messages.clear()
        finally:
            _shared_run_active.clear()


def _run_loaded(ngspice, netlist: str, timeout: float) -> SpiceResult:
    """Load, run and read one netlist on the (locked) shared instance."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCircuitError

    _command(ngspice, "destroy all")  # leftovers of other users of the instance
    ngspice.messages.clear()
    started = wallclock.perf_counter()
    try:
        ngspice.load_circuit(netlist)
    except NgSpiceCircuitError:
        pass  # classified from the log below
    if _is_failed(_collected_log(ngspice)):
        raise _failure(_collected_log(ngspice), "could not load the netlist")

    ngspice.background_done.clear()
    _command(ngspice, "bg_run")
    remaining = timeout - (wallclock.perf_counter() - started)
    if not ngspice.background_done.wait(max(remaining, 0.0)):
        _halt(ngspice, timeout)
    elapsed = wallclock.perf_counter() - started
    log = _collected_log(ngspice)
    if _is_failed(log):
        raise _failure(log, "stopped")
    plots = [name for name in ngspice.plot_names if name.startswith(_SHARED_TRANSIENT_PLOT_PREFIX)]
    if not plots:
        raise _no_transient(log)
    return _result_from_arrays(_shared_plot_vectors(ngspice, plots[0]), log, elapsed, "shared")


def _halt(ngspice, timeout: float):
    """Stop a background analysis that ran out of time, then raise SpiceTimeoutError."""
    global _shared_broken_reason
    _command(ngspice, "bg_halt")
    if not ngspice.background_done.wait(_HALT_GRACE_SECONDS):
        _shared_broken_reason = (
            "the shared ngspice could not be stopped after a timeout and is still running; "
            "restart Python or use backend='subprocess'"
        )
    raise SpiceTimeoutError(f"ngspice did not finish within {timeout:g} s and was halted")


def _shared_plot_vectors(ngspice, plot_name: str):
    """(name, array) pairs of one libngspice plot, copied out of ngspice's memory.

    Reads through the library handle (ngSpice_AllVecs / ngGet_Vec_Info) rather than
    PySpice's ``plot()``, which wraps every vector in unit-carrying objects (slow for
    thousands of vectors, and warns on unit-less ones).
    """
    from PySpice.Spice.NgSpice.Shared import ffi

    library = ngspice._ngspice_shared  # the cffi handle PySpice opened
    names_c = library.ngSpice_AllVecs(plot_name.encode())
    names = []
    index = 0
    while names_c[index] != ffi.NULL:
        names.append(ffi.string(names_c[index]).decode("utf-8", errors="replace"))
        index += 1
    pairs = []
    for name in names:
        info = library.ngGet_Vec_Info(f"{plot_name}.{name}".encode())
        if info == ffi.NULL:
            continue
        if info.v_compdata != ffi.NULL:
            raise SpiceError(f"ngspice vector {name!r} is complex; a transient is always real")
        length = info.v_length
        if length == 0 or info.v_realdata == ffi.NULL:
            pairs.append((name, np.empty(0)))
            continue
        buffer = ffi.buffer(info.v_realdata, length * _RAW_FLOAT.itemsize)
        pairs.append((name, np.frombuffer(buffer, dtype=np.float64).copy()))
    return pairs
