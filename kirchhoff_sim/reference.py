"""Import of the published checkpoints of the reference implementation (Gao et al., ICCAD'24).

The reference code keeps each trained net in a results folder: ``config.yaml`` (the
architecture, the layers' time anchors, the solver settings and the test bench) and
``model.pth`` (a PyTorch state dict with one parameter tensor per layer,
``circuit.layer_list.<k>.model.param`` of shape ``(rows, E_k)``, one column per edge in
the order the topology generator lists them). :func:`import_reference` reads one folder
and builds the same net from this package's classes; ``kirchhoff-sim import-reference``
writes it as a model file.

What maps (reference → ours):

===============================  ===========================================  ===========
reference                        kirchhoff_sim                                rows read
===============================  ===========================================  ===========
``ShiftRelu1``                   :class:`~.devices.ShiftedReLU`               0, 1 of 2
``ShiftLeakyRelu1``              :class:`~.devices.ShiftedLeakyReLU`          0, 1 of 2
``ShiftRelu2``                   ``AffineActivation("relu")``                 0, 1, 2 of 3
``ShiftLeakyRelu2``              ``AffineActivation("leaky_relu")``           0, 1, 2 of 3
``ShiftTanh1``                   ``DifferenceActivation("tanh")``             0, 1 of 3
``ShiftTanh2``                   ``AffineActivation("tanh")``                 0, 1, 2 of 3
``Conductance``                  :class:`~.devices.Conductance`               0 of 3
``Device(negation=True, act)``   ``DifferenceActivation(act)``                0, 1 of 2
``Device(negation=False, act)``  ``AffineActivation(act)``                    0, 1, 2 of 3
``_fully_connect``               :func:`~.topology.fully_connected`           same order
``_mix_connect``                 :func:`~.topology.neighbour_window`          same order
``_simple_connect``              a chain ``i → i+1`` (built here)             same order
``simulation.t_end`` anchors     layer durations ``t_{k+1} − t_k``
``projector: lastK / firstK``    read-out nodes (a list composes them)
``fill: zeros``                  the default: nodes beyond the input start at 0 V
===============================  ===========================================  ===========

The reference's ``width`` is its row axis (it shapes an image ``(channels, width,
height)``), so its ``width``/``height`` become our ``height``/``width``. Some reference
devices store more parameter rows than they read (``ShiftTanh1`` stores 3 and reads 2,
``Conductance`` 3 and 1); only the rows read are imported. ``act`` is ``None``
(identity), ``relu``, ``leaky_relu`` (slope 0.01, torch's default), ``tanh`` or
``softplus``. torch's softplus returns ``z`` itself above ``z = 20`` (its ``threshold``),
ours is exact there, so the two differ by ``log(1 + e^-z) < 2.1e-9`` in that range.

Refused, with a :class:`~.errors.ModelFileError` naming the file and the field: an
encoder or an MLP or ``reshape`` projector (a network outside the circuit), residual
connections, ``fill: repeat`` where it matters, layers of different node counts, the
generators' ``padding`` and ``parallel`` options, ``_pregiven`` (a graph a YAML file
cannot hold), unknown devices, activations, generators, options or test benches, a
``t_end`` that does not give one positive span per layer, and a ``model.pth`` that is not
a state dict of finite real tensors of the right shapes (naming the key).

What the net is for follows the reference's script for its ``test_bench``:
``main_image_classify.py`` (classifiers and regressors, read out through the
projector), ``main_gen.py`` (flows trained on data: samples run forward from N(0, I),
the density of data runs in reverse) and ``main_den.py`` (flows trained against a
potential: samples and their log-density both run forward). The flow scripts build the
net with no projector, fill or residual whatever the config says, so those fields are
reported as ignored there. :func:`import_reference` returns this in its metadata.

``model.pth`` is read with ``torch.load(..., weights_only=True)`` only (never plain
pickle), so a checkpoint cannot run code; torch is imported when needed
(``pip install kirchhoff_sim[reference]``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import devices as _devices
from . import topology as _topology
from .checks import as_int
from .errors import KirchhoffError, MissingDependencyError, ModelFileError
from .fileio import check_input_file
from .modelfile import MAX_MODEL_BYTES, save_net
from .network import KirchhoffNet, Layer

__all__ = ["import_reference", "write_reference_model", "REFERENCE_DEVICES", "CONFIG_FILE", "STATE_FILE"]

CONFIG_FILE = "config.yaml"
STATE_FILE = "model.pth"
INSTALL_HINT = "pip install kirchhoff_sim[reference]"
REPOSITORY = "zhengqigao/kirchhoffnet"

#: a config.yaml is a page of text; anything far larger is not one (and YAML aliases
#: could make a small-looking file expand without limit)
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class _DeviceMap:
    """A reference device: our family, how many rows its parameter tensor stores and
    which of them its current reads, in our parameter order."""

    device: _devices.Device
    stored_rows: int
    used_rows: tuple


def _affine(act):
    return lambda: _DeviceMap(_devices.AffineActivation(act), 3, (0, 1, 2))


#: the reference's device classes without options, by their class names
REFERENCE_DEVICES = {
    "ShiftRelu1": lambda: _DeviceMap(_devices.ShiftedReLU(), 2, (0, 1)),
    "ShiftLeakyRelu1": lambda: _DeviceMap(_devices.ShiftedLeakyReLU(), 2, (0, 1)),
    "ShiftRelu2": _affine("relu"),
    "ShiftLeakyRelu2": _affine("leaky_relu"),
    "ShiftTanh1": lambda: _DeviceMap(_devices.DifferenceActivation("tanh"), 3, (0, 1)),
    "ShiftTanh2": _affine("tanh"),
    "Conductance": lambda: _DeviceMap(_devices.Conductance(), 3, (0,)),
}
#: the reference's generic ``Device(negation, activation)``: ``activation`` names a
#: ``torch.nn.functional`` function (None: identity); these are the ones we have
_ACTIVATIONS = {None: "identity", "relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh",
                "softplus": "softplus"}

# test benches by the script of the reference that trains and evaluates them
_CLASSIFIER_BENCHES = frozenset({"mnist", "cifar10", "cifar100", "svhn", "tinyimage"})
_REGRESSION_BENCHES = frozenset({"toyregress", "housing", "diabete"})
_DATA_FLOW_BENCHES = frozenset({"circle", "twomoon", "genmnist", "gauss", "swissroll", "2spirals",
                                "pinwheel", "8gaussians"})
_POTENTIAL_FLOW_BENCHES = frozenset({"potential1", "potential2"})
_KNOWN_BENCHES = _CLASSIFIER_BENCHES | _REGRESSION_BENCHES | _DATA_FLOW_BENCHES | _POTENTIAL_FLOW_BENCHES

_NETWORK_KEYS = frozenset({"adjoint", "encoder", "fill", "initialization", "model", "net_struct",
                           "projector", "residual"})
_PARAM_KEY = "circuit.layer_list.{}.model.param"
_PARAM_KEY_RE = re.compile(r"^circuit\.layer_list\.(\d+)\.model\.param$")


# ------------------------------------------------------------------------- public API
def import_reference(folder) -> tuple[KirchhoffNet, dict]:
    """Build the net of one results folder of the reference code.

    Parameters
    ----------
    folder : str or Path
        A folder holding the reference's ``config.yaml`` and ``model.pth``.

    Returns
    -------
    net : KirchhoffNet
        The same circuit: nodes, edges in the reference's order, parameters (the rows its
        devices read, as float64), one layer per time span. A classifier reads out its
        logits (the projector's nodes); a flow reads out every node.
    metadata : dict
        JSON-able: ``purpose`` (``classifier``, ``regressor`` or ``flow``), a
        ``classifier`` or ``flow`` entry saying how to use the net (read-out nodes and
        logits; data dimension, base density and the direction of sampling and of the
        density of data) and ``reference`` (the source folder, the device and its rows,
        each layer's generator and time span, the solver settings, and the config fields
        the reference's own script ignores).

    Raises
    ------
    ModelFileError
        A missing folder or file, a config or state dict this importer cannot map
        (naming the file and the field or key).
    MissingDependencyError
        torch or PyYAML is not installed.
    """
    folder = _check_folder(folder)
    config_path = check_input_file(folder / CONFIG_FILE, "reference config", ModelFileError)
    state_path = check_input_file(folder / STATE_FILE, "reference state dict", ModelFileError)
    arch = _Architecture.from_config(_read_config(config_path), config_path)
    params = _layer_parameters(_read_state_dict(state_path), arch, state_path)
    layers = [Layer(edges, arch.device.device, duration, p)
              for edges, duration, p in zip(arch.edges, arch.durations, params)]
    net = KirchhoffNet(layers, num_nodes=arch.num_nodes, input_nodes=arch.input_nodes,
                       readout=arch.readout, seed=0)
    return net, arch.metadata(folder, state_path, params)


def write_reference_model(folder, out):
    """Import ``folder`` (:func:`import_reference`) and write it to the model file
    ``out`` atomically; returns ``(path written, net, metadata)``."""
    net, metadata = import_reference(folder)
    return save_net(net, out, metadata=metadata), net, metadata


# ------------------------------------------------------------------------- files
def _check_folder(folder) -> Path:
    if isinstance(folder, str) and not folder.strip():
        raise ModelFileError("reference folder path is empty")
    path = Path(folder)
    if not path.exists():
        raise ModelFileError(f"reference folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise ModelFileError(f"reference folder {str(path)!r} is not a folder (give the results folder "
                             f"that holds {CONFIG_FILE} and {STATE_FILE})")
    return path


def _check_size(path: Path, limit: int) -> None:
    size = path.stat().st_size
    if size > limit:
        raise ModelFileError(f"{path}: {size} bytes, more than the {limit} a reference {path.name} can be; refused")


def _read_config(path: Path) -> dict:
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError(f"reading {CONFIG_FILE} needs PyYAML: {INSTALL_HINT} ({exc})") from None
    _check_size(path, MAX_CONFIG_BYTES)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise ModelFileError(f"{path}: not readable YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: holds {_kind(config)}, not the reference's configuration (a mapping)")
    return config


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(f"reading a PyTorch checkpoint ({STATE_FILE}) needs torch: "
                                     f"{INSTALL_HINT} ({exc})") from None
    return torch


def _read_state_dict(path: Path) -> dict:
    """``model.pth`` as ``{key: float64 array}``, every value checked to be a finite real
    tensor. Only ``weights_only`` loading: plain pickle could run code."""
    torch = _torch()
    _check_size(path, MAX_MODEL_BYTES)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:   # noqa: BLE001 - whatever an untrusted file makes the unpickler raise
        raise ModelFileError(f"{path}: not a PyTorch state dict torch can load with weights_only=True "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{path}: holds {_kind(state)}, not a state dict (a mapping of names to tensors)")
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise ModelFileError(f"{path}: state dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(f"{path}: state dict entry {key!r} holds {_kind(value)}, not a tensor")
        if value.layout != torch.strided or value.is_quantized:
            raise ModelFileError(f"{path}: state dict entry {key!r} is a {value.layout} "
                                 f"{'quantised ' if value.is_quantized else ''}tensor, not a dense one")
        if not value.is_floating_point():
            raise ModelFileError(f"{path}: state dict entry {key!r} has dtype {value.dtype}; device "
                                 f"parameters are real floating-point numbers")
        array = value.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
        bad = ~np.isfinite(array)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelFileError(f"{path}: state dict entry {key!r} has {int(bad.sum())} non-finite "
                                 f"value(s), the first at {where}: {array[where]}")
        arrays[key] = array
    return arrays


def _layer_parameters(state: dict, arch: "_Architecture", path: Path) -> list:
    """The rows each layer's device reads, ``(n_params, E_k)`` per layer."""
    for key in state:
        match = _PARAM_KEY_RE.match(key)
        if match and int(match.group(1)) < len(arch.edges):
            continue
        raise ModelFileError(f"{path}: state dict entry {key!r} is {_foreign_entry(key, match, arch)}; "
                             f"refused")
    params = []
    rows = arch.device.stored_rows
    for k, edges in enumerate(arch.edges):
        key = _PARAM_KEY.format(k)
        if key not in state:
            raise ModelFileError(f"{path}: state dict has no entry {key!r} (layer {k}'s parameters; "
                                 f"the config has {len(arch.edges)} layers)")
        array = state[key]
        if array.shape != (rows, len(edges)):
            raise ModelFileError(
                f"{path}: state dict entry {key!r} has shape {tuple(array.shape)}; {arch.device_name} "
                f"stores ({rows}, E) and layer {k} ({arch.generators[k]}) has E = {len(edges)} edges")
        params.append(np.ascontiguousarray(array[list(arch.device.used_rows)]))
    return params


def _foreign_entry(key: str, match, arch) -> str:
    if match:
        return f"the parameters of layer {match.group(1)}, but the config has only {len(arch.edges)} layers"
    if key.startswith("encoder."):
        return "part of an encoder (a network in front of the circuit), which a KirchhoffNet does not have"
    if key.startswith("projector."):
        return ("part of an MLP projector (a network after the circuit), which a KirchhoffNet does not "
                "have: it reads out node voltages")
    return "not an entry of the reference's CircuitNet (circuit.layer_list.<k>.model.param)"


def _kind(value) -> str:
    return "nothing (an empty file)" if value is None else f"a {type(value).__name__}"


# ------------------------------------------------------------------------- config
class _Config:
    """Reads the fields of one config file; every refusal names the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, name: str, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {name} {message}")

    def mapping(self, container: dict, key: str, name: str, default=None) -> dict:
        value = container.get(key, default)
        if not isinstance(value, dict):
            raise self.error(name, f"must be a mapping, got {_describe(value)}")
        return value

    def integer(self, value, name: str, minimum: int) -> int:
        return as_int(value, f"{self.path}: {name}", minimum=minimum, error=ModelFileError)

    def flag(self, value, name: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {_describe(value)}")
        return value

    def real(self, value, name: str) -> float:
        # the reference reads these with float(): YAML leaves '1e-3' (no dot) a string
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
            raise self.error(name, f"must be a number, got {_describe(value)}")
        try:
            number = float(value)
        except ValueError:
            raise self.error(name, f"must be a number, got {_describe(value)}") from None
        if not math.isfinite(number):
            raise self.error(name, f"must be finite, got {value!r}")
        return number

    def pair(self, value, name: str) -> tuple[int, int]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.error(name, f"must be a pair [a, b] of parallel-device counts, got {_describe(value)}")
        a, b = (self.integer(v, f"{name}[{i}]", 0) for i, v in enumerate(value))
        return a, b

    def args(self, args, name: str, required: set, optional: dict) -> dict:
        """``args`` with the defaults of ``optional`` filled in; unknown keys refused."""
        if not isinstance(args, dict):
            raise self.error(name, f"must be a mapping of arguments, got {_describe(args)}")
        unknown = sorted(set(args) - required - set(optional), key=str)
        if unknown:
            raise self.error(f"{name}.{unknown[0]}", f"is not an argument this importer knows for it "
                                                     f"(known: {', '.join(sorted(required | set(optional)))})")
        missing = sorted(required - set(args))
        if missing:
            raise self.error(name, f"lacks the argument {missing[0]!r}")
        return {**optional, **args}


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


@dataclass
class _Architecture:
    """What a config says: the device, one edge list and span per layer, the read-out."""

    purpose: str
    script: str
    test_bench: str
    device_name: str
    device: _DeviceMap
    edges: list
    generators: list
    durations: list
    t_end: list
    num_nodes: int
    input_width: int | None
    image_shape: list | None
    readout: np.ndarray
    solver: dict
    ignored: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict, path: Path) -> "_Architecture":
        c = _Config(path)
        bench = config.get("test_bench")
        if not isinstance(bench, str) or bench not in _KNOWN_BENCHES:
            raise c.error("test_bench", f"is {_describe(bench)}: not a test bench of the reference this "
                                        f"importer knows (known: {', '.join(sorted(_KNOWN_BENCHES))}); it "
                                        f"decides what the net is for")
        purpose, script = _purpose_of(bench)
        network = c.mapping(config, "network", "network")
        unknown = sorted(set(network) - _NETWORK_KEYS, key=str)
        if unknown:
            raise c.error(f"network.{unknown[0]}", "is not a reference option this importer knows; refused "
                                                   "rather than ignored")
        encoder = network.get("encoder")
        if encoder not in (None, "none"):
            raise c.error("network.encoder", f"is {_describe(encoder)}: an encoder (a network in front of "
                                             f"the circuit) is not supported — a KirchhoffNet is the circuit alone")
        device_name, device = _device_of(c, c.mapping(network, "model", "network.model"))
        structs = network.get("net_struct")
        if not isinstance(structs, list) or not structs:
            raise c.error("network.net_struct", f"must be a non-empty list of layers, got {_describe(structs)}")
        edges, generators, widths, images = [], [], [], []
        for k, struct in enumerate(structs):
            e, generator, width, image = _layer_edges(c, struct, f"network.net_struct[{k}]")
            edges.append(e)
            generators.append(generator)
            widths.append(width)
            images.append(image)
        counts = [int(e.max()) for e in edges]
        if len(set(counts)) > 1:
            raise c.error("network.net_struct", f"has layers of different node counts {counts}: the reference "
                                                f"pads or cuts the state between them, which one node set "
                                                f"cannot do; not supported")
        t_end, durations, solver = _time_spans(c, config, len(edges))
        num_nodes = counts[0]
        arch = cls(purpose=purpose, script=script, test_bench=bench, device_name=device_name, device=device,
                   edges=edges, generators=generators, durations=durations, t_end=t_end, num_nodes=num_nodes,
                   input_width=widths[0], image_shape=images[0], readout=np.arange(1, num_nodes + 1),
                   solver=solver)
        for key in ("adjoint", "initialization"):
            if key in network:
                arch.ignored[f"network.{key}"] = {"value": network[key], "why": "training only"}
        if purpose == "flow":
            for key in ("projector", "fill", "residual"):
                if key in network:
                    arch.ignored[f"network.{key}"] = {"value": network[key],
                                                      "why": f"{script} builds the net without it"}
            arch.input_width = num_nodes
        else:
            arch._circuit_options(c, network)
        return arch

    def _circuit_options(self, c: _Config, network: dict) -> None:
        """``residual``, ``fill`` and ``projector``, as ``main_image_classify.py`` uses them."""
        residual = network.get("residual")
        if residual is not None:
            raise c.error("network.residual", f"is {_describe(residual)}: residual connections (a layer's "
                                              f"output added to a later layer's) are not supported")
        fill = network.get("fill")
        if fill == "repeat":
            if self.input_width is None or self.input_width < self.num_nodes:
                raise c.error("network.fill", "is 'repeat': the reference repeats the input over the nodes "
                                              "beyond it; a KirchhoffNet writes each feature on one node and "
                                              "starts the others at 0 V (fill: zeros); not supported")
        elif fill not in (None, "zeros", "zero"):
            raise c.error("network.fill", f"is {_describe(fill)}, not a fill of the reference (zeros, repeat)")
        if self.input_width is not None and self.input_width > self.num_nodes:
            raise c.error("network.net_struct[0]", f"takes {self.input_width} inputs on {self.num_nodes} "
                                                   f"nodes; the reference would cut the input")
        self.readout = _projector_nodes(c, network.get("projector"), self.num_nodes)

    @property
    def input_nodes(self):
        return None if self.input_width is None else np.arange(1, self.input_width + 1)

    def metadata(self, folder: Path, state_path: Path, params: list) -> dict:
        used = self.device.used_rows
        reference = {
            "repository": REPOSITORY,
            "folder": str(folder),
            "name": folder.resolve().name,
            "test_bench": self.test_bench,
            "script": self.script,
            "device": {"reference": self.device_name, "ours": self.device.device.spec(),
                       "rows_stored": self.device.stored_rows, "rows_used": list(used),
                       "rows_ignored": [r for r in range(self.device.stored_rows) if r not in used]},
            "layers": [{"generator": g, "edges": len(e), "t_start": self.t_end[k], "t_end": self.t_end[k + 1],
                        "duration": self.durations[k]}
                       for k, (g, e) in enumerate(zip(self.generators, self.edges))],
            "t_end": self.t_end,
            "time_spans": self.durations,
            "num_nodes": self.num_nodes,
            "parameters": int(sum(p.size for p in params)),
            "solver": self.solver,
            "ignored": self.ignored,
        }
        meta = {"purpose": self.purpose, "reference": reference}
        if self.purpose == "flow":
            meta["flow"] = {
                "dim": self.num_nodes,
                "base": "standard normal",
                "sample_direction": "forward",
                "density_direction": "reverse" if self.script == "main_gen.py" else "forward",
                "trained_by": ("maximum likelihood of data (density of data by the reverse pass)"
                               if self.script == "main_gen.py"
                               else "reverse KL to an unnormalised potential (log-density of forward samples)"),
                "time_spans": self.durations,
            }
        else:
            meta[self.purpose] = {
                "readout_nodes": self.readout.tolist(),
                "outputs": ("logits: the read-out node voltages at T, one per class"
                            if self.purpose == "classifier" else "the read-out node voltages at T"),
                "input_width": self.input_width,
                "input_nodes": f"1..{'d' if self.input_width is None else self.input_width}, "
                               f"the other nodes start at 0 V",
                "image_shape": self.image_shape,
            }
        return meta


def _purpose_of(bench: str) -> tuple[str, str]:
    if bench in _CLASSIFIER_BENCHES:
        return "classifier", "main_image_classify.py"
    if bench in _REGRESSION_BENCHES:
        return "regressor", "main_image_classify.py"
    return "flow", "main_gen.py" if bench in _DATA_FLOW_BENCHES else "main_den.py"


def _device_of(c: _Config, model: dict) -> tuple[str, _DeviceMap]:
    name = model.get("name")
    args = model.get("args") or {}
    if name == "Device":
        args = c.args(args, "network.model.args", {"negation", "activation"}, {})
        negation = c.flag(args["negation"], "network.model.args.negation")
        act = args["activation"]
        if not (act is None or isinstance(act, str)) or act not in _ACTIVATIONS:
            raise c.error("network.model.args.activation",
                          f"is {_describe(act)}: not an activation this importer has (null, "
                          f"{', '.join(a for a in _ACTIVATIONS if a)})")
        if negation:
            return name, _DeviceMap(_devices.DifferenceActivation(_ACTIVATIONS[act]), 2, (0, 1))
        return name, _DeviceMap(_devices.AffineActivation(_ACTIVATIONS[act]), 3, (0, 1, 2))
    if not isinstance(name, str) or name not in REFERENCE_DEVICES:
        raise c.error("network.model.name", f"is {_describe(name)}: not a device of the reference this "
                                            f"importer knows (known: {', '.join([*REFERENCE_DEVICES, 'Device'])})")
    c.args(args, "network.model.args", set(), {})
    return name, REFERENCE_DEVICES[name]()


def _layer_edges(c: _Config, struct, name: str):
    """``(edges (E, 2), description, input width or None, image shape or None)`` of one
    ``net_struct`` entry, in the reference generator's edge order."""
    if not isinstance(struct, dict):
        raise c.error(name, f"must be a mapping with 'name' and 'args', got {_describe(struct)}")
    generator = struct.get("name")
    where = f"{name}.args"
    raw = struct.get("args") or {}
    try:
        if generator == "_fully_connect":
            args = c.args(raw, where, {"num_node"}, {"include_gnd": True, "repeat": [1, 1]})
            num_node = c.integer(args["num_node"], f"{where}.num_node", 2)
            include = c.flag(args["include_gnd"], f"{where}.include_gnd")
            repeat = c.pair(args["repeat"], f"{where}.repeat")
            edges = _topology.fully_connected(num_node, repeat=repeat, include_ground=include)
            return edges, f"_fully_connect(num_node={num_node}, include_gnd={include}, repeat={list(repeat)})", \
                None, None
        if generator == "_mix_connect":
            return _mix_connect_edges(c, raw, where)
        if generator == "_simple_connect":
            args = c.args(raw, where, {"num_node"}, {"include_gnd": True, "repeat": [1, 1]})
            num_node = c.integer(args["num_node"], f"{where}.num_node", 1)
            include = c.flag(args["include_gnd"], f"{where}.include_gnd")
            copies = c.pair(args["repeat"], f"{where}.repeat")[0]   # the reference reads repeat[0] only
            if copies < 1:
                raise c.error(f"{where}.repeat", "[0] must be at least 1 (no edges otherwise)")
            start = np.arange(0 if include else 1, num_node + (0 if include else 1))
            edges = np.repeat(np.stack([start, start + 1], axis=1), copies, axis=0)
            return edges, f"_simple_connect(num_node={num_node}, include_gnd={include}, repeat[0]={copies})", \
                None, None
    except ModelFileError:
        raise
    except KirchhoffError as exc:           # a generator refusing what the config asked of it
        raise c.error(where, f"cannot be built: {exc}") from None
    if generator == "_pregiven":
        raise c.error(f"{name}.name", "is '_pregiven': a layer copied from a given graph (a tensor of edges "
                                      "that a config file cannot hold) is not supported")
    raise c.error(f"{name}.name", f"is {_describe(generator)}: not a topology generator this importer knows "
                                  f"(_fully_connect, _mix_connect, _simple_connect)")


def _mix_connect_edges(c: _Config, raw, where: str):
    args = c.args(raw, where, {"num_channel", "width", "height", "neighbor_size", "fully_connect_node"},
                  {"repeat": [1, 0], "padding": False, "kernel_repeat": 1, "sharing": False, "parallel": 1})
    channels = c.integer(args["num_channel"], f"{where}.num_channel", 1)
    rows = c.integer(args["width"], f"{where}.width", 1)         # the reference's row axis
    cols = c.integer(args["height"], f"{where}.height", 1)
    window = c.integer(args["neighbor_size"], f"{where}.neighbor_size", 2)
    extra = c.integer(args["fully_connect_node"], f"{where}.fully_connect_node", 0)
    repeat = c.pair(args["repeat"], f"{where}.repeat")
    kernel_repeat = c.integer(args["kernel_repeat"], f"{where}.kernel_repeat", 1)
    c.flag(args["sharing"], f"{where}.sharing")   # changes only an index column the layers never read
    if args["padding"] is not False:
        raise c.error(f"{where}.padding", f"is {_describe(args['padding'])}: windows over a zero-padded "
                                          f"border are not supported")
    if c.integer(args["parallel"], f"{where}.parallel", 1) != 1:
        raise c.error(f"{where}.parallel", f"is {args['parallel']}: parallel copies of the window graph "
                                           f"are not supported")
    edges = _topology.neighbour_window(rows, cols, window, extra_nodes=extra, channels=channels, repeat=repeat)
    if kernel_repeat > 1:
        # the window pairs come first; the reference lists each kernel_repeat times in a row
        q = channels * window * window
        n_pairs = (rows - window + 1) * (cols - window + 1) * q * (q - 1)
        edges = np.concatenate([np.repeat(edges[:n_pairs], kernel_repeat, axis=0), edges[n_pairs:]])
    description = (f"_mix_connect(num_channel={channels}, width={rows}, height={cols}, neighbor_size={window}, "
                   f"fully_connect_node={extra}, repeat={list(repeat)}, kernel_repeat={kernel_repeat})")
    return edges, description, channels * rows * cols, [channels, rows, cols]


def _time_spans(c: _Config, config: dict, n_layers: int):
    """``(anchors, durations, solver settings)`` from ``simulation``."""
    sim = c.mapping(config, "simulation", "simulation")
    anchors = sim.get("t_end")
    if not isinstance(anchors, list):
        raise c.error("simulation.t_end", f"must be a list of time anchors, got {_describe(anchors)}")
    if len(anchors) != n_layers + 1:
        raise c.error("simulation.t_end", f"has {len(anchors)} anchors ({max(len(anchors) - 1, 0)} time spans) "
                                          f"but network.net_struct has {n_layers} layers: one span per layer")
    t_end = [c.real(t, f"simulation.t_end[{k}]") for k, t in enumerate(anchors)]
    durations = [b - a for a, b in zip(t_end[:-1], t_end[1:])]
    for k, d in enumerate(durations):
        if not d > 0:
            raise c.error("simulation.t_end", f"does not increase from anchor {k} to {k + 1} "
                                              f"({t_end[k]} → {t_end[k + 1]}): layer {k} needs a positive span")
    solver = {"method": sim.get("method")}
    for key in ("tol", "first_step", "min_step", "step_size"):
        if key in sim:
            solver[key] = c.real(sim[key], f"simulation.{key}")
    if "tol" in solver:
        solver["rtol"] = solver["atol"] = solver["tol"]    # the reference passes tol as both
    return t_end, durations, solver


def _projector_nodes(c: _Config, projector, num_nodes: int) -> np.ndarray:
    """The read-out nodes of the reference's ``projector`` (``lastK``/``firstK``, or a list
    of them applied in turn); ``none`` reads every node."""
    nodes = np.arange(1, num_nodes + 1)
    if projector is None or projector == "none":
        return nodes
    steps = projector if isinstance(projector, list) else [projector]
    for k, step in enumerate(steps):
        name = "network.projector" + (f"[{k}]" if isinstance(projector, list) else "")
        if not isinstance(step, str):
            raise c.error(name, f"is {_describe(step)}, not a projector keyword")
        match = re.fullmatch(r"(last|first)(\d+)", step)
        if match:
            count = int(match.group(2))
            if not 1 <= count <= len(nodes):
                raise c.error(name, f"is {step!r}: the read-out needs 1..{len(nodes)} nodes")
            nodes = nodes[-count:] if match.group(1) == "last" else nodes[:count]
        elif re.fullmatch(r"mlp_\d+_\d+", step):
            raise c.error(name, f"is {step!r}: an MLP projector (a network after the circuit) is not "
                                f"supported — a KirchhoffNet reads out node voltages")
        elif re.fullmatch(r"reshape\d+", step):
            raise c.error(name, f"is {step!r}: reshaping the node voltages into feature rows (for a network "
                                f"after the circuit) is not supported")
        else:
            raise c.error(name, f"is {step!r}: not a projector of the reference (none, lastK, firstK, "
                                f"mlp_A_B, reshapeK)")
    return nodes

