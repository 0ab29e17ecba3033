"""Topology generators: edge lists ``(E, 2)`` of ``(src, dst)`` node indices.

Node 0 is ground. The generators reproduce the reference implementation's
(Gao et al., ICCAD'24) edge counts *and* edge order, so that a net built here has the
same shape as the published one:

* :func:`fully_connected` — every ordered pair of nodes, ``repeat=(a, b)``: for each
  ordered pair ``(i, j)`` the reference appends ``a`` edges ``i→j`` then ``b`` edges
  ``j→i``, so every direction ends up with ``a + b`` parallel devices. Three nodes with
  ground and ``repeat=(25, 25)`` give the two-moons layer's 300 edges.
* :func:`neighbour_window` — the neighbour-emphasising image topology: every ordered pair
  of pixels inside each ``k×k`` window (stride 1, windows overlap and pairs repeat, as in
  the reference), edges between every pixel and ground, and ``extra_nodes`` projection
  nodes connected to ground and to every pixel. A 1×28×28 image with ``k=4`` and 50 extra
  nodes gives 834 non-ground nodes and 230,068 edges.

All generators are vectorised: the MNIST-sized topology takes milliseconds.
"""

from __future__ import annotations

import numpy as np

from .checks import as_int
from .errors import GraphError


def _count(value, name: str, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum``; fractions are refused, not truncated."""
    return as_int(value, name, minimum=minimum, error=GraphError)


def _check_repeat(repeat) -> tuple[int, int]:
    try:
        a, b = repeat
    except (TypeError, ValueError):
        raise GraphError(f"repeat must be a pair of non-negative integers, got {repeat!r}") from None
    a, b = _count(a, "repeat[0]", 0), _count(b, "repeat[1]", 0)
    if a + b == 0:
        raise GraphError("repeat must not be (0, 0)")
    return a, b


def _pairs_with_repeat(i: np.ndarray, j: np.ndarray, repeat) -> np.ndarray:
    """For each pair ``(i, j)``: ``a`` edges ``i→j`` followed by ``b`` edges ``j→i``."""
    a, b = _check_repeat(repeat)
    block = np.concatenate(
        [np.repeat(np.stack([i, j], 1)[:, None, :], a, axis=1),
         np.repeat(np.stack([j, i], 1)[:, None, :], b, axis=1)],
        axis=1,
    )
    return block.reshape(-1, 2).astype(np.int64)


def fully_connected(num_node: int, repeat=(1, 1), include_ground: bool = True) -> np.ndarray:
    """Every ordered pair of distinct nodes, with ``repeat=(a, b)`` parallel devices.

    Parameters
    ----------
    num_node : int
        With ``include_ground`` the nodes are ``0..num_node-1`` (ground is one of them);
        without it they are ``1..num_node`` (no ground edges).
    repeat : (int, int)
        The reference's ``repeat``: per ordered pair ``(i, j)``, ``a`` edges ``i→j`` then
        ``b`` edges ``j→i``.

    Returns
    -------
    edges : ndarray, shape (num_node·(num_node−1)·(a+b), 2)
    """
    num_node = _count(num_node, "fully_connected's num_node", 2)
    nodes = np.arange(num_node) + (0 if include_ground else 1)
    i, j = np.meshgrid(nodes, nodes, indexing="ij")
    off_diagonal = i != j
    return _pairs_with_repeat(i[off_diagonal], j[off_diagonal], repeat)


def _window_pairs(channels: int, height: int, width: int, window: int) -> np.ndarray:
    """Ordered pixel pairs inside every ``window×window`` patch, in the reference's order.

    The reference loops over patches (``unfold`` order: row-major patch position), then
    over ordered pairs of distinct positions inside the patch (row-major over the
    ``channels·window²`` patch entries).
    """
    pixel = np.arange(1, 1 + channels * height * width).reshape(channels, height, width)
    rows = height - window + 1
    cols = width - window + 1
    # patch[p, q]: pixel index of entry q (channel, dy, dx) in patch p (row-major)
    c, dy, dx = np.meshgrid(np.arange(channels), np.arange(window), np.arange(window), indexing="ij")
    py, px = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    patch = pixel[c.ravel()[None, :], py.ravel()[:, None] + dy.ravel()[None, :],
                  px.ravel()[:, None] + dx.ravel()[None, :]]
    q = patch.shape[1]
    j, k = np.meshgrid(np.arange(q), np.arange(q), indexing="ij")
    distinct = j != k
    src = patch[:, j[distinct]]
    dst = patch[:, k[distinct]]
    return np.stack([src.ravel(), dst.ravel()], axis=1).astype(np.int64)


def neighbour_window(height: int, width: int, window: int = 4, extra_nodes: int = 50,
                     channels: int = 1, repeat=(1, 1)) -> np.ndarray:
    """The reference's neighbour-emphasising image topology (its ``_mix_connect``).

    Pixels are nodes ``1..channels·height·width`` (row-major); the ``extra_nodes``
    projection nodes follow them, and the last of them are typically read out.

    Edges, in the reference's order:

    1. every ordered pair of distinct pixels inside each ``window×window`` patch (stride
       1, no padding; overlapping patches repeat pairs);
    2. for every pixel, ``a`` edges pixel→ground then ``b`` edges ground→pixel;
    3. for every extra node ``m`` and every node ``i`` in ground + pixels, ``a`` edges
       ``i→m`` then ``b`` edges ``m→i``.

    Returns
    -------
    edges : ndarray, shape (E, 2)
    """
    a, b = _check_repeat(repeat)
    height, width = _count(height, "height", 1), _count(width, "width", 1)
    channels = _count(channels, "channels", 1)
    extra_nodes = _count(extra_nodes, "extra_nodes", 0)
    window = _count(window, "window", 2)
    if window > min(height, width):
        raise GraphError(f"window must be between 2 and min(height, width) = {min(height, width)}, got {window}")
    pairs = _window_pairs(channels, height, width, window)
    n_pixel = channels * height * width
    pixels = np.arange(1, n_pixel + 1)
    ground = _pairs_with_repeat(pixels, np.zeros_like(pixels), (a, b))
    extra = np.arange(n_pixel + 1, n_pixel + 1 + extra_nodes)
    m, i = np.meshgrid(extra, np.arange(n_pixel + 1), indexing="ij")
    projection = _pairs_with_repeat(i.ravel(), m.ravel(), (a, b))
    return np.concatenate([pairs, ground, projection]).astype(np.int64)


def chain(num_node: int, include_ground: bool = True) -> np.ndarray:
    """A path ``0→1→…→num_node`` (or ``1→…`` without ground): handy for ladders and tests."""
    num_node = _count(num_node, "chain's num_node", 1)
    start = 0 if include_ground else 1
    nodes = np.arange(start, num_node + 1)
    return np.stack([nodes[:-1], nodes[1:]], axis=1).astype(np.int64)
