"""Files the package writes: all at once or not at all, checked before work starts.

Every file kirchhoff_sim writes — model files, checkpoints, netlists, technology
profiles, simulation outputs, reports and plots — goes through :func:`atomic_write`: the
bytes go to a temporary file in the target's folder, which is flushed, fsynced and
renamed over the target, so a crash or a full disk never leaves a half-written file.
The temporary file is removed on any error; one left behind by a process that was killed
(SIGKILL gives no chance to clean up) is removed by the next write to the same target.

:func:`check_output_path` says before a long run whether its output can be written at
all (missing or read-only folder, a folder or a device named as the file, the wrong
suffix, one of the command's own inputs); :func:`check_input_file` says why a path given
as an input is not a file that can be read.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy",
           "atomic_save_npz", "check_output_path", "check_output_folder", "check_input_file"]

_TMP_SUFFIX = ".tmp"


def _kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words (for messages)."""
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _non_regular(path) -> str | None:
    """``None`` if ``path`` is missing or a regular file (following symlinks), else what it
    is: an atomic rename would replace a device, a FIFO or a socket with a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:          # missing (or unreadable: the write itself reports that)
        return None
    return None if stat.S_ISREG(mode) else _kind_of(mode)


def _temp_prefix(name: str, pid: int) -> str:
    return f".{name}.{pid}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's live process
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Remove temporary files of earlier writes to ``path`` whose writer has died.

    Returns the files removed. A temporary of a live process (a concurrent writer) is
    left alone.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\..*" + re.escape(_TMP_SUFFIX) + "$")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def atomic_write(path, write) -> Path:
    """Write ``path`` all at once or not at all; returns the path written.

    ``write(binary_handle)`` fills a temporary file in ``path``'s folder, which is
    fsynced and renamed over ``path`` (``os.replace``: atomic on POSIX). The file gets
    the mode ``open()`` would give it (``0666 & ~umask``). Missing parent folders are
    created.

    Raises
    ------
    InputError
        ``path`` names a folder or another file that is not a regular file (a device, a
        FIFO, a socket: the rename would replace it), or its folder cannot be created or
        written.
    OSError
        From ``write`` or the file system (a full disk); the temporary file is removed
        first and the old target, if any, is left as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    kind = _non_regular(path)
    if kind is not None:
        raise InputError(f"cannot write {str(path)!r}: it is {kind}, not a regular file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder of {str(path)!r}: {exc.strerror or exc}") from None
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name, os.getpid()), suffix=_TMP_SUFFIX,
                                   dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write in the folder of {str(path)!r}: {exc.strerror or exc}") from None
    try:
        # mkstemp makes the file owner-only; give it the mode open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        kind = _non_regular(path)       # again: a FIFO may have been made while we wrote
        if kind is not None:
            raise InputError(f"cannot write {str(path)!r}: it is {kind}, not a regular file")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path, array) -> Path:
    """``np.save(path, array)`` atomically (no pickle: object arrays are refused)."""
    array = np.asarray(array)
    if array.dtype == object:
        raise InputError(f"cannot save an object array to {str(path)!r}")
    return atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def atomic_save_npy_chunks(path, shape: tuple, chunks, dtype=np.float64) -> Path:
    """A ``.npy`` of ``shape`` written atomically from ``chunks``, consecutive row blocks
    that arrive one by one (so the array never needs to be in memory whole).

    Raises
    ------
    InputError
        A chunk of another width, or rows that do not add up to ``shape[0]`` (the
        temporary file is removed and ``path`` left as it was).
    """
    shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)

    def write(handle):
        np.lib.format.write_array_header_2_0(
            handle, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
        rows = 0
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            if chunk.shape[1:] != shape[1:]:
                raise InputError(f"cannot write {str(path)!r}: a block of shape {chunk.shape} in an array "
                                 f"of shape {shape}")
            handle.write(chunk.tobytes())
            rows += len(chunk)
        if rows != shape[0]:
            raise InputError(f"cannot write {str(path)!r}: {rows} rows arrived for an array of {shape[0]}")
    return atomic_write(path, write)


def atomic_save_npz(path, payload: dict) -> Path:
    """``np.savez(path, **payload)`` atomically."""
    return atomic_write(path, lambda handle: np.savez(handle, **payload))


def npz_bytes(payload: dict) -> bytes:
    """``np.savez`` of ``payload`` into memory (for nets sent to a worker)."""
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    return buffer.getvalue()


def check_output_path(path, what: str = "output", *, suffix: str | None = None,
                      inputs: dict | None = None) -> Path:
    """Check before any work that ``path`` can be written; returns it as a ``Path``.

    The target must not be a folder or any other existing file that is not a regular file
    (a device such as ``/dev/null``, a FIFO, a socket), its folder must exist and be
    writable, its suffix must be ``suffix`` when one is given (the format the command
    writes), and it must not be one of ``inputs`` (the command would overwrite what it
    reads). (The library's :func:`atomic_write` creates missing folders; a command line
    refuses them so that a mistyped folder is reported, not created.)

    Parameters
    ----------
    path : str or Path
    what : str
        Names the output in messages (``"--out"``).
    suffix : str or tuple of str, optional
        The suffix allowed (``".npy"``), or the suffixes (``(".cir", ".sp")``).
    inputs : dict, optional
        ``{name: path}`` of the command's input files (``None`` entries skipped).

    Raises
    ------
    InputError
        Saying which of these fails, naming ``what`` and the path.
    """
    path = Path(path)
    if str(path) in ("", ".") or path.name in ("", ".", ".."):
        raise InputError(f"{what} path {str(path)!r} names no file")
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder, not a file")
    kind = _non_regular(path)
    if kind is not None:
        raise InputError(f"{what} {str(path)!r} is {kind}, not a regular file; it would be replaced")
    for name, source in (inputs or {}).items():
        if source is not None and _same_file(path, Path(source)):
            raise InputError(f"{what} {str(path)!r} is the same file as {name} {str(source)!r}; "
                             f"refusing to write over it")
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix or ())
    if suffixes and path.suffix not in suffixes:
        raise InputError(f"{what} {str(path)!r} must end in {' or '.join(suffixes)} (the command writes a "
                         f"{suffixes[0]} file)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise InputError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputError(f"cannot write {what} {str(path)!r}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} is not writable")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode when both exist (hard links,
    symlinks), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):     # a symlink loop
        return False


def check_input_file(path, what: str = "input file", error=InputError) -> Path:
    """``path`` as a ``Path`` if it names an existing regular file, else ``error`` saying
    what it is instead: an empty path, a folder, a device or FIFO (reading one could
    block for ever), or nothing ("does not exist")."""
    if isinstance(path, str) and not path.strip():
        raise error(f"{what} path {path!r} is empty: it names no file")
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise error(f"{what} {str(path)!r} is {_kind_of(mode)}, not a regular file")
    return path


def check_output_folder(path, what: str = "output folder") -> Path:
    """Check before any work that files can be written into the folder ``path`` (which
    may not exist yet, but then its parent must, as a writable folder).

    Raises
    ------
    InputError
        ``path`` is a file, or neither it nor its parent is a writable folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a file, not a folder")
    target = path if path.exists() else (path.parent if str(path.parent) else Path("."))
    if not target.is_dir():
        raise InputError(f"cannot write into {what} {str(path)!r}: {str(target)!r} does not exist")
    if not os.access(target, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {what} {str(path)!r}: {str(target)!r} is not writable")
    return path
