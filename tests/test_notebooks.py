"""The notebooks' code cells run as written (so they cannot silently go stale)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
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
