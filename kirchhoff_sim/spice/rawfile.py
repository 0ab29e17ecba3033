"""The binary raw-file format ngspice writes with ``-b -r FILE``: :func:`parse_raw` and :class:`RawPlot`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import SpiceError

__all__ = ["RAW_FLOAT", "RawPlot", "parse_raw"]


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
#: ngspice writes little-endian IEEE doubles
RAW_FLOAT = np.dtype("<f8")


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
    row_bytes = n_vars * RAW_FLOAT.itemsize
    n_points = header["n_points"]
    end = start + n_points * row_bytes
    next_is_plot = end == len(raw) or raw.startswith(b"Title:", end)
    if end > len(raw) or not next_is_plot:
        # stale point count of an aborted run: the data runs to the end of the file
        n_points = (len(raw) - start) // row_bytes
        end = len(raw)
    data = np.frombuffer(raw, dtype=RAW_FLOAT, count=n_points * n_vars, offset=start)
    # point-major on disk; one transposed copy gives contiguous per-variable rows
    values = np.ascontiguousarray(data.reshape(n_points, n_vars).T, dtype=np.float64)
    return RawPlot(header["name"], header["variables"], values), end
