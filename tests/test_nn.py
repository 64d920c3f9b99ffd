"""fastnn.nn: layers, Sequential, fit/predict, regularisation, early stopping, bad input.

Everything here runs without PyTorch; test_torch_parity.py holds the numbers to PyTorch's.
"""
import copy
import pickle
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn.losses import Loss
from fastnn.nn.sequential import TrainingDivergedError

from conftest import labels, normal, rng_for

F64 = np.float64


def small_model(seed=0, dtype="float64", dropout=0.0, act=nn.ReLU, batchnorm=True):
    layers = [nn.Linear(5, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers.append(act())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(8, 3)]
    return nn.Sequential(*layers, dtype=dtype, seed=seed)


def blobs(n, key, n_features=5, n_classes=3, spread=1.0):
    """Separable-ish classes: fixed class centres (so every key draws from one problem)
    plus unit noise."""
    y = labels(n, n_classes, "blobs-y", key)
    centres = rng_for("blobs-c", n_features, n_classes).normal(0, 3, (n_classes, n_features))
    X = centres[y] + spread * rng_for("blobs-x", key).standard_normal((n, n_features))
    return X, y


def state(model):
    return (model._flat_params.copy(), model._flat_buffers.copy(),
            model._rng.bit_generator.state, model.training)


def assert_state_equal(model, before):
    np.testing.assert_array_equal(model._flat_params, before[0])
    np.testing.assert_array_equal(model._flat_buffers, before[1])
    assert model._rng.bit_generator.state == before[2]
    assert model.training == before[3]


# ------------------------------------------------------------------ structure


def test_public_names_exported():
    for name in ["Parameter", "Linear", "ReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d",
                 "Sequential", "EarlyStopping", "History", "CrossEntropyLoss", "MSELoss",
                 "BCEWithLogitsLoss", "load"]:
        assert getattr(fastnn, name) is getattr(nn, name)
    assert fastnn.optim.SGD and fastnn.optim.Adam and fastnn.optim.AdamW


def test_parameters_are_views_into_one_flat_buffer():
    model = small_model()
    params = model.parameters()
    assert [p.name for p in params] == ["0.weight", "0.bias", "1.weight", "1.bias",
                                        "3.weight", "3.bias"]
    assert sum(p.size for p in params) == model._flat_params.size
    for p in params:
        assert p.data.dtype == np.float64 and p.grad.shape == p.data.shape
        assert np.shares_memory(p.data, model._flat_params)
        assert np.shares_memory(p.grad, model._flat_grads)
    # the penalised weights (Linear weights) come first, so l1/l2 are one slice
    n = model._n_penalised
    assert n == 5 * 8 + 8 * 3
    assert np.shares_memory(model[0].weight.data, model._flat_params[:n])
    assert np.shares_memory(model[3].weight.data, model._flat_params[:n])
    assert not np.shares_memory(model[0].bias.data, model._flat_params[:n])
    # writing a parameter writes the buffer; assignment copies into the view
    model[0].bias.data = np.arange(8.0)
    np.testing.assert_array_equal(model._flat_params[n:n + 8], np.arange(8.0))
    with pytest.raises(ValueError, match="shape"):
        model[0].bias.data = np.zeros(3)
    # batch-norm statistics live in the flat buffer of buffers
    assert np.shares_memory(model[1].running_mean, model._flat_buffers)
    assert np.shares_memory(model[1].running_var, model._flat_buffers)


def test_sequential_is_indexable_iterable_and_checks_widths():
    model = small_model()
    assert len(model) == 4 and list(model) == model.layers and isinstance(model[1], nn.BatchNorm1d)
    assert model.n_features_in == 5 and model.n_outputs == 3
    assert model.training
    model.eval()
    assert not any(layer.training for layer in model)
    model.train()
    assert all(layer.training for layer in model)
    with pytest.raises(ValueError, match="expects 7 features"):
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(7, 2))
    with pytest.raises(ValueError, match="already belongs"):
        lin = nn.Linear(2, 2)
        nn.Sequential(lin)
        nn.Sequential(lin)
    with pytest.raises(ValueError, match="dtype"):
        nn.Sequential(nn.Linear(2, 2), dtype="int32")


