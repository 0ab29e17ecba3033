"""Build a notebook from (kind, text) cells, execute it in the repository root and write it
atomically: the one writer of the ``scripts/make_*_notebook.py`` scripts (needs nbclient
and ipykernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from kirchhoff_sim.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def write_notebook(cells, out: Path, timeout: float = 1800) -> None:
    """Execute ``cells`` (a list of ``("markdown"|"code", text)``) and write them to ``out``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
                for kind, text in cells]
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    atomic_write_text(out, nbformat.writes(nb))
    print(f"wrote {out}")
