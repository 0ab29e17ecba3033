"""Monte Carlo of a transistor-level net under sky130's own mismatch models (issue #16).

The behavioural Monte Carlo (:mod:`kirchhoff_sim.hardware.montecarlo`) perturbs the
trained parameters by a σ we choose. Here the foundry chooses: each *instance* is one
chip, the netlist loaded with the corner's mismatch section of the PDK
(:data:`~kirchhoff_sim.cells.pdk.MISMATCH_CORNERS`, ``MC_MM_SWITCH=1``), in which every
transistor draws its own threshold, mobility and size deviations (SkyWater's Pelgrom
coefficients) from ngspice's random generator, seeded by ``.options seed=``. ngspice
draws them per instance in netlist order when it reads the circuit, before any
analysis, so one seed is the same chip for every input; instance ``k`` of a run seeded
``seed`` uses the ngspice seed :func:`instance_seed`\\ ``(seed, k)``.

Every (instance, sample) is one ngspice process, a task of the executor: a
:class:`~kirchhoff_sim.hardware.distributed.DaskRunner` (one ngspice at a time per
single-threaded worker, so a 2-worker local cluster runs two) or, serially, a
:class:`~kirchhoff_sim.executors.SerialRunner`. What travels is plain data: the
net as its model file's bytes, the characterisation as its JSON, the profile as its
dict and the PDK's paths (a remote worker needs the PDK at the same path).

Each chip is compared with the nominal design: the cell-model solver (the model the net
was trained on, at the design corner) on the same inputs, through the class decisions
and the read-out at ``T``, the shift as a fraction of the sample's swing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import as_int
from ..errors import InputError
from ..spice.runner import run_netlist
from .characterise import CellCharacterisation
from .pdk import PDK, check_corner

__all__ = ["TransistorMonteCarlo", "instance_seed", "transistor_monte_carlo"]

#: ngspice's seed is a C int; instance seeds are drawn in [1, MAX_SEED]
MAX_SEED = 2**31 - 1
#: time points of the nominal solver waveform the swing is measured on
SWING_POINTS = 200


def instance_seed(seed: int, instance: int) -> int:
    """The ngspice seed of chip ``instance`` of a run seeded ``seed``: independent
    streams per (seed, instance), as the behavioural Monte Carlo's trials."""
    state = np.random.SeedSequence([int(seed), int(instance)]).generate_state(1, dtype=np.uint32)[0]
    return int(state % MAX_SEED) + 1


def run_mismatch_sample(net, X, y, *, profile: dict, characterisation: str, pdk: dict, corner: str,
                        mismatch_seed: int, sample: int, points: int, reltol: float, timeout: float) -> dict:
    """One chip on one input, in ngspice (a task of the executor; plain arguments).

    Returns
    -------
    dict
        ``readout_v``: read-out voltages at ``T`` from ``vcm`` (V), ``energy_j``: energy
        the sources delivered (J), ``spice_seconds``.
    """
    from ..modelfile import received_net
    from ..technology import TechnologyProfile
    from .transistor import delivered_energy, node_voltages, to_transistor_netlist

    net = received_net(net)
    char = CellCharacterisation.from_json(characterisation, "characterisation")
    located = PDK(pdk["name"], Path(pdk["root"]), Path(pdk["library"]), pdk["version"], pdk["digest"])
    netlist = to_transistor_netlist(net, X[sample], TechnologyProfile.from_dict(profile), char, located,
                                    corner=corner, reltol=reltol, points=points, mismatch_seed=mismatch_seed,
                                    title=f"sample {sample}, mismatch seed {mismatch_seed}")
    result = run_netlist(netlist.text, timeout=timeout, trusted_libraries=(netlist.library,))
    v = node_voltages(result, netlist, char.design["vcm"])
    readout = np.asarray(net.readout) - 1
    return {"readout_v": v[-1, readout].tolist(), "energy_j": delivered_energy(result, char.design),
            "spice_seconds": float(result.elapsed)}