def test_linear_init_is_pytorch_default_and_seeded():
    model = nn.Sequential(nn.Linear(400, 300), seed=3)
    w, b = model[0].weight.data, model[0].bias.data
    assert w.shape == (400, 300) and w.dtype == np.float32
    bound = 1 / np.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # uniform on [-bound, bound]: variance bound^2 / 3
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.02
    again = nn.Sequential(nn.Linear(400, 300), seed=3)
    np.testing.assert_array_equal(again._flat_params, model._flat_params)
    other = nn.Sequential(nn.Linear(400, 300), seed=4)
    assert not np.array_equal(other._flat_params, model._flat_params)
    f64 = nn.Sequential(nn.Linear(400, 300), seed=3, dtype="float64")
    np.testing.assert_array_equal(f64._flat_params.astype(np.float32), model._flat_params)
    he = nn.Sequential(nn.Linear(400, 300, init="he_uniform"), seed=3)
    assert np.abs(he[0].weight.data).max() > 2 * bound and not he[0].bias.data.any()


def test_predict_is_eval_mode_and_keeps_the_mode():
    model = small_model(dropout=0.5)
    X = normal((20, 5), F64, "predict-eval")
    model.forward(normal((30, 5), F64, "warm"))       # move the running statistics
    assert model.training
    p1 = model.predict(X)
    assert model.training
    model.eval()
    expected = model.forward(X)
    np.testing.assert_array_equal(p1, expected)
    np.testing.assert_array_equal(model.predict(X, batch_size=7), expected)
    model.train()
    assert not np.allclose(model.forward(X), expected)     # dropout and batch statistics


def test_inputs_take_the_model_dtype():
    model = small_model(dtype="float32")
    X = normal((6, 5), F64, "dtype")
    out = model.predict(X)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(model.predict(X.astype(np.float32)), out)
    np.testing.assert_array_equal(model.predict(np.asfortranarray(X)[:, :]), out)
    Xi = np.arange(30).reshape(6, 5)
    assert model.predict(Xi).dtype == np.float32
    assert model.forward(Xi.tolist()).dtype == np.float32


# ------------------------------------------------------------ layers


def test_dropout_probability_is_checked():
    for p in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            nn.Dropout(p)
    assert nn.Dropout(0.0).p == 0.0


def test_batchnorm_arguments_are_checked():
    for kwargs, error, message in [({"eps": "0.5"}, TypeError, "eps must be a real number"),
                                   ({"momentum": True}, TypeError, "momentum must be a real"),
                                   ({"eps": 0.0}, ValueError, "eps must be"),
                                   ({"momentum": 1.5}, ValueError, r"\[0, 1\]")]:
        with pytest.raises(error, match=message):
            nn.BatchNorm1d(3, **kwargs)


def test_dropout_is_seeded_by_the_model_and_identity_in_eval():
    x = normal((40, 10), F64, "dropout-x")
    a = nn.Sequential(nn.Dropout(0.4), dtype="float64", seed=7)
    b = nn.Sequential(nn.Dropout(0.4), dtype="float64", seed=7)
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a.forward(x), ya)                 # a new mask per call
    a.eval()
    np.testing.assert_array_equal(a.forward(x), x)
    np.testing.assert_array_equal(a.backward(x), x)
    zero = nn.Sequential(nn.Dropout(0.0), dtype="float64", seed=1)
    np.testing.assert_array_equal(zero.forward(x), x)


def test_batchnorm_training_needs_two_rows_and_eval_does_not():
    model = small_model()
    before = state(model)
    with pytest.raises(ValueError, match="more than 1 row"):
        model.forward(normal((1, 5), F64, "one-row"))
    assert_state_equal(model, before)
    model.eval()
    assert model.forward(normal((1, 5), F64, "one-row")).shape == (1, 3)
    assert model.predict(normal((1, 5), F64, "one-row")).shape == (1, 3)


def test_batchnorm_running_statistics_formula():
    bn = nn.BatchNorm1d(4, momentum=0.2)
    model = nn.Sequential(bn, dtype="float64")
    x = normal((9, 4), F64, "bn-running", scale=3.0, shift=1.0)
    model.forward(x)
    np.testing.assert_allclose(bn.running_mean, 0.2 * x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, 0.8 + 0.2 * x.var(0, ddof=1), rtol=1e-14)
    model.eval()
    expected = (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5)
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-13, atol=1e-14)


def test_activation_layers_use_the_kernels():
    x = normal((4, 6), F64, "acts", scale=3.0)
    for layer, expected in [(nn.ReLU(), np.maximum(x, 0)), (nn.Tanh(), np.tanh(x)),
                            (nn.Sigmoid(), 1 / (1 + np.exp(-x)))]:
        np.testing.assert_allclose(layer(x), expected, rtol=1e-15, atol=1e-300)


# ------------------------------------------------- finite-difference gradients


