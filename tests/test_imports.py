"""The package's import graph: no cycles, and each layer imports only what lies below it.

Every ``import`` statement of every module counts, including the ones inside functions
(a deferred import is still a dependency; deferring it only hides a cycle).
"""

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = "kirchhoff_sim"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: modules at the bottom of the package: they import nothing of it but each other
CORE = {f"{PACKAGE}.errors", f"{PACKAGE}.checks", f"{PACKAGE}.units", f"{PACKAGE}.fileio",
        f"{PACKAGE}.allocator"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node.level, node.module) if node.level else node.module
                # "from pkg import sub" imports the submodule when there is one
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                if target and target.split(".")[0] == PACKAGE and target != name:
                    while target not in modules:       # "pkg.mod.attr" → "pkg.mod"
                        target = target.rsplit(".", 1)[0]
                    if target != name:
                        graph.add_edge(name, target)
    return graph


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_deferred_imports():
    graph = import_graph()
    # sanity check of the walker itself: known edges, one of them inside a function
    assert graph.has_edge(f"{PACKAGE}.modelfile", f"{PACKAGE}.network")
    assert graph.has_edge(f"{PACKAGE}.network", f"{PACKAGE}.assembly")     # deferred in network.py
    assert graph.number_of_edges() > 50


def test_no_import_cycles():
    graph = import_graph()
    # package __init__ files re-export their submodules; a cycle through one is still a cycle
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], "import cycles: " + "; ".join(" → ".join(c + [c[0]]) for c in cycles[:10])


def test_core_modules_import_only_the_core():
    graph = import_graph()
    offenders = {(a, b) for a in CORE for b in graph.successors(a) if b not in CORE}
    assert not offenders, f"core modules importing higher layers: {sorted(offenders)}"


def test_spice_does_not_import_hardware_or_training():
    graph = import_graph()
    offenders = sorted((a, b) for a, b in graph.edges
                       if _within(a, f"{PACKAGE}.spice")
                       and (_within(b, f"{PACKAGE}.hardware") or _within(b, f"{PACKAGE}.training")))
    assert not offenders, f"spice/ importing hardware/ or training/: {offenders}"


def test_compiler_does_not_import_the_runner():
    graph = import_graph()
    compiler = f"{PACKAGE}.spice.netlist"
    reached = nx.descendants(graph, compiler)
    runners = {m for m in graph if m.startswith(f"{PACKAGE}.spice.") and
               m.rsplit(".", 1)[1] in ("runner", "shared", "ngspice_shared", "roundtrip")}
    assert runners, "the runner modules were not found"
    assert not (reached & runners), f"the compiler reaches the runner: {sorted(reached & runners)}"


def test_core_pipeline_does_not_import_the_periphery():
    graph = import_graph()
    lower = [f"{PACKAGE}.{m}" for m in ("topology", "devices", "network", "assembly", "solvers",
                                        "sensitivity", "modelfile")]
    higher = [f"{PACKAGE}.{m}" for m in ("training", "spice", "hardware", "cli", "demo")]
    offenders = sorted((a, b) for a, b in graph.edges
                       if any(_within(a, l) for l in lower) and any(_within(b, h) for h in higher))
    assert not offenders, f"the solver core imports the periphery: {offenders}"


def test_import_has_no_side_effect_on_malloc():
    # importing the package must not retune the process's allocator: tune_allocator is
    # opt-in. A profiler hook sees every Python call made during the import.
    code = (
        "import sys\n"
        "calls = []\n"
        "sys.setprofile(lambda frame, event, arg: calls.append(frame.f_code.co_name) if event == 'call' else None)\n"
        "import kirchhoff_sim, kirchhoff_sim.spice, kirchhoff_sim.hardware, kirchhoff_sim.training.trainer\n"
        "sys.setprofile(None)\n"
        "print(calls.count('tune_allocator'), len(calls) > 100)\n"
        "print(kirchhoff_sim.tune_allocator())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.split()
    assert lines[:2] == ["0", "True"]
    assert lines[2] == ("True" if sys.platform.startswith("linux") else "False")   # and it works when asked


@pytest.mark.parametrize("old, new", [
    ("kirchhoff_sim.spice.scale", "kirchhoff_sim.units"),
])
def test_moved_names_keep_their_old_import_path(old, new):
    assert importlib.util.find_spec(old) is not None
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    assert old_module.PhysicalScale is new_module.PhysicalScale

