"""Save and load a Sequential as one NumPy .npz file, without pickle.

The file holds five arrays:

* ``format``: the string "fastnn-sequential" (a NumPy unicode array);
* ``meta``: UTF-8 JSON as uint8: format_version, dtype, seed, training mode, the state of
  the model's random generator, and the architecture as a list of
  ``{"type": "Linear", "config": {...}}`` (constructor arguments);
* ``params`` and ``buffers``: the model's flat parameter and buffer arrays (see
  ``fastnn.nn.sequential``), in the model's dtype;
* ``digest``: SHA-256 of meta, params and buffers, so that a changed byte anywhere is caught
  even where the zip's CRC would not be checked or was recomputed.

It is written to a temporary file in the target directory, synced, then renamed over the
target (``os.replace``), so a crash never leaves a half-written model under the name.
Loading uses ``allow_pickle=False``: a file cannot make the loader run code. Anything
missing, truncated or inconsistent raises ValueError.
"""
import hashlib
import json
import os
import tempfile

import numpy as np

from fastnn.nn.layers import BatchNorm1d, Dropout, Linear, ReLU, Sigmoid, Tanh

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastnn-sequential"
FORMAT_VERSION = 1
LAYER_TYPES = {cls.__name__: cls for cls in (Linear, ReLU, Sigmoid, Tanh, Dropout, BatchNorm1d)}
_KEYS = {"format", "meta", "params", "buffers", "digest"}


def _digest(meta_bytes, params, buffers):
    h = hashlib.sha256()
    for part in (meta_bytes, params.tobytes(), buffers.tobytes()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def save(model, path):
    """Write ``model`` (a Sequential of built-in layers) to ``path`` (exactly that name)."""
    layers = []
    for i, layer in enumerate(model.layers):
        cls = type(layer)
        if LAYER_TYPES.get(cls.__name__) is not cls:
            raise TypeError(f"cannot save layer {i} of type {cls.__name__}: only the built-in "
                            f"layers {sorted(LAYER_TYPES)} can be saved")
        layers.append({"type": cls.__name__, "config": layer._config()})
    meta = {
        "format_version": FORMAT_VERSION,
        "dtype": model.dtype.name,
        "seed": model.seed,
        "training": model.training,
        "rng_state": model._rng.bit_generator.state,
        "layers": layers,
        "n_params": int(model._flat_params.size),
        "n_buffers": int(model._flat_buffers.size),
    }
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    arrays = {
        "format": np.array(FORMAT),
        "meta": np.frombuffer(meta_bytes, dtype=np.uint8),
        "params": model._flat_params,
        "buffers": model._flat_buffers,
        "digest": _digest(meta_bytes, model._flat_params, model._flat_buffers),
    }
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _invalid(path, why):
    return ValueError(f"{os.fspath(path)!r} is not a valid fastnn model file: {why}")


def _arrays_of(path, npz):
    keys = set(npz.files)
    if keys != _KEYS:
        raise _invalid(path, f"expected arrays {sorted(_KEYS)}, found {sorted(keys)}")
    return {k: npz[k] for k in _KEYS}


def _read_arrays(path):
    fh = open(path, "rb")      # our own handle: np.load leaks its own if the zip is bad
    try:
        with fh:
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise _invalid(path, "a single .npy array, not an .npz archive")
            with npz:
                return _arrays_of(path, npz)
    except ValueError as e:
        if str(e).startswith(repr(os.fspath(path))):
            raise
        raise _invalid(path, f"unreadable ({e}); truncated or corrupted?") from e
    except Exception as e:      # zipfile.BadZipFile, zlib.error, EOFError, OSError, ...
        raise _invalid(path, f"unreadable ({type(e).__name__}: {e}); truncated or "
                             "corrupted?") from e


def load(path):
    """Read a model written by ``Sequential.save``; returns an equal Sequential (same
    architecture, dtype, weights, running statistics, mode and generator state)."""
    from fastnn.nn.sequential import Sequential

    a = _read_arrays(path)
    if a["format"].shape != () or a["format"].dtype.kind != "U" or str(a["format"]) != FORMAT:
        raise _invalid(path, "missing the fastnn-sequential format marker")
    meta_arr, params, buffers, digest = a["meta"], a["params"], a["buffers"], a["digest"]
    if meta_arr.dtype != np.uint8 or meta_arr.ndim != 1 or digest.dtype != np.uint8 \
            or digest.shape != (32,):
        raise _invalid(path, "malformed meta or digest array")
    meta_bytes = meta_arr.tobytes()
    if params.ndim != 1 or buffers.ndim != 1:
        raise _invalid(path, "params and buffers must be 1-D")
    if not np.array_equal(_digest(meta_bytes, params, buffers), digest):
        raise _invalid(path, "checksum mismatch (the file was changed or damaged)")
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
        version = meta["format_version"]
        if version != FORMAT_VERSION:
            raise _invalid(path, f"format version {version!r}; this fastnn reads "
                                 f"version {FORMAT_VERSION}")
        dtype = np.dtype(meta["dtype"])
        layers = []
        for spec in meta["layers"]:
            cls = LAYER_TYPES[spec["type"]]
            layers.append(cls(**spec["config"]))
        model = Sequential(*layers, dtype=dtype, seed=meta["seed"])
        if params.dtype != model.dtype or buffers.dtype != model.dtype:
            raise _invalid(path, f"arrays of dtype {params.dtype}/{buffers.dtype} for a "
                                 f"{model.dtype} model")
        if params.shape != model._flat_params.shape or buffers.shape != \
                model._flat_buffers.shape:
            raise _invalid(path, f"{params.size} parameters and {buffers.size} buffer values "
                                 f"for an architecture with {model._flat_params.size} and "
                                 f"{model._flat_buffers.size}")
        model._flat_params[...] = params
        model._flat_buffers[...] = buffers
        model._rng.bit_generator.state = meta["rng_state"]
        model.train(bool(meta["training"]))
    except ValueError as e:
        if str(e).startswith(repr(os.fspath(path))):
            raise
        raise _invalid(path, f"bad architecture description ({e})") from e
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise _invalid(path, f"bad architecture description ({type(e).__name__}: {e})") from e
    return model
