"""KirchhoffNet, Layer and EdgeGroup: construction, validation, parameters, networkx, forward."""

from collections import Counter

import networkx as nx
import numpy as np
import pytest
import scipy.linalg

from kirchhoff_sim import simulate
from kirchhoff_sim.devices import AffineActivation, Conductance, Diode, ShiftedReLU
from kirchhoff_sim.errors import GraphError, InputError, KirchhoffError, ParameterError
from kirchhoff_sim.network import EdgeGroup, KirchhoffNet, Layer
from kirchhoff_sim.solvers import RK4, Dopri5

EDGES = [(1, 2), (2, 3), (3, 4), (4, 0), (0, 1), (1, 3)]


def small_net(**kw):
    layers = [Layer(EDGES, ShiftedReLU(), duration=0.5),
              Layer.from_groups([(EDGES[:3], Conductance()), (EDGES[3:], AffineActivation("tanh"))],
                                duration=1.25)]
    return KirchhoffNet(layers, **kw)


# ------------------------------------------------------------------ construction
def test_read_out_time_is_sum_of_durations():
    net = small_net()
    assert net.T == pytest.approx(1.75)
    np.testing.assert_allclose(net.layer_boundaries, [0.0, 0.5, 1.75])
    assert net.num_edges == 12
    assert net.num_params == 2 * 6 + 1 * 3 + 3 * 3


def test_num_nodes_inferred_from_largest_index():
    assert small_net().num_nodes == 4
    with pytest.warns(UserWarning):   # nodes 3..6 untouched
        net = KirchhoffNet([Layer([(1, 2)], Conductance()), Layer([(2, 7), (7, 1)], Conductance())])
    assert net.num_nodes == 7
    assert net.capacitance.shape == (7,)
    np.testing.assert_array_equal(net.capacitance, 1.0)


def test_explicit_num_nodes_larger_than_edges_need():
    with pytest.warns(UserWarning, match=r"5, 6"):
        net = KirchhoffNet(Layer(EDGES, Conductance()), num_nodes=6)
    assert net.num_nodes == 6
    assert net.initial_state(np.ones((2, 3))).shape == (7, 2)


def test_readout_int_means_last_k_nodes_and_default_is_all():
    np.testing.assert_array_equal(small_net(readout=2).readout, [3, 4])
    np.testing.assert_array_equal(small_net(readout=4).readout, [1, 2, 3, 4])
    np.testing.assert_array_equal(small_net().readout, [1, 2, 3, 4])
    np.testing.assert_array_equal(small_net(readout=[4, 2]).readout, [4, 2])


def test_initial_state_puts_input_on_first_nodes():
    net = small_net()
    x = np.array([[0.5, -1.0], [2.0, 3.0], [0.0, 7.0]])
    V = net.initial_state(x)
    assert V.shape == (5, 3)
    np.testing.assert_array_equal(V[0], 0.0)
    np.testing.assert_array_equal(V[1:3], x.T)
    np.testing.assert_array_equal(V[3:], 0.0)
    single = net.initial_state([0.25, 0.5, 0.75])
    np.testing.assert_array_equal(single[:, 0], [0.0, 0.25, 0.5, 0.75, 0.0])


def test_initial_state_with_explicit_input_nodes():
    net = small_net(input_nodes=[4, 2])
    V = net.initial_state(np.array([[1.5, -2.5]]))
    np.testing.assert_array_equal(V[:, 0], [0.0, 0.0, -2.5, 0.0, 1.5])
    np.testing.assert_array_equal(net.input_nodes, [4, 2])


def test_same_seed_same_params_different_seed_different():
    a, b, c = small_net(seed=7), small_net(seed=7), small_net(seed=8)
    np.testing.assert_array_equal(a.get_flat_params(), b.get_flat_params())
    assert not np.allclose(a.get_flat_params(), c.get_flat_params())
    for p in a.parameters:
        assert np.isfinite(p).all() and p.std() > 0


