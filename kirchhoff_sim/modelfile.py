"""Model files: a net (and optional extras such as optimiser state) in one ``.npz``.

Layout (format version 1):

* ``__metadata__`` — UTF-8 JSON bytes (as a uint8 array) with ``format``, ``version``,
  the net's scalars (node count, seed, initialisation, read-out and input nodes), per
  layer its duration and per group its device spec, plus free-form user metadata;
* ``capacitance`` and, per layer ``k`` and group ``g``, ``L{k}G{g}_edges`` and
  ``L{k}G{g}_params``;
* ``extra/<name>`` — arrays a caller stores alongside (a training checkpoint keeps its
  optimiser state here).

Files are read with ``allow_pickle=False`` (a model file cannot run code) and written
atomically (:func:`kirchhoff_sim.fileio.atomic_write`), so a crash never leaves a
half-written model. The same format in memory (:func:`net_to_bytes`,
:func:`net_from_bytes`) is how a net travels to a Dask worker.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from . import devices
from .errors import KirchhoffError, ModelFileError
from .fileio import atomic_save_npz, atomic_write, npz_bytes
from .network import EdgeGroup, KirchhoffNet, Layer

__all__ = ["save_net", "load_net", "read_model_file", "net_to_bytes", "net_from_bytes",
           "FORMAT", "VERSION", "atomic_write"]

FORMAT = "kirchhoff_sim.model"
VERSION = 1
_META_KEY = "__metadata__"
_EXTRA = "extra/"


def save_net(net, path, metadata: dict | None = None, arrays: dict | None = None) -> Path:
    """Write ``net`` to ``path`` atomically; returns the path written.

    Parameters
    ----------
    net : KirchhoffNet
    path : str or Path
        Target file; ``.npz`` is appended when it has no suffix.
    metadata : dict, optional
        JSON-serialisable user metadata (training history, data set name, ...).
    arrays : dict of str → ndarray, optional
        Extra numeric arrays stored as ``extra/<name>``.

    Raises
    ------
    ModelFileError
        Metadata that is not JSON, or an object array among ``arrays``.
    """
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".npz")
    atomic_save_npz(path, _payload(net, metadata, arrays))
    return path


def net_to_bytes(net, metadata: dict | None = None) -> bytes:
    """The model file of ``net`` as bytes, made in memory (no file is written)."""
    return npz_bytes(_payload(net, metadata, None))


def net_from_bytes(data: bytes):
    """The net stored in model-file bytes (:func:`net_to_bytes`).

    Raises
    ------
    ModelFileError
        As :func:`read_model_file`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFileError(f"expected model-file bytes, got {type(data).__name__}")
    return _read(io.BytesIO(bytes(data)), "model bytes")[0]


def _payload(net, metadata, arrays) -> dict:
    """The arrays of the ``.npz`` (metadata JSON included) for ``net``."""
    payload = {"capacitance": net.capacitance}
    layers = []
    for k, layer in enumerate(net.layers):
        groups = []
        for g, group in enumerate(layer.groups):
            payload[f"L{k}G{g}_edges"] = group.edges
            payload[f"L{k}G{g}_params"] = group.params
            groups.append({"device": group.device.spec()})
        layers.append({"duration": layer.duration, "groups": groups})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "num_nodes": net.num_nodes,
        "input_nodes": None if net.input_nodes is None else net.input_nodes.tolist(),
        "readout": net.readout.tolist(),
        "seed": net.seed if isinstance(net.seed, (int, type(None))) else None,
        "init": net.init,
        "layers": layers,
        "user": metadata or {},
    }
    try:
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"metadata is not JSON-serialisable: {exc}") from None
    payload[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    for name, value in (arrays or {}).items():
        value = np.asarray(value)
        if value.dtype == object:
            raise ModelFileError(f"extra array {name!r} has dtype object; only numeric arrays are stored")
        payload[_EXTRA + name] = value
    return payload


def read_model_file(path):
    """Load a model file: ``(net, user_metadata, extra_arrays)``.

    Raises
    ------
    ModelFileError
        Missing file, not an ``.npz``, not a kirchhoff_sim model, a newer format version,
        or contents that do not make a valid net (the message says which entry).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not an .npz (zip) archive — not a kirchhoff_sim model file")
    return _read(path, str(path))


def _read(source, path: str):
    """``(net, user_metadata, extra_arrays)`` from a file path or a binary file object;
    ``path`` names the source in messages."""
    try:
        with np.load(source, allow_pickle=False) as data:
            contents = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz model file ({exc})") from None
    except ValueError as exc:   # object arrays would need pickle: refuse them
        raise ModelFileError(f"{path}: contains data that needs pickle to load; refused ({exc})") from None
    if _META_KEY not in contents:
        raise ModelFileError(f"{path}: no {_META_KEY} entry — not a kirchhoff_sim model file")
    try:
        meta = json.loads(contents[_META_KEY].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a kirchhoff_sim model (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelFileError(f"{path}: format version {version!r} is newer than this kirchhoff_sim reads "
                             f"(up to {VERSION}); upgrade kirchhoff_sim")

    def array(name):
        if name not in contents:
            raise ModelFileError(f"{path}: missing array {name!r}")
        return contents[name]

    try:
        layers = []
        for k, layer_meta in enumerate(meta["layers"]):
            groups = []
            for g, group_meta in enumerate(layer_meta["groups"]):
                device = devices.from_spec(group_meta["device"])
                groups.append(EdgeGroup(array(f"L{k}G{g}_edges"), device, array(f"L{k}G{g}_params")))
            layers.append(Layer.from_groups(groups, layer_meta["duration"]))
        readout = np.asarray(meta["readout"], dtype=np.int64)
        net = KirchhoffNet(layers, num_nodes=meta["num_nodes"], capacitance=array("capacitance"),
                           input_nodes=meta["input_nodes"], readout=readout,
                           seed=meta.get("seed"), init=meta.get("init", "kaiming"))
    except ModelFileError:
        raise
    except KirchhoffError as exc:
        raise ModelFileError(f"{path}: invalid model contents: {exc}") from None
    except (KeyError, TypeError, IndexError) as exc:
        raise ModelFileError(f"{path}: corrupt model metadata (missing or malformed {exc})") from None
    extras = {name[len(_EXTRA):]: value for name, value in contents.items() if name.startswith(_EXTRA)}
    return net, meta.get("user", {}), extras


def load_net(path):
    """Load the net stored in a model file (see :func:`read_model_file`)."""
    return read_model_file(path)[0]
