"""Regenerate the example netlists in ``netlists/`` from the example models.

Each example is a model trained with the README's command (``netlists/models/``) and
sample 0 of its test split, exported with ``kirchhoff-sim export`` in the physical units
of the model's technology profile: the default profile's V0 = 0.1 V, C0 = 100 fF,
G0 = 1 µS for the unconstrained nets, and for the ones trained against it
(``--profile default``, issue #10) the same with the V0 fitted at the end of training,
which keeps them within the rails. The test
``tests/test_netlists.py`` exports them again with exactly these arguments and fails when
a committed netlist differs, so a change to the compiler that alters the text shows up
as a stale netlist to regenerate and review.

Run:  .venv/bin/python scripts/regenerate_netlists.py [--train]

``--train`` retrains the models first (moons about a minute, digits about six); without
it a missing model is trained and an existing one is kept (the constrained digits net
takes about ten minutes).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from kirchhoff_sim import cli

ROOT = Path(__file__).resolve().parent.parent
NETLISTS = ROOT / "netlists"


@dataclass(frozen=True)
class Example:
    name: str
    task: str
    train_options: tuple = ()
    # ngspice options beyond the tight defaults: the digits net's 13,240 B sources take
    # ~3 minutes per sample at reltol 1e-6 and ~7 s at these, agreeing to ~1e-2 of the swing
    export_options: tuple = ()
    sample: int = 0

    @property
    def model(self) -> Path:
        return NETLISTS / "models" / f"{self.name}.npz"

    @property
    def netlist(self) -> Path:
        return NETLISTS / f"{self.name}.cir"

    def train_args(self) -> list:
        return ["train", "--task", self.task, "--out", str(self.model), *self.train_options]

    def export_args(self, output=None) -> list:
        output = self.netlist if output is None else output
        return ["export", str(self.model), "-o", str(output), "--sample", str(self.sample),
                *self.export_options]


_LOOSE = ("--reltol", "1e-3", "--max-step-fraction", "0.1")
_PROFILE = ("--profile", "default")
# a passive technology: conductances only (netlists/profiles/passive.json)
_PASSIVE = ("--profile", str(NETLISTS / "profiles" / "passive.json"), "--device", "Conductance")
EXAMPLES = (
    Example("moons", "moons"),
    Example("digits", "digits", export_options=_LOOSE),
    Example("moons_constrained", "moons", train_options=_PROFILE),
    Example("digits_constrained", "digits", train_options=_PROFILE, export_options=_LOOSE),
    Example("digits_passive", "digits", train_options=_PASSIVE, export_options=_LOOSE),
)


def _run(args: list) -> None:
    print("kirchhoff-sim " + " ".join(str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a
                                      for a in args), flush=True)
    if cli.main(args) != 0:
        sys.exit(f"kirchhoff-sim {args[0]} failed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="retrain the example models first")
    args = parser.parse_args(argv)
    for example in EXAMPLES:
        if args.train or not example.model.exists():
            _run(example.train_args())
        _run(example.export_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
