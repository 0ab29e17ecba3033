"""The README's main job runs end to end (quick mode) and its figures make sense."""

import json

from kirchhoff_sim.demo import run_demo


def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    figures = run_demo(quick=True, out_dir=tmp_path)
    out = capsys.readouterr().out
    for step in ("[train]", "[gradient]", "[simulate]", "[model file]", "[export]", "[ngspice]", "[chip report]"):
        assert step in out
    assert figures["test_accuracy"] > 0.85
    assert figures["gradient_error"] < 1e-6
    assert figures["round_trip"] is True
    assert figures["ngspice_max_relative_error"] < 1e-4
    assert figures["ngspice_class_agreement"] == 1.0
    assert (tmp_path / "moons.npz").is_file() and (tmp_path / "moons.cir").is_file()
    json.dumps(figures["chip_report"])
