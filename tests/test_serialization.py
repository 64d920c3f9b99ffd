"""save/load: one .npz file, no pickle, bit-identical predictions, damaged files rejected."""
import json
import os
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import serialization

from conftest import labels, normal


def trained_model(dtype="float32", seed=0):
    model = nn.Sequential(nn.Linear(6, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(10, 7, bias=False), nn.Tanh(), nn.Linear(7, 4), nn.Sigmoid(),
                          nn.Linear(4, 3), dtype=dtype, seed=seed)
    X = normal((64, 6), np.float64, "ser-x", dtype)
    y = labels(64, 3, "ser-y", dtype)
    model.fit(X, y, epochs=2, batch_size=16)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_gives_bit_identical_predictions(tmp_path, dtype):
    model, X = trained_model(dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastnn.load(path)
    assert loaded.dtype == model.dtype and len(loaded) == len(model)
    assert [type(a) for a in loaded] == [type(b) for b in model]
    assert [repr(a) for a in loaded] == [repr(b) for b in model]
    np.testing.assert_array_equal(loaded._flat_params, model._flat_params)
    np.testing.assert_array_equal(loaded._flat_buffers, model._flat_buffers)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.training == model.training and loaded.seed == model.seed
    # the generator state travels too: continued training is identical
    Xn = normal((32, 6), np.float64, "ser-more")
    yn = labels(32, 3, "ser-more-y")
    model.fit(Xn, yn, epochs=1, batch_size=8)
    loaded.fit(Xn, yn, epochs=1, batch_size=8)
    np.testing.assert_array_equal(loaded._flat_params, model._flat_params)
    # the loaded model's parameters are views of its own flat buffer
    for p in loaded.parameters():
        assert np.shares_memory(p.data, loaded._flat_params)


def test_eval_mode_and_exact_path_name_are_kept(tmp_path):
    model, X = trained_model()
    model.eval()
    path = tmp_path / "no-suffix"
    model.save(str(path))
    assert path.exists() and not (tmp_path / "no-suffix.npz").exists()
    assert not fastnn.load(path).training


def test_file_holds_no_pickle_and_a_json_description(tmp_path):
    model, _X = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == {"format", "meta", "params", "buffers", "digest"}
        assert all(f[k].dtype != object for k in f.files)
        meta = json.loads(f["meta"].tobytes().decode())
    assert meta["format_version"] == serialization.FORMAT_VERSION
    assert [layer["type"] for layer in meta["layers"]][:3] == ["Linear", "BatchNorm1d", "ReLU"]
    assert meta["layers"][4]["config"]["bias"] is False


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    model, _X = trained_model()
    path = tmp_path / "m.npz"
    path.write_bytes(b"old contents")
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]
    fastnn.load(path)


def test_custom_layers_cannot_be_saved(tmp_path):
    class Double(nn.Module):
        preserves_width = True

        def forward(self, x):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    model = nn.Sequential(nn.Linear(3, 2), Double(), seed=0)
    with pytest.raises(TypeError, match="Double"):
        model.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def _rewrite(path, out, change):
    """Copy the npz at path to out with change(name, array) -> array applied."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays = {k: change(k, v) for k, v in arrays.items()}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)


def test_truncated_and_damaged_files_raise_value_error(tmp_path):
    model, _X = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()

    for cut in (0, 10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid fastnn model file"):
            fastnn.load(bad)

    # one flipped byte inside the stored parameters: zip CRC or our digest catches it
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("params.npy")
    flipped = bytearray(data)
    flipped[info.header_offset + 30 + len(info.filename) + info.extra.__len__() + 200] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="not a valid fastnn model file"):
        fastnn.load(bad)

    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.npz")


def _meta_change(edit):
    def change(name, value):
        if name != "meta":
            return value
        meta = json.loads(value.tobytes().decode())
        edit(meta)
        return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return change


@pytest.mark.parametrize("case", ["params changed", "meta changed, digest not", "no digest",
                                  "extra array", "pickled object array", "wrong format",
                                  "not an npz", "plain npy"])
def test_tampered_files_raise_value_error(tmp_path, case):
    model, _X = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    bad = tmp_path / "bad.npz"
    if case == "params changed":
        _rewrite(path, bad, lambda k, v: v + 1 if k == "params" else v)
    elif case == "meta changed, digest not":
        def widen(meta):
            meta["layers"][0]["config"]["out_features"] = 11
        _rewrite(path, bad, _meta_change(widen))
    elif case == "no digest":
        _rewrite(path, bad, lambda k, v: None if k == "digest" else v)
    elif case == "extra array":
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["payload"] = np.zeros(3)
        np.savez(bad, **arrays)
    elif case == "pickled object array":
        _rewrite(path, bad, lambda k, v: np.array([{"x": 1}], dtype=object) if k == "meta" else v)
    elif case == "wrong format":
        _rewrite(path, bad, lambda k, v: np.array("something-else") if k == "format" else v)
    elif case == "not an npz":
        bad.write_text("hello, I am text")
    elif case == "plain npy":
        with open(bad, "wb") as fh:
            np.save(fh, np.zeros(3))
    with pytest.raises(ValueError, match="not a valid fastnn model file"):
        fastnn.load(bad)


def test_consistent_but_impossible_description_is_rejected(tmp_path):
    """A description rewritten with a matching digest still has to fit the arrays."""
    model, _X = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    for edit, message in [
        (lambda m: m["layers"][0]["config"].update(out_features=11), "n_params is 207"),
        # as many weights as before, in widths that do not chain
        (lambda m: m["layers"][4]["config"].update(in_features=7, out_features=10),
         "expects 7 features"),
        (lambda m: m["layers"][-1]["config"].update(out_features=5), "n_params"),
        (lambda m: (m["layers"][-1]["config"].update(out_features=5), m.pop("n_params")),
         r"params has dtype float32 and shape \(207,\); the architecture needs dtype "
         r"float32 and shape \(217,\)"),
        (lambda m: m.update(format_version=99), "format version"),
        (lambda m: m["layers"].append({"type": "Conv2d", "config": {}}), "Conv2d"),
        (lambda m: m["layers"][3]["config"].update(p=1.5), r"\[0, 1\)"),
        (lambda m: m.update(dtype="float64"), "dtype"),
        # JSON values of the wrong type are refused, not read as Python would coerce them
        (lambda m: m.update(training="false"), "training must be true or false"),
        (lambda m: m["layers"][1]["config"].update(eps="0.5"), "eps must be a JSON float"),
        (lambda m: m["layers"][1]["config"].update(momentum=True), "momentum must be"),
        (lambda m: m["layers"][4]["config"].update(bias="False"), "bias must be a JSON bool"),
        (lambda m: m.update(n_params="x"), "n_params is 'x'"),
        (lambda m: m.update(layer_training=[True]), "one true/false per layer"),
        (lambda m: m.update(kernels="os"), "kernels"),
    ]:
        bad = _forge(path, tmp_path / "bad.npz", edit)
        with pytest.raises(ValueError, match=message):
            fastnn.load(bad)


def _forge(path, out, edit_meta=None, meta_bytes=None, change=None):
    """Copy the model file at path to out with its meta edited (or replaced by
    meta_bytes) and arrays changed by change(name, array), under a matching digest."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if meta_bytes is None:
        meta = json.loads(arrays["meta"].tobytes().decode())
        if edit_meta is not None:
            edit_meta(meta)
        meta_bytes = json.dumps(meta).encode()
    if change is not None:
        arrays = {k: change(k, v) for k, v in arrays.items()}
    arrays["meta"] = np.frombuffer(meta_bytes, dtype=np.uint8)
    arrays["digest"] = serialization._digest(meta_bytes, arrays["params"], arrays["buffers"])
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def test_deeply_nested_meta_is_a_value_error(tmp_path):
    model, _X = trained_model()
    model.save(tmp_path / "m.npz")
    bad = _forge(tmp_path / "m.npz", tmp_path / "bad.npz",
                 meta_bytes=b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError, match="meta is not JSON"):
        fastnn.load(bad)


def test_large_declared_sizes_are_refused_before_allocating(tmp_path):
    """A small file that describes a huge layer, or whose params header declares a huge
    array (a zip member that would inflate to gigabytes), is refused from its headers."""
    import tracemalloc
    model = nn.Sequential(nn.Linear(3, 2), seed=0)
    model.save(tmp_path / "m.npz")
    huge_layer = _forge(tmp_path / "m.npz", tmp_path / "huge_layer.npz",
                        lambda m: (m["layers"][0]["config"].update(in_features=20_000,
                                                                   out_features=20_000),
                                   m.update(n_params=20_000 * 20_001)))
    bomb = tmp_path / "bomb.npz"       # params: 2e8 zeros, deflated to about 200 KB
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for key, value in arrays.items():
            with z.open(key + ".npy", "w", force_zip64=True) as member:
                if key != "params":
                    np.lib.format.write_array(member, value)
                    continue
                header = {"descr": "<f4", "fortran_order": False, "shape": (200_000_000,)}
                np.lib.format.write_array_header_1_0(member, header)
                zeros = bytes(1 << 20)
                for _ in range(800_000_000 >> 20):
                    member.write(zeros)
    assert os.path.getsize(bomb) < 5_000_000
    for bad, message in [(huge_layer, "needs dtype float32 and shape \\(400020000,\\)"),
                         (bomb, "params has dtype float32 and shape \\(200000000,\\)")]:
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=message):
                fastnn.load(bad)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10_000_000, (bad.name, peak)