@dataclass
class TransistorMonteCarlo:
    """:func:`transistor_monte_carlo`'s result: ``K`` chips on ``B`` samples.

    Attributes
    ----------
    corner : str
        The process corner; the netlists load its mismatch section ``<corner>_mm``.
    seed : int
    seeds : list of int, length K
        ngspice seed of each chip.
    classes : ndarray of int, shape (K, B)
        Each chip's class decisions.
    nominal_classes : ndarray of int, shape (B,)
        The cell-model solver's (the nominal design).
    labels : ndarray of int, shape (B,) or None
    readout_shift : ndarray, shape (K, B)
        Largest |read-out at T − nominal| over the read-out nodes, as a fraction of the
        sample's swing.
    energy_j, spice_seconds : ndarray, shape (K, B)
    runner : str
        Where the runs went.
    wall_seconds : float
    """

    corner: str
    seed: int
    seeds: list
    classes: np.ndarray
    nominal_classes: np.ndarray
    labels: np.ndarray | None
    readout_shift: np.ndarray
    energy_j: np.ndarray
    spice_seconds: np.ndarray
    runner: str
    wall_seconds: float
    notes: list = field(default_factory=list)

    @property
    def agreement(self) -> np.ndarray:
        """Per chip, the fraction of samples whose class equals the nominal's, shape (K,)."""
        return np.mean(self.classes == self.nominal_classes[None, :], axis=1)

    @property
    def accuracy(self) -> np.ndarray | None:
        """Per chip, the accuracy against the labels, shape (K,) (None without labels)."""
        return None if self.labels is None else np.mean(self.classes == self.labels[None, :], axis=1)

    @property
    def nominal_accuracy(self) -> float | None:
        return None if self.labels is None else float(np.mean(self.nominal_classes == self.labels))

    def to_dict(self) -> dict:
        accuracy = self.accuracy
        return {"corner": self.corner, "library_section": f"{self.corner}_mm", "seed": self.seed,
                "instances": len(self.seeds), "samples": int(self.classes.shape[1]), "ngspice_seeds": list(self.seeds),
                "agreement": self.agreement.tolist(), "accuracy": None if accuracy is None else accuracy.tolist(),
                "nominal_accuracy": self.nominal_accuracy,
                "readout_shift_median": float(np.median(self.readout_shift)),
                "readout_shift_max": float(self.readout_shift.max()),
                "energy_j_mean": float(self.energy_j.mean()), "energy_j_std": float(self.energy_j.std()),
                "spice_seconds_mean": float(self.spice_seconds.mean()), "runner": self.runner,
                "wall_seconds": self.wall_seconds, "notes": list(self.notes)}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        k, b = self.classes.shape
        agreement = self.agreement
        text = (f"sky130 mismatch ({self.corner}_mm, {k} chips × {b} samples, seed {self.seed}, {self.runner}): "
                f"classes agree with the nominal design on {agreement.mean():.1%} (worst chip {agreement.min():.1%})")
        accuracy = self.accuracy
        if accuracy is not None:
            text += (f"; accuracy {accuracy.mean():.3f} ± {accuracy.std():.3f} (worst chip {accuracy.min():.3f}) "
                     f"against the nominal {self.nominal_accuracy:.3f}")
        energy = self.energy_j
        return text + (f"; read-out at T shifted by {np.median(self.readout_shift):.2%} of the swing (median, "
                       f"max {self.readout_shift.max():.2%}); energy {energy.mean():.4g} J ± {energy.std() / energy.mean():.1%}; "
                       f"ngspice {self.spice_seconds.mean():.1f} s per run, {self.wall_seconds:.0f} s in all")


