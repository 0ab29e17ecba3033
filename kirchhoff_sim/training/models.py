"""Ready-made KirchhoffNet architectures for classification and regression.

A *pure* KirchhoffNet: the input is written on the first nodes, the output is read off
the last nodes at ``T``, and there is no linear or convolution layer outside the circuit.

* ``topology="fully_connected"`` — every ordered pair of nodes (ground included) carries
  ``repeat`` devices: inputs, ``hidden`` internal nodes and the outputs (the reference
  classifier for low-dimensional data);
* ``topology="neighbour_window"`` — the reference's image topology
  (:func:`~kirchhoff_sim.topology.neighbour_window`) over an ``image_shape`` input,
  with ``hidden + n_outputs`` projection nodes whose last ``n_outputs`` are read out.
"""

from __future__ import annotations

import numpy as np

from .. import devices as _devices
from .. import topology as _topology
from ..checks import as_int
from ..errors import InputError
from ..network import KirchhoffNet, Layer


def build_net(n_features: int, n_outputs: int, *, hidden: int = 8, layers: int = 2,
              duration: float = 1.0, device="ShiftedReLU", topology: str = "fully_connected",
              image_shape=None, window: int = 3, repeat=(1, 1), init: str = "kaiming",
              seed: int = 0) -> KirchhoffNet:
    """A KirchhoffNet with ``n_features`` input nodes and ``n_outputs`` read-out nodes.

    ``device`` is a Device or a family name (``"ShiftedReLU"``, ``"AffineActivation"``
    with tanh, ...).
    """
    n_features = as_int(n_features, "n_features", minimum=1)
    n_outputs = as_int(n_outputs, "n_outputs", minimum=1)
    hidden = as_int(hidden, "hidden", minimum=0)
    layers = as_int(layers, "layers", minimum=1)
    if isinstance(device, str):
        device = _devices.from_spec({"family": device})
    if topology == "fully_connected":
        num_nodes = n_features + hidden + n_outputs
        edges = _topology.fully_connected(num_nodes + 1, repeat=repeat)
    elif topology == "neighbour_window":
        if image_shape is None or len(image_shape) != 2 or image_shape[0] * image_shape[1] != n_features:
            raise InputError(f"neighbour_window needs image_shape (height, width) with height·width = "
                             f"{n_features}, got {image_shape}")
        edges = _topology.neighbour_window(image_shape[0], image_shape[1], window,
                                           extra_nodes=hidden + n_outputs, repeat=repeat)
        num_nodes = n_features + hidden + n_outputs
    else:
        raise InputError(f"topology must be 'fully_connected' or 'neighbour_window', got {topology!r}")
    # the input nodes are recorded, so the model refuses inputs of another width
    return KirchhoffNet([Layer(edges, device, duration) for _ in range(layers)],
                        num_nodes=num_nodes, input_nodes=np.arange(1, n_features + 1),
                        readout=n_outputs, seed=seed, init=init)


def build_flow_net(dim: int, *, layers: int = 2, duration: float = 0.5, device="AffineTanh",
                   repeat=(25, 25), init: str = "kaiming", seed: int = 0) -> KirchhoffNet:
    """A flow (:mod:`kirchhoff_sim.flows`): ``dim`` nodes, every one a coordinate of the
    data, fully connected with ground and ``repeat`` devices per ordered pair; the
    reference's toy-density nets are ``dim=2``, two layers of 0.5, ``AffineTanh``,
    ``repeat=(25, 25)`` (300 edges a layer)."""
    dim = as_int(dim, "dim", minimum=1)
    layers = as_int(layers, "layers", minimum=1)
    if isinstance(device, str):
        device = _devices.AffineTanh() if device == "AffineTanh" else _devices.from_spec({"family": device})
    edges = _topology.fully_connected(dim + 1, repeat=repeat)
    return KirchhoffNet([Layer(edges, device, duration) for _ in range(layers)], num_nodes=dim,
                        input_nodes=np.arange(1, dim + 1), readout=dim, seed=seed, init=init)
