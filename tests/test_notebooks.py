"""The notebooks' code cells run as written (so they cannot silently go stale)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: notebooks whose cells take minutes (the two digits nets' findings and mismatch sweeps;
#: transistor-level ngspice runs; eight flows' samples and density grids)
SLOW = {"constrained_digits.ipynb", "sky130_transistor_level.ipynb", "flows_toy_densities.ipynb"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
                                  for p in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook_code_cells_run(path):
    cells = json.loads(path.read_text())["cells"]
    code = [("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    assert code, "a notebook without code"
    namespace = {}
    for source in code:
        exec(compile(source, str(path), "exec"), namespace)
    if "data" in namespace and "clf" in namespace:        # the quickstart's classifier learnt
        from kirchhoff_sim.training.trainer import evaluate
        assert evaluate(namespace["clf"], namespace["data"].X_test, namespace["data"].y_test)["accuracy"] > 0.9


def test_there_is_a_notebook():
    assert NOTEBOOKS
    assert SLOW <= {p.name for p in NOTEBOOKS}


def _executed(name: str, script: str):
    """The committed notebook's printed text and its number of PNG figures, after checking
    that every code cell was executed (by ``scripts/<script>``)."""
    cells = json.loads((NOTEBOOKS[0].parent / name).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"run scripts/{script}"
    outputs = [o for c in code for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    return text, sum("image/png" in o.get("data", {}) for o in outputs)


def test_the_constrained_notebook_is_executed_and_shows_both_nets():
    text, figures = _executed("constrained_digits.ipynb", "make_constrained_notebook.py")
    assert "unconstrained" in text and "constrained: 0 error" in text
    assert figures == 2


def test_the_transistor_notebook_is_executed_and_reaches_the_report():
    text, figures = _executed("sky130_transistor_level.ipynb", "make_transistor_notebook.py")
    assert "1650 transistors" in text and "== transistor level (sky130) ==" in text
    assert all(f"{corner}: classes agree" in text for corner in ("tt", "ss", "ff"))
    assert figures == 1


def test_the_flows_notebook_is_executed_and_shows_retrained_and_published_flows():
    text, figures = _executed("flows_toy_densities.ipynb", "make_flows_notebook.py")
    assert "imported 6 published checkpoints" in text
    for name in ("twomoon", "circles", "pinwheel", "8gaussians", "2spirals", "swissroll", "potential1", "potential2"):
        assert name in text
    assert "published KL - log Z" in text         # the potentials' published flows beside the retrained
    assert figures == 2
