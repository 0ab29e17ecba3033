"""The shared-library back end: libngspice through PySpice, quarantined in this one module.

Nothing else in the package imports PySpice or touches its private library handle
(``NgSpiceShared._ngspice_shared``). The runner (:mod:`~kirchhoff_sim.spice.runner`)
drives a :class:`SharedSession` — load, run, log, vectors — and classifies the outcome
itself, exactly as it does for the subprocess back end.

libngspice is one global simulator per process: PySpice's ``NgSpiceShared`` is a
process-wide singleton and not thread-safe, so :func:`session` holds a module lock for
the whole run. The analysis runs in ngspice's background thread (``bg_run``) so that a
timeout can stop it (``bg_halt``); loading (parsing) the netlist happens before and is
not interruptible.

PySpice would echo every ngspice stderr line at ERROR level, and warn "Unsupported Ngspice
version" (PySpice 1.5 knows ngspice up to 34): both are muted, nothing else PySpice logs is.

What this back end cannot do, being ngspice inside this process: stop a crash (a
segmentation fault in libngspice ends the Python process; the subprocess back end reports
it as :class:`~kirchhoff_sim.errors.NgspiceCrashedError`), or keep libngspice 39 from
reading its init files when it starts — it reads the distribution's ``spinit`` and a
``.spiceinit`` (working folder, else home), with no API switch against either. A
``.spiceinit`` makes :func:`session` refuse to start libngspice
(:class:`~kirchhoff_sim.errors.UnsafeInitFileError`); ``spinit`` is read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import threading

import numpy as np

from ..errors import NgspiceNotFoundError, SpiceError, SpiceTimeoutError, UnsafeInitFileError
from .rawfile import RAW_FLOAT

__all__ = ["INSTALL_COMMAND", "SharedSession", "session", "shared_library_available", "user_init_files"]

INSTALL_COMMAND = "sudo apt-get install -y ngspice libngspice0-dev"

_LOCK = threading.Lock()  # libngspice is one global simulator per process
_instance = None
_load_error = None  # why libngspice could not be loaded (PySpice cannot retry)
_broken_reason = None  # set if a halted analysis could not be stopped
_run_active = threading.Event()  # while set, PySpice's echo of ngspice output is muted

_PYSPICE_LOGGER = "PySpice.Spice.NgSpice.Shared.NgSpiceShared"
# PySpice 1.5 knows ngspice up to 34 and warns about any newer one; harmless.
_PYSPICE_VERSION_WARNING = "Unsupported Ngspice version"
# PySpice logs every ngspice stderr line (even "Note: ...") at ERROR level from these;
# during our runs the same lines go into SpiceResult.log and the typed errors instead.
_PYSPICE_ECHO_FUNCTIONS = frozenset({"_send_char", "load_circuit"})
_TRANSIENT_PLOT_PREFIX = "tran"  # libngspice plot names: tran1, tran2, ...
_PROGRESS_MESSAGE = re.compile(r"^\s*Reference value")  # "% done" updates, not log text
_HALT_GRACE_SECONDS = 2.0  # ngspice's bg_halt itself waits up to 1 s for the thread
_USER_INIT_FILE = ".spiceinit"


def shared_library_available() -> bool:
    """PySpice is importable and libngspice can be found (or ``NGSPICE_LIBRARY_PATH``
    names a file); nothing is loaded."""
    import ctypes.util

    if importlib.util.find_spec("PySpice") is None:
        return False
    library = os.environ.get("NGSPICE_LIBRARY_PATH")
    return os.path.isfile(library) if library else ctypes.util.find_library("ngspice") is not None


class _PySpiceNoiseFilter(logging.Filter):
    """Mute PySpice's outdated version warning, and its echo of ngspice during our runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(_PYSPICE_VERSION_WARNING):
            return False
        return not (_run_active.is_set() and record.funcName in _PYSPICE_ECHO_FUNCTIONS)


_PYSPICE_NOISE_FILTER = _PySpiceNoiseFilter()


@contextlib.contextmanager
def session():
    """The process-wide libngspice, locked for one run; yields a :class:`SharedSession`.

    On exit the circuit and every plot are dropped, so the next run starts clean.

    Raises
    ------
    NgspiceNotFoundError
        PySpice or libngspice is missing (the message has the install command).
    UnsafeInitFileError
        libngspice is not started yet and would source a ``.spiceinit``.
    SpiceError
        An earlier run could not be halted, or other code in this process started
        PySpice's shared ngspice itself.
    """
    with _LOCK:
        if _broken_reason is not None:
            raise SpiceError(_broken_reason)
        _run_active.set()
        try:
            ngspice = _shared_ngspice()
            try:
                yield SharedSession(ngspice)
            finally:
                _command(ngspice, "remcirc")
                _command(ngspice, "destroy all")
                ngspice.messages.clear()
        finally:
            _run_active.clear()