def _objective(model, X, y, loss_fn, l1, l2, rng_state):
    model._rng.bit_generator.state = rng_state          # same dropout mask every time
    value = loss_fn(model.forward(X), y)
    w = model._flat_params[:model._n_penalised]
    return value + l1 * np.abs(w).sum() + l2 * np.dot(w, w)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.Sigmoid])
@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse", "bce"])
def test_whole_network_gradient_matches_finite_differences(act, loss_name):
    """Every parameter and input gradient of a Linear-BatchNorm-act-Dropout-Linear-act-Linear
    network with l1 and l2 terms, against central differences in float64.

    Central differences with h = 1e-6 have truncation error ~h^2 * f''' ~ 1e-12 and
    rounding error ~eps * |f| / h ~ 1e-10; 1e-6 relative to the gradient's scale leaves
    room for both while catching any wrong term (those are O(1) relative errors)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), act(), nn.Dropout(0.25),
                          nn.Linear(6, 5), act(), nn.Linear(5, 3), dtype="float64", seed=11)
    X = normal((7, 4), F64, "fd-x", act.__name__, loss_name)
    if loss_name == "cross_entropy":
        y, loss_fn = labels(7, 3, "fd-y", act.__name__), nn.CrossEntropyLoss(label_smoothing=0.1)
    elif loss_name == "mse":
        y, loss_fn = normal((7, 3), F64, "fd-t"), nn.MSELoss()
    else:
        y, loss_fn = rng_for("fd-b").uniform(0, 1, (7, 3)), nn.BCEWithLogitsLoss()
    l1, l2 = 0.01, 0.02
    rng_state = model._rng.bit_generator.state

    model._rng.bit_generator.state = rng_state
    loss_fn(model.forward(X), y)
    dx = model.backward(loss_fn.backward())
    model._penalty(l1, l2)
    grads = model._flat_grads.copy()

    h = 1e-6
    flat = model._flat_params
    numeric = np.empty_like(grads)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + h
        up = _objective(model, X, y, loss_fn, l1, l2, rng_state)
        flat[i] = orig - h
        down = _objective(model, X, y, loss_fn, l1, l2, rng_state)
        flat[i] = orig
        numeric[i] = (up - down) / (2 * h)
    scale = np.abs(numeric).max()
    assert np.abs(grads - numeric).max() <= 1e-6 * scale
    assert np.abs(grads[:model._n_penalised]).min() > 0          # the l1 term is in

    numeric_dx = np.empty_like(X)
    for idx in np.ndindex(X.shape):
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += h
        Xm[idx] -= h
        numeric_dx[idx] = (_objective(model, Xp, y, loss_fn, 0, 0, rng_state)
                           - _objective(model, Xm, y, loss_fn, 0, 0, rng_state)) / (2 * h)
    assert np.abs(dx - numeric_dx).max() <= 1e-6 * np.abs(numeric_dx).max()


# --------------------------------------------------------------- training


def test_same_seed_gives_bit_identical_weights():
    X, y = blobs(90, "seed")
    runs = []
    for seed in (5, 5, 6):
        model = small_model(seed=seed, dtype="float32", dropout=0.3)
        model.fit(X, y, epochs=3, batch_size=16, l1=1e-4, l2=1e-3, validation_split=0.2)
        runs.append(model._flat_params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_fit_learns_and_records_history():
    X, y = blobs(300, "learn")
    Xv, yv = blobs(100, "learn-val")
    model = small_model(seed=1, dtype="float32")
    history = model.fit(X, y, epochs=8, lr=1e-2, validation_data=(Xv, yv))
    assert history is model.history
    assert set(history.history) == {"loss", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in history.history.values())
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    assert len(history.times) == 8 and all(t >= 0 for t in history.times)
    # val_loss is the data loss of the final model on the validation set
    final = nn.CrossEntropyLoss()(model.predict(Xv), yv)
    assert history.history["val_loss"][-1] == final
    # one-hot targets train too
    onehot = fastnn.one_hot(y, 3)
    h2 = small_model(seed=1).fit(X, onehot, epochs=2, validation_split=0.1)
    assert set(h2.history) == {"loss", "val_loss", "val_accuracy"}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_every_optimizer_name_trains(optimizer):
    X, y = blobs(120, "opt-names")
    model = small_model(seed=2, dtype="float32")
    lr = 0.05 if optimizer in ("sgd", "momentum", "nesterov") else 0.01
    h = model.fit(X, y, optimizer=optimizer, lr=lr, epochs=4)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_regression_and_binary_losses_train():
    X = normal((150, 5), F64, "reg-x")
    t = X @ rng_for("reg-w").normal(size=(5, 2)) + 0.1
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2), dtype="float64", seed=0)
    h = model.fit(X, t, loss="mse", lr=1e-2, epochs=20, validation_split=0.2)
    assert set(h.history) == {"loss", "val_loss"}
    assert h.history["val_loss"][-1] < 0.2 * h.history["val_loss"][0]
    b = (X[:, 0] + X[:, 1] > 0).astype(float)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1), dtype="float64", seed=0)
    h = model.fit(X, b, loss="binary_cross_entropy", lr=1e-2, epochs=20, validation_split=0.2)
    assert h.history["val_accuracy"][-1] > 0.9


def test_large_l2_shrinks_and_large_l1_sparsifies_weights():
    X, y = blobs(200, "penalty")
    kw = dict(epochs=30, lr=1e-2, batch_size=32)
    weights = {}
    for name, pen in [("none", {}), ("l2", {"l2": 0.5}), ("l1", {"l1": 0.05})]:
        model = small_model(seed=3, dtype="float64", batchnorm=False)
        model.fit(X, y, **kw, **pen)
        weights[name] = model._flat_params[:model._n_penalised].copy()
    norm = {k: np.linalg.norm(w) for k, w in weights.items()}
    assert norm["l2"] < 0.3 * norm["none"]
    # Adam with an l1 subgradient leaves pruned weights oscillating within ~lr of zero
    near_zero = {k: np.mean(np.abs(w) < 1e-2) for k, w in weights.items()}
    assert near_zero["l1"] > 0.5 and near_zero["l1"] > 4 * near_zero["none"]


def test_early_stopping_stops_on_a_plateau_and_restores_the_best():
    # labels that are pure noise: validation loss stops improving almost at once
    X = normal((120, 5), F64, "plateau-x")
    y = labels(120, 3, "plateau-y")
    Xv = normal((60, 5), F64, "plateau-xv")
    yv = labels(60, 3, "plateau-yv")
    model = small_model(seed=4, dtype="float64")
    stop = nn.EarlyStopping(patience=3)
    h = model.fit(X, y, epochs=200, lr=1e-2, validation_data=(Xv, yv), early_stopping=stop)
    n = len(h.epoch)
    assert n < 200 and h.stopped_early and stop.stopped_epoch == n - 1
    val = h.history["val_loss"]
    assert stop.best == min(val) and stop.best_epoch == int(np.argmin(val))
    assert n == stop.best_epoch + 1 + 3
    # the restored model's validation loss is the best one recorded, exactly
    assert nn.CrossEntropyLoss()(model.predict(Xv), yv) == stop.best


def test_early_stopping_restores_the_best_when_epochs_run_out():
    X, y = blobs(100, "run-out")
    Xv, yv = blobs(50, "run-out-val")
    model = small_model(seed=5, dtype="float64", dropout=0.2)
    stop = nn.EarlyStopping(patience=100)
    h = model.fit(X, y, epochs=12, lr=0.05, validation_data=(Xv, yv), early_stopping=stop)
    assert len(h.epoch) == 12 and not h.stopped_early
    assert nn.CrossEntropyLoss()(model.predict(Xv), yv) == min(h.history["val_loss"])
    # and with val_accuracy, higher is better
    acc_stop = nn.EarlyStopping(monitor="val_accuracy", patience=100)
    model.fit(X, y, epochs=5, lr=0.05, validation_data=(Xv, yv), early_stopping=acc_stop)
    assert acc_stop.best == max(model.history.history["val_accuracy"])


def test_divergence_raises_and_keeps_finite_weights():
    X, y = blobs(64, "diverge")
    X = X * 1e3
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3), dtype="float32", seed=0)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+.*learning rate 1e\+30"):
        model.fit(X, y, optimizer="sgd", lr=1e30, epochs=5)
    assert np.all(np.isfinite(model._flat_params))
    assert issubclass(TrainingDivergedError, ValueError)


def test_divergence_keeps_the_last_finite_state_on_both_paths():
    """After a divergence both paths leave the model as after the last update that kept
    the weights finite: weights, running statistics, generator and optimizer state all
    equal those of a fit that stops right there."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)) * 10, rng.normal(size=(64, 1)) * 100

    def model_and_opt(compiled):
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1),
                              nn.Linear(8, 1), seed=0)
        opt = fastnn.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        model.fit(X, y, loss="mse", optimizer=opt, epochs=1, batch_size=8, compiled=compiled)
        opt.lr = 3.0
        return model, opt

    def state(model, opt):
        return (model._flat_params.copy(), model._flat_buffers.copy(),
                model._rng.bit_generator.state, opt.step_count,
                opt._momentum_buffer[0].copy())

    ends = {}
    for compiled in (None, False):
        model, opt = model_and_opt(compiled)
        steps = opt.step_count
        with pytest.raises(TrainingDivergedError, match="epoch 1, batch"):
            model.fit(X, y, loss="mse", optimizer=opt, epochs=3, batch_size=8, shuffle=False,
                      compiled=compiled)
        kept = opt.step_count - steps
        assert 1 <= kept < 8 and np.isfinite(model._flat_params).all()
        twin, twin_opt = model_and_opt(compiled)
        twin.fit(X[:8 * kept], y[:8 * kept], loss="mse", optimizer=twin_opt, epochs=1,
                 batch_size=8, shuffle=False, compiled=compiled)
        ends[compiled] = state(model, opt)
        assert_same(ends[compiled], state(twin, twin_opt))
    assert_same(ends[None], ends[False])