def transistor_monte_carlo(net, X, y, profile, characterisation: CellCharacterisation, pdk: PDK, *,
                           instances: int, seed: int = 0, first_instance: int = 0, corner: str | None = None,
                           executor=None,
                           points: int = 250, reltol: float = 1e-4, timeout: float = 1800.0) -> TransistorMonteCarlo:
    """``instances`` chips of ``net`` under sky130's mismatch models, each on every row of ``X``.

    Parameters
    ----------
    net : KirchhoffNet
        TanhCell devices (trained against the sky130 profile).
    X : array_like, shape (B, d)
        Inputs (normalised volts).
    y : array_like of int, shape (B,), optional
        Labels, for the accuracy per chip.
    profile : TechnologyProfile
    characterisation : CellCharacterisation
        Of the design corner: the mapping of every chip (a chip is trimmed once, at design).
    pdk : PDK
    instances : int
        Chips, ≥ 1.
    seed : int
        Seed of the run, ≥ 0 (chip ``k`` uses the ngspice seed ``instance_seed(seed, k)``).
    first_instance : int
        Run chips ``first_instance … first_instance + instances − 1`` (a run in parts
        equals the whole run).
    corner : str, optional
        Default the profile's.
    executor : Runner, optional
        Where the ``instances × B`` ngspice runs go (a
        :class:`~kirchhoff_sim.hardware.distributed.DaskRunner`); default serial.
    points, reltol, timeout
        As :func:`~kirchhoff_sim.cells.transistor.validate_transistor`.

    Returns
    -------
    TransistorMonteCarlo

    Raises
    ------
    InputError
        Bad counts, seed, corner, or labels of the wrong length.
    CellMappingError, SpiceError, ClusterLostError
    """
    from ..executors import as_runner
    from ..solvers import Dopri5, simulate
    from .transistor import cell_model_net, map_cells

    instances = as_int(instances, "mismatch instances", minimum=1)
    seed = as_int(seed, "mismatch seed", minimum=0)
    first_instance = as_int(first_instance, "first mismatch instance", minimum=0)
    corner = check_corner(corner or profile.corner)
    X = np.atleast_2d(np.asarray(X, dtype=float))
    labels = None if y is None else np.asarray(y).astype(int).ravel()
    if labels is not None and labels.shape != (len(X),):
        raise InputError(f"labels have {labels.size} entries for {len(X)} samples")
    scale = profile.scale
    cells = map_cells(net, characterisation, scale)                 # refuses what no chip realises, here
    reference = cell_model_net(net, cells, characterisation, scale)
    solution = simulate(reference, X, solver=Dopri5(rtol=1e-8, atol=1e-10),
                        save_at=np.linspace(0.0, net.T, SWING_POINTS))
    v_nominal = np.asarray(solution.node_voltages) * scale.V0                    # (n_t, B, N), V from vcm
    swing = np.maximum(v_nominal.max(axis=(0, 2)) - v_nominal.min(axis=(0, 2)), 1e-300)
    readout = np.asarray(net.readout) - 1
    nominal_readout = v_nominal[-1][:, readout]                                  # (B, R)
    seeds = [instance_seed(seed, k) for k in range(first_instance, first_instance + instances)]
    common = {"profile": profile.to_dict(), "characterisation": characterisation.to_json(),
              "pdk": {"name": pdk.name, "root": str(pdk.root), "library": str(pdk.library), "version": pdk.version,
                      "digest": pdk.digest},
              "corner": corner, "points": int(points), "reltol": float(reltol), "timeout": float(timeout)}
    calls = [{**common, "mismatch_seed": s, "sample": i} for s in seeds for i in range(len(X))]
    runner = as_runner(executor)
    started = time.perf_counter()
    results = runner.map_calls(run_mismatch_sample, net, X, np.zeros(len(X)) if labels is None else labels, calls)
    wall = time.perf_counter() - started
    shape = (instances, len(X))
    readout_v = np.array([r["readout_v"] for r in results]).reshape(*shape, len(readout))
    return TransistorMonteCarlo(
        corner=corner, seed=seed, seeds=seeds, classes=np.argmax(readout_v, axis=2),
        nominal_classes=np.argmax(nominal_readout, axis=1), labels=labels,
        readout_shift=np.abs(readout_v - nominal_readout[None]).max(axis=2) / swing[None, :],
        energy_j=np.array([r["energy_j"] for r in results]).reshape(shape),
        spice_seconds=np.array([r["spice_seconds"] for r in results]).reshape(shape),
        runner=runner.description, wall_seconds=wall,
        notes=[f"each chip: the {corner}_mm section of {pdk.library.name} (every transistor with its own mismatch "
               f"draw), seeded by .options seed; nominal: the cell-model solver at the design corner"])
