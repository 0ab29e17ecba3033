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

import functools
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import devices
from .errors import InputError, KirchhoffError, ModelFileError
from .fileio import atomic_save_npz, atomic_write, check_input_file, npz_bytes
from .network import EdgeGroup, KirchhoffNet, Layer

__all__ = ["save_net", "load_net", "read_model_file", "net_to_bytes", "net_from_bytes", "received_net",
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


_RECEIVED_NETS = 4                       # nets rebuilt from bytes kept per process


@functools.lru_cache(maxsize=_RECEIVED_NETS)
def _net_of_bytes(data: bytes) -> KirchhoffNet:
    return net_from_bytes(data)


def received_net(net) -> KirchhoffNet:
    """``net`` itself, or the net in its model-file bytes: what a job of a runner
    (:mod:`~kirchhoff_sim.executors`) receives, since a cluster gets the bytes. The bytes
    are rebuilt once per process, so the net returned for them is shared: never modify it
    in place (copy it with :meth:`~kirchhoff_sim.network.KirchhoffNet.with_parameters`).

    Raises
    ------
    InputError
        ``net`` is neither.
    ModelFileError
        The bytes are not a model file.
    """
    if isinstance(net, KirchhoffNet):
        return net
    if isinstance(net, (bytes, bytearray, memoryview)):
        return _net_of_bytes(bytes(net))
    raise InputError(f"expected a KirchhoffNet or its model-file bytes, got {type(net).__name__}")


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
    path = check_input_file(path, "model file", ModelFileError)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not an .npz (zip) archive — not a kirchhoff_sim model file")
    return _read(path, str(path))


#: the largest model file this reader inflates (sum of its arrays): far above any real
#: model (the MNIST-sized net's parameters are 7 MB) and far below a decompression bomb
MAX_MODEL_BYTES = 1 << 30


def _read_arrays(source, path: str) -> dict:
    """Every ``.npy`` member of the ``.npz`` ``source``, checked before it is inflated.

    A member's header (shape and dtype) must describe exactly the bytes the archive says
    it holds, its dtype must be numeric (no pickled objects), and the total must stay
    under :data:`MAX_MODEL_BYTES` — so neither a forged header nor a decompression bomb
    makes us allocate more than the file really contains.
    """
    arrays, total = {}, 0
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                total += info.file_size
                if total > MAX_MODEL_BYTES:
                    raise ModelFileError(f"{path}: its arrays inflate to more than {MAX_MODEL_BYTES} bytes "
                                         f"(at member {name!r}); refused")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise ModelFileError(f"{path}: member {name!r} has .npy format {version}, not 1.0/2.0")
                    if dtype.hasobject or dtype.kind not in "biuf":
                        raise ModelFileError(f"{path}: member {name!r} has dtype {dtype}; a model file holds "
                                             f"only real numbers (complex, strings and objects refused)")
                    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if claimed != info.file_size - member.tell():
                        raise ModelFileError(f"{path}: member {name!r} claims shape {shape} ({claimed} bytes) "
                                             f"but holds {info.file_size - member.tell()} bytes; corrupt")
                    data = np.frombuffer(member.read(claimed), dtype=dtype)
                    arrays[name] = data.reshape(shape, order="F" if fortran else "C").copy()
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error,
            # a flipped flag bit: "encrypted, password required" (RuntimeError) or
            # "compressed patched data" / an unknown compression (NotImplementedError)
            RuntimeError, NotImplementedError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz model file ({exc})") from None
    return arrays


def _read(source, path: str):
    """``(net, user_metadata, extra_arrays)`` from a file path or a binary file object;
    ``path`` names the source in messages."""
    contents = _read_arrays(source, path)
    if _META_KEY not in contents:
        raise ModelFileError(f"{path}: no {_META_KEY} entry — not a kirchhoff_sim model file")
    try:
        meta = json.loads(contents[_META_KEY].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt metadata ({exc})") from None
    except RecursionError:       # arrays or objects nested thousands deep
        raise ModelFileError(f"{path}: corrupt metadata (JSON nested too deeply to read)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a kirchhoff_sim model (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: format version {version!r} is not a version (an integer >= 1)")
    if version > VERSION:
        raise ModelFileError(f"{path}: format version {version!r} is newer than this kirchhoff_sim reads "
                             f"(up to {VERSION}); upgrade kirchhoff_sim")

    def array(name, kinds="f", what="real numbers"):
        if name not in contents:
            raise ModelFileError(f"{path}: missing array {name!r}")
        value = contents[name]
        if value.dtype.kind not in kinds:
            raise ModelFileError(f"{path}: array {name!r} has dtype {value.dtype}, expected {what}")
        return value

    def field(container, key, kinds, where):
        if not isinstance(container, dict) or key not in container:
            raise ModelFileError(f"{path}: metadata {where} has no {key!r}")
        value = container[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ModelFileError(f"{path}: metadata {where}{key} is {value!r}, expected "
                                 f"{' or '.join(k.__name__ for k in kinds)}")
        return value

    try:
        layers = []
        for k, layer_meta in enumerate(field(meta, "layers", (list,), "")):
            groups = []
            for g, group_meta in enumerate(field(layer_meta, "groups", (list,), f"layer {k}: ")):
                device = devices.from_spec(field(group_meta, "device", (dict,), f"layer {k} group {g}: "))
                groups.append(EdgeGroup(array(f"L{k}G{g}_edges", "iu", "integers"), device,
                                        array(f"L{k}G{g}_params")))
            layers.append(Layer.from_groups(groups, field(layer_meta, "duration", (int, float), f"layer {k}: ")))
        readout = field(meta, "readout", (list,), "")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in readout):
            raise ModelFileError(f"{path}: metadata readout must be a list of node numbers, got {readout!r}")
        input_nodes = meta.get("input_nodes")
        if input_nodes is not None and not (isinstance(input_nodes, list) and all(
                isinstance(n, int) and not isinstance(n, bool) for n in input_nodes)):
            raise ModelFileError(f"{path}: metadata input_nodes must be null or a list of node numbers, "
                                 f"got {input_nodes!r}")
        seed = meta.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ModelFileError(f"{path}: metadata seed must be null or an integer, got {seed!r}")
        init = meta.get("init", "kaiming")
        if init not in devices.INIT_SCHEMES:
            raise ModelFileError(f"{path}: metadata init is {init!r}, not one of {devices.INIT_SCHEMES}")
        user = meta.get("user", {})
        if not isinstance(user, dict):
            raise ModelFileError(f"{path}: metadata user must be a JSON object, got {type(user).__name__}")
        net = KirchhoffNet(layers, num_nodes=field(meta, "num_nodes", (int,), ""),
                           capacitance=array("capacitance"), input_nodes=input_nodes,
                           readout=np.asarray(readout, dtype=np.int64), seed=seed, init=init)
    except ModelFileError:
        raise
    except KirchhoffError as exc:
        raise ModelFileError(f"{path}: invalid model contents: {exc}") from None
    extras = {name[len(_EXTRA):]: value for name, value in contents.items() if name.startswith(_EXTRA)}
    return net, user, extras


def load_net(path):
    """Load the net stored in a model file (see :func:`read_model_file`)."""
    return read_model_file(path)[0]