def assert_same(state, other):
    for a, b in zip(state, other):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def test_an_error_during_training_puts_the_model_back():
    """A loss object of one's own that refuses the targets at the first batch (after the
    training-mode forward moved the running statistics): the model is as before fit."""
    class StrictMSE(Loss):
        def forward(self, outputs, targets):
            if targets.shape != outputs.shape:
                raise ValueError(f"target shape {targets.shape} != output shape "
                                 f"{outputs.shape}")
            return fastnn.ops.mse_loss(outputs, targets)

    X, _y = blobs(40, "strict-loss")
    model = small_model(seed=2)
    before = state(model)
    with pytest.raises(ValueError, match="target shape"):
        model.fit(X, np.zeros((40, 2)), loss=StrictMSE(), epochs=2)
    assert_state_equal(model, before)


def test_loss_and_optimizer_classes_are_refused():
    X, y = blobs(20, "classes")
    model = small_model(seed=2)
    before = state(model)
    with pytest.raises(TypeError, match="CrossEntropyLoss\\(\\)"):
        model.fit(X, y, loss=nn.CrossEntropyLoss)
    for cls in (fastnn.optim.Adam, fastnn.optim.SGD):
        with pytest.raises(TypeError, match="a class"):
            model.fit(X, y, optimizer=cls)
    assert_state_equal(model, before)


