"""What may reach ngspice: the refusal check for netlist text, title sanitising, node-name rules.

Imported by both the compiler (:mod:`~kirchhoff_sim.spice.netlist`, which checks its own
output) and the runner (:mod:`~kirchhoff_sim.spice.runner`, which checks whatever it is
handed), so that neither imports the other.

ngspice can run commands from a netlist: ``.control`` blocks, the ``shell`` command, a
file whose first line is ``*ng_script``, and anything in a file pulled in by
``.include``/``.lib`` (checked by running ngspice 39 by hand: all four execute
``shell touch ...``). :func:`check_netlist_safe` refuses all of these before ngspice
sees the text (DESIGN.md §6).
"""

from __future__ import annotations

import re

from ..errors import InputError, UnsafeNameError

__all__ = [
    "DEFAULT_TITLE",
    "GROUND_ALIASES",
    "MAX_TITLE_LENGTH",
    "NODE_NAME_PATTERN",
    "check_netlist_safe",
    "check_node_names",
    "sanitise_title",
]

NODE_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
#: ngspice maps these node names to ground; a user node must not silently become node 0
GROUND_ALIASES = frozenset({"gnd", "0"})
MAX_TITLE_LENGTH = 120
DEFAULT_TITLE = "KirchhoffNet"

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


def sanitise_title(title) -> str:
    """One safe title line: printable ASCII only, no newline, no leading ``.``/``*``.

    Every character outside printable ASCII (newlines, tabs, control characters,
    non-ASCII) becomes a space, runs of spaces collapse, leading ``.``, ``*`` and
    spaces are dropped, and the result is cut to :data:`MAX_TITLE_LENGTH`. A title that
    would still read as a command at the start of a line (``shell ...``) is prefixed.

    Raises
    ------
    InputError
        ``title`` is not a string (or None, which gives :data:`DEFAULT_TITLE`).
    """
    if title is None:
        return DEFAULT_TITLE
    if not isinstance(title, str):
        raise InputError(f"title must be a string, got {type(title).__name__}")
    printable = "".join(c if " " <= c <= "~" else " " for c in title)
    line = " ".join(printable.split()).lstrip(".* ")[:MAX_TITLE_LENGTH].rstrip()
    if not line:
        return DEFAULT_TITLE
    try:
        check_netlist_safe(line)
    except UnsafeNameError:
        line = f"title: {line}"[:MAX_TITLE_LENGTH]
    return line


def check_node_names(names, num_nodes: int) -> list[str]:
    """User names of nodes ``1..num_nodes``, checked; returns them as a list.

    Raises
    ------
    InputError
        A string instead of a sequence, or the wrong number of names.
    UnsafeNameError
        A name that does not match :data:`NODE_NAME_PATTERN`, is a ground alias or
        repeats another (ngspice ignores case), naming the node.
    """
    if isinstance(names, (str, bytes)):
        raise InputError("node_names must be a sequence of one name per non-ground node, not a string")
    names = list(names)
    if len(names) != num_nodes:
        raise InputError(f"node_names must name the {num_nodes} non-ground nodes 1..{num_nodes}, "
                         f"got {len(names)} names")
    seen = {}
    for n, name in enumerate(names, start=1):
        if not isinstance(name, str) or not NODE_NAME_PATTERN.fullmatch(name):
            raise UnsafeNameError(
                f"node name {name!r} of node {n} is refused: a node name must match "
                f"{NODE_NAME_PATTERN.pattern} (a letter, then up to 31 letters, digits or '_')"
            )
        key = name.lower()   # ngspice folds names to lower case
        if key in GROUND_ALIASES:
            raise UnsafeNameError(f"node name {name!r} of node {n} is refused: ngspice reads it as ground")
        if key in seen:
            raise UnsafeNameError(f"node name {name!r} of node {n} is refused: node {seen[key]} has the "
                                  f"same name (ngspice ignores case)")
        seen[key] = n
    return names
