"""Networks: layers (time slices of devices on edges) over one node set.

A :class:`Layer` is active for ``duration`` units of normalised time; it holds one or
more :class:`EdgeGroup` s — a device family, the edges it sits on, and their parameters.
A :class:`KirchhoffNet` is a list of layers over nodes ``0..N`` (0 = ground), a
capacitance per node, which nodes take the input and which are read out (DESIGN.md §2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import networkx as nx
import numpy as np

from . import devices as _devices
from .checks import as_int, as_positive, as_real_array
from .errors import GraphError, InputError, ParameterError


#: the most nodes a net may have: every node costs a row of the (N+1, B) state and an
#: entry of each per-node array, so a larger index is a mistake, refused before allocating
MAX_NODES = 10 ** 8
_UNTOUCHED_NODES_WARNING = r".*node\(s\) are touched by no edge"   # matches _warn_untouched


class FlatParameters:
    """The flat parameter vector of anything with a list of live ``parameters`` arrays
    (a :class:`KirchhoffNet`, a :class:`~kirchhoff_sim.kinn.KinnNet`): its length and
    its value, in the order of ``parameters``."""

    @property
    def num_params(self) -> int:
        return sum(p.size for p in self.parameters)

    def get_flat_params(self) -> np.ndarray:
        return np.concatenate([p.ravel() for p in self.parameters])


def check_finite_inputs(x: np.ndarray, first_row: int = 0) -> None:
    """Refuse non-finite input voltages ``x`` ``(B, d)``, naming the first bad one by its
    row ``first_row + b`` (so a chunk of a larger input names the row of the whole input).

    Raises
    ------
    InputError
        Some entry is NaN or infinite.
    """
    bad = ~np.isfinite(x)
    if bad.any():
        b, f = np.argwhere(bad)[0]
        raise InputError(f"input sample {first_row + b}, feature {f} is {x[b, f]} "
                         f"({int(bad.sum())} non-finite values)")


def as_batch(x) -> np.ndarray:
    """Input voltages as a float ``(B, d)`` array; one sample ``(d,)`` becomes ``(1, d)``.

    Raises
    ------
    InputError
        Not a real array (complex, strings, ragged), not finite, not 1-D or 2-D, or
        without a sample or without a feature.
    """
    x = as_real_array(x, "inputs", finite=False)   # non-finite entries: see initial_state
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"inputs must have shape (batch, features) with batch >= 1 and features >= 1, "
                         f"got {x.shape}")
    return x


def as_edge_array(edges, where: str = "") -> np.ndarray:
    """Validate an edge list and return it as an ``(E, 2)`` int64 array.

    Raises :class:`GraphError` for a wrong shape, non-integer or negative node indices,
    and self-loops (a device from a node to itself carries no current into KCL).
    """
    try:
        arr = np.asarray(edges)
    except (TypeError, ValueError):
        raise GraphError(f"{where}edges must be an (E, 2) array of (src, dst) node indices "
                         f"(ragged or mixed input)") from None
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise GraphError(f"{where}edges must have shape (E, 2) of (src, dst) pairs, got {arr.shape}")
    if arr.dtype.kind not in "iuf":       # complex, bool, strings and objects are not node indices
        raise GraphError(f"{where}edge node indices must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise GraphError(f"{where}edge node indices must be integers")
    if arr.size and (arr.max() > MAX_NODES):
        raise GraphError(f"{where}edge node index {int(arr.max())} is larger than the most nodes a net "
                         f"may have ({MAX_NODES})")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        e = int(np.argwhere((arr < 0).any(axis=1))[0, 0])
        raise GraphError(f"{where}edge {e} has a negative node index: {tuple(int(n) for n in arr[e])}")
    loops = arr[:, 0] == arr[:, 1]
    if loops.any():
        e = int(np.argmax(loops))
        raise GraphError(f"{where}edge {e} is a self-loop on node {int(arr[e, 0])} "
                         f"({int(loops.sum())} self-loops in all)")
    return arr


@dataclass(eq=False)
class EdgeGroup:
    """Edges that carry the same device family.

    Attributes
    ----------
    edges : ndarray, shape (E, 2)
        ``(src, dst)`` node indices; the current flows from src to dst.
    device : Device
    params : ndarray, shape (n_params, E), or None until the net initialises it
    """

    edges: np.ndarray
    device: _devices.Device
    params: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.device, _devices.Device):
            raise GraphError(f"device must be a kirchhoff_sim Device, got {self.device!r}")
        self.edges = as_edge_array(self.edges)
        if self.params is not None:
            # a copy, so that the group owns its parameters; complex, strings, dicts and
            # ragged rows are refused rather than cast
            self.params = np.array(as_real_array(self.params, "params", finite=False, error=ParameterError))
            self.device.check_params(self.params)
            if self.params.shape[1] != len(self.edges):
                raise ParameterError(
                    f"params have {self.params.shape[1]} columns but there are {len(self.edges)} edges"
                )

    @property
    def src(self) -> np.ndarray:
        return self.edges[:, 0]

    @property
    def dst(self) -> np.ndarray:
        return self.edges[:, 1]

    @property
    def num_edges(self) -> int:
        return len(self.edges)


def _layer_in(layer: "Layer", dtype) -> "Layer":
    """A copy of ``layer`` whose groups own ``dtype`` arrays for its parameters (filled from
    the live ones, and checked, by :meth:`KirchhoffNet.assemblies` at each run)."""
    copy = Layer.from_groups([EdgeGroup(g.edges, g.device, g.params) for g in layer.groups], layer.duration)
    for group in copy.groups:
        group.params = np.empty(group.params.shape, dtype=dtype)     # filled (and checked) at each run
    return copy


class Layer:
    """A time slice: the edge groups that are active for ``duration``.

    Build one from an edge list and one device (``Layer(edges, device)``), from several
    groups (:meth:`from_groups`) or from a networkx graph (:meth:`from_networkx`).

    Attributes
    ----------
    groups : list of EdgeGroup
    duration : float
        How long the layer is active (normalised time).
    """

    def __init__(self, edges, device=None, duration: float = 1.0, params=None):
        if device is None:
            raise GraphError("Layer(edges, device, ...) needs a device; "
                             "use Layer.from_groups for several device families")
        self.groups = [EdgeGroup(edges, device, params)]
        self.duration = self._check_duration(duration)

    @staticmethod
    def _check_duration(duration) -> float:
        return as_positive(duration, "layer duration")

    @classmethod
    def from_groups(cls, groups, duration: float = 1.0) -> "Layer":
        """A layer of several device families; ``groups`` are EdgeGroups or
        ``(edges, device[, params])`` tuples."""
        layer = cls.__new__(cls)
        layer.groups = [g if isinstance(g, EdgeGroup) else EdgeGroup(*g) for g in groups]
        if not layer.groups:
            raise GraphError("a layer needs at least one edge group")
        layer.duration = cls._check_duration(duration)
        return layer

    @classmethod
    def from_networkx(cls, graph, device=None, duration: float = 1.0, ground=0,
                      node_index: dict | None = None) -> "Layer":
        """Build a layer from a networkx (Multi)DiGraph.

        Each edge ``u→v`` becomes a device with current from ``u`` to ``v``. An edge
        attribute ``device`` overrides the ``device`` argument for that edge; an edge
        attribute ``params`` (a sequence of ``n_params`` numbers) sets its parameters —
        either every edge of a device family has ``params`` or none has.

        Node labels: integers are used as they are (0 = ground). Other labels need
        ``node_index`` (label → integer) or are numbered in sorted order after
        ``ground``, which becomes node 0.
        """
        if not isinstance(graph, nx.DiGraph):
            raise GraphError(
                f"from_networkx needs a directed graph (DiGraph or MultiDiGraph), got "
                f"{type(graph).__name__}: an undirected edge has no current direction"
            )
        index = cls._node_index(graph, ground, node_index)
        order: list[_devices.Device] = []
        rows: dict[_devices.Device, list] = {}
        for n, (u, v, data) in enumerate(graph.edges(data=True)):
            dev = data.get("device", device)
            if dev is None:
                raise GraphError(f"edge {n} ({u!r}→{v!r}) has no device and no default was given")
            if dev not in rows:
                order.append(dev)
                rows[dev] = []
            rows[dev].append((index[u], index[v], data.get("params")))
        groups = []
        for dev in order:
            entries = rows[dev]
            edges = [(s, d) for s, d, _ in entries]
            given = [p is not None for _, _, p in entries]
            if any(given) and not all(given):
                raise ParameterError(f"some {dev!r} edges have 'params' and some do not")
            params = None
            if all(given):
                rows_of = [np.atleast_1d(as_real_array(p, f"'params' of edge {src}→{dst}", finite=False,
                                                       error=ParameterError))
                           for src, dst, p in entries]
                lengths = {len(r) for r in rows_of}
                if len(lengths) != 1 or any(r.ndim != 1 for r in rows_of):
                    raise ParameterError(f"{dev!r} edges have 'params' of different lengths or shapes "
                                         f"{sorted(lengths)}")
                params = np.array(rows_of).T
            groups.append(EdgeGroup(edges, dev, params))
        if not groups:
            raise GraphError("the graph has no edges")
        return cls.from_groups(groups, duration)

    @staticmethod
    def _node_index(graph, ground, node_index):
        if node_index is not None:
            missing = [n for n in graph.nodes if n not in node_index]
            if missing:
                raise GraphError(f"node_index has no entry for nodes {missing[:5]}")
            return dict(node_index)
        labels = list(graph.nodes)
        if all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in labels):
            return {n: int(n) for n in labels}
        others = sorted((n for n in labels if n != ground), key=str)
        return {ground: 0, **{n: k + 1 for k, n in enumerate(others)}}

    def to_networkx(self) -> nx.MultiDiGraph:
        """The layer as a MultiDiGraph with ``device`` and ``params`` edge attributes."""
        graph = nx.MultiDiGraph()
        for group in self.groups:
            for e, (s, d) in enumerate(group.edges.tolist()):
                params = None if group.params is None else tuple(group.params[:, e].tolist())
                graph.add_edge(s, d, device=group.device, params=params)
        return graph

    @property
    def num_edges(self) -> int:
        return sum(g.num_edges for g in self.groups)

    @property
    def max_node(self) -> int:
        return max((int(g.edges.max()) for g in self.groups if g.num_edges), default=0)


class KirchhoffNet(FlatParameters):
    """A KirchhoffNet: layers of devices over nodes ``0..N`` with a capacitor per node.

    Parameters
    ----------
    layers : list of Layer
        Time slices, integrated one after the other; ``T = Σ duration``.
    num_nodes : int, optional
        Number of non-ground nodes ``N``; by default the largest node index in any layer.
    capacitance : float or array of shape (N,)
        Capacitance from each node to ground (normalised; default 1).
    input_nodes : sequence of int, optional
        Nodes that take the input. By default a ``d``-wide input sits on nodes ``1..d``.
    readout : int or sequence of int, optional
        The nodes read at ``T``: an int ``k`` means the last ``k`` nodes; by default all.
    seed : int
        Seed of the parameter initialisation (only groups without ``params`` are drawn).
    init : str
        Initialisation scheme, see :meth:`Device.init_params` (default ``kaiming``, the
        reference's).
    """

    def __init__(self, layers, num_nodes: int | None = None, capacitance=1.0,
                 input_nodes=None, readout=None, seed: int = 0, init: str = "kaiming"):
        if isinstance(layers, Layer):
            layers = [layers]
        self.layers = list(layers)
        if not self.layers or not all(isinstance(l, Layer) for l in self.layers):
            raise GraphError("a KirchhoffNet needs a non-empty list of Layer objects")
        highest = max(l.max_node for l in self.layers)
        self.num_nodes = highest if num_nodes is None else as_int(num_nodes, "num_nodes", minimum=1, maximum=MAX_NODES, error=GraphError)
        if self.num_nodes < 1:
            raise GraphError("the net has no non-ground node")
        for k, layer in enumerate(self.layers):
            for g, group in enumerate(layer.groups):
                if group.num_edges and group.edges.max() > self.num_nodes:
                    e = int(np.argmax(group.edges.max(axis=1)))
                    raise GraphError(
                        f"layer {k}, group {g}: edge {e} {tuple(int(n) for n in group.edges[e])} uses "
                        f"node {int(group.edges[e].max())} but the net has nodes 0..{self.num_nodes}"
                    )
        self.capacitance = self._check_capacitance(capacitance)
        self.input_nodes = None if input_nodes is None else self._check_nodes(input_nodes, "input_nodes")
        self.readout = self._resolve_readout(readout)
        if init not in _devices.INIT_SCHEMES:
            raise InputError(f"unknown initialisation {init!r}; choose one of {', '.join(_devices.INIT_SCHEMES)}")
        self.seed, self.init = seed, init
        rng = np.random.default_rng(seed)
        for k, layer in enumerate(self.layers):
            for g, group in enumerate(layer.groups):
                if group.params is None:
                    group.params = group.device.init_params(rng, group.num_edges, init)
                group.device.check_params(group.params, f"layer {k}, group {g}: ")
        self._warn_untouched()
        self._assemblies = None
        self._working_assemblies = {}      # dtype -> assemblies of single-precision copies

    # ------------------------------------------------------------------ validation
    def _check_capacitance(self, capacitance) -> np.ndarray:
        cap = np.broadcast_to(np.asarray(capacitance, dtype=float), (self.num_nodes,)).copy() \
            if np.ndim(capacitance) == 0 else np.asarray(capacitance, dtype=float)
        if cap.shape != (self.num_nodes,):
            raise InputError(f"capacitance must be a scalar or have shape ({self.num_nodes},), got {cap.shape}")
        bad = ~(np.isfinite(cap) & (cap > 0))
        if bad.any():
            n = int(np.argmax(bad)) + 1
            raise InputError(f"capacitance of node {n} is {cap[n - 1]}; every node needs a finite C > 0")
        return cap

    def _check_nodes(self, nodes, name) -> np.ndarray:
        arr = np.asarray(nodes)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{name} must be a non-empty 1-D sequence of node indices, got {nodes!r}")
        if arr.min() < 1 or arr.max() > self.num_nodes:
            raise InputError(f"{name} must lie in 1..{self.num_nodes} (ground 0 cannot be set or read), got {arr.tolist()[:10]}")
        if len(np.unique(arr)) != len(arr):
            raise InputError(f"{name} lists a node twice")
        return arr.astype(np.int64)

    def _resolve_readout(self, readout) -> np.ndarray:
        if readout is None:
            return np.arange(1, self.num_nodes + 1)
        if np.ndim(readout) == 0:
            k = as_int(readout, "readout")
            if not 1 <= k <= self.num_nodes:
                raise InputError(f"readout={readout} must be between 1 and {self.num_nodes}")
            return np.arange(self.num_nodes - k + 1, self.num_nodes + 1)
        return self._check_nodes(readout, "readout")

    def _warn_untouched(self):
        touched = np.zeros(self.num_nodes + 1, bool)
        for layer in self.layers:
            for group in layer.groups:
                touched[group.edges.ravel()] = True
        lonely = np.flatnonzero(~touched[1:]) + 1
        if lonely.size:
            warnings.warn(
                f"{lonely.size} node(s) are touched by no edge in any layer and keep their "
                f"initial voltage: {lonely[:10].tolist()}{' ...' if lonely.size > 10 else ''}",
                stacklevel=3,
            )

    # ------------------------------------------------------------------ properties
    @property
    def T(self) -> float:
        """Read-out time: the sum of the layer durations."""
        return float(sum(l.duration for l in self.layers))

    @property
    def layer_boundaries(self) -> np.ndarray:
        """Start and end times of the layers, shape (n_layers + 1,)."""
        return np.concatenate([[0.0], np.cumsum([l.duration for l in self.layers])])

    @property
    def input_width(self) -> int | None:
        """Number of input features the net takes: ``len(input_nodes)``, or ``None`` when
        the input nodes are left open (a ``d``-wide input then sits on nodes ``1..d``)."""
        return None if self.input_nodes is None else len(self.input_nodes)

    @property
    def num_edges(self) -> int:
        return sum(l.num_edges for l in self.layers)

    @property
    def groups(self) -> list[EdgeGroup]:
        """All edge groups, layer by layer."""
        return [g for l in self.layers for g in l.groups]

    @property
    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays ``(n_params, E)`` of every group (live, not copies)."""
        return [g.params for g in self.groups]


    def set_flat_params(self, flat) -> None:
        flat = np.asarray(flat, dtype=float)
        if flat.shape != (self.num_params,):
            raise ParameterError(f"expected {self.num_params} parameters, got shape {flat.shape}")
        pieces, offset = [], 0
        for k, group in enumerate(self.groups):     # check every group before changing any
            n = group.params.size
            new = flat[offset:offset + n].reshape(group.params.shape)
            group.device.check_params(new, f"group {k}: ")
            pieces.append(new)
            offset += n
        for group, new in zip(self.groups, pieces):
            group.params[...] = new

    # ------------------------------------------------------------------ state
    def check_input_width(self, width: int) -> None:
        """Refuse an input of ``width`` features that this net cannot take.

        Raises
        ------
        InputError
            ``width`` differs from ``len(input_nodes)``, or (input nodes left open) exceeds
            the number of nodes.
        """
        if self.input_nodes is not None and width != len(self.input_nodes):
            raise InputError(f"input has {width} features but the net takes {len(self.input_nodes)} input nodes")
        if width > self.num_nodes:
            raise InputError(f"input has {width} features but the net has only {self.num_nodes} nodes")

    def initial_state(self, x) -> np.ndarray:
        """Node voltages at t=0 for input ``x``: shape (N+1, B), row 0 is ground.

        ``x`` of shape ``(B, d)`` (or ``(d,)`` for one sample) is written on
        ``input_nodes`` (default ``1..d``); every other node starts at 0 V.
        """
        x = as_batch(x)
        self.check_input_width(x.shape[1])
        check_finite_inputs(x)
        nodes = self.input_nodes if self.input_nodes is not None else np.arange(1, x.shape[1] + 1)
        state = np.zeros((self.num_nodes + 1, x.shape[0]))
        state[nodes] = x.T
        return state

    def assemblies(self, dtype=None):
        """The compiled gather/scatter structure of every layer (built once, cached).

        Parameters
        ----------
        dtype : {None, "float64", "float32"}
            The working precision (:mod:`kirchhoff_sim.solvers.precision`). In float64
            (default) the assemblies read the live parameters at every call. In float32
            they hold single-precision copies of the structure (cached) and of the
            parameters, rounded from the live ones at this call: call it again after the
            parameters change.

        Raises
        ------
        InputError
            An unknown dtype.
        """
        from .assembly import LayerAssembly
        from .solvers.precision import as_dtype

        dtype = as_dtype(dtype)
        if dtype == np.float64:
            if self._assemblies is None:
                self._assemblies = [LayerAssembly(layer, self.num_nodes, self.capacitance)
                                    for layer in self.layers]
            return self._assemblies
        # (a net saved before the attribute existed gets it here)
        working = self.__dict__.setdefault("_working_assemblies", {})
        if dtype not in working:
            working[dtype] = [LayerAssembly(_layer_in(layer, dtype), self.num_nodes, self.capacitance, dtype=dtype)
                              for layer in self.layers]
        for k, (assembly, layer) in enumerate(zip(working[dtype], self.layers)):
            for g, (copy, live) in enumerate(zip(assembly.groups, layer.groups)):
                with np.errstate(over="ignore"):
                    np.copyto(copy.params, live.params, casting="same_kind")
                overflow = ~np.isfinite(copy.params) & np.isfinite(live.params)
                if overflow.any():
                    row, edge = np.argwhere(overflow)[0]
                    raise ParameterError(f"layer {k}, group {g}: parameter {live.device.param_names[row]} of edge "
                                         f"{edge} is {live.params[row, edge]:g}, beyond float32's range "
                                         f"(±{np.finfo(dtype).max:.3g}); run it in float64")
        return working[dtype]

    # ------------------------------------------------------------------ running
    def forward(self, x, solver=None) -> np.ndarray:
        """Read-out voltages at ``T`` for a batch of inputs, shape ``(B, n_readout)``."""
        from .solvers import simulate

        return simulate(self, x, solver=solver).final_state[:, self.readout - 1]

    # ------------------------------------------------------------------ copies
    def with_parameters(self, params=None, *, capacitance=None, input_nodes=None) -> "KirchhoffNet":
        """A new net with this net's topology and the given parameters.

        Parameters
        ----------
        params : list of ndarray, optional
            One ``(n_params, E_g)`` array per group, in the order of :attr:`parameters`.
        capacitance : float or ndarray of shape (N,), optional
        input_nodes : sequence of int, optional
            ``None`` keeps this net's value for each.

        The arrays are copied and validated as any net's are; this net is not changed.
        Saving and loading live in :mod:`kirchhoff_sim.modelfile` (``save_net``,
        ``load_net``).

        Raises
        ------
        ParameterError
            A parameter array of the wrong shape or with non-finite entries.
        InputError
            Bad capacitance or input nodes.
        """
        params = list(self.parameters if params is None else params)
        if len(params) != len(self.groups):
            raise ParameterError(f"with_parameters needs {len(self.groups)} parameter arrays (one per "
                                 f"group), got {len(params)}")
        arrays = iter(params)
        layers = [Layer.from_groups([EdgeGroup(g.edges, g.device, np.array(next(arrays), dtype=float))
                                     for g in layer.groups], layer.duration)
                  for layer in self.layers]
        with warnings.catch_warnings():
            # this net warned about its untouched nodes already; its copies need not
            warnings.filterwarnings("ignore", message=_UNTOUCHED_NODES_WARNING, category=UserWarning)
            return KirchhoffNet(layers, num_nodes=self.num_nodes,
                                capacitance=self.capacitance if capacitance is None else capacitance,
                                input_nodes=self.input_nodes if input_nodes is None else input_nodes,
                                readout=self.readout, seed=self.seed, init=self.init)

    def __repr__(self) -> str:
        return (f"KirchhoffNet(N={self.num_nodes}, layers={len(self.layers)}, "
                f"edges={self.num_edges}, params={self.num_params}, T={self.T:g})")
