"""NaN and infinity in fit's X: the compiled step tests each batch's rows as it gathers
them in the first epoch, and a bad row puts back everything the fit had changed."""
import pickle
import warnings

import numpy as np
import pytest

from fastnn import (BatchNorm1d, Dropout, EarlyStopping, Linear, MLPClassifier, MLPRegressor,
                    ReLU, Sequential)
from fastnn.estimators import _mlp
from fastnn.estimators._base import ConvergenceWarning
from fastnn.estimators._checks import train_val_split
from fastnn.nn import _compiled
from fastnn.optim import Adam, SGD


def _data(n, n_in, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)).astype(dtype), rng.integers(0, 3, n)


def _model(n_in, dtype, seed=3):
    return Sequential(Linear(n_in, 16), BatchNorm1d(16), ReLU(), Dropout(0.2), Linear(16, 3),
                      dtype=dtype, seed=seed)


def _runner(model, batch):
    from fastnn.nn.losses import CrossEntropyLoss
    opt = Adam(model.parameters(), lr=1e-3)
    plan = _compiled.plan_for(model)
    return _compiled.EpochRunner(model, plan, CrossEntropyLoss(), opt, 0.0, 0.0, batch)


# 784 wide rows in batches of 100 are shared with the pool; 6 wide ones are not
@pytest.mark.parametrize("n_in", [6, 784])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_epoch_stops_at_the_first_batch_with_a_bad_row(n_in, dtype, shuffled, bad):
    X, y = _data(500, n_in, dtype)
    order = np.random.default_rng(1).permutation(500) if shuffled else None
    bounds = np.arange(0, 501, 100)
    row = 250 if order is None else int(order[250])      # in batch 3 either way
    X[row, n_in - 1] = bad
    model = _model(n_in, dtype)
    runner = _runner(model, 100)
    with pytest.raises(_compiled.NonFiniteInput, match=r"batch 3\b"):
        runner.run_epoch(X, y, bounds, order, check_input=True)
    assert runner.opt.step_count == 2          # the two batches before it were run
    # unchecked, the bad row goes through and the loss says so
    model = _model(n_in, dtype)
    completed, losses = _runner(model, 100).run_epoch(X, y, bounds, order)
    assert completed == 2 and not np.isfinite(losses[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_finite_X_trains_the_same_checked_or_not(dtype):
    X, y = _data(500, 784, dtype)
    order = np.random.default_rng(2).permutation(500)
    bounds = np.arange(0, 501, 100)
    a, b = _model(784, dtype), _model(784, dtype)
    la = _runner(a, 100).run_epoch(X, y, bounds, order, check_input=True)[1]
    lb = _runner(b, 100).run_epoch(X, y, bounds, order)[1]
    np.testing.assert_array_equal(a._flat_params, b._flat_params)
    np.testing.assert_array_equal(la, lb)


def _everything(model, opt, stopping):
    return (model._flat_params.copy(), model._flat_buffers.copy(),
            model._rng.bit_generator.state, model.training, model.history,
            {k: ({i: a.copy() for i, a in v.items()} if isinstance(v, dict) else v)
             for k, v in vars(opt).items() if k != "_arrays_cache"},
            dict(vars(stopping)))


def _assert_same(now, before):
    np.testing.assert_array_equal(now[0], before[0])
    np.testing.assert_array_equal(now[1], before[1])
    assert now[2:5] == before[2:5]
    assert now[5].keys() == before[5].keys()
    for key, value in before[5].items():
        if isinstance(value, dict):
            assert now[5][key].keys() == value.keys(), key
            for i in value:
                np.testing.assert_array_equal(now[5][key][i], value[i])
        else:
            assert now[5][key] == value, key
    assert now[6].keys() == before[6].keys()
    for key, value in before[6].items():
        if isinstance(value, tuple):          # the best weights so far
            for x, y in zip(now[6][key], value):
                np.testing.assert_array_equal(x, y)
        else:
            assert now[6][key] == value, key


@pytest.mark.parametrize("optimizer", [Adam, SGD])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffle", [True, False])
def test_a_bad_row_in_the_last_batch_puts_everything_back(optimizer, dtype, shuffle):
    X, y = _data(600, 784, dtype)
    X_val, y_val = _data(50, 784, dtype, seed=1)
    twin, model = _model(784, dtype), _model(784, dtype)
    kwargs = {} if optimizer is Adam else {"momentum": 0.9}
    opts = [optimizer(m.parameters(), lr=1e-3, **kwargs) for m in (twin, model)]
    stops = [EarlyStopping(monitor="val_loss", patience=5) for _ in (twin, model)]
    for m, opt, stop in zip((twin, model), opts, stops):     # state worth keeping
        m.fit(X, y, optimizer=opt, epochs=2, batch_size=128, shuffle=shuffle,
              validation_data=(X_val, y_val), early_stopping=stop)
        m.eval()
    bad = X.copy()
    bad[599, 0] = np.nan                    # the last row: nearly a whole epoch runs first
    before = _everything(model, opts[1], stops[1])
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.fit(bad, y, optimizer=opts[1], epochs=3, batch_size=128, shuffle=shuffle,
                  validation_data=(X_val, y_val), early_stopping=stops[1])
    _assert_same(_everything(model, opts[1], stops[1]), before)
    # and the next fit goes on as if the failed one had never been called
    for m, opt, stop in zip((twin, model), opts, stops):
        m.fit(X, y, optimizer=opt, epochs=2, batch_size=128, shuffle=shuffle,
              validation_data=(X_val, y_val), early_stopping=stop)
    np.testing.assert_array_equal(model._flat_params, twin._flat_params)
    np.testing.assert_array_equal(model._flat_buffers, twin._flat_buffers)
    assert model.history.history == twin.history.history


def test_a_fresh_optimizer_object_keeps_no_state_after_a_failed_fit():
    X, y = _data(300, 784, np.float32)
    X[-1, -1] = np.inf
    model = _model(784, np.float32)
    opt = Adam(model.parameters(), lr=1e-3)
    keys = set(vars(opt))
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.fit(X, y, optimizer=opt, epochs=1, batch_size=64)
    caches = {"_arrays_cache", "_arrays_key"}       # views of the parameters, not state
    assert set(vars(opt)) - caches == keys and opt.step_count == 0


def test_values_beyond_float32_and_a_bad_validation_split_are_refused():
    X, y = _data(200, 784, np.float64)
    model = _model(784, np.float32)
    before = model._flat_params.copy()
    big = X.copy()
    big[150, 3] = 1e39                      # finite in float64, infinity in float32
    with pytest.raises(ValueError, match="beyond the float32 range"):
        model.fit(big, y, epochs=1, batch_size=64)
    held_out = X.copy()
    held_out[-1, 0] = np.nan                # in the validation part, never a training batch
    with pytest.raises(ValueError, match="X contains NaN"):
        model.fit(held_out, y, epochs=1, batch_size=64, validation_split=0.1)
    np.testing.assert_array_equal(model._flat_params, before)


def test_the_layer_by_layer_path_tests_X_first():
    X, y = _data(100, 8, np.float64)
    X[-1, -1] = np.nan
    model = _model(8, np.float64)
    before = model._flat_params.copy()
    calls = []
    real_step = SGD.step

    def counting_step(self):
        calls.append(1)
        real_step(self)
    SGD.step = counting_step
    try:
        with pytest.raises(ValueError, match="X contains NaN"):
            model.fit(X, y, optimizer="sgd", epochs=1, batch_size=10, compiled=False)
    finally:
        SGD.step = real_step
    assert not calls
    np.testing.assert_array_equal(model._flat_params, before)


# ------------------------------------------------------------------ the estimators
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("make", [
    lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, batch_size=64,
                          random_state=0, warm_start=True, dropout=0.1, batch_norm=True),
    lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, batch_size=64, random_state=0,
                         warm_start=True, dtype="float64"),
], ids=["MLPClassifier", "MLPRegressor"])
def test_estimators_put_everything_back_after_a_bad_row(make, compiled, monkeypatch):
    monkeypatch.setattr(_mlp, "_USE_COMPILED", compiled)
    X, y = _data(400, 784, np.float64)
    twin, est = make(), make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for e in (twin, est):
            e.fit(X, y)
        state, rng_state = pickle.dumps(est), est._model._rng.bit_generator.state
        for bad in (np.nan, np.inf, 1e39 if make().dtype == "float32" else -np.inf):
            X_bad = X.copy()
            X_bad[-1, -1] = bad                 # the last row, as the training part
            with pytest.raises(ValueError, match="Input X contains"):
                est.fit(X_bad, y)
            with pytest.raises(ValueError, match="Input X contains"):
                est.partial_fit(X_bad, y)
            assert pickle.dumps(est) == state
            assert est._model._rng.bit_generator.state == rng_state
        for e in (twin, est):
            e.fit(X, y)
    np.testing.assert_array_equal(est.predict(X), twin.predict(X))
    assert est.loss_curve_ == twin.loss_curve_


def test_a_bad_row_in_the_early_stopping_split_is_refused():
    X, y = _data(400, 20, np.float64)
    # the rows fit holds out (its seed for random_state=0, as _fit draws it; not
    # stratified for three classes, as scikit-learn)
    seed = int(np.random.default_rng(0).integers(2**62))
    _train, val = train_val_split(400, 0.1, seed)
    X[val[0], 3] = np.nan
    est = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, random_state=0)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")
