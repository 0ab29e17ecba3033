"""The assembler: KCL for one layer, as gather → device → scatter.

For a layer with edges ``e = 1..E`` from ``src[e]`` to ``dst[e]`` the network ODE is
(DESIGN.md §1)

    C dv/dt = Aᵀ i(v, θ),     A[e, dst[e]] = +1,  A[e, src[e]] = −1,

with ground's KCL row dropped. Node voltages are held as an ``(N+1, B)`` array whose
row 0 is ground and always zero, so a row of V is one node for the whole batch.

Every device's current is ``r(z; p)`` of one input ``z = w_src·vs + w_dst·vd + bias``
(:class:`~kirchhoff_sim.devices.Device`). The right-hand side is evaluated a chunk of
edges at a time: ``Z = W V`` (a sparse product with two entries a row, which gathers and
combines in one pass), ``I = r(Z)``, and ``Aᵀ I`` (a sparse product with ``Aᵀ``'s
columns of the chunk, whose ground row is empty so ``dV[0]`` stays 0). Chunks keep the
``(E_c, B)`` temporaries in cache.

Implicit solvers need the conductance matrix ``K = ∂(Aᵀ i)/∂v`` of every sample. Each
edge stamps four entries — ``K[dst,src] += gs``, ``K[dst,dst] += gd``,
``K[src,src] −= gs``, ``K[src,dst] −= gd`` with ``gs = ∂i/∂vs``, ``gd = ∂i/∂vd`` — as
SPICE's matrix stamps do. :class:`StampPattern` turns those stamps into one sparse
summation matrix, built once, so the values of all ``B`` matrices come from one
sparse product; the same pattern feeds the dense batched solver and the block-diagonal
sparse LU.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import kernels
from .devices import Device
from .errors import InputError

CHUNK_ELEMENTS = 1 << 19   # edges × batch per chunk: 4 MiB float64 temporaries


class LayerAssembly:
    """Gather/scatter structure of one layer, built once from its topology.

    Parameters are read from the layer's groups at every call, so an optimiser can update
    them in place.

    Attributes
    ----------
    src, dst : ndarray, shape (E,)
        Edge end nodes over all groups, concatenated.
    scatter : scipy.sparse.csr_matrix, shape (N+1, E)
        ``Aᵀ`` with an empty ground row.
    inv_capacitance : ndarray, shape (N+1, 1)
        ``1/C_n``, and 0 for ground.
    dtype : numpy.dtype
        The working precision of every array it builds and of the state it takes (float64,
        or float32 for a layer whose groups hold float32 parameters:
        :meth:`KirchhoffNet.assemblies <kirchhoff_sim.network.KirchhoffNet.assemblies>`).
    """

    def __init__(self, layer, num_nodes: int, capacitance: np.ndarray, dtype=np.float64):
        self.layer = layer
        self.num_nodes = num_nodes
        self.groups = layer.groups
        edges = np.concatenate([g.edges for g in layer.groups])
        self.src = np.ascontiguousarray(edges[:, 0])
        self.dst = np.ascontiguousarray(edges[:, 1])
        bounds = np.cumsum([0] + [g.num_edges for g in layer.groups])
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self.num_edges = len(self.src)
        self.dtype = np.dtype(dtype)
        self.scatter = incidence_transpose(self.src, self.dst, num_nodes).astype(self.dtype)
        self.capacitance = np.asarray(capacitance, float)
        self.inv_capacitance = np.concatenate([[0.0], 1.0 / self.capacitance])[:, None].astype(self.dtype)
        self._chunk_cache = {}
        self._pattern = None

    # ------------------------------------------------------------------ forward
    def chunks(self, batch: int) -> list["_Chunk"]:
        """The layer's edges cut into cache-sized runs of one group each (cached per batch).

        Evaluating ``gather → device → scatter`` a chunk at a time keeps every ``(E_c, B)``
        temporary in cache and on the heap: on the MNIST-sized net this is several times
        faster than whole-array passes over ~0.5 GB temporaries.
        """
        if batch not in self._chunk_cache:
            size = max(64, CHUNK_ELEMENTS // max(batch, 1))
            chunks = []
            for index, (g, sl) in enumerate(zip(self.groups, self.slices)):
                for a in range(sl.start, sl.stop, size):
                    b = min(a + size, sl.stop)
                    chunks.append(_Chunk(g, index, slice(a, b), slice(a - sl.start, b - sl.start),
                                         self.src[a:b], self.dst[a:b],
                                         self.scatter[:, a:b].tocsr(), self.num_nodes, self.dtype))
            self._chunk_cache = {batch: chunks}
        return self._chunk_cache[batch]

    def edge_currents(self, V: np.ndarray) -> np.ndarray:
        """Current of every edge, src → dst: ``(E, B)`` for node voltages ``V`` ``(N+1, B)``."""
        current = np.empty((self.num_edges, V.shape[1]), dtype=self.dtype)
        for chunk in self.chunks(V.shape[1]):
            current[chunk.edges] = chunk.currents(V)
        return current

    def node_currents(self, I: np.ndarray) -> np.ndarray:
        """Net current into every node, ``Aᵀ I``: ``(N+1, B)`` with a zero ground row."""
        return self.scatter @ I

    def rhs(self, V: np.ndarray) -> np.ndarray:
        """``dV/dt = C⁻¹ Aᵀ i(V)``, shape ``(N+1, B)`` (ground row zero).

        With the numba backend (:mod:`kirchhoff_sim.kernels`) every chunk whose family has
        a kernel is gathered, evaluated and scattered in one compiled loop.
        """
        self._check_state(V)
        fused = kernels.backend() == "numba"
        if fused:
            V = np.ascontiguousarray(V, dtype=self.dtype)
        total = np.zeros_like(V)
        if fused:
            for g, _, edges, local in self.kernel_runs(None):
                kernels._rhs_into(total, V, self.src[edges], self.dst[edges], g.device, g.params[:, local])
        for chunk in self.chunks(V.shape[1]):
            if not (fused and kernels.supports(chunk.group.device)):
                total += chunk.scatter @ chunk.currents(V)
        total *= self.inv_capacitance
        return total

    def _check_state(self, V, other=None, other_name: str = "") -> None:
        """Refuse node voltages (and a cotangent or tangent beside them) that are not
        ``(N+1, B)``: the compiled loops read ``V[src]``, ``V[dst]`` without bounds checks.

        Raises
        ------
        InputError
        """
        shape = np.shape(V)
        if len(shape) != 2 or shape[0] != self.num_nodes + 1 or (other is not None and np.shape(other) != shape):
            also = "" if other is None else f" and {other_name} {np.shape(other)}"
            raise InputError(f"node voltages{' and ' + other_name if other is not None else ''} must have "
                             f"shape (N+1, B) = ({self.num_nodes + 1}, B), got {shape}{also}")
        for what, a in (("node voltages", V), (other_name, other)):
            if a is not None and getattr(a, "dtype", np.dtype(object)).kind != "f":
                raise InputError(f"{what} must be a real floating array, got "
                                 f"{getattr(a, 'dtype', type(a).__name__)}")
            if a is not None and self.dtype != np.float64 and a.dtype != self.dtype:
                # a wider array would silently promote the whole run back to float64
                raise InputError(f"{what} must be {self.dtype.name} like this {self.dtype.name} assembly, "
                                 f"got {a.dtype}")

    def _check_group_arrays(self, arrays, name: str) -> None:
        """Refuse per-group parameter arrays (cotangents, directions) that are not one
        ``(n_params, E_g)`` array per group of the layer (None passes).

        Raises
        ------
        InputError
        """
        if arrays is None:
            return
        shapes = [g.params.shape for g in self.groups]
        if len(arrays) != len(shapes) or any(np.shape(a) != shape for a, shape in zip(arrays, shapes)):
            raise InputError(f"{name} must hold one array per group of shapes {shapes}, got "
                             f"{[np.shape(a) for a in arrays]}")

    def kernel_runs(self, max_edges: int | None) -> list:
        """``[(group, index, edges, local)]``: the runs of edges of the groups with a
        compiled kernel (:mod:`kirchhoff_sim.kernels`), each a whole group or at most
        ``max_edges`` of it. The kernels keep no ``(E, B)`` temporaries, so a whole group
        is one call — one start of the thread pool, not one a cache-sized chunk."""
        runs = []
        for index, (g, sl) in enumerate(zip(self.groups, self.slices)):
            if not kernels.supports(g.device) or g.num_edges == 0:
                continue
            size = g.num_edges if max_edges is None else max(1, max_edges)
            for a in range(0, g.num_edges, size):
                b = min(a + size, g.num_edges)
                runs.append((g, index, slice(sl.start + a, sl.start + b), slice(a, b)))
        return runs

    def gather(self, V):
        """``(V[src], V[dst])``, each ``(E, B)``."""
        return np.take(V, self.src, axis=0), np.take(V, self.dst, axis=0)

    def linearise(self, V: np.ndarray, params: bool = True):
        """Edge currents and their derivatives at ``V`` (``di_dp`` only if ``params``).

        Returns
        -------
        current, di_dvs, di_dvd : ndarray, shape (E, B)
        di_dp : list of tuple, per group one ``(E_g, B)`` array per parameter (empty if not ``params``)
        """
        vs, vd = self.gather(V)
        shape = vs.shape
        current, gs, gd = (np.empty(shape, dtype=self.dtype) for _ in range(3))
        di_dp = []
        for g, sl in zip(self.groups, self.slices):
            lin = g.device.linearise(vs[sl], vd[sl], g.params[:, :, None], params)
            current[sl], gs[sl], gd[sl] = lin.current, lin.di_dvs, lin.di_dvd
            if params:
                di_dp.append(tuple(np.broadcast_to(d, vs[sl].shape) for d in lin.di_dp))
        return current, gs, gd, di_dp

    @property
    def limiting(self) -> bool:
        """Whether any device of the layer limits its input between Newton iterations
        (:meth:`Device.limit_input <kirchhoff_sim.devices.Device.limit_input>`)."""
        return any(_limits(g.device) for g in self.groups)

    def device_inputs(self, V: np.ndarray) -> list:
        """Per group the device inputs ``z = w_src·vs + w_dst·vd + bias`` ``(E_g, B)``,
        or None for a group whose device does not limit its input (nothing to remember)."""
        vs, vd = self.gather(V)
        out = []
        for g, sl in zip(self.groups, self.slices):
            if _limits(g.device):
                w_src, w_dst, bias = g.device.input_weights(g.params[:, :, None])
                out.append(w_src * vs[sl] + w_dst * vd[sl] + bias)
            else:
                out.append(None)
        return out

    def linearise_limited(self, V: np.ndarray, z_previous: list | None):
        """Companion model of every edge for one Newton iteration, with limited inputs.

        A device that limits its input (:meth:`Device.limit_input
        <kirchhoff_sim.devices.Device.limit_input>`) is linearised at
        ``z* = limit(z(V), z_previous)`` instead of at ``z(V)``; its current is then the
        tangent there, ``r(z*) + r'(z*)·(z(V) − z*)``, as SPICE stamps a junction at its
        limited voltage. Devices without limiting are exactly :meth:`linearise`.

        Parameters
        ----------
        V : ndarray, shape (N+1, B)
        z_previous : list or None
            Per group the inputs of the previous iteration (from this method or
            :meth:`device_inputs`), None entries for groups without limiting; None as a
            whole before a layer's first iteration.

        Returns
        -------
        current, di_dvs, di_dvd : ndarray, shape (E, B)
        z_used : list
            Per group the inputs linearised at (None for groups without limiting).
        limited : bool
            Whether any input was changed by limiting (then the iteration has not
            converged, whatever its update).
        """
        vs, vd = self.gather(V)
        shape = vs.shape
        current, gs, gd = (np.empty(shape, dtype=self.dtype) for _ in range(3))
        z_used, limited = [], False
        for k, (g, sl) in enumerate(zip(self.groups, self.slices)):
            p = g.params[:, :, None]
            if not _limits(g.device):
                lin = g.device.linearise(vs[sl], vd[sl], p, False)
                current[sl], gs[sl], gd[sl] = lin.current, lin.di_dvs, lin.di_dvd
                z_used.append(None)
                continue
            w_src, w_dst, bias = g.device.input_weights(p)
            z = w_src * vs[sl] + w_dst * vd[sl] + bias
            previous = None if z_previous is None else z_previous[k]
            z_star = g.device.limit_input(z, previous, p)
            r, dz, _ = g.device.response_linearise(z_star, p, False)
            if z_star is z:
                current[sl] = r
            else:
                current[sl] = r + dz * (z - z_star)
                limited = limited or bool(np.any(z_star != z))
            gs[sl], gd[sl] = w_src * dz, w_dst * dz
            z_used.append(z_star)
        return current, gs, gd, z_used, limited

    # ------------------------------------------------------------------ sensitivities
    def vjp(self, V: np.ndarray, nu: np.ndarray, theta_bar: list | None = None) -> np.ndarray:
        """Vector–Jacobian products of ``F(V) = Aᵀ i(V, θ)`` with a node cotangent ``ν``.

        Per edge the cotangent is ``λ_e = ν[dst] − ν[src]`` (DESIGN.md §4). Through the
        device input ``z = W V + b`` and ``μ = λ·∂r/∂z``, ``(∂F/∂V)ᵀν = Wᵀμ`` (one sparse
        product a chunk) and ``(∂F/∂θ)ᵀν = Σ_b (λ·∂r/∂θ + μ·∂z/∂θ)``. With the numba
        backend a chunk whose family has a kernel does all of it in one compiled loop
        (:mod:`kirchhoff_sim.kernels`).

        Parameters
        ----------
        V, nu : ndarray, shape (N+1, B)
        theta_bar : list of ndarray, optional
            One ``(n_params, E_g)`` array per group; ``(∂F/∂θ)ᵀν`` is *added* to it.

        Returns
        -------
        v_bar : ndarray, shape (N+1, B)
            ``(∂F/∂V)ᵀν`` with a zero ground row.
        """
        self._check_state(V, nu, "cotangent")
        self._check_group_arrays(theta_bar, "theta_bar")
        v_bar = np.zeros_like(V)
        params = theta_bar is not None
        fused = kernels.backend() == "numba"
        if fused:
            V = np.ascontiguousarray(V, dtype=self.dtype)
            v_bar = np.zeros_like(V)
            nu = np.array(nu, dtype=self.dtype, order="C")
            nu[0] = 0.0                   # ground's cotangent is ignored, as below
            # one call a group, in runs whose per-block parameter sums stay within budget
            for g, index, edges, local in self.kernel_runs(kernels.vjp_run_edges(V.shape[1])):
                device_bar = kernels._vjp_into(v_bar, V, nu, self.src[edges], self.dst[edges], g.device,
                                               g.params[:, local], params)
                if params:
                    theta_bar[index][:, local] += device_bar
        for chunk in self.chunks(V.shape[1]):
            if fused and kernels.supports(chunk.group.device):
                continue
            lam = chunk.difference @ nu
            W, Z, p = chunk.inputs(V)
            _, dz, direct = chunk.group.device.response_linearise(Z, p, params)
            mu = lam * dz
            v_bar += W.T @ mu
            if params:
                target = theta_bar[chunk.group_index]
                terms = chunk.input_param_terms(V)
                for k in range(len(direct)):
                    if direct[k] is not None:
                        target[k, chunk.local] += _row_dot(direct[k], lam)
                    if terms[k] is not None:
                        target[k, chunk.local] += _row_dot(terms[k], mu)
        v_bar[0] = 0.0
        return v_bar

    def jvp(self, V: np.ndarray, v_dot: np.ndarray, theta_dot: list | None = None) -> np.ndarray:
        """Jacobian–vector product ``(∂F/∂V)·v̇ + (∂F/∂θ)·θ̇``, shape ``(N+1, B)``.

        ``theta_dot`` holds one ``(n_params, E_g)`` direction per group (or None). With the
        numba backend a group whose family has a kernel is one compiled loop.
        """
        self._check_state(V, v_dot, "tangent")
        self._check_group_arrays(theta_dot, "theta_dot")
        out = np.zeros_like(V)
        params = theta_dot is not None
        fused = kernels.backend() == "numba"
        if fused:
            V = np.ascontiguousarray(V, dtype=self.dtype)
            v_dot = np.ascontiguousarray(v_dot, dtype=self.dtype)
            out = np.zeros_like(V)
            for g, index, edges, local in self.kernel_runs(None):
                direction = None if not params else np.asarray(theta_dot[index], dtype=float)[:, local]
                kernels._jvp_into(out, V, v_dot, self.src[edges], self.dst[edges], g.device,
                                  g.params[:, local], direction)
        for chunk in self.chunks(V.shape[1]):
            if fused and kernels.supports(chunk.group.device):
                continue
            W, Z, p = chunk.inputs(V)
            _, dz, direct = chunk.group.device.response_linearise(Z, p, params)
            z_dot = W @ v_dot
            i_dot = 0.0
            if params:
                direction = theta_dot[chunk.group_index][:, chunk.local, None]
                terms = chunk.input_param_terms(V)
                for k in range(len(direct)):
                    if terms[k] is not None:
                        z_dot = z_dot + terms[k] * direction[k]
                    if direct[k] is not None:
                        i_dot = i_dot + direct[k] * direction[k]
            out += chunk.scatter @ (dz * z_dot + i_dot)
        return out

    # ------------------------------------------------------------------ Jacobian trace
    def _trace_terms(self, chunk, V):
        """A chunk's ``(W, Z, p, w_src, w_dst, κ)``: with ``c = 1/C`` (0 at ground) an edge
        adds ``s·κ``, ``κ = w_dst·c_dst − w_src·c_src``, to ``tr ∂f/∂v`` (DESIGN.md §4)."""
        W, Z, p = chunk.inputs(V)
        w_src, w_dst, _ = chunk.group.device.input_weights(p)
        n = Z.shape[0]
        w_src, w_dst = np.broadcast_to(w_src, (n, 1)), np.broadcast_to(w_dst, (n, 1))
        kappa = w_dst * self.inv_capacitance[chunk.dst] - w_src * self.inv_capacitance[chunk.src]
        return W, Z, p, w_src, w_dst, kappa

    def jacobian_trace(self, V: np.ndarray) -> np.ndarray:
        """``tr ∂f/∂v`` of ``f = C⁻¹Aᵀi`` over nodes 1..N, ``(B,)``, from the exact diagonal
        ``J_nn = (1/C_n)(Σ_{dst=n} ∂i/∂vd − Σ_{src=n} ∂i/∂vs)`` (DESIGN.md §4): O(E), no
        per-node differentiation. A flow's log-density changes at ``−tr ∂f/∂v``."""
        self._check_state(V)
        trace = np.zeros(V.shape[1])
        for chunk in self.chunks(V.shape[1]):
            _, Z, p, _, _, kappa = self._trace_terms(chunk, V)
            _, slope, _ = chunk.group.device.response_linearise(Z, p, False)
            trace += kappa[:, 0] @ np.broadcast_to(slope, Z.shape)
        return trace

    def trace_vjp(self, V: np.ndarray, weight: np.ndarray, theta_bar: list | None = None) -> np.ndarray:
        """Gradient of ``Σ_b weight_b·tr ∂f/∂v(V_b)``: returned in ``V`` ``(N+1, B)`` (zero
        ground row), *added* to ``theta_bar`` (one ``(n_params, E_g)`` array per group).

        With ``s = ∂r/∂z`` and ``q = weight·κ·∂s/∂z`` per edge and sample, the voltage
        gradient is ``Wᵀq`` and a parameter's is ``Σ_b weight·κ·∂s/∂p + q·∂z/∂p`` plus
        ``Σ_b weight·s·∂κ/∂p`` for a parameter that is an input weight
        (:attr:`Device.input_weight_rows <kirchhoff_sim.devices.Device.input_weight_rows>`).

        Raises
        ------
        DeviceError
            A family without second derivatives
            (:meth:`Device.response_curvature <kirchhoff_sim.devices.Device.response_curvature>`).
        """
        self._check_state(V)
        weight = np.asarray(weight, dtype=float)
        v_bar = np.zeros_like(V, dtype=float)
        for chunk in self.chunks(V.shape[1]):
            W, Z, p, _, _, kappa = self._trace_terms(chunk, V)
            device = chunk.group.device
            slope, d_slope_dz, d_slope_dp = device.response_curvature(Z, p)
            q = None
            if d_slope_dz is not None:
                q = (kappa * d_slope_dz) * weight
                v_bar += W.T @ q
            if theta_bar is None:
                continue
            target = theta_bar[chunk.group_index]
            terms = chunk.input_param_terms(V)
            for k, d in enumerate(d_slope_dp):
                if d is not None:
                    target[k, chunk.local] += kappa[:, 0] * (np.broadcast_to(d, Z.shape) @ weight)
                if q is not None and terms[k] is not None:
                    target[k, chunk.local] += _row_dot(terms[k], q)
            row_src, row_dst = device.input_weight_rows
            if row_src is not None or row_dst is not None:
                weighted_slope = np.broadcast_to(slope, Z.shape) @ weight
                if row_src is not None:
                    target[row_src, chunk.local] -= self.inv_capacitance[chunk.src, 0] * weighted_slope
                if row_dst is not None:
                    target[row_dst, chunk.local] += self.inv_capacitance[chunk.dst, 0] * weighted_slope
        v_bar[0] = 0.0
        return v_bar

    # ------------------------------------------------------------------ Jacobian
    def stamps(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node currents ``Aᵀ i(V)`` ``(N+1, B)`` and the slot values ``(n_slots, B)`` of
        the conductance matrices ``K = ∂(Aᵀ i)/∂v`` (:class:`StampPattern`) — what a
        Newton iteration without input limiting needs. With the numba backend a group
        whose family has a kernel stamps in one compiled loop.
        """
        self._check_state(V)
        if kernels.backend() != "numba":
            current, gs, gd, _ = self.linearise(V, params=False)
            return self.node_currents(current), self.pattern.values(gs, gd)
        V = np.ascontiguousarray(V, dtype=np.float64)
        F = np.zeros_like(V)
        K = np.zeros((self.pattern.n_slots, V.shape[1]))
        fallback = [sl for g, sl in zip(self.groups, self.slices) if not kernels.supports(g.device)]
        for g, _, edges, local in self.kernel_runs(None):
            kernels._stamps_into(F, K, V, self.src[edges], self.dst[edges],
                                 np.ascontiguousarray(self.pattern.edge_slots[:, edges]), g.device, g.params[:, local])
        if fallback:
            current, gs, gd, _ = self.linearise(V, params=False)
            keep = np.zeros(self.num_edges, bool)
            for sl in fallback:
                keep[sl] = True
            F += self.node_currents(np.where(keep[:, None], current, 0.0))
            K += self.pattern.values(np.where(keep[:, None], gs, 0.0), np.where(keep[:, None], gd, 0.0))
        return F, K

    @property
    def pattern(self) -> "StampPattern":
        if self._pattern is None:
            self._pattern = StampPattern(self.src, self.dst, self.num_nodes)
        return self._pattern


class _Chunk:
    """A run of edges of one group: its input matrix ``W`` and its scatter columns.

    ``W`` is ``(E_c, N+1)`` CSR with two entries a row (at src and dst) whose values are
    the device's input weights, refreshed at every call because they may be parameters.
    ``A`` of the chunk (for ``λ_e = ν[dst] − ν[src]`` in the sensitivities) is built on
    first use.
    """

    def __init__(self, group, group_index, edges, local, src, dst, scatter, num_nodes, dtype=np.float64):
        self.group, self.group_index = group, group_index
        self.edges, self.local, self.scatter = edges, local, scatter
        self.src, self.dst, self.num_nodes = src, dst, num_nodes
        n = len(src)
        self.W = sp.csr_matrix((np.zeros(2 * n, dtype=dtype), np.stack([src, dst], 1).ravel(),
                                np.arange(0, 2 * n + 1, 2)), shape=(n, num_nodes + 1))
        self._difference = None

    def inputs(self, V):
        """``(W, Z, p)``: the input matrix with this call's weights, the device inputs
        ``Z = W V + bias`` ``(E_c, B)`` and the parameters ``(n_params, E_c, 1)``."""
        p = self.group.params[:, self.local, None]
        w_src, w_dst, bias = self.group.device.input_weights(p)
        n = self.W.shape[0]
        # fresh values on the cached sparsity structure: the cached matrix is never written,
        # so a net shared by threads, or loaded read-only (memory-mapped), stays correct
        data = np.empty(2 * n, dtype=self.W.dtype)
        data[0::2] = np.broadcast_to(w_src, (n, 1))[:, 0]
        data[1::2] = np.broadcast_to(w_dst, (n, 1))[:, 0]
        W = sp.csr_matrix((data, self.W.indices, self.W.indptr), shape=self.W.shape)
        Z = W @ V
        if np.any(bias):
            Z += bias
        return W, Z, p

    def currents(self, V):
        """Edge currents of the chunk, ``(E_c, B)``."""
        _, Z, p = self.inputs(V)
        return self.group.device.response(Z, p)

    def input_param_terms(self, V):
        """``∂z/∂p_k`` of the chunk's devices (gathering ``V[src]``, ``V[dst]`` only if needed)."""
        device = self.group.device
        if type(device).input_param_terms is Device.input_param_terms:
            return (None,) * device.n_params
        return device.input_param_terms(np.take(V, self.src, axis=0), np.take(V, self.dst, axis=0))

    @property
    def difference(self):
        """``A`` of the chunk, ``(E_c, N+1)``: ``(A ν)_e = ν[dst] − ν[src]`` (ground's ν ignored)."""
        if self._difference is None:
            self._difference = self.scatter.T.tocsr()
        return self._difference



def _limits(device) -> bool:
    """Whether ``device`` overrides the identity :meth:`Device.limit_input`."""
    return type(device).limit_input is not Device.limit_input


def _row_dot(a, b) -> np.ndarray:
    """``Σ_b a·b`` per edge (row); ``a`` may be a broadcastable array or a scalar."""
    if np.ndim(a) == 0:
        return a * b.sum(axis=1)
    a = np.broadcast_to(a, b.shape)
    return np.einsum("eb,eb->e", a, b)


def incidence_transpose(src, dst, num_nodes: int) -> sp.csr_matrix:
    """``Aᵀ`` as CSR of shape ``(N+1, E)``: +1 at ``(dst, e)``, −1 at ``(src, e)``, ground row empty."""
    E = len(src)
    rows = np.concatenate([dst, src])
    cols = np.concatenate([np.arange(E), np.arange(E)])
    vals = np.concatenate([np.ones(E), -np.ones(E)])
    keep = rows != 0
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(num_nodes + 1, E))