def test_an_optimizer_of_another_model_is_refused():
    X, y = blobs(20, "foreign")
    model, other = small_model(seed=2), small_model(seed=3)
    before = state(model)
    with pytest.raises(ValueError, match="none of this model's parameters"):
        model.fit(X, y, optimizer=fastnn.optim.Adam(other.parameters()))
    assert_state_equal(model, before)
    # a subset (freezing the other layers) is fine
    model.fit(X, y, optimizer=fastnn.optim.Adam(model[0].parameters()), epochs=1)


@pytest.mark.parametrize("n, split, n_val", [(10, 0.25, 3), (100, 0.29, 29), (7, 0.5, 4),
                                             (3, 0.5, 2), (2, 0.3, 1), (100, 0.25, 25)])
def test_validation_split_holds_out_as_many_rows_as_keras(n, split, n_val):
    # Keras keeps floor(n * (1 - split)) rows for training
    X, y = blobs(n, "split-count")
    model = nn.Sequential(nn.Linear(5, 3), seed=0)
    h = model.fit(X, y, epochs=1, validation_split=split, shuffle=False)
    assert h.history["val_loss"][0] == nn.CrossEntropyLoss()(model.predict(X[n - n_val:]),
                                                             y[n - n_val:])


def test_early_stopping_never_counts_nan_as_best():
    # as Keras, whose best starts at infinity: NaN is no improvement
    stop = nn.EarlyStopping(patience=2)
    stop._reset()
    snapshot = iter(range(10)).__next__
    stopped = [stop._on_epoch_end(e, {"val_loss": v}, snapshot)
               for e, v in enumerate([float("nan"), 6.0, 4.0, 8.0])]
    assert stopped == [False, False, False, False]
    assert stop.best == 4.0 and stop.best_epoch == 2 and stop._best_state == 1
    assert nn.EarlyStopping(patience=np.int64(3)).patience == 3
    with pytest.raises(TypeError, match="patience"):
        nn.EarlyStopping(patience=2.5)