class SharedSession:
    """One locked run on libngspice: :meth:`load`, :meth:`run`, then read :meth:`log` and
    :meth:`transient_vectors`. Only :func:`session` makes one."""

    def __init__(self, ngspice):
        self._ngspice = ngspice
        _command(ngspice, "destroy all")  # leftovers of other users of the instance
        ngspice.messages.clear()

    def load(self, netlist: str) -> None:
        """Parse ``netlist``; success or failure is left to the log (:meth:`log`)."""
        from PySpice.Spice.NgSpice.Shared import NgSpiceCircuitError

        try:
            self._ngspice.load_circuit(netlist)
        except NgSpiceCircuitError:
            pass  # PySpice's verdict reads stderr loosely; the caller classifies the log

    def run(self, remaining: float, timeout: float) -> None:
        """Run the loaded analysis in ngspice's background thread for up to ``remaining``
        seconds.

        Raises
        ------
        SpiceTimeoutError
            The analysis was still running: it is halted (``timeout`` is the caller's
            whole limit, quoted in the message).
        """
        global _broken_reason
        ngspice = self._ngspice
        ngspice.background_done.clear()
        _command(ngspice, "bg_run")
        if ngspice.background_done.wait(max(remaining, 0.0)):
            return
        _command(ngspice, "bg_halt")
        if not ngspice.background_done.wait(_HALT_GRACE_SECONDS):
            _broken_reason = (
                "the shared ngspice could not be stopped after a timeout and is still running; "
                "restart Python or use backend='subprocess'"
            )
        raise SpiceTimeoutError(f"ngspice did not finish within {timeout:g} s and was halted")

    def log(self) -> str:
        """ngspice's messages so far, in order, without its progress updates."""
        lines = []
        for message in list(self._ngspice.messages):
            stream, _, text = message.partition(" ")
            if stream not in ("stdout", "stderr"):
                text = message
            if not _PROGRESS_MESSAGE.match(text):
                lines.append(text.rstrip("\r\n"))
        return "\n".join(lines)

    def transient_vectors(self):
        """(name, array) pairs of the first transient plot, or None if there is none.

        Reads through the library handle (``ngSpice_AllVecs`` / ``ngGet_Vec_Info``)
        rather than PySpice's ``plot()``, which wraps every vector in unit-carrying
        objects (slow for thousands of vectors, and warns on unit-less ones).

        Raises
        ------
        SpiceError
            A complex vector (a transient is always real).
        """
        from PySpice.Spice.NgSpice.Shared import ffi

        plots = [name for name in self._ngspice.plot_names if name.startswith(_TRANSIENT_PLOT_PREFIX)]
        if not plots:
            return None
        plot_name = plots[0]
        library = self._ngspice._ngspice_shared  # the cffi handle PySpice opened
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
            buffer = ffi.buffer(info.v_realdata, length * RAW_FLOAT.itemsize)
            pairs.append((name, np.frombuffer(buffer, dtype=np.float64).copy()))
        return pairs


def user_init_files() -> list[str]:
    """The ``.spiceinit`` files libngspice 39 would source when it starts.

    ``ngSpice_Init`` reads ``./.spiceinit``, else ``$HOME/.spiceinit`` (measured: a
    ``shell touch`` in either runs; ``spice.rc`` is not read by the library).
    """
    local = os.path.abspath(_USER_INIT_FILE)
    if os.path.exists(local):
        return [local]
    home = os.environ.get("HOME")
    candidate = os.path.join(home, _USER_INIT_FILE) if home else None
    return [candidate] if candidate and os.path.exists(candidate) else []


def _shared_ngspice():
    """The process-wide collecting NgSpiceShared instance (created on first use).

    Must be called with ``_LOCK`` held and ``_run_active`` set.

    Raises
    ------
    UnsafeInitFileError
        libngspice would source a ``.spiceinit`` (it cannot be told not to).
    """
    global _instance, _load_error
    if _instance is not None:
        return _instance
    if _load_error is not None:
        raise NgspiceNotFoundError(_load_error)
    init_files = user_init_files()
    if init_files:
        raise UnsafeInitFileError(
            f"the shared back end would source {init_files[0]!r} when libngspice starts: an "
            f"init file can run any command, and libngspice 39 cannot be told to skip it. "
            f"Move it away, or use backend='subprocess' (which runs ngspice -n)"
        )
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
        _load_error = f"libngspice could not be loaded ({exc}); install it with: {INSTALL_COMMAND}"
        raise NgspiceNotFoundError(_load_error) from exc
    if not isinstance(instance, collecting_class):
        raise SpiceError(
            "PySpice's shared ngspice was already started by other code in this process; "
            "use backend='subprocess'"
        )
    _instance = instance
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
