"""Named training tasks: a data set, a net shape and a training configuration.

These are the presets behind ``kirchhoff-sim train --task NAME``; every field can be
overridden from the command line. The figures they reach are in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ..solvers import DEFAULT_SOLVER
from .constraints import RECOMMENDED


@dataclass(frozen=True)
class Task:
    dataset: dict = field(default_factory=dict)     # load_dataset keywords
    net: dict = field(default_factory=dict)         # build_net keywords
    train: dict = field(default_factory=dict)       # TrainConfig keywords
    #: what changes when the task is trained against a technology profile (``--profile``):
    #: ``net`` and ``train`` overrides and HardwareConstraints keywords
    constrained: dict = field(default_factory=dict)
    #: what changes further when the profile names a process design kit (``--profile
    #: sky130``): the net is built of its cells, so the circuit trained is the circuit built
    cells: dict = field(default_factory=dict)


# Against a profile every conductance is 0 or within the window (≥ g_min = G0 for the
# default profile, a time constant C/g ≤ 1), so layers are short: at duration 0.05 the
# window's floor is g·Δt = 0.05, the median gain of the unconstrained nets. The latents
# are log-magnitudes with a real off zone (``log_window``): an Adam step moves a gain by
# about lr relative, so lr 1e-2 is a 1 % step at 1 µS as at 100 µS, and a device takes
# dead_zone/lr = 50 steps of one sign to switch off or on. Every device starts on near the
# floor (``init="on"``): the kaiming initial gains lie far below g_min, and a net that
# starts all off has an output independent of its input. Mismatch-aware at 10 %.
_CONSTRAINED = {"net": {"duration": 0.05}, "train": {"lr": 1e-2}, "constraints": dict(RECOMMENDED)}


# On the sky130 cells (profile sky130): the tanh cell's amplitude is 0.2-2 normalised and
# its slope ~0.67, so a node settles in about one unit of time: layers of duration 2.
# One cell per ordered node pair (repeat (1, 0): a cell's amplitude is signed) and 2 hidden
# nodes keep the net at 84 cells (2,016 transistors), which ngspice runs at transistor
# level in tens of seconds. The rails (±0.15 V, the cell's operating range) are a running
# cost: a tanh cell's current does not scale with V0, so V0 cannot be fitted afterwards.
_CELLS = {"net": {"device": "TanhCell", "hidden": 2, "duration": 2.0, "repeat": (1, 0)},
          "train": {"lr": 3e-2}, "constraints": {"rail_weight": 1.0}}

_ADAPTIVE = DEFAULT_SOLVER

TASKS = {
    "moons": Task(
        dataset={"n_samples": 2000},
        net={"hidden": 6, "layers": 2, "duration": 1.0, "device": "ShiftedReLU"},
        train={"epochs": 15, "batch_size": 32, "lr": 3e-2, "solver": _ADAPTIVE},
        constrained=_CONSTRAINED,
        cells=_CELLS,
    ),
    "circles": Task(
        dataset={"n_samples": 2000},
        net={"hidden": 6, "layers": 2, "duration": 1.0, "device": "ShiftedReLU"},
        train={"epochs": 15, "batch_size": 32, "lr": 3e-2, "solver": _ADAPTIVE},
        constrained=_CONSTRAINED,
    ),
    "digits": Task(
        net={"hidden": 20, "layers": 2, "duration": 1.0, "device": "ShiftedReLU",
             "topology": "neighbour_window", "image_shape": (8, 8), "window": 3},
        train={"epochs": 15, "batch_size": 64, "lr": 1e-2, "solver": _ADAPTIVE},
        constrained=_CONSTRAINED,
    ),
}


#: ``train --flow --task DENSITY``: the reference's toy-density flow (two layers of 0.5,
#: AffineTanh, 25 + 25 devices per node pair, Dopri5 at 1e-4 as its configs) on 4,096
#: points. The reference trains 5,000 epochs at lr 1e-3; 30 epochs at lr 5e-3 with the
#: cosine schedule get a fair two-moons density in minutes on 2 cores (README; lr 1e-2
#: ends at a test NLL 0.04 nats higher, lr 2e-2 overshoots in its first epoch).
FLOW_TASK = Task(
    dataset={"n_samples": 4096},
    net={"layers": 2, "duration": 0.5, "device": "AffineTanh", "repeat": (25, 25)},
    train={"epochs": 30, "batch_size": 256, "lr": 5e-3,
           "solver": {"method": "dopri5", "rtol": 1e-4, "atol": 1e-6}},
)


def task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