def test_init_schemes():
    ones = small_net(init="ones").get_flat_params()
    np.testing.assert_array_equal(ones, 1.0)
    zeros = small_net(init="zeros").get_flat_params()
    np.testing.assert_array_equal(zeros, 0.0)


def test_explicit_params_are_kept():
    P = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    layer = Layer(EDGES, ShiftedReLU(), params=P)
    net = KirchhoffNet([layer, Layer(EDGES, Conductance())], seed=3)
    np.testing.assert_array_equal(net.layers[0].groups[0].params, P)
    assert net.layers[1].groups[0].params.shape == (1, 6)
    # a second net with another seed keeps them too
    other = KirchhoffNet([Layer(EDGES, ShiftedReLU(), params=P), Layer(EDGES, Conductance())], seed=4)
    np.testing.assert_array_equal(other.layers[0].groups[0].params, P)
    assert not np.array_equal(other.layers[1].groups[0].params, net.layers[1].groups[0].params)


def test_diode_params_default_to_physical_values():
    net = KirchhoffNet(Layer(EDGES, Diode(default_i_s=1e-12, default_r_s=0.5)))
    np.testing.assert_array_equal(net.parameters[0], [[1e-12] * 6, [0.5] * 6])


# ------------------------------------------------------------------ validation
def test_node_index_out_of_range_names_layer_and_edge():
    layers = [Layer([(1, 2), (2, 3)], Conductance()), Layer([(1, 2), (3, 5), (2, 3)], Conductance())]
    with pytest.raises(GraphError, match=r"layer 1.*edge 1.*node 5.*0\.\.3"):
        KirchhoffNet(layers, num_nodes=3)


def test_error_messages_show_plain_node_pairs():
    # the offending edge is written as a plain pair "(3, 5)", not numpy scalar reprs
    with pytest.raises(GraphError) as info:
        KirchhoffNet(Layer([(1, 2), (3, 5)], Conductance()), num_nodes=3)
    assert "(3, 5)" in str(info.value)
    with pytest.raises(GraphError) as info:
        Layer([(1, 2), (2, -1)], Conductance())
    assert "(2, -1)" in str(info.value)


@pytest.mark.parametrize("edges, match", [
    ([(1, 2), (3, 3)], r"edge 1 is a self-loop on node 3"),
    ([(1, 2), (2, -1)], r"edge 1 has a negative node index"),
    ([(1, 2, 3)], r"shape \(E, 2\)"),
    ([1, 2], r"shape \(E, 2\)"),
    (np.zeros((2, 2, 2), int), r"shape \(E, 2\)"),
    ([(1, 2.5)], r"integers"),
    ([(1, np.nan)], r"integers"),
    ([("a", "b")], r"integers"),
], ids=["self-loop", "negative", "three-columns", "flat", "3-d", "fraction", "nan", "strings"])
def test_bad_edges_raise_graph_error(edges, match):
    with pytest.raises(GraphError, match=match):
        Layer(edges, Conductance())


def test_integral_float_edges_are_accepted():
    layer = Layer(np.array([[1.0, 2.0], [2.0, 0.0]]), Conductance())
    assert layer.groups[0].edges.dtype == np.int64
    np.testing.assert_array_equal(layer.groups[0].edges, [[1, 2], [2, 0]])


def test_layer_needs_a_device():
    with pytest.raises(GraphError, match="device"):
        Layer(EDGES)
    with pytest.raises(GraphError, match="Device"):
        EdgeGroup(np.array(EDGES), "Conductance")