def test_backward_before_forward_is_a_clear_error():
    for layer in (nn.Linear(3, 2), nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.Dropout(0.5),
                  nn.BatchNorm1d(3)):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.ones((4, 2 if isinstance(layer, nn.Linear) else 3)))
    dropout = nn.Dropout(0.5).eval()
    x = np.ones((2, 3))
    np.testing.assert_array_equal(dropout.backward(dropout.forward(x)), x)


def test_parameters_hold_real_numbers():
    with pytest.raises(TypeError, match="found None"):
        nn.Parameter(np.array([1.0, None]))
    with pytest.raises(TypeError, match="complex"):
        nn.Parameter(np.array([1 + 2j]))
    p = nn.Parameter([1.0, 2.0])
    with pytest.raises(TypeError, match="complex"):
        p.data = np.array([1j, 2])
    np.testing.assert_array_equal(p.data, [1.0, 2.0])


def test_a_parameter_in_two_layers_is_refused():
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight
    with pytest.raises(ValueError, match="more than one layer"):
        nn.Sequential(first, nn.Tanh(), second)


def test_a_failed_loss_call_leaves_no_gradient_behind():
    loss = nn.CrossEntropyLoss()
    loss(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError):
        loss(np.zeros((2, 3)), np.array([0, 7]))
    with pytest.raises(RuntimeError, match="before the loss"):
        loss.backward()


def test_validation_split_takes_the_last_samples():
    X, y = blobs(100, "split")
    model = small_model(seed=6)
    h = model.fit(X, y, epochs=1, validation_split=0.25, shuffle=False)
    assert h.history["val_loss"][0] == nn.CrossEntropyLoss()(model.predict(X[75:]), y[75:])


def test_batchnorm_model_trains_when_a_batch_would_have_one_row():
    X, y = blobs(33, "one-left")
    model = small_model(seed=7)
    model.fit(X, y, epochs=2, batch_size=16)       # batches 16, 17: the last row joins
    assert np.all(np.isfinite(model._flat_params))


def test_verbose_prints_a_line_per_epoch(capsys):
    X, y = blobs(50, "verbose")
    small_model().fit(X, y, epochs=3, validation_split=0.2, verbose=2)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and all("loss" in line and "val_accuracy" in line and " s" in line
                                 for line in out)
    small_model().fit(X, y, epochs=2, verbose=1)      # tqdm bar or line: must not fail


# --------------------------------------------------------------- bad input


def _bad_fit_cases():
    X, y = blobs(40, "bad")
    nan_X = X.copy()
    nan_X[3, 2] = np.nan
    inf_X = X.copy()
    inf_X[0, 0] = np.inf
    return {
        "nan in X": (dict(X=nan_X, y=y), "NaN"),
        "inf in X": (dict(X=inf_X, y=y), "NaN or infinity"),
        "float32 overflow": (dict(X=X * 1e300, y=y), "infinity"),
        "length mismatch": (dict(X=X, y=y[:-1]), "40 samples"),
        "wrong feature count": (dict(X=X[:, :4], y=y), "4 features"),
        "empty X": (dict(X=X[:0], y=y[:0]), "empty"),
        "3-D X": (dict(X=X.reshape(40, 5, 1), y=y), "2-D"),
        "1-D X": (dict(X=X[:, 0], y=y), "2-D"),
        "label too large": (dict(X=X, y=np.where(y == 0, 3, y)), r"\[0, 3\)"),
        "negative label": (dict(X=X, y=y - 1), r"\[0, 3\)"),
        "non-integer label": (dict(X=X, y=y + 0.5), "integer"),
        "one-hot of wrong width": (dict(X=X, y=np.eye(4)[y % 4]), "columns"),
        "lr zero": (dict(X=X, y=y, lr=0.0), "lr"),
        "lr negative": (dict(X=X, y=y, lr=-1e-3), "lr"),
        "lr nan": (dict(X=X, y=y, lr=float("nan")), "lr"),
        "epochs zero": (dict(X=X, y=y, epochs=0), "epochs"),
        "batch_size zero": (dict(X=X, y=y, batch_size=0), "batch_size"),
        "negative l2": (dict(X=X, y=y, l2=-1.0), "l2"),
        "negative l1": (dict(X=X, y=y, l1=-1.0), "l1"),
        "validation_split 1": (dict(X=X, y=y, validation_split=1.0), "validation_split"),
        "both validations": (dict(X=X, y=y, validation_split=0.2, validation_data=(X, y)),
                             "not both"),
        "nan in X_val": (dict(X=X, y=y, validation_data=(nan_X, y)), "X_val"),
        "bad y_val": (dict(X=X, y=y, validation_data=(X, y + 3)), r"y_val.*\[0, 3\)"),
        "unknown loss": (dict(X=X, y=y, loss="hinge"), "unknown loss"),
        "unknown optimizer": (dict(X=X, y=y, optimizer="rmsprop"), "unknown optimizer"),
        "early stopping without validation": (dict(X=X, y=y, early_stopping=nn.EarlyStopping()),
                                              "no validation data"),
        "bad verbose": (dict(X=X, y=y, verbose=3), "verbose"),
        "nan target (mse)": (dict(X=X, y=np.full((40, 3), np.nan), loss="mse"), "NaN"),
    }


