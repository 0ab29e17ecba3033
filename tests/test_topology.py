"""Topology generators: edge counts and edge order of the reference (Gao et al., ICCAD'24)."""

from collections import Counter
from itertools import permutations

import numpy as np
import pytest

from kirchhoff_sim import topology
from kirchhoff_sim.errors import GraphError


# ------------------------------------------------------------------ fully_connected
def test_fully_connected_two_moons_layer_has_300_edges_50_per_ordered_pair():
    edges = topology.fully_connected(3, repeat=(25, 25))
    assert edges.shape == (300, 2)
    assert edges.dtype == np.int64
    counts = Counter(map(tuple, edges.tolist()))
    assert counts == {pair: 50 for pair in permutations(range(3), 2)}


def test_fully_connected_single_direction_has_n_times_n_minus_1_edges():
    edges = topology.fully_connected(33, repeat=(1, 0))
    assert edges.shape == (33 * 32, 2)
    # each ordered pair exactly once, node set 0..32 including ground
    assert len({tuple(e) for e in edges.tolist()}) == 33 * 32
    assert set(edges.ravel().tolist()) == set(range(33))
    assert not (edges[:, 0] == edges[:, 1]).any()


def test_fully_connected_without_ground_uses_nodes_1_to_n():
    edges = topology.fully_connected(4, repeat=(1, 1), include_ground=False)
    assert set(edges.ravel().tolist()) == {1, 2, 3, 4}
    assert edges.shape == (4 * 3 * 2, 2)
    counts = Counter(map(tuple, edges.tolist()))
    assert counts == {pair: 2 for pair in permutations(range(1, 5), 2)}


def test_fully_connected_reference_edge_order():
    # for each ordered pair (i, j), row-major: a edges i→j, then b edges j→i
    edges = topology.fully_connected(3, repeat=(2, 1))
    expected_head = [
        (0, 1), (0, 1), (1, 0),     # pair (0, 1)
        (0, 2), (0, 2), (2, 0),     # pair (0, 2)
        (1, 0), (1, 0), (0, 1),     # pair (1, 0)
        (1, 2), (1, 2), (2, 1),     # pair (1, 2)
    ]
    assert [tuple(e) for e in edges[:12].tolist()] == expected_head
    assert [tuple(e) for e in edges[-3:].tolist()] == [(2, 1), (2, 1), (1, 2)]
    assert len(edges) == 6 * 3


# ------------------------------------------------------------------ neighbour_window
@pytest.fixture(scope="module")
def mnist_edges():
    return topology.neighbour_window(28, 28, window=4, extra_nodes=50, repeat=(1, 1))


def test_neighbour_window_mnist_size(mnist_edges):
    assert mnist_edges.shape == (230_068, 2)
    assert mnist_edges.dtype == np.int64
    assert mnist_edges.max() == 834
    assert mnist_edges.min() == 0
    assert set(np.unique(mnist_edges).tolist()) == set(range(835))
    assert not (mnist_edges[:, 0] == mnist_edges[:, 1]).any()


def test_neighbour_window_mnist_window_part(mnist_edges):
    n_window = 625 * 240
    assert n_window == 150_000
    pairs = mnist_edges[:n_window]
    assert pairs.min() >= 1 and pairs.max() <= 784      # pixels only
    row, col = np.divmod(pairs - 1, 28)                  # row-major numbering from 1
    assert np.abs(row[:, 0] - row[:, 1]).max() == 3
    assert np.abs(col[:, 0] - col[:, 1]).max() == 3
    # the first patch is the top-left 4×4 block, 16·15 ordered pairs
    first = pairs[:240]
    assert set(first.ravel().tolist()) == {r * 28 + c + 1 for r in range(4) for c in range(4)}
    assert len({tuple(e) for e in first.tolist()}) == 240
    # the next patch is shifted one column right
    second = pairs[240:480]
    assert set(second.ravel().tolist()) == {r * 28 + c + 2 for r in range(4) for c in range(4)}
    # an interior horizontal neighbour pair lies in 4·3 = 12 windows
    counts = Counter(map(tuple, pairs.tolist()))
    assert counts[(14 * 28 + 14 + 1, 14 * 28 + 15 + 1)] == 12
    # a corner pixel pair only in one
    assert counts[(1, 2)] == 1


def test_neighbour_window_mnist_ground_and_projection_parts(mnist_edges):
    ground = mnist_edges[150_000:150_000 + 1568]
    pixels = np.arange(1, 785)
    np.testing.assert_array_equal(ground[0::2], np.stack([pixels, np.zeros(784, int)], 1))
    np.testing.assert_array_equal(ground[1::2], np.stack([np.zeros(784, int), pixels], 1))

    projection = mnist_edges[150_000 + 1568:]
    assert len(projection) == 50 * 785 * 2
    extra = np.arange(785, 835)
    # extra node m (outer), node i in ground + pixels (inner): i→m then m→i
    m = np.repeat(extra, 785)
    i = np.tile(np.arange(785), 50)
    np.testing.assert_array_equal(projection[0::2], np.stack([i, m], 1))
    np.testing.assert_array_equal(projection[1::2], np.stack([m, i], 1))