@pytest.mark.parametrize("params, match", [
    (np.ones((1, 6)), r"ShiftedReLU expects parameters of shape \(2, n_edges\)"),
    (np.ones((3, 6)), r"\(2, n_edges\).*shift, gain"),
    (np.ones(6), r"\(2, n_edges\)"),
    (np.ones((2, 5)), r"5 columns.*6 edges"),
])
def test_wrong_parameter_shape(params, match):
    with pytest.raises(ParameterError, match=match):
        Layer(EDGES, ShiftedReLU(), params=params)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_name_the_edge(bad):
    P = np.ones((2, 6))
    P[1, 4] = bad
    with pytest.raises(ParameterError, match=r"'gain' of edge 4"):
        Layer(EDGES, ShiftedReLU(), params=P)
    # parameters that went bad after the layer was built are caught by the net
    layer = Layer(EDGES, Conductance())
    layer.groups[0].params = np.array([[1.0, 1.0, bad, 1.0, 1.0, 1.0]])
    with pytest.raises(ParameterError, match=r"layer 0, group 0.*'g' of edge 2"):
        KirchhoffNet([layer])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_name_sample_and_feature(bad):
    net = small_net()
    x = np.zeros((3, 2))
    x[2, 1] = bad
    with pytest.raises(InputError, match=r"sample 2, feature 1"):
        net.initial_state(x)
    with pytest.raises(InputError, match=r"sample 2, feature 1"):
        net.forward(x, solver=RK4(0.25))


def test_input_wider_than_net():
    with pytest.raises(InputError, match=r"5 features.*only 4 nodes"):
        small_net().initial_state(np.ones((2, 5)))


def test_input_width_must_match_input_nodes():
    net = small_net(input_nodes=[2, 3])
    with pytest.raises(InputError, match=r"3 features.*2 input nodes"):
        net.initial_state(np.ones((1, 3)))
    with pytest.raises(InputError, match=r"1 features.*2 input nodes"):
        net.initial_state(np.ones((1, 1)))


def test_input_of_wrong_rank():
    with pytest.raises(InputError, match=r"\(batch, features\)"):
        small_net().initial_state(np.ones((2, 2, 2)))


@pytest.mark.parametrize("capacitance, match", [
    (0.0, r"node 1.*C > 0"),
    (-1.0, r"node 1.*C > 0"),
    (np.nan, r"node 1 is nan"),
    (np.inf, r"node 1 is inf"),
    ([1.0, 2.0, 0.0, 1.0], r"node 3 is 0\.0"),
    ([1.0, np.nan, 1.0, 1.0], r"node 2 is nan"),
    ([1.0, 2.0, 3.0], r"shape \(4,\).*\(3,\)"),
    (np.ones((4, 1)), r"shape \(4,\)"),
])
def test_bad_capacitance(capacitance, match):
    with pytest.raises(InputError, match=match):
        small_net(capacitance=capacitance)