@pytest.mark.parametrize("case", sorted(_bad_fit_cases()))
def test_bad_fit_input_raises_and_leaves_the_model_unchanged(case):
    kwargs, message = _bad_fit_cases()[case]
    model = small_model(seed=8, dtype="float32", dropout=0.2)
    model.forward(normal((10, 5), F64, "bad-warm"))   # non-trivial running statistics
    before = state(model)
    history_before = model.history
    with pytest.raises(ValueError, match=message):
        model.fit(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
    assert_state_equal(model, before)
    assert model.history is history_before


def test_bad_predict_input_raises():
    model = small_model()
    X = normal((4, 5), F64, "bad-predict")
    for bad, message in [(X[:, :3], "3 features"), (X[:0], "empty"), (X[None], "2-D"),
                         (np.where(X > 0, np.nan, X), "NaN")]:
        with pytest.raises(ValueError, match=message):
            model.predict(bad)
    with pytest.raises(TypeError):
        model.predict(np.array([["a"] * 5]))


def test_batchnorm_model_needs_two_training_samples():
    model = small_model()
    before = state(model)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(np.ones((1, 5)), [0])
    assert_state_equal(model, before)
    # nor with one row per batch, on either path (the compiled one trained on, with NaN
    # running variances, before this was checked)
    X, y = blobs(10, "bn-batch-1")
    for compiled in (None, False):
        with pytest.raises(ValueError, match="batch_size=1"):
            model.fit(X, y, batch_size=1, compiled=compiled)
        assert_state_equal(model, before)


# ------------------------------------------------- copies, threads, kernels


def test_pickle_and_deepcopy_keep_the_flat_buffer_tied():
    X, y = blobs(60, "copy")
    model = small_model(seed=9, dtype="float32", dropout=0.2)
    model.fit(X, y, epochs=2)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone.predict(X), model.predict(X))
        for p in clone.parameters():
            assert np.shares_memory(p.data, clone._flat_params)
        assert np.shares_memory(clone[1].running_mean, clone._flat_buffers)
        before = model._flat_params.copy()
        clone.fit(X, y, epochs=1)
        np.testing.assert_array_equal(model._flat_params, before)      # original untouched
        assert not np.array_equal(clone._flat_params, before)


def test_shallow_copy_shares_the_model_and_leaves_it_working():
    X, y = blobs(60, "shallow-copy")
    model, twin = small_model(seed=9, dtype="float32"), small_model(seed=9, dtype="float32")
    shallow = copy.copy(model)
    assert shallow.layers[0] is model.layers[0] and shallow._flat_params is model._flat_params
    model.fit(X, y, epochs=2)
    twin.fit(X, y, epochs=2)
    np.testing.assert_array_equal(model._flat_params, twin._flat_params)
    model.eval()
    np.testing.assert_array_equal(model.predict(X), model.forward(X))
    np.testing.assert_array_equal(shallow.predict(X), model.predict(X))


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_copied_layer_is_its_own(how):
    """A layer copied out of a model holds its own arrays only: it can join another
    model, and an optimizer updates the copy's weights."""
    model = nn.Sequential(nn.Linear(400, 300, bias=False), nn.ReLU(), nn.Linear(300, 2),
                          seed=3)
    layer = model[2]
    if how == "pickle":
        blob = pickle.dumps(layer)
        assert len(blob) < 2 * (layer.weight.data.nbytes + layer.bias.data.nbytes) + 2000
        clone = pickle.loads(blob)
    else:
        clone = copy.deepcopy(layer)
    np.testing.assert_array_equal(clone.weight.data, layer.weight.data)
    before = clone.weight.data.copy()
    clone.weight.grad[...] = 1.0
    clone.bias.grad[...] = 1.0
    fastnn.optim.SGD(clone.parameters(), lr=0.5).step()
    np.testing.assert_array_equal(clone.weight.data, before - 0.5)
    other = nn.Sequential(clone, seed=1)
    assert np.shares_memory(clone.weight.data, other._flat_params)
    np.testing.assert_array_equal(model[2].weight.data, before)     # original untouched