def test_neighbour_window_small_case_by_hand():
    edges = topology.neighbour_window(4, 4, window=2, extra_nodes=2, repeat=(1, 1))
    # 3×3 patches × (4·3) ordered pairs + 16 pixels × 2 + 2 extra × 17 nodes × 2
    assert edges.shape == (9 * 12 + 32 + 68, 2) == (208, 2)
    assert edges.max() == 18
    # pixels:   1  2  3  4
    #           5  6  7  8
    #           9 10 11 12
    #          13 14 15 16
    first_patch = [(1, 2), (1, 5), (1, 6), (2, 1), (2, 5), (2, 6),
                   (5, 1), (5, 2), (5, 6), (6, 1), (6, 2), (6, 5)]
    last_patch = [(11, 12), (11, 15), (11, 16), (12, 11), (12, 15), (12, 16),
                  (15, 11), (15, 12), (15, 16), (16, 11), (16, 12), (16, 15)]
    assert [tuple(e) for e in edges[:12].tolist()] == first_patch
    assert [tuple(e) for e in edges[12:24].tolist()] == [(a + 1, b + 1) for a, b in first_patch]
    assert [tuple(e) for e in edges[96:108].tolist()] == last_patch
    assert [tuple(e) for e in edges[108:112].tolist()] == [(1, 0), (0, 1), (2, 0), (0, 2)]
    assert [tuple(e) for e in edges[138:140].tolist()] == [(16, 0), (0, 16)]
    assert [tuple(e) for e in edges[140:144].tolist()] == [(0, 17), (17, 0), (1, 17), (17, 1)]
    assert [tuple(e) for e in edges[-2:].tolist()] == [(16, 18), (18, 16)]
    # pair (6, 7) — centre horizontal neighbours — sits in 2 windows
    counts = Counter(map(tuple, edges[:108].tolist()))
    assert counts[(6, 7)] == 2 and counts[(7, 6)] == 2
    assert counts[(6, 11)] == 1 and counts[(1, 2)] == 1
    assert counts[(1, 3)] == 0


def test_neighbour_window_repeat_and_channels():
    edges = topology.neighbour_window(3, 3, window=2, extra_nodes=1, channels=2, repeat=(2, 1))
    # patch of 2 channels × 2 × 2 = 8 entries → 56 ordered pairs per patch, 4 patches, each
    # pair once (repeat applies only to ground and projection edges)
    n_window = 4 * 56
    n_ground = 18 * 3
    n_proj = 1 * 19 * 3
    assert edges.shape == (n_window + n_ground + n_proj, 2)
    assert edges.max() == 19
    ground = edges[n_window:n_window + n_ground]
    assert [tuple(e) for e in ground[:3].tolist()] == [(1, 0), (1, 0), (0, 1)]
    # channel 2's pixel (1, 1) is node 10 and shares patch 0 with channel 1's node 1
    assert (1, 10) in {tuple(e) for e in edges[:56].tolist()}


def test_float_integral_height_is_accepted_like_an_int():
    # 4.0 passes the "positive integer" check, so it must behave like 4
    expected = topology.neighbour_window(4, 4, window=2, extra_nodes=0)
    np.testing.assert_array_equal(
        topology.neighbour_window(4.0, 4, window=2, extra_nodes=0), expected)


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("call, match", [
    (lambda: topology.fully_connected(1), "num_node"),
    (lambda: topology.fully_connected(0), "num_node"),
    (lambda: topology.fully_connected(2.5), "num_node"),
    (lambda: topology.fully_connected(3, repeat=(0, 0)), "repeat"),
    (lambda: topology.fully_connected(3, repeat=(-1, 2)), "repeat"),
    (lambda: topology.fully_connected(3, repeat=(1, 2, 3)), "repeat"),
    (lambda: topology.fully_connected(3, repeat=5), "repeat"),
    (lambda: topology.fully_connected(3, repeat=("a", 1)), "repeat"),
    (lambda: topology.fully_connected(3, repeat=(1.5, 1)), "repeat"),
    (lambda: topology.neighbour_window(4, 4, window=1), "window"),
    (lambda: topology.neighbour_window(4, 4, window=5), "window"),
    (lambda: topology.neighbour_window(4, 3, window=4), "window"),
    (lambda: topology.neighbour_window(4, 4, window=2.5), "window"),
    (lambda: topology.neighbour_window(0, 4, window=2), "height"),
    (lambda: topology.neighbour_window(4, -1, window=2), "width"),
    (lambda: topology.neighbour_window(4, 4, window=2, channels=0), "channels"),
    (lambda: topology.neighbour_window(4, 4, window=2, extra_nodes=-1), "extra_nodes"),
    (lambda: topology.neighbour_window(4, 4, window=2, extra_nodes=1.5), "extra_nodes"),
    (lambda: topology.neighbour_window(4, 4, window=2, repeat=(0, 0)), "repeat"),
    (lambda: topology.chain(0), "chain"),
], ids=[
    "fc-1", "fc-0", "fc-float", "repeat-zero", "repeat-negative", "repeat-3", "repeat-scalar",
    "repeat-str", "repeat-fraction", "window-1", "window-too-big", "window-wider-than-width",
    "window-fraction", "height-0", "width-neg", "channels-0", "extra-neg", "extra-fraction",
    "nw-repeat-zero", "chain-0",
])
def test_bad_arguments_raise_graph_error(call, match):
    with pytest.raises(GraphError, match=match):
        call()


def test_chain():
    np.testing.assert_array_equal(topology.chain(3), [[0, 1], [1, 2], [2, 3]])
    np.testing.assert_array_equal(topology.chain(3, include_ground=False), [[1, 2], [2, 3]])
