"""Save and load a Sequential as one NumPy .npz file, without pickle.

The file holds five arrays:

* ``format``: the string "fastnn-sequential" (a NumPy unicode array);
* ``meta``: UTF-8 JSON as uint8: format_version, dtype, seed, the model's and each
  layer's training mode, the kernels ("ops" or "reference"), the state of the model's
  random generator, and the architecture as a list of
  ``{"type": "Linear", "config": {...}}`` (constructor arguments);
* ``params`` and ``buffers``: the model's flat parameter and buffer arrays (see
  ``fastnn.nn.sequential``), in the model's dtype;
* ``digest``: SHA-256 of meta, params and buffers, so that a changed byte anywhere is caught
  even where the zip's CRC would not be checked or was recomputed.

It is written to a temporary file in the target directory, synced, then renamed over the
target (``os.replace``), so a crash never leaves a half-written model under the name.
Loading uses ``allow_pickle=False``: a file cannot make the loader run code. The loader
reads the arrays' headers and the small ``meta`` first, and compares the sizes that the
architecture implies with the declared ones before it reads or allocates anything large.
Anything missing, truncated or inconsistent raises ValueError.
"""
import hashlib
import json
import os
import secrets

import numpy as np

from fastnn.nn.layers import BatchNorm1d, Dropout, Linear, ReLU, Sigmoid, Tanh

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastnn-sequential"
FORMAT_VERSION = 1
LAYER_TYPES = {cls.__name__: cls for cls in (Linear, ReLU, Sigmoid, Tanh, Dropout, BatchNorm1d)}
_KEYS = {"format", "meta", "params", "buffers", "digest"}
#: far above any architecture's description; a larger meta is refused before it is read
MAX_META_BYTES = 1 << 24
#: the JSON type of each constructor argument a saved layer may give (no bool as a number)
_CONFIG_TYPES = {
    "Linear": {"in_features": int, "out_features": int, "bias": bool, "init": str},
    "ReLU": {}, "Sigmoid": {}, "Tanh": {},
    "Dropout": {"p": float},
    "BatchNorm1d": {"num_features": int, "eps": float, "momentum": float},
}
_KERNEL_NAMES = {"fastnn.ops": "ops", "fastnn.reference": "reference"}


def _digest(meta_bytes, params, buffers):
    h = hashlib.sha256()
    for part in (meta_bytes, params, buffers):      # C-contiguous: hashed in place
        h.update(len(part).to_bytes(8, "little") if isinstance(part, bytes)
                 else part.nbytes.to_bytes(8, "little"))
        h.update(part)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _kernels_name(model):
    module = model._kernels
    name = "fastnn.ops" if module is None else getattr(module, "__name__", None)
    if name not in _KERNEL_NAMES:
        raise TypeError(f"cannot save a model whose kernels are the module {name!r}: only "
                        "fastnn.ops and fastnn.reference can be saved; set "
                        "model.kernels = 'ops' or 'reference' first")
    return _KERNEL_NAMES[name]


