"""Named training tasks: a data set, a net shape and a training configuration.

These are the presets behind ``kirchhoff-sim train --task NAME``; every field can be
overridden from the command line. The figures they reach are in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ..solvers import DEFAULT_SOLVER


@dataclass(frozen=True)
class Task:
    dataset: dict = field(default_factory=dict)     # load_dataset keywords
    net: dict = field(default_factory=dict)         # build_net keywords
    train: dict = field(default_factory=dict)       # TrainConfig keywords


_ADAPTIVE = DEFAULT_SOLVER

TASKS = {
    "moons": Task(
        dataset={"n_samples": 2000},
        net={"hidden": 6, "layers": 2, "duration": 1.0, "device": "ShiftedReLU"},
        train={"epochs": 15, "batch_size": 32, "lr": 3e-2, "solver": _ADAPTIVE},
    ),
    "circles": Task(
        dataset={"n_samples": 2000},
        net={"hidden": 6, "layers": 2, "duration": 1.0, "device": "ShiftedReLU"},
        train={"epochs": 15, "batch_size": 32, "lr": 3e-2, "solver": _ADAPTIVE},
    ),
    "digits": Task(
        net={"hidden": 20, "layers": 2, "duration": 1.0, "device": "ShiftedReLU",
             "topology": "neighbour_window", "image_shape": (8, 8), "window": 3},
        train={"epochs": 15, "batch_size": 64, "lr": 1e-2, "solver": _ADAPTIVE},
    ),
}


def task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