class StampPattern:
    """Sparsity pattern of the per-sample ``N×N`` conductance matrix, built once.

    ``values(gs, gd)`` returns the ``(n_slots, B)`` entries of ``K = ∂(Aᵀ i)/∂v`` for all
    samples with one sparse product; ``rows``/``cols`` (0-based, ground removed) locate
    the slots and ``diagonal`` holds the slot of every diagonal entry (all present, so
    that ``C/h`` terms can be added).
    """

    def __init__(self, src, dst, num_nodes: int):
        E = len(src)
        e = np.arange(E)
        rows = np.concatenate([dst, dst, src, src])
        cols = np.concatenate([src, dst, src, dst])
        which = np.concatenate([e, E + e, e, E + e])          # index into [gs; gd]
        sign = np.concatenate([np.ones(2 * E), -np.ones(2 * E)])
        keep = (rows != 0) & (cols != 0)
        rows, cols, which, sign = rows[keep] - 1, cols[keep] - 1, which[keep], sign[keep]
        N = num_nodes
        diag = np.arange(N)
        # slot numbering in column-major (CSC) order so that sparse assembly is a reshape
        keys = np.concatenate([cols * N + rows, diag * N + diag])
        unique, inverse = np.unique(keys, return_inverse=True)
        self.num_nodes = N
        self.cols, self.rows = np.divmod(unique, N)
        self.n_slots = len(unique)
        self.diagonal = inverse[len(rows):]
        self.summation = sp.csr_matrix((sign, (inverse[:len(rows)], which)), shape=(self.n_slots, 2 * E))
        # per edge the slots of its stamps (dst,src), (dst,dst), (src,src), (src,dst); −1 on ground
        edge_slots = np.full(4 * E, -1, dtype=np.int64)
        edge_slots[keep] = inverse[:len(rows)]
        self.edge_slots = edge_slots.reshape(4, E)
        self.flat_dense = self.rows * N + self.cols     # row-major index in an N×N matrix
        self._csc_cache = {}

    def values(self, gs: np.ndarray, gd: np.ndarray) -> np.ndarray:
        """Entries of ``K`` for every sample: ``(n_slots, B)``."""
        return self.summation @ np.concatenate([gs, gd])

    def dense(self, slot_values: np.ndarray) -> np.ndarray:
        """Batched dense matrices ``(B, N, N)`` from slot values ``(n_slots, B)``."""
        B = slot_values.shape[1]
        M = np.zeros((B, self.num_nodes * self.num_nodes))
        M[:, self.flat_dense] = slot_values.T
        return M.reshape(B, self.num_nodes, self.num_nodes)

    def block_diagonal(self, slot_values: np.ndarray) -> sp.csc_matrix:
        """One block-diagonal CSC matrix ``(B·N, B·N)``; block ``b`` is sample ``b``."""
        B = slot_values.shape[1]
        if B not in self._csc_cache:
            N, nnz = self.num_nodes, self.n_slots
            counts = np.bincount(self.cols, minlength=N)
            indptr_one = np.concatenate([[0], np.cumsum(counts)])
            indptr = (indptr_one[:-1][None, :] + nnz * np.arange(B)[:, None]).ravel()
            indptr = np.concatenate([indptr, [B * nnz]])
            indices = (self.rows[None, :] + N * np.arange(B)[:, None]).ravel()
            self._csc_cache[B] = (indices, indptr)
        indices, indptr = self._csc_cache[B]
        N = self.num_nodes
        return sp.csc_matrix((slot_values.T.ravel(), indices, indptr), shape=(B * N, B * N))