def _create_beside(path):
    """Open a new temporary file in path's directory, created with mode 0o666 less the
    umask (as open() would create path itself); returns (file object, its name)."""
    directory = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(directory, f".fastnn-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return os.fdopen(fd, "wb"), tmp
    raise FileExistsError(f"no free temporary name in {directory!r}")


def save(model, path):
    """Write ``model`` (a Sequential of built-in layers) to ``path`` (exactly that name).

    The weights, buffers and generator state are copied first, then hashed and written
    from the copies, so a model trained by another thread meanwhile still gives a file
    that loads (holding the state of one moment)."""
    layers = []
    for i, layer in enumerate(model.layers):
        cls = type(layer)
        if LAYER_TYPES.get(cls.__name__) is not cls:
            raise TypeError(f"cannot save layer {i} of type {cls.__name__}: only the built-in "
                            f"layers {sorted(LAYER_TYPES)} can be saved")
        layers.append({"type": cls.__name__, "config": layer._config()})
    params = model._flat_params.copy()
    buffers = model._flat_buffers.copy()
    meta = {
        "format_version": FORMAT_VERSION,
        "dtype": model.dtype.name,
        "seed": model.seed,
        "training": model.training,
        "layer_training": [bool(layer.training) for layer in model.layers],
        "kernels": _kernels_name(model),
        "rng_state": model._rng.bit_generator.state,
        "layers": layers,
        "n_params": int(params.size),
        "n_buffers": int(buffers.size),
    }
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    arrays = {
        "format": np.array(FORMAT),
        "meta": np.frombuffer(meta_bytes, dtype=np.uint8),
        "params": params,
        "buffers": buffers,
        "digest": _digest(meta_bytes, params, buffers),
    }
    path = os.fsdecode(os.fspath(path))
    try:    # overwriting keeps the file's permissions
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    f, tmp = _create_beside(path)
    try:
        with f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _invalid(path, why):
    return ValueError(f"{os.fspath(path)!r} is not a valid fastnn model file: {why}")


def _declared(path, npz, key):
    """(shape, dtype) that member ``key`` declares in its .npy header, its data unread."""
    with npz.zip.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _invalid(path, f"array {key!r} has .npy format version {version}")
    return shape, dtype


def _json_is(value, kind):
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _layer_sizes(path, spec):
    """(parameters, buffer values) of a saved layer, from its description alone."""
    if not isinstance(spec, dict) or set(spec) != {"type", "config"}:
        raise _invalid(path, f"a layer must be {{'type': ..., 'config': ...}}, got {spec!r}")
    kind, config = spec["type"], spec["config"]
    types = _CONFIG_TYPES.get(kind) if isinstance(kind, str) else None
    if types is None:
        raise _invalid(path, f"unknown layer type {kind!r}")
    if not isinstance(config, dict):
        raise _invalid(path, f"the config of a {kind} must be an object, got {config!r}")
    for key, value in config.items():
        if key not in types:
            raise _invalid(path, f"{kind} has no argument {key!r}")
        if not _json_is(value, types[key]):
            raise _invalid(path, f"{kind}'s {key} must be a JSON {types[key].__name__}, "
                                 f"got {value!r}")
    counts = {k: config.get(k) for k in ("in_features", "out_features", "num_features")
              if k in types}
    for key, value in counts.items():
        if value is None or value < 1:
            raise _invalid(path, f"{kind}'s {key} must be given and at least 1, got {value!r}")
    if kind == "Linear":
        n_out = counts["out_features"]
        return counts["in_features"] * n_out + (n_out if config.get("bias", True) else 0), 0
    if kind == "BatchNorm1d":
        return 2 * counts["num_features"], 2 * counts["num_features"]
    return 0, 0


def _check_meta(path, meta):
    """Types of meta's fields; returns the (parameters, buffer values) it implies."""
    if not isinstance(meta, dict):
        raise _invalid(path, "meta is not a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise _invalid(path, f"format version {version!r}; this fastnn reads version "
                             f"{FORMAT_VERSION}")
    layers = meta.get("layers")
    if not isinstance(layers, list):
        raise _invalid(path, "meta has no list of layers")
    if not isinstance(meta.get("training"), bool):
        raise _invalid(path, f"training must be true or false, got {meta.get('training')!r}")
    sizes = [_layer_sizes(path, spec) for spec in layers]
    modes = meta.get("layer_training", [meta["training"]] * len(layers))
    if not (isinstance(modes, list) and len(modes) == len(layers)
            and all(isinstance(m, bool) for m in modes)):
        raise _invalid(path, f"layer_training must be one true/false per layer, got {modes!r}")
    n_params, n_buffers = sum(p for p, _b in sizes), sum(b for _p, b in sizes)
    for key, implied in (("n_params", n_params), ("n_buffers", n_buffers)):
        if key in meta and (not _json_is(meta[key], int) or meta[key] != implied):
            raise _invalid(path, f"{key} is {meta[key]!r} but the layers hold {implied}")
    return n_params, n_buffers


def _read(path):
    """(meta, params, buffers) of a model file, checked: headers and meta before the
    large arrays are read, the digest over everything."""
    fh = open(path, "rb")      # our own handle: np.load leaks its own if the zip is bad
    try:
        with fh:
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise _invalid(path, "a single .npy array, not an .npz archive")
            with npz:
                keys = set(npz.files)
                if keys != _KEYS:
                    raise _invalid(path, f"expected arrays {sorted(_KEYS)}, found "
                                         f"{sorted(keys)}")
                declared = {k: _declared(path, npz, k) for k in sorted(_KEYS)}
                shape, dtype = declared["format"]
                if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * 64:
                    raise _invalid(path, "missing the fastnn-sequential format marker")
                if str(npz["format"]) != FORMAT:
                    raise _invalid(path, "missing the fastnn-sequential format marker")
                (meta_shape, meta_dtype), (digest_shape, digest_dtype) = \
                    declared["meta"], declared["digest"]
                if meta_dtype != np.uint8 or len(meta_shape) != 1 or \
                        digest_dtype != np.uint8 or digest_shape != (32,):
                    raise _invalid(path, "malformed meta or digest array")
                if meta_shape[0] > MAX_META_BYTES:
                    raise _invalid(path, f"meta of {meta_shape[0]} bytes (at most "
                                         f"{MAX_META_BYTES})")
                meta_bytes = npz["meta"].tobytes()
                try:
                    meta = json.loads(meta_bytes.decode("utf-8"))
                except (ValueError, RecursionError) as e:     # UnicodeDecodeError too
                    raise _invalid(path, f"meta is not JSON ({type(e).__name__})") from e
                implied = _check_meta(path, meta)
                dtype = meta.get("dtype")
                if dtype not in ("float32", "float64"):
                    raise _invalid(path, f"dtype must be float32 or float64, got {dtype!r}")
                for key, size in zip(("params", "buffers"), implied):
                    shape, stored = declared[key]
                    if stored != np.dtype(dtype) or shape != (size,):
                        raise _invalid(path, f"{key} has dtype {stored} and shape {shape}; "
                                             f"the architecture needs dtype {dtype} and "
                                             f"shape ({size},)")
                params, buffers, digest = npz["params"], npz["buffers"], npz["digest"]
    except ValueError as e:
        if str(e).startswith(repr(os.fspath(path))):
            raise
        raise _invalid(path, f"unreadable ({e}); truncated or corrupted?") from e
    except Exception as e:      # zipfile.BadZipFile, zlib.error, EOFError, OSError, ...
        raise _invalid(path, f"unreadable ({type(e).__name__}: {e}); truncated or "
                             "corrupted?") from e
    if not np.array_equal(_digest(meta_bytes, params, buffers), digest):
        raise _invalid(path, "checksum mismatch (the file was changed or damaged)")
    return meta, params, buffers


def load(path):
    """Read a model written by ``Sequential.save``; returns an equal Sequential (same
    architecture, dtype, weights, running statistics, modes, kernels and generator
    state)."""
    from fastnn.nn.sequential import Sequential

    meta, params, buffers = _read(path)
    try:
        layers = [LAYER_TYPES[spec["type"]](**spec["config"]) for spec in meta["layers"]]
        model = Sequential(*layers, dtype=meta["dtype"], seed=meta["seed"],
                           kernels=meta.get("kernels"))
        model._flat_params[...] = params
        model._flat_buffers[...] = buffers
        model._rng.bit_generator.state = meta["rng_state"]
        model.train(meta["training"])
        for layer, mode in zip(model.layers, meta.get("layer_training", [])):
            layer.train(mode)
    except ValueError as e:
        raise _invalid(path, f"bad architecture description ({e})") from e
    except (KeyError, TypeError, AttributeError) as e:
        raise _invalid(path, f"bad architecture description ({type(e).__name__}: {e})") from e
    return model