def test_predict_from_several_threads_at_once():
    X, y = blobs(400, "threads")
    model = small_model(seed=10, dtype="float32", dropout=0.3)
    model.fit(X, y, epochs=2)
    expected = model.predict(X)
    results, errors = [None] * 6, []

    def work(i):
        try:
            for _ in range(20):
                out = model.predict(X[i * 50:(i + 2) * 50])
                np.testing.assert_array_equal(out, expected[i * 50:(i + 2) * 50])
            results[i] = True
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(results)
    assert model.training


class _ZeroWhileTraining(nn.Module):
    """A custom layer without its own infer: the identity in eval mode, zeros in
    training mode, slow enough that threads overlap inside its forward."""
    preserves_width = True

    def forward(self, x):
        y = np.array(x, copy=True)
        time.sleep(0.001)
        return y * 0 if self.training else y

    def backward(self, dy):
        return dy


def test_predict_from_several_threads_through_a_custom_layer():
    # the default Module.infer switches the layer to eval mode for the call; no thread
    # may find it switched back half-way through
    model = nn.Sequential(nn.Linear(4, 3), _ZeroWhileTraining(), seed=0)
    X = normal((50, 4), F64, "custom-threads")
    expected = model.predict(X)
    assert np.abs(expected).sum() > 0 and model.training
    wrong = []

    def work():
        for _ in range(50):
            wrong.append(not np.array_equal(model.predict(X), expected))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wrong) == 200 and not any(wrong)
    assert model.training


class _Square(nn.Module):
    """A custom activation that caches its input for backward."""
    preserves_width = True

    def forward(self, x):
        self._x = x
        return x * x

    def backward(self, dy):
        return 2 * self._x * dy


def test_default_infer_leaves_the_layer_as_it_was():
    """A predict between a training forward and its backward (another thread's) must not
    replace the cache that backward reads, nor the layer's mode."""
    layer = _Square()
    x, other = normal((5, 3), F64, "square-x"), normal((2, 3), F64, "square-other")
    layer.forward(x)
    np.testing.assert_array_equal(layer.infer(other), other * other)
    assert layer.training and layer._x is x
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), 2 * x)


class _Counter(nn.Module):
    """A custom layer with a buffer, through the documented buffers() hook."""
    preserves_width = True

    def __init__(self):
        super().__init__()
        self.seen = np.arange(6.0).reshape(2, 3)

    def buffers(self):
        return {"seen": self.seen}

    def forward(self, x):
        if self.training:
            self.seen += 1
        return x

    def backward(self, dy):
        return dy


def test_custom_layer_buffers_join_the_flat_buffer():
    model = nn.Sequential(nn.Linear(2, 2), _Counter(), seed=0)
    layer = model[1]
    np.testing.assert_array_equal(layer.seen, np.arange(6.0).reshape(2, 3))
    assert layer.seen.dtype == model.dtype and np.shares_memory(layer.seen, model._flat_buffers)
    X, y = normal((8, 2), F64, "counter"), labels(8, 2, "counter")
    model.fit(X, y, epochs=1, batch_size=4, compiled=False)
    np.testing.assert_array_equal(layer.seen, np.arange(6.0).reshape(2, 3) + 2)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone[1].seen, layer.seen)
        assert np.shares_memory(clone[1].seen, clone._flat_buffers)

    class Elsewhere(_Counter):
        def buffers(self):
            return {"count": self.seen}

    with pytest.raises(TypeError, match="override _bind_buffer"):
        nn.Sequential(nn.Linear(2, 2), Elsewhere())


def test_reference_kernels_train_to_the_same_weights():
    """kernels="reference" runs the NumPy twins; the same training agrees to rounding."""
    X, y = blobs(80, "kernels")
    models = [small_model(seed=12, dtype="float64", dropout=0.25) for _ in range(2)]
    models[1].kernels = "reference"
    assert models[1][0].kernels is fastnn.reference and models[0][0].kernels is fastnn.ops
    for m in models:
        m.fit(X, y, epochs=3, batch_size=16, l1=1e-3, l2=1e-3, validation_split=0.2)
    np.testing.assert_allclose(models[1]._flat_params, models[0]._flat_params,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(models[1]._flat_buffers, models[0]._flat_buffers, rtol=1e-9)
    with pytest.raises(ValueError):
        small_model().kernels = "numpy"