def test_capacitance_per_node():
    net = small_net(capacitance=[1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(net.capacitance, [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("readout, match", [
    (0, r"readout=0 must be between 1 and 4"),
    (5, r"readout=5 must be between 1 and 4"),
    (-2, r"between 1 and 4"),
    ([0, 1], r"readout must lie in 1\.\.4"),
    ([2, 5], r"readout must lie in 1\.\.4"),
    ([2, 2], r"readout lists a node twice"),
    ([], r"readout must be a non-empty"),
    ([1.5], r"readout must be a non-empty 1-D sequence"),
    (2.5, r"readout"),
], ids=["zero", "too-many", "negative", "ground", "beyond", "duplicate", "empty", "float-list",
        "fractional-int"])
def test_bad_readout(readout, match):
    with pytest.raises(InputError, match=match):
        small_net(readout=readout)


@pytest.mark.parametrize("input_nodes, match", [
    ([0, 1], r"input_nodes must lie in 1\.\.4"),
    ([1, 9], r"input_nodes must lie in 1\.\.4"),
    ([1, 1], r"input_nodes lists a node twice"),
    ([], r"input_nodes must be a non-empty"),
    ([[1, 2]], r"input_nodes must be a non-empty 1-D"),
])
def test_bad_input_nodes(input_nodes, match):
    with pytest.raises(InputError, match=match):
        small_net(input_nodes=input_nodes)


@pytest.mark.parametrize("duration, match", [
    (0.0, r"finite and > 0, got 0\.0"),
    (-1.0, r"finite and > 0, got -1\.0"),
    (np.nan, r"finite and > 0, got nan"),
    (np.inf, r"finite and > 0, got inf"),
    ("long", r"must be a number"),
])
def test_bad_duration(duration, match):
    with pytest.raises(InputError, match=match):
        Layer(EDGES, Conductance(), duration=duration)
    with pytest.raises(InputError, match=match):
        Layer.from_groups([(EDGES, Conductance())], duration=duration)


def test_empty_layer_list_and_non_layers():
    with pytest.raises(GraphError, match="non-empty list of Layer"):
        KirchhoffNet([])
    with pytest.raises(GraphError, match="non-empty list of Layer"):
        KirchhoffNet([Layer(EDGES, Conductance()), "layer"])
    with pytest.raises(GraphError, match="at least one edge group"):
        Layer.from_groups([])


def test_net_without_nodes():
    with pytest.raises(GraphError, match="no non-ground node"):
        KirchhoffNet(Layer(np.zeros((0, 2), int), Conductance()))


def test_fractional_num_nodes_is_rejected():
    # 3.5 nodes is not a node count; it must not be silently truncated to 3
    with pytest.raises(KirchhoffError, match="num_nodes|3.5"):
        KirchhoffNet(Layer([(1, 2), (2, 3)], Conductance()), num_nodes=3.5)


def test_untouched_nodes_warn():
    with pytest.warns(UserWarning, match=r"2 node\(s\).*\[2, 5\]"):
        KirchhoffNet(Layer([(1, 3), (3, 4), (4, 6)], Conductance()))


def test_no_warning_when_every_node_is_touched(recwarn):
    small_net()
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ------------------------------------------------------------------ flat parameters
def test_flat_params_round_trip():
    net = small_net(seed=1)
    flat = net.get_flat_params()
    assert flat.shape == (net.num_params,)
    new = np.random.default_rng(0).normal(size=flat.shape)
    live = net.parameters[0]
    net.set_flat_params(new)
    np.testing.assert_array_equal(net.get_flat_params(), new)
    assert net.parameters[0] is live                   # updated in place
    np.testing.assert_array_equal(live.ravel(), new[:live.size])
    # layout: groups in order, each (n_params, E) row-major
    np.testing.assert_array_equal(net.layers[1].groups[1].params.ravel(), new[-9:])
    # get_flat_params returns a copy
    got = net.get_flat_params()
    got[:] = 0
    np.testing.assert_array_equal(net.get_flat_params(), new)


def test_set_flat_params_wrong_length():
    net = small_net()
    with pytest.raises(ParameterError, match=r"expected 24 parameters"):
        net.set_flat_params(np.ones(23))
    with pytest.raises(ParameterError, match=r"expected 24 parameters"):
        net.set_flat_params(np.ones((24, 1)))


@pytest.mark.parametrize("position", [0, 5, 23])
def test_set_flat_params_rejects_nan_and_leaves_params_unchanged(position):
    net = small_net(seed=2)
    before = net.get_flat_params()
    new = before + 1.0
    new[position] = np.nan
    with pytest.raises(ParameterError, match=r"group \d+: parameter .* of edge \d+ is nan"):
        net.set_flat_params(new)
    # a rejected update must not be half applied
    np.testing.assert_array_equal(net.get_flat_params(), before)


def test_set_flat_params_rejects_unphysical_diode():
    net = KirchhoffNet(Layer(EDGES, Diode()))
    flat = net.get_flat_params()
    flat[0] = -1e-9
    with pytest.raises(ParameterError, match="i_s > 0"):
        net.set_flat_params(flat)


# ------------------------------------------------------------------ networkx
def edge_multiset(layer):
    """Counter of (device, src, dst, params) over every edge of a layer."""
    out = Counter()
    for g in layer.groups:
        for e, (s, d) in enumerate(g.edges.tolist()):
            params = None if g.params is None else tuple(g.params[:, e].tolist())
            out[(g.device, s, d, params)] += 1
    return out


def test_from_networkx_multidigraph_with_parallel_edges_and_params():
    g = nx.MultiDiGraph()
    g.add_edge(1, 2, params=(0.1, 1.0))
    g.add_edge(1, 2, params=(0.2, 2.0))
    g.add_edge(2, 0, params=(0.3, 3.0))
    g.add_edge(0, 3, params=(0.4, 4.0))
    g.add_edge(3, 1, params=(0.5, 5.0))
    g.add_edge(1, 2, params=(0.6, 6.0))
    layer = Layer.from_networkx(g, ShiftedReLU(), duration=0.3)
    assert layer.duration == 0.3
    assert len(layer.groups) == 1 and layer.num_edges == 6
    dev = ShiftedReLU()
    assert edge_multiset(layer) == Counter({
        (dev, 1, 2, (0.1, 1.0)): 1, (dev, 1, 2, (0.2, 2.0)): 1, (dev, 1, 2, (0.6, 6.0)): 1,
        (dev, 2, 0, (0.3, 3.0)): 1, (dev, 0, 3, (0.4, 4.0)): 1, (dev, 3, 1, (0.5, 5.0)): 1,
    })
    net = KirchhoffNet(layer)
    assert net.num_nodes == 3


def test_networkx_round_trip_preserves_edges_devices_params():
    layer = Layer.from_groups([
        ([(1, 2), (1, 2), (1, 2), (2, 0), (3, 1)], ShiftedReLU(),
         [[0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0]]),
        ([(2, 3), (2, 3), (0, 1)], Conductance(), [[7.0, 8.0, 9.0]]),
        ([(3, 2)], AffineActivation("relu"), [[1.0], [2.0], [3.0]]),
    ])
    graph = layer.to_networkx()
    assert isinstance(graph, nx.MultiDiGraph)
    assert graph.number_of_edges() == 9
    assert graph.number_of_edges(1, 2) == 3
    assert graph.number_of_edges(2, 3) == 2
    back = Layer.from_networkx(graph)
    assert back.num_edges == 9
    assert len(back.groups) == 3
    assert edge_multiset(back) == edge_multiset(layer)
    assert {type(g.device) for g in back.groups} == {ShiftedReLU, Conductance, AffineActivation}


def test_networkx_round_trip_without_params():
    layer = Layer([(1, 2), (1, 2), (2, 1)], Conductance())
    back = Layer.from_networkx(layer.to_networkx())
    assert back.groups[0].params is None
    assert edge_multiset(back) == edge_multiset(layer)


def test_from_networkx_string_labels_map_ground_to_zero():
    g = nx.MultiDiGraph()
    g.add_edge("in", "hidden")
    g.add_edge("hidden", "gnd")
    g.add_edge("gnd", "out")
    g.add_edge("hidden", "out")
    layer = Layer.from_networkx(g, Conductance(), ground="gnd")
    # gnd → 0, the rest numbered in sorted order: hidden 1, in 2, out 3
    assert Counter(map(tuple, layer.groups[0].edges.tolist())) == Counter(
        [(2, 1), (1, 0), (0, 3), (1, 3)])
    mapped = Layer.from_networkx(g, Conductance(),
                                 node_index={"gnd": 0, "in": 1, "hidden": 2, "out": 3})
    assert Counter(map(tuple, mapped.groups[0].edges.tolist())) == Counter(
        [(1, 2), (2, 0), (0, 3), (2, 3)])
    with pytest.raises(GraphError, match="node_index"):
        Layer.from_networkx(g, Conductance(), node_index={"gnd": 0, "in": 1})


@pytest.mark.parametrize("graph_type", [nx.Graph, nx.MultiGraph])
def test_from_networkx_rejects_undirected(graph_type):
    g = graph_type()
    g.add_edge(1, 2)
    with pytest.raises(GraphError, match=r"directed graph.*" + graph_type.__name__):
        Layer.from_networkx(g, Conductance())


def test_from_networkx_per_edge_devices_make_groups():
    g = nx.MultiDiGraph()
    g.add_edge(1, 2, device=Conductance(), params=[0.5])
    g.add_edge(2, 3)                                          # default device
    g.add_edge(1, 2, device=Diode(), params=[1e-9, 0.0])
    g.add_edge(3, 1, device=Conductance(), params=[0.25])
    g.add_edge(3, 0)
    layer = Layer.from_networkx(g, ShiftedReLU())
    by_device = {g_.device: g_ for g_ in layer.groups}
    assert set(by_device) == {Conductance(), Diode(), ShiftedReLU()}
    cond = by_device[Conductance()]
    assert Counter(zip(map(tuple, cond.edges.tolist()), cond.params[0])) == Counter(
        {((1, 2), 0.5): 1, ((3, 1), 0.25): 1})
    assert by_device[ShiftedReLU()].params is None
    assert by_device[ShiftedReLU()].num_edges == 2
    np.testing.assert_array_equal(by_device[Diode()].params, [[1e-9], [0.0]])


def test_from_networkx_mixed_params_presence():
    g = nx.MultiDiGraph()
    g.add_edge(1, 2, params=[0.5])
    g.add_edge(2, 3)
    with pytest.raises(ParameterError, match="some .* edges have 'params' and some do not"):
        Layer.from_networkx(g, Conductance())


def test_from_networkx_ragged_params_raise_parameter_error():
    g = nx.MultiDiGraph()
    g.add_edge(1, 2, params=[0.5, 1.0])
    g.add_edge(2, 3, params=[0.5])
    with pytest.raises(ParameterError):
        Layer.from_networkx(g, ShiftedReLU())


def test_from_networkx_needs_a_device_and_edges():
    g = nx.MultiDiGraph()
    g.add_edge(1, 2)
    with pytest.raises(GraphError, match="no device"):
        Layer.from_networkx(g)
    empty = nx.MultiDiGraph()
    empty.add_nodes_from([1, 2])
    with pytest.raises(GraphError, match="no edges"):
        Layer.from_networkx(empty, Conductance())


# ------------------------------------------------------------------ forward
def test_forward_returns_readout_of_final_state():
    net = small_net(readout=2, seed=5)
    x = np.random.default_rng(1).uniform(-1, 1, (6, 3))
    solver = RK4(0.05)
    out = net.forward(x, solver=solver)
    assert out.shape == (6, 2)
    sol = simulate(net, x, solver=solver)
    np.testing.assert_array_equal(out, sol.final_state[:, net.readout - 1])
    np.testing.assert_array_equal(out, sol.final_state[:, 2:4])


def test_forward_of_linear_net_matches_matrix_exponential():
    # a conductance ladder: C dv/dt = Aᵀ G A v, so v(T) = expm(T C⁻¹ Aᵀ G A) v(0)
    edges = [(1, 2), (2, 3), (3, 0), (1, 3), (2, 1)]
    g = np.array([1.0, 0.5, 2.0, 0.3, 0.7])
    C = np.array([1.0, 2.0, 0.5])
    net = KirchhoffNet([Layer(edges, Conductance(), duration=0.4, params=[g]),
                        Layer(edges, Conductance(), duration=0.6, params=[2 * g])],
                       capacitance=C, readout=[3, 1])
    A = np.zeros((5, 4))
    for e, (s, d) in enumerate(edges):
        A[e, d] += 1
        A[e, s] -= 1
    A = A[:, 1:]
    M1 = -(A.T @ np.diag(g) @ A) / C[:, None]      # i = G·(vs − vd) = −G·A·v
    x = np.array([[1.0, -0.5], [0.2, 0.3]])
    v0 = np.zeros((3, 2))
    v0[:2] = x.T
    vT = scipy.linalg.expm(0.6 * 2 * M1) @ scipy.linalg.expm(0.4 * M1) @ v0
    out = net.forward(x, solver=Dopri5(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(out, vT[[2, 0]].T, rtol=1e-7, atol=1e-9)