def test_saved_weights_are_one_snapshot(tmp_path, monkeypatch):
    """The digest and the arrays written come from one copy: weights that change while
    the file is written (another thread training) still give a file that loads."""
    model, X = trained_model()
    before = model.predict(X)
    savez = np.savez

    def savez_while_training(f, **arrays):
        model._flat_params += 1.0        # what a training thread could do meanwhile
        savez(f, **arrays)

    monkeypatch.setattr(serialization.np, "savez", savez_while_training)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.npz").predict(X), before)


def test_file_permissions_follow_umask_and_the_replaced_file(tmp_path):
    model, _X = trained_model()
    old_umask = os.umask(0o077)
    try:
        model.save(tmp_path / "new.npz")
    finally:
        os.umask(old_umask)
    assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o600
    existing = tmp_path / "existing.npz"
    existing.write_bytes(b"")
    os.chmod(existing, 0o640)
    model.save(existing)
    assert os.stat(existing).st_mode & 0o777 == 0o640
    fastnn.load(existing)


def test_modes_kernels_and_bytes_paths_round_trip(tmp_path):
    model, X = trained_model()
    model.kernels = "reference"
    model[1].eval()                  # one BatchNorm frozen in a model that trains
    path = os.fsencode(tmp_path / "m.npz")
    model.save(path)
    loaded = fastnn.load(path)
    assert [layer.training for layer in loaded] == [layer.training for layer in model]
    assert loaded.training and not loaded[1].training
    assert loaded.kernels is fastnn.reference
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_custom_kernel_modules_cannot_be_saved(tmp_path):
    import types
    model, _X = trained_model()
    custom = types.ModuleType("my_kernels")
    custom.__dict__.update({name: getattr(fastnn.ops, name) for name in dir(fastnn.ops)
                            if not name.startswith("_")})
    model.kernels = custom
    with pytest.raises(TypeError, match="'my_kernels'.*'ops' or 'reference'"):
        model.save(tmp_path / "m.npz")
    assert not os.listdir(tmp_path)
