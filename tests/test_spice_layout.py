"""spice/'s module layout: each module owns one concern, and the names that moved in the
split keep their old import paths for one release."""

import ast
import importlib
from pathlib import Path

import pytest

SPICE = Path(__file__).resolve().parents[1] / "kirchhoff_sim" / "spice"

MOVED = [
    # (old module, name, new module)
    ("kirchhoff_sim.spice.netlist", "SpiceOptions", "kirchhoff_sim.spice.options"),
    ("kirchhoff_sim.spice.netlist", "MODES", "kirchhoff_sim.spice.options"),
    ("kirchhoff_sim.spice.netlist", "METHODS", "kirchhoff_sim.spice.options"),
    ("kirchhoff_sim.spice.netlist", "sanitise_title", "kirchhoff_sim.spice.safety"),
    ("kirchhoff_sim.spice.netlist", "NODE_NAME_PATTERN", "kirchhoff_sim.spice.safety"),
    ("kirchhoff_sim.spice.netlist", "MAX_TITLE_LENGTH", "kirchhoff_sim.spice.safety"),
    ("kirchhoff_sim.spice.netlist", "DEFAULT_TITLE", "kirchhoff_sim.spice.safety"),
    ("kirchhoff_sim.spice.netlist", "NGSPICE_BOLTZMANN", "kirchhoff_sim.units"),
    ("kirchhoff_sim.spice.netlist", "NGSPICE_CHARGE", "kirchhoff_sim.units"),
    ("kirchhoff_sim.spice.netlist", "CELSIUS_TO_KELVIN", "kirchhoff_sim.units"),
    ("kirchhoff_sim.spice.netlist", "diode_emission_coefficient", "kirchhoff_sim.units"),
    ("kirchhoff_sim.spice.runner", "check_netlist_safe", "kirchhoff_sim.spice.safety"),
    ("kirchhoff_sim.spice.runner", "parse_raw", "kirchhoff_sim.spice.rawfile"),
    ("kirchhoff_sim.spice.runner", "RawPlot", "kirchhoff_sim.spice.rawfile"),
    ("kirchhoff_sim.spice.runner", "INSTALL_COMMAND", "kirchhoff_sim.spice.shared"),
    ("kirchhoff_sim.spice.scale", "PhysicalScale", "kirchhoff_sim.units"),
    ("kirchhoff_sim.spice", "PhysicalScale", "kirchhoff_sim.units"),
    ("kirchhoff_sim.spice", "check_netlist_safe", "kirchhoff_sim.spice.safety"),
    ("kirchhoff_sim.spice", "SpiceOptions", "kirchhoff_sim.spice.options"),
    ("kirchhoff_sim.spice", "simulate_in_ngspice", "kirchhoff_sim.spice.roundtrip"),
]


@pytest.mark.parametrize("old, name, new", MOVED, ids=[f"{o}.{n}" for o, n, _ in MOVED])
def test_a_moved_name_is_the_same_object_at_its_old_path(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def _modules():
    return sorted(p for p in SPICE.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_every_module_opens_with_one_line_on_what_it_owns(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    assert docstring, f"{path.name} has no module docstring"
    first = docstring.splitlines()[0]
    assert first.strip() and first.rstrip().endswith((".", ")", ":")), first


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_only_the_shared_module_touches_pyspice():
    users = {p.name for p in SPICE.glob("*.py") if any(m.split(".")[0] == "PySpice" for m in _imports(p))}
    assert users == {"shared.py"}
    private = {p.name for p in SPICE.glob("*.py") if "_ngspice_shared" in p.read_text(encoding="utf-8")}
    assert private == {"shared.py"}
